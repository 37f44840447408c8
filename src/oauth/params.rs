//! Form parameters of token, introspection and revocation requests.

use std::collections::HashMap;

use crate::error::{OAuthError, OAuthResult};

/// Parameters of an `application/x-www-form-urlencoded` body.
#[derive(Debug, Default)]
pub struct Params {
    single: HashMap<String, String>,
    multi: HashMap<String, Vec<String>>,
}

impl Params {
    /// Parses a form body. RFC 6749 s3.1: parameters sent without a value are treated as omitted,
    /// and a parameter must not be included more than once, except those in `repeatable`
    /// (RFC 8707's `resource`).
    pub fn parse(body: &[u8], repeatable: &[&str]) -> OAuthResult<Params> {
        let mut p = Params::default();
        for (k, v) in form_urlencoded::parse(body) {
            refuse_bad_pair(&k, &v, body)?;
            if v.is_empty() {
                continue;
            }
            if repeatable.contains(&k.as_ref()) {
                p.multi.entry(k.into_owned()).or_default().push(v.into_owned());
                continue;
            }
            if p.single.contains_key(k.as_ref()) {
                return Err(OAuthError::invalid_request(format!(
                    "the parameter {k} is included more than once"
                )));
            }
            p.single.insert(k.into_owned(), v.into_owned());
        }
        Ok(p)
    }

    /// The value of a single-valued parameter.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.single.get(name).map(String::as_str)
    }

    /// The value of a parameter that must be present.
    pub fn require(&self, name: &str) -> OAuthResult<&str> {
        self.get(name)
            .ok_or_else(|| OAuthError::invalid_request(format!("the parameter {name} is missing")))
    }

    /// All values of a repeatable parameter.
    pub fn all(&self, name: &str) -> &[String] {
        self.multi.get(name).map(Vec::as_slice).unwrap_or(&[])
    }
}

/// True when every name and value of a form body is UTF-8 once percent-decoded.
/// Refuses a pair `form_urlencoded::parse` decoded from `body` that holds a NUL (no protocol
/// value holds one, and PostgreSQL cannot keep one in text: refused here, the same on every
/// store) or a U+FFFD the body did not carry as such (what is not UTF-8 is decoded to U+FFFD: a
/// `state` sent back changed, a name or secret compared as something else). The body is decoded
/// strictly only when a U+FFFD shows (it may also have been sent as one).
pub fn refuse_bad_pair(k: &str, v: &str, body: &[u8]) -> OAuthResult<()> {
    if k.contains('\0') || v.contains('\0') {
        return Err(OAuthError::invalid_request("a parameter holds a NUL character"));
    }
    if (k.contains('\u{fffd}') || v.contains('\u{fffd}')) && !decodes_to_utf8(body) {
        return Err(OAuthError::invalid_request(
            "a parameter is not valid UTF-8 once percent-decoded",
        ));
    }
    Ok(())
}

fn decodes_to_utf8(body: &[u8]) -> bool {
    body.split(|b| *b == b'&')
        .all(|pair| percent_encoding::percent_decode(pair).decode_utf8().is_ok())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_refused_but_resource_repeats() {
        assert!(Params::parse(b"a=1&a=2", &[]).is_err());
        let p = Params::parse(b"resource=x&resource=y&a=1&b=", &["resource"]).unwrap();
        assert_eq!(p.all("resource"), ["x", "y"]);
        assert_eq!(p.get("b"), None);
        assert_eq!(p.get("a"), Some("1"));
    }

    #[test]
    fn values_that_are_not_utf8_or_hold_a_nul_are_refused() {
        for bad in [
            &b"state=%FF"[..],
            b"state=%C3",
            b"%FF=1",
            b"state=\xff",
            b"a=1&b=%00",
        ] {
            assert!(
                Params::parse(bad, &[]).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        // UTF-8, a literal U+FFFD included, and a lone % (kept as it is) are values like others.
        let p = Params::parse(b"state=caf%C3%A9&r=%EF%BF%BD&p=50%", &[]).unwrap();
        assert_eq!(p.get("state"), Some("caf\u{e9}"));
        assert_eq!(p.get("r"), Some("\u{fffd}"));
        assert_eq!(p.get("p"), Some("50%"));
    }
}
