//! The claim checks every JWT assertion we accept goes through (RFC 7523 s3), for client
//! assertions (s2.2) and the user assertions of the JWT bearer grant (s2.1), and replay refusal.

use serde_json::{Map, Value};

use crate::domain::{Domain, paths};
use crate::error::{OAuthError, OAuthResult};
use crate::oauth::Ctx;
use crate::store::assertion::AssertionStore;

/// Seconds of clock difference tolerated on `nbf` and `iat` in the future.
pub const LEEWAY: i64 = 60;

/// RFC 7523 s3 item 3: the values of `aud` that identify this server, for client assertions and
/// user assertions alike: its issuer, its token endpoint URL and (RFC 8705 s5) the token
/// endpoint's mutual-TLS alias.
pub fn audiences(domain: &Domain) -> Vec<String> {
    let mut audiences = vec![domain.issuer.clone(), domain.url(paths::TOKEN)];
    audiences.extend(domain.mtls_url(paths::TOKEN));
    audiences
}

/// RFC 7519 s2: a NumericDate is a JSON number of seconds that may have a fraction; it is read
/// rounded down to whole seconds. Anything else is not a NumericDate.
fn numeric_date(v: &Value) -> Option<i64> {
    v.as_i64()
        .or_else(|| v.as_f64().filter(|f| f.is_finite()).map(|f| f.floor() as i64))
}

/// What an assertion must say.
pub struct Expect<'a> {
    /// RFC 7523 s3 item 1: the `iss` it must carry.
    pub issuer: &'a str,
    /// RFC 7523 s3 item 2.B: for a client assertion, `sub` must be the client_id.
    pub subject: Option<&'a str>,
    /// RFC 7523 s3 item 3: values of `aud` that identify this server.
    pub audiences: &'a [String],
    /// `aud` must be a single string (client assertions: draft-ietf-oauth-rfc7523bis).
    pub single_audience: bool,
    /// The farthest ahead `exp` may be.
    pub max_lifetime: i64,
    /// The time to check against.
    pub now: i64,
}

/// The claims of an assertion that passed the checks.
#[derive(Debug)]
pub struct Accepted {
    /// `sub`.
    pub sub: String,
    /// `jti`.
    pub jti: String,
    /// `exp`.
    pub exp: i64,
}

