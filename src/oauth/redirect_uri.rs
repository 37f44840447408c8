//! Redirect URI matching (RFC 6749 s3.1.2.3, RFC 9700 s4.1.3, RFC 8252 s7.3).

/// The registered URI that `requested` matches: exactly, by simple string comparison; or, for a
/// registered loopback IP redirect URI (`http://127.0.0.1/...` or `http://[::1]/...`), the same
/// URI with any port (RFC 8252 s7.3). `localhost` gets no port exception (RFC 8252 s8.3).
pub fn matching<'a>(registered: &'a [String], requested: &str) -> Option<&'a str> {
    // RFC 6749 s3.1.2.3 and RFC 9700 s4.1.3: simple string comparison with a registered URI.
    if let Some(exact) = registered.iter().find(|r| r.as_str() == requested) {
        return Some(exact.as_str());
    }
    // RFC 8252 s7.3: for a loopback IP redirect URI the port may vary, and nothing else: the
    // requested string is compared as written (no normalisation of dot segments or case).
    let req = url::Url::parse(requested).ok()?;
    if req.scheme() != "http" || !is_loopback_ip(&req) {
        return None;
    }
    let req_parts = loopback_parts(requested)?;
    registered
        .iter()
        .find(|r| {
            url::Url::parse(r).is_ok_and(|reg| {
                reg.scheme() == "http"
                    && is_loopback_ip(&reg)
                    && reg.host() == req.host()
                    && req.fragment().is_none()
                    && req.username().is_empty()
                    && req.password().is_none()
                    && loopback_parts(r).is_some_and(|parts| parts == req_parts)
            })
        })
        .map(String::as_str)
}

/// The host and what follows `http://HOST[:PORT]` (path, query, fragment) in a loopback IP URI,
/// both exactly as written; the port is left out. None unless the URI is written `http://` with
/// a literal loopback IP host (`127.0.0.1`, `[::1]`) and no userinfo.
fn loopback_parts(uri: &str) -> Option<(&str, &str)> {
    let rest = uri.strip_prefix("http://")?;
    let host_len = if rest.starts_with('[') {
        rest.find(']')? + 1
    } else {
        rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len())
    };
    let (host, after_host) = rest.split_at(host_len);
    let is_ip = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback());
    if !is_ip {
        return None;
    }
    let after_port = match after_host.strip_prefix(':') {
        Some(p) => {
            let digits = p.find(|c: char| !c.is_ascii_digit()).unwrap_or(p.len());
            p.get(..digits)?.parse::<u16>().ok()?;
            p.get(digits..)?
        }
        None => after_host,
    };
    after_port.starts_with('/').then_some((host, after_port))
}

fn is_loopback_ip(u: &url::Url) -> bool {
    match u.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        _ => false,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn exact_match_only_for_web_uris() {
        let reg = vec!["https://app.example.com/cb".to_string()];
        assert_eq!(
            matching(&reg, "https://app.example.com/cb"),
            Some("https://app.example.com/cb")
        );
        for bad in [
            "https://APP.example.com/cb",
            "https://app.example.com/CB",
            "https://app.example.com/cb/",
            "https://app.example.com/cb?x=1",
            "https://app.example.com/cb#f",
            "https://app.example.com/%2e%2e/cb",
            "https://app.example.com/cb/../cb",
            "https://evil@app.example.com/cb",
            "https://app.example.com.evil.com/cb",
            "https://sub.app.example.com/cb",
            "https://app.example.com:443/cb",
            "http://app.example.com/cb",
        ] {
            assert_eq!(matching(&reg, bad), None, "{bad}");
        }
    }

    #[test]
    fn loopback_ip_port_may_differ() {
        let reg = vec![
            "http://127.0.0.1/callback".to_string(),
            "http://[::1]/cb".to_string(),
            "http://localhost/cb".to_string(),
        ];
        assert_eq!(
            matching(&reg, "http://127.0.0.1:51004/callback"),
            Some("http://127.0.0.1/callback")
        );
        assert_eq!(matching(&reg, "http://[::1]:8000/cb"), Some("http://[::1]/cb"));
        assert_eq!(matching(&reg, "http://127.0.0.1:51004/other"), None);
        assert_eq!(matching(&reg, "http://127.0.0.1:51004/callback?x=1"), None);
        assert_eq!(
            matching(&reg, "http://localhost:8000/cb"),
            None,
            "no port exception for localhost"
        );
        assert_eq!(matching(&reg, "http://127.0.0.2:8000/callback"), None);
    }

    #[test]
    fn loopback_ip_rest_compared_as_written() {
        let reg = vec![
            "http://127.0.0.1/callback".to_string(),
            "http://[::1]/cb".to_string(),
        ];
        assert_eq!(
            matching(&reg, "http://127.0.0.1:80/callback"),
            Some("http://127.0.0.1/callback")
        );
        for bad in [
            "http://127.0.0.1:51004/x/../callback",
            "http://127.0.0.1:51004/x/%2e%2e/callback",
            "http://127.0.0.1:51004/x/%2E%2E/callback",
            "http://127.0.0.1:51004/./callback",
            "HTTP://127.0.0.1:51004/callback",
            "http://127.0.0.1:51004/Callback",
            "http://127.0.0.1:51004/callback/",
            "http://127.0.0.1:51004/callback#f",
            "http://127.0.0.1:51004/callback?",
            "http://u@127.0.0.1:51004/callback",
            "http://u:p@127.0.0.1:51004/callback",
            "http://127.0.0.1:99999/callback",
            "http://127.0.0.1:/callback",
            "http://127.1:51004/callback",
            "http://0x7f.0.0.1:51004/callback",
            "http://2130706433:51004/callback",
            "http://[::1]:8000/CB",
            "http://[0:0:0:0:0:0:0:1]:8000/cb",
            "https://127.0.0.1:51004/callback",
        ] {
            assert_eq!(matching(&reg, bad), None, "{bad}");
        }
        assert_eq!(matching(&reg, "http://[::1]:8000/cb"), Some("http://[::1]/cb"));
    }
}
