//! Fetching clients' JWK Sets from their `jwks_uri`: a timeout, a size limit, no redirects, a
//! cache, and never from loopback, private or link-local addresses unless the domain allows it
//! (the address is checked after resolution and the connection pinned to it, so DNS cannot
//! swap it afterwards).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

/// How long fetched keys are used before they are fetched again.
const TTL: Duration = Duration::from_secs(300);
/// The soonest keys are fetched again, after such a fetch, because a signature named an unknown
/// key (so a stream of bad assertions cannot make us fetch on every request).
const MIN_REFETCH: Duration = Duration::from_secs(30);
/// The whole fetch, connection included.
const TIMEOUT: Duration = Duration::from_secs(5);
/// The largest JWK Set accepted.
const MAX_BYTES: usize = 64 * 1024;
/// Most URIs remembered before the cache is emptied.
const MAX_ENTRIES: usize = 1_000;

struct Entry {
    fetched: Instant,
    /// When the keys were last fetched on demand.
    forced: Option<Instant>,
    keys: Arc<Vec<Value>>,
}

/// A cache of fetched JWK Sets, shared by all requests.
#[derive(Clone, Default)]
pub struct JwksCache {
    entries: Arc<Mutex<HashMap<String, Entry>>>,
}

impl JwksCache {
    /// The keys at `uri`: cached ones when fresh, unless `refresh` asks to fetch again (at most
    /// once per 30 s per URI after the last such fetch). `allow_private` lets the URI resolve to a non-public address.
    pub async fn keys(
        &self,
        uri: &str,
        allow_private: bool,
        refresh: bool,
    ) -> Result<Arc<Vec<Value>>, String> {
        let mut forced = None;
        if let Some((age, last_forced, keys)) = self.cached(uri) {
            let recently_forced = last_forced.is_some_and(|f| f.elapsed() < MIN_REFETCH);
            if (age < TTL && !refresh) || (refresh && recently_forced) {
                return Ok(keys);
            }
            if refresh {
                forced = Some(Instant::now());
            }
        }
        let keys = Arc::new(fetch(uri, allow_private).await?);
        if let Ok(mut m) = self.entries.lock() {
            if m.len() >= MAX_ENTRIES {
                m.clear();
            }
            m.insert(
                uri.to_string(),
                Entry {
                    fetched: Instant::now(),
                    forced,
                    keys: keys.clone(),
                },
            );
        }
        Ok(keys)
    }

    fn cached(&self, uri: &str) -> Option<(Duration, Option<Instant>, Arc<Vec<Value>>)> {
        let m = self.entries.lock().ok()?;
        m.get(uri)
            .map(|e| (e.fetched.elapsed(), e.forced, e.keys.clone()))
    }
}

async fn fetch(uri: &str, allow_private: bool) -> Result<Vec<Value>, String> {
    let url = url::Url::parse(uri).map_err(|e| format!("jwks_uri is not a URL: {e}"))?;
    if url.scheme() != "https" && !(allow_private && url.scheme() == "http") {
        return Err("jwks_uri must use https".into());
    }
    let host = url.host_str().ok_or("jwks_uri has no host")?.to_string();
    let port = url.port_or_known_default().ok_or("jwks_uri has no port")?;
    let bare = host.trim_start_matches('[').trim_end_matches(']').to_string();
    let addrs: Vec<SocketAddr> =
        tokio::time::timeout(TIMEOUT, tokio::net::lookup_host((bare.as_str(), port)))
            .await
            .map_err(|_| "jwks_uri host lookup timed out".to_string())?
            .map_err(|e| format!("jwks_uri host lookup failed: {e}"))?
            .collect();
    let addr = addrs
        .into_iter()
        .find(|a| allow_private || is_public(a.ip()))
        .ok_or("jwks_uri does not resolve to a public address")?;
    let client = reqwest::Client::builder()
        .timeout(TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .resolve(&bare, addr)
        .build()
        .map_err(|e| format!("HTTP client: {e}"))?;
    let mut resp = client
        .get(url)
        .header("accept", "application/jwk-set+json, application/json")
        .send()
        .await
        .map_err(|e| format!("jwks_uri fetch failed: {e}"))?;
    if !resp.status().is_success() {
        return Err(format!("jwks_uri answered {}", resp.status()));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| format!("jwks_uri read failed: {e}"))?
    {
        if body.len() + chunk.len() > MAX_BYTES {
            return Err(format!("jwks_uri document is larger than {MAX_BYTES} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    let set: Value =
        serde_json::from_slice(&body).map_err(|_| "jwks_uri document is not JSON".to_string())?;
    set.get("keys")
        .and_then(Value::as_array)
        .cloned()
        .ok_or_else(|| "jwks_uri document has no keys array".to_string())
}

/// False for loopback, private, link-local, shared (CGNAT), unspecified, documentation,
/// broadcast and multicast addresses, and IPv6 unique-local and link-local ones.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => {
            let o = a.octets();
            !(a.is_private()
                || a.is_loopback()
                || a.is_link_local()
                || a.is_unspecified()
                || a.is_broadcast()
                || a.is_multicast()
                || a.is_documentation()
                || o[0] == 0
                || (o[0] == 100 && (o[1] & 0xc0) == 64))
        }
        IpAddr::V6(a) => {
            if let Some(v4) = a.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let first = a.segments()[0];
            !(a.is_loopback()
                || a.is_unspecified()
                || a.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80)
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn private_addresses_are_not_public() {
        for a in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(!is_public(a.parse().unwrap()), "{a}");
        }
        for a in ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"] {
            assert!(is_public(a.parse().unwrap()), "{a}");
        }
    }

    #[tokio::test]
    async fn refuses_loopback_and_plain_http() {
        let c = JwksCache::default();
        let e = c
            .keys("https://127.0.0.1:1/jwks", false, false)
            .await
            .unwrap_err();
        assert!(e.contains("public address"), "{e}");
        let e = c.keys("http://example.com/jwks", false, false).await.unwrap_err();
        assert!(e.contains("https"), "{e}");
    }
}
