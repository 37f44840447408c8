//! Redirect URI matching (RFC 6749 s3.1.2.3, RFC 9700 s4.1.3, RFC 8252 s7.3).

/// The registered URI that `requested` matches: exactly, by simple string comparison; or, for a
/// registered loopback IP redirect URI (`http://127.0.0.1/...` or `http://[::1]/...`), the same
/// URI with any port (RFC 8252 s7.3). `localhost` gets no port exception (RFC 8252 s8.3).
pub fn matching<'a>(registered: &'a [String], requested: &str) -> Option<&'a str> {
    if let Some(exact) = registered.iter().find(|r| r.as_str() == requested) {
        return Some(exact.as_str());
    }
    let req = url::Url::parse(requested).ok()?;
    if req.scheme() != "http" || !is_loopback_ip(&req) {
        return None;
    }
    registered
        .iter()
        .find(|r| {
            url::Url::parse(r).is_ok_and(|reg| {
                reg.scheme() == "http"
                    && is_loopback_ip(&reg)
                    && reg.host() == req.host()
                    && reg.path() == req.path()
                    && reg.query() == req.query()
                    && req.fragment().is_none()
                    && req.username().is_empty()
                    && req.password().is_none()
                    // The requested string must be the registered one but for the port.
                    && without_port(&reg) == without_port(&req)
            })
        })
        .map(String::as_str)
}

fn is_loopback_ip(u: &url::Url) -> bool {
    match u.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        _ => false,
    }
}

fn without_port(u: &url::Url) -> String {
    let mut u = u.clone();
    let _ = u.set_port(None);
    u.to_string()
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
}