/// Checks the claims of a verified assertion; the error text is safe to show.
pub fn check(claims: &Map<String, Value>, e: &Expect<'_>) -> Result<Accepted, &'static str> {
    let str_claim = |name: &str| claims.get(name).and_then(Value::as_str);
    let num_claim = |name: &str| claims.get(name).and_then(numeric_date);
    // RFC 7523 s3 item 1: iss MUST be present and identify the issuer.
    if str_claim("iss") != Some(e.issuer) {
        return Err("the assertion's iss is not the expected issuer");
    }
    // RFC 7523 s3 item 2: sub MUST be present.
    let sub = str_claim("sub")
        .filter(|s| !s.is_empty())
        .ok_or("the assertion has no sub")?;
    // No name holds a NUL, and PostgreSQL cannot keep one in text: refused here, the same on
    // every store (as for form parameters, `params::Params::parse`).
    if sub.contains('\0') {
        return Err("the assertion's sub holds a NUL character");
    }
    if e.subject.is_some_and(|want| want != sub) {
        return Err("the assertion's sub must be the client_id");
    }
    // RFC 7523 s3 item 3: the server MUST reject a JWT without itself as an audience.
    let aud_ok = match claims.get("aud") {
        Some(Value::String(a)) => e.audiences.contains(a),
        Some(Value::Array(list)) if !e.single_audience => list
            .iter()
            .filter_map(Value::as_str)
            .any(|a| e.audiences.iter().any(|x| x == a)),
        _ => false,
    };
    if !aud_ok {
        return Err("the assertion's aud does not identify this server");
    }
    // RFC 7523 s3 item 4: exp MUST be present and the JWT rejected after it.
    let exp = num_claim("exp").ok_or("the assertion has no exp")?;
    if exp <= e.now {
        return Err("the assertion has expired");
    }
    if exp > e.now + e.max_lifetime + LEEWAY {
        return Err("the assertion is valid for too long");
    }
    // RFC 7523 s3 item 5: not before nbf.
    if claims.contains_key("nbf") {
        let nbf = num_claim("nbf").ok_or("the assertion's nbf is not a number")?;
        if nbf > e.now + LEEWAY {
            return Err("the assertion is not valid yet");
        }
    }
    // RFC 7523 s3 item 6: iat may be used to reject JWTs issued too far in the past.
    if claims.contains_key("iat") {
        let iat = num_claim("iat").ok_or("the assertion's iat is not a number")?;
        if iat > e.now + LEEWAY {
            return Err("the assertion was issued in the future");
        }
        if iat < e.now - e.max_lifetime - LEEWAY {
            return Err("the assertion was issued too long ago");
        }
    }
    // RFC 7523 s3 item 7: jti lets the server refuse replays; we require it.
    let jti = str_claim("jti")
        .filter(|j| !j.is_empty() && j.len() <= 256)
        .ok_or("the assertion has no jti")?;
    if jti.contains('\0') {
        return Err("the assertion's jti holds a NUL character");
    }
    Ok(Accepted {
        sub: sub.to_string(),
        jti: jti.to_string(),
        exp,
    })
}

/// Records the assertion's jti under `issuer`; a second use while it is valid is refused with
/// `error` (the error of the caller's context: invalid_client or invalid_grant).
pub async fn refuse_replay<S: AssertionStore + Sync>(
    ctx: &Ctx<'_, S>,
    issuer: &str,
    accepted: &Accepted,
    error: fn(&'static str) -> OAuthError,
) -> OAuthResult<()> {
    let first = ctx
        .store
        .use_assertion_jti(&ctx.domain.name, issuer, &accepted.jti, accepted.exp, ctx.now)
        .await?;
    if first {
        Ok(())
    } else {
        Err(error("the assertion was already used"))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use serde_json::json;

    fn expect(aud: &[String]) -> Expect<'_> {
        Expect {
            issuer: "c1",
            subject: Some("c1"),
            audiences: aud,
            single_audience: true,
            max_lifetime: 300,
            now: 1000,
        }
    }

    fn claims(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn checks_each_claim() {
        let aud = vec!["https://as".to_string()];
        let good = json!({"iss":"c1","sub":"c1","aud":"https://as","exp":1100,"iat":990,"jti":"j"});
        assert_eq!(check(&claims(good.clone()), &expect(&aud)).unwrap().jti, "j");
        let cases = [
            ("iss", json!("c2"), "iss"),
            ("sub", json!("c2"), "sub"),
            ("aud", json!("https://other"), "aud"),
            ("aud", json!(["https://as"]), "aud"),
            ("exp", json!(999), "expired"),
            ("exp", json!(1000 + 300 + 61), "too long"),
            ("nbf", json!(1100), "not valid yet"),
            ("iat", json!(1100), "future"),
            ("iat", json!(500), "too long ago"),
            ("jti", json!(""), "jti"),
            ("jti", json!("j\u{0}"), "NUL"),
            ("sub", json!("c1\u{0}"), "NUL"),
        ];
        for (name, value, want) in cases {
            let mut c = claims(good.clone());
            c.insert(name.into(), value);
            let err = check(&c, &expect(&aud)).unwrap_err();
            assert!(err.contains(want), "{name}: {err}");
        }
        for missing in ["exp", "jti", "sub"] {
            let mut c = claims(good.clone());
            c.remove(missing);
            assert!(check(&c, &expect(&aud)).is_err(), "{missing}");
        }
        // RFC 7519 s2: NumericDates may have fractions, read rounded down; not strings.
        let mut c = claims(good.clone());
        c.insert("exp".into(), json!(1100.9));
        c.insert("iat".into(), json!(999.5));
        c.insert("nbf".into(), json!(1060.9));
        assert_eq!(check(&c, &expect(&aud)).unwrap().exp, 1100);
        for (name, value, want) in [
            ("exp", json!(1000.9), "expired"),
            ("nbf", json!(1061.0), "not valid yet"),
            ("exp", json!("1100"), "no exp"),
            ("iat", json!("990"), "not a number"),
            ("nbf", json!(null), "not a number"),
        ] {
            let mut c = claims(good.clone());
            c.insert(name.into(), value);
            let err = check(&c, &expect(&aud)).unwrap_err();
            assert!(err.contains(want), "{name}: {err}");
        }
        let mut e = expect(&aud);
        e.single_audience = false;
        let mut c = claims(good);
        c.insert("aud".into(), json!(["x", "https://as"]));
        assert!(check(&c, &e).is_ok());
    }
}
