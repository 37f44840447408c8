//! The machine's signing limits for `bench/run.sh`: `bench-sign SECONDS [THREADS]` signs an access
//! token's claims with the server's own code (`ostiary::crypto::jws::sign` with a key of
//! `ostiary::crypto::keys::SigningKey`, as the token endpoint does) on THREADS threads (default:
//! the number of cores), SECONDS for RS256 and then SECONDS for ES256, and prints for each
//! `ALG signatures/s: N (...)` as measured, then `ALG signing limit: L/s on C cores` from the CPU
//! time one signature took. No server can issue signed tokens faster than that; RS256
//! client_credentials are given as a share of it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use ostiary::crypto::jws;
use ostiary::crypto::keys::{SigningAlg, SigningKey};
use serde_json::json;

#[path = "limit.rs"]
mod limit;

fn main() {
    let (secs, threads) = limit::args(3.0);
    // The claims of a client_credentials access token (RFC 9068), as bench-client gets them.
    let claims = json!({
        "iss": "http://127.0.0.1:8180/bench",
        "sub": "bench-client",
        "aud": "urn:bench:jwt",
        "client_id": "bench-client",
        "scope": "api:read",
        "iat": 1_764_633_600,
        "exp": 1_764_637_200,
        "jti": "q2L8n3wY0cJm5kQ7a1ZtRg",
    });
    for alg in [SigningAlg::RS256, SigningAlg::ES256] {
        let (key, _) = SigningKey::generate(alg, "bench".into()).expect("a new key");
        let token = jws::sign(&key, "at+jwt", &claims).expect("a signature");
        assert_eq!(token.split('.').count(), 3, "a compact JWS");
        let m = limit::measure(secs, threads, || {
            jws::sign(&key, "at+jwt", &claims).unwrap();
        });
        println!(
            "{} signatures/s: {:.0} ({threads} threads, {} in {:.1} s; {:.0} us of CPU each)",
            alg.as_str(),
            m.rate(),
            m.done,
            m.elapsed,
            m.cpu_ms * 1000.0
        );
        println!(
            "{} signing limit: {:.0}/s on {} cores",
            alg.as_str(),
            m.limit(),
            m.cores
        );
    }
}
