//! The key-encryption key: AES-256-GCM over the private signing keys stored in the database.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::hmac;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use zeroize::Zeroizing;

use super::CryptoError;

/// The key-encryption key, and a MAC key derived from it for values the server must be able to
/// recompute (never stored).
pub struct Kek {
    key: LessSafeKey,
    mac: hmac::Key,
}

impl fmt::Debug for Kek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Kek(redacted)")
    }
}

/// Where the key-encryption key came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KekSource {
    /// An environment variable (its name).
    Env(String),
    /// An existing file.
    File(PathBuf),
    /// A file created just now.
    Generated(PathBuf),
}

fn decode_kek(text: &str) -> Result<Kek, CryptoError> {
    let raw = Zeroizing::new(
        B64.decode(text.trim().trim_end_matches('='))
            .map_err(|_| CryptoError::Invalid("the key-encryption key is not base64url"))?,
    );
    Kek::from_bytes(&raw)
}

impl Kek {
    /// A key from exactly 32 bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Kek, CryptoError> {
        if bytes.len() != 32 {
            return Err(CryptoError::Invalid("the key-encryption key must be 32 bytes"));
        }
        let unbound =
            UnboundKey::new(&AES_256_GCM, bytes).map_err(|e| CryptoError::Internal(e.to_string()))?;
        // A separate key for derivations, so the encryption key is used for one purpose only.
        let derived = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, bytes),
            b"ostiary/derivation-key/v1",
        );
        Ok(Kek {
            key: LessSafeKey::new(unbound),
            mac: hmac::Key::new(hmac::HMAC_SHA256, derived.as_ref()),
        })
    }

    /// The key from the environment value, else from `file`, else a new one written to `file`
    /// (mode 0600, parent folders created).
    pub fn load_or_create(
        env_value: Option<&str>,
        env_name: &str,
        file: &Path,
    ) -> Result<(Kek, KekSource), CryptoError> {
        if let Some(v) = env_value.filter(|v| !v.trim().is_empty()) {
            return Ok((decode_kek(v)?, KekSource::Env(env_name.to_string())));
        }
        if file.exists() {
            let text = Zeroizing::new(
                std::fs::read_to_string(file)
                    .map_err(|e| CryptoError::Internal(format!("{}: {e}", file.display())))?,
            );
            return Ok((decode_kek(&text)?, KekSource::File(file.to_path_buf())));
        }
        let mut raw = Zeroizing::new([0u8; 32]);
        SystemRandom::new()
            .fill(raw.as_mut())
            .map_err(|e| CryptoError::Internal(e.to_string()))?;
        if let Some(parent) = file.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .map_err(|e| CryptoError::Internal(format!("{}: {e}", parent.display())))?;
        }
        let text = Zeroizing::new(B64.encode(raw.as_ref()));
        write_private(file, text.as_bytes())
            .map_err(|e| CryptoError::Internal(format!("{}: {e}", file.display())))?;
        Ok((
            Kek::from_bytes(raw.as_ref())?,
            KekSource::Generated(file.to_path_buf()),
        ))
    }

    /// The key from the environment value or `file`; None when neither exists. Never creates.
    pub fn load(env_value: Option<&str>, file: &Path) -> Result<Option<Kek>, CryptoError> {
        if let Some(v) = env_value.filter(|v| !v.trim().is_empty()) {
            return decode_kek(v).map(Some);
        }
        if !file.exists() {
            return Ok(None);
        }
        let text = Zeroizing::new(
            std::fs::read_to_string(file)
                .map_err(|e| CryptoError::Internal(format!("{}: {e}", file.display())))?,
        );
        decode_kek(&text).map(Some)
    }

    /// A 256-bit secret derived from `input` for `purpose` (HMAC-SHA256 under the derivation
    /// key), base64url: the same input always gives the same value, and nobody without the
    /// key-encryption key can compute it.
    pub fn derive_token(&self, purpose: &str, input: &str) -> String {
        let mut ctx = hmac::Context::with_key(&self.mac);
        ctx.update(purpose.as_bytes());
        ctx.update(&[0]);
        ctx.update(input.as_bytes());
        B64.encode(ctx.sign().as_ref())
    }

    /// Encrypts `plaintext` bound to `aad`; returns base64url(nonce || ciphertext || tag).
    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Result<String, CryptoError> {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|e| CryptoError::Internal(e.to_string()))?;
        let mut buf = plaintext.to_vec();
        self.key
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad), &mut buf)
            .map_err(|e| CryptoError::Internal(e.to_string()))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&buf);
        Ok(B64.encode(out))
    }

    /// Decrypts what `seal` produced with the same `aad`.
    pub fn open(&self, sealed: &str, aad: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let raw = B64
            .decode(sealed)
            .map_err(|_| CryptoError::Invalid("sealed value is not base64url"))?;
        if raw.len() < NONCE_LEN + 16 {
            return Err(CryptoError::Invalid("sealed value is too short"));
        }
        let (nonce, ct) = raw.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| CryptoError::Invalid("bad nonce"))?;
        let mut buf = Zeroizing::new(ct.to_vec());
        let len = self
            .key
            .open_in_place(nonce, Aad::from(aad), buf.as_mut_slice())
            .map_err(|_| CryptoError::Invalid("sealed value does not open with this key"))?
            .len();
        buf.truncate(len);
        Ok(buf)
    }
}

fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(data)?;
    f.write_all(b"\n")?;
    f.sync_all()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_and_aad_binding() {
        let kek = Kek::from_bytes(&[7u8; 32]).unwrap();
        let sealed = kek.seal(b"private", b"kid-1").unwrap();
        assert_eq!(kek.open(&sealed, b"kid-1").unwrap().as_slice(), b"private");
        assert!(kek.open(&sealed, b"kid-2").is_err());
        assert!(
            Kek::from_bytes(&[8u8; 32])
                .unwrap()
                .open(&sealed, b"kid-1")
                .is_err()
        );
        assert!(Kek::from_bytes(&[1u8; 16]).is_err());
    }

    #[test]
    fn file_is_created_private_and_reread() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/kek");
        let (k1, src) = Kek::load_or_create(None, "X", &path).unwrap();
        assert_eq!(src, KekSource::Generated(path.clone()));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        let (k2, src) = Kek::load_or_create(None, "X", &path).unwrap();
        assert_eq!(src, KekSource::File(path.clone()));
        let sealed = k1.seal(b"x", b"a").unwrap();
        assert_eq!(k2.open(&sealed, b"a").unwrap().as_slice(), b"x");
        let env = B64.encode([9u8; 32]);
        let (_, src) = Kek::load_or_create(Some(&env), "X", &path).unwrap();
        assert_eq!(src, KekSource::Env("X".into()));
        assert!(Kek::load(None, &dir.path().join("missing")).unwrap().is_none());
    }
}
