//! Fetching clients' JWK Sets from their `jwks_uri`: a timeout, a size limit, no redirects, no
//! proxy, a cache, and never from loopback, private or link-local addresses unless the domain
//! allows it (the address is checked after resolution and the connection pinned to it, so DNS
//! cannot swap it afterwards). One fetch at a time per URI; a failed fetch is remembered, and the
//! last good keys serve a while longer when a refresh fails.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

/// Seconds fetched keys are used before they are fetched again.
const TTL: i64 = 300;
/// Seconds past [`TTL`] the last good keys are still used while fetching them fails.
const STALE_IF_ERROR: i64 = 3600;
/// The soonest (seconds) keys are fetched again after a fetch on demand (a signature named an
/// unknown key) or after a failed fetch, so a stream of bad assertions cannot make us fetch on
/// every request.
const MIN_REFETCH: i64 = 30;
/// The whole fetch, connection included.
const TIMEOUT: Duration = Duration::from_secs(5);
/// The largest JWK Set accepted.
const MAX_BYTES: usize = 64 * 1024;
/// Most URIs remembered before the cache is emptied.
const MAX_ENTRIES: usize = 1_000;

type Keys = Arc<Vec<Value>>;

/// What is known of one URI. Times are unix seconds of the server's clock.
#[derive(Default)]
struct Entry {
    /// The last keys fetched, and when.
    good: Option<(i64, Keys)>,
    /// When the last fetch on demand was made, whatever its outcome.
    forced: Option<i64>,
    /// When the last fetch failed, and why; a success clears it.
    failed: Option<(i64, String)>,
    /// Fetches finished so far, so that a caller that waited for one shares its result.
    fetches: u64,
    /// Held by the one fetch in flight; concurrent callers wait for it.
    gate: Arc<tokio::sync::Mutex<()>>,
}

impl Entry {
    /// The keys to answer with now, or None when a fetch is due.
    fn settled(&self, now: i64, refresh: bool) -> Option<Result<Keys, String>> {
        let recent = |t: i64| now.saturating_sub(t) < MIN_REFETCH;
        let backing_off = self.failed.as_ref().is_some_and(|(t, _)| recent(*t));
        let fresh = self
            .good
            .as_ref()
            .is_some_and(|(t, _)| now.saturating_sub(*t) < TTL);
        let wait = if refresh {
            backing_off || self.forced.is_some_and(recent)
        } else {
            fresh || backing_off
        };
        wait.then(|| self.current(now))
    }

    /// The last good keys while they may serve (fresh, or stale within [`STALE_IF_ERROR`]);
    /// otherwise the last failure.
    fn current(&self, now: i64) -> Result<Keys, String> {
        match (&self.good, &self.failed) {
            (Some((t, keys)), _) if now.saturating_sub(*t) < TTL + STALE_IF_ERROR => Ok(keys.clone()),
            (_, Some((_, why))) => Err(why.clone()),
            _ => Err("the jwks_uri keys are too old to use".to_string()),
        }
    }
}

/// A cache of fetched JWK Sets, shared by all requests.
#[derive(Clone, Default)]
pub struct JwksCache {
    entries: Arc<Mutex<HashMap<String, Entry>>>,
}

/// What a caller learns from the cache without waiting.
enum Lookup {
    Settled(Result<Keys, String>),
    /// A fetch is due: wait for the gate; `fetches` finished when the caller looked.
    Due {
        gate: Arc<tokio::sync::Mutex<()>>,
        fetches: u64,
    },
}

