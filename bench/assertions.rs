//! Client assertions for `bench/run.sh`: `bench-assertions DIR ISSUER N` keeps an ES256 key of
//! the client `bench-signer` in DIR/signer.p8 (made on first use; its public JWK, as a TOML
//! inline table, in DIR/signer.jwks), and writes DIR/assertions.txt: N form bodies of
//! client_credentials requests authenticated with private_key_jwt, each assertion with its own
//! jti (a replay would be refused), valid for four minutes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;

use ostiary::crypto::jws;
use ostiary::crypto::keys::{SigningAlg, SigningKey};
use ostiary::crypto::secrets::random_id;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, dir, issuer, n] = args.as_slice() else {
        panic!("usage: bench-assertions DIR ISSUER N");
    };
    let dir = std::path::Path::new(dir);
    let n: usize = n.parse().expect("N is a number");
    let key_file = dir.join("signer.p8");
    let key = match std::fs::read(&key_file) {
        Ok(der) => SigningKey::from_pkcs8(SigningAlg::ES256, "bench-signer-1".into(), &der).unwrap(),
        Err(_) => {
            let (key, der) = SigningKey::generate(SigningAlg::ES256, "bench-signer-1".into()).unwrap();
            std::fs::write(&key_file, der.as_slice()).unwrap();
            key
        }
    };
    let jwk = key.public_jwk();
    let fields: Vec<String> = jwk
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| format!("{k} = {v}"))
        .collect();
    std::fs::write(
        dir.join("signer.jwks"),
        format!("{{ keys = [{{ {} }}] }}", fields.join(", ")),
    )
    .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut out = std::io::BufWriter::new(std::fs::File::create(dir.join("assertions.txt")).unwrap());
    for _ in 0..n {
        let claims = serde_json::json!({
            "iss": "bench-signer", "sub": "bench-signer", "aud": issuer,
            "iat": now, "exp": now + 240, "jti": random_id(),
        });
        let jwt = jws::sign(&key, "JWT", &claims).unwrap();
        writeln!(
            out,
            "grant_type=client_credentials&scope=api%3Aread&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&client_assertion={jwt}"
        )
        .unwrap();
    }
}