impl JwksCache {
    /// The keys at `uri` at unix time `now`: cached ones for 5 minutes; `refresh` asks to fetch
    /// again (at most once per 30 s per URI). One fetch at a time per URI: concurrent callers
    /// wait for it and share its result. After a failed fetch none is tried for 30 s, refreshes
    /// included; while fetching fails, the last good keys serve up to an hour past their 5
    /// minutes. `allow_private` lets the URI resolve to a non-public address.
    pub async fn keys(
        &self,
        uri: &str,
        allow_private: bool,
        refresh: bool,
        now: i64,
    ) -> Result<Keys, String> {
        // Keys fetched for a domain that allows private addresses never serve one that does not.
        let key = if allow_private {
            format!("private {uri}")
        } else {
            uri.to_string()
        };
        let (gate, seen) = match self.lookup(&key, now, refresh) {
            Lookup::Settled(result) => return result,
            Lookup::Due { gate, fetches } => (gate, fetches),
        };
        let _flight = gate.lock().await;
        // A fetch that finished while this caller waited answers it too.
        if let Some(result) = self.after_wait(&key, now, refresh, seen) {
            return result;
        }
        let outcome = fetch(uri, allow_private).await;
        self.record(&key, uri, now, refresh, outcome)
    }

    fn lookup(&self, key: &str, now: i64, refresh: bool) -> Lookup {
        let Ok(mut m) = self.entries.lock() else {
            return Lookup::Settled(Err("the jwks_uri cache is unavailable".into()));
        };
        if m.len() >= MAX_ENTRIES && !m.contains_key(key) {
            // Keep the entries of fetches in flight, so that each still has one gate.
            m.retain(|_, e| Arc::strong_count(&e.gate) > 1);
        }
        let entry = m.entry(key.to_string()).or_default();
        match entry.settled(now, refresh) {
            Some(result) => Lookup::Settled(result),
            None => Lookup::Due {
                gate: entry.gate.clone(),
                fetches: entry.fetches,
            },
        }
    }

    fn after_wait(&self, key: &str, now: i64, refresh: bool, seen: u64) -> Option<Result<Keys, String>> {
        let m = self.entries.lock().ok()?;
        let entry = m.get(key)?;
        if entry.fetches != seen {
            return Some(entry.current(now));
        }
        entry.settled(now, refresh)
    }

    /// Stores the outcome of a fetch and answers with it (or, when it failed, with the last good
    /// keys while they may serve).
    fn record(
        &self,
        key: &str,
        uri: &str,
        now: i64,
        forced: bool,
        outcome: Result<Vec<Value>, String>,
    ) -> Result<Keys, String> {
        let Ok(mut m) = self.entries.lock() else {
            return outcome.map(Arc::new);
        };
        let entry = m.entry(key.to_string()).or_default();
        entry.fetches += 1;
        if forced {
            entry.forced = Some(now);
        }
        match outcome {
            Ok(keys) => {
                let keys = Arc::new(keys);
                entry.good = Some((now, keys.clone()));
                entry.failed = None;
                Ok(keys)
            }
            Err(why) => {
                entry.failed = Some((now, why.clone()));
                let stale = entry.current(now);
                tracing::warn!(
                    jwks_uri = %uri,
                    error.cause = %why,
                    stale_keys_used = stale.is_ok(),
                    "a client's jwks_uri could not be fetched; tried again in 30 s at the soonest"
                );
                stale
            }
        }
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
        // A proxy would resolve the name itself, bypassing the address check and the pinning.
        .no_proxy()
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
                || (o[0] == 100 && (o[1] & 0xc0) == 64)
                // IETF protocol assignments (192.0.0.0/24), benchmarking (198.18.0.0/15),
                // reserved (240.0.0.0/4).
                || (o[0] == 192 && o[1] == 0 && o[2] == 0)
                || (o[0] == 198 && (o[1] & 0xfe) == 18)
                || (o[0] == 192 && o[1] == 88 && o[2] == 99)
                || o[0] >= 240)
        }
        IpAddr::V6(a) => {
            let s = a.segments();
            let embedded = |hi: u16, lo: u16| {
                IpAddr::V4(std::net::Ipv4Addr::new(
                    (hi >> 8) as u8,
                    hi as u8,
                    (lo >> 8) as u8,
                    lo as u8,
                ))
            };
            if let Some(v4) = a.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            // Addresses that carry an IPv4 address a gateway may deliver to: IPv4-compatible
            // (::a.b.c.d), NAT64 (64:ff9b::/96) and 6to4 (2002::/16) are as public as it is.
            if s[..6] == [0; 6] && !a.is_loopback() && !a.is_unspecified() {
                return is_public(embedded(s[6], s[7]));
            }
            if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] || s[..6] == [0, 0, 0, 0, 0xffff, 0] {
                return is_public(embedded(s[6], s[7]));
            }
            if s[0] == 0x2002 {
                return is_public(embedded(s[1], s[2]));
            }
            !(a.is_loopback()
                || a.is_unspecified()
                || a.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
                // Site-local (deprecated), local-use NAT64 (64:ff9b:1::/48), Teredo
                // (2001::/32, which tunnels anywhere), documentation (2001:db8::/32).
                || (s[0] & 0xffc0) == 0xfec0
                || (s[0] == 0x64 && s[1] == 0xff9b && s[2] == 1)
                || (s[0] == 0x2001 && s[1] == 0)
                || (s[0] == 0x2001 && s[1] == 0xdb8)
                // Benchmarking (2001:2::/48), ORCHID (2001:10::/28, 2001:20::/28), discard
                // (100::/64), documentation (3fff::/20).
                || (s[0] == 0x2001 && s[1] == 2 && s[2] == 0)
                || (s[0] == 0x2001 && matches!(s[1] & 0xfff0, 0x10 | 0x20))
                || (s[0] == 0x100 && s[1..4] == [0, 0, 0])
                || (s[0] == 0x3fff && (s[1] & 0xf000) == 0))
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
            "192.0.0.8",
            "198.18.0.1",
            "198.19.255.255",
            "240.0.0.1",
            "::10.0.0.1",
            "64:ff9b::10.0.0.1",
            "64:ff9b::7f00:1",
            "64:ff9b:1::1",
            "2002:0a00:0001::1",
            "2002:7f00:1::1",
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
            "2001:db8::1",
            "fec0::1",
            "192.88.99.1",
            "::ffff:0:10.0.0.1",
            "2001:2::1",
            "2001:10::1",
            "2001:2f::1",
            "100::1",
            "3fff::1",
        ] {
            assert!(!is_public(a.parse().unwrap()), "{a}");
        }
        for a in [
            "93.184.216.34",
            "2606:2800:220:1:248:1893:25c8:1946",
            "64:ff9b::93.184.216.34",
            "2002:5db8:d822::1",
            "198.20.0.1",
        ] {
            assert!(is_public(a.parse().unwrap()), "{a}");
        }
    }

    #[tokio::test]
    async fn refuses_loopback_and_plain_http() {
        let c = JwksCache::default();
        let e = c
            .keys("https://127.0.0.1:1/jwks", false, false, 1000)
            .await
            .unwrap_err();
        assert!(e.contains("public address"), "{e}");
        let e = c
            .keys("http://example.com/jwks", false, false, 1000)
            .await
            .unwrap_err();
        assert!(e.contains("https"), "{e}");
    }

    #[tokio::test]
    async fn what_a_domain_allowing_private_addresses_fetched_never_serves_one_that_does_not() {
        let c = JwksCache::default();
        // Allowed, the loopback URI is fetched (nothing listens: the fetch fails and is
        // remembered for 30 s)...
        let e = c
            .keys("https://127.0.0.1:1/jwks", true, false, 1000)
            .await
            .unwrap_err();
        assert!(!e.contains("public address"), "{e}");
        // ...but a domain that does not allow it is refused for the address, not answered
        // from the other's entry.
        let e = c
            .keys("https://127.0.0.1:1/jwks", false, false, 1001)
            .await
            .unwrap_err();
        assert!(e.contains("public address"), "{e}");
    }
}
