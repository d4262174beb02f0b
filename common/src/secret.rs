//! Target passwords at rest: sealed with AES-256-GCM under the operator's secret key, bound to
//! the target they belong to, so a sealed password copied to another target does not open.

use std::path::{Path, PathBuf};

use aes_gcm::aead::{Aead, Generate, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;

/// The prefix of sealed values, so a later format can be told apart.
const SEALED_PREFIX: &str = "aes256gcm:v1:";
const NONCE_BYTES: usize = 12;

/// Where the secret key comes from, for every role that seals or opens target passwords.
#[derive(clap::Args, Clone, Default)]
pub struct SecretKeyArgs {
    /// The key sealing target passwords: 32 bytes in base64 or hex (`pgmon targets generate-key`
    /// makes one). Prefer the environment or --secret-key-file to the command line.
    #[arg(long = "secret-key", env = "PGMON_SECRET_KEY", hide_env_values = true, value_name = "KEY")]
    pub secret_key: Option<String>,

    /// A file holding the secret key (used when PGMON_SECRET_KEY is not set).
    #[arg(long, env = "PGMON_SECRET_KEY_FILE", value_name = "FILE")]
    pub secret_key_file: Option<PathBuf>,
}

impl std::fmt::Debug for SecretKeyArgs {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("SecretKeyArgs")
            .field("secret_key_given", &self.secret_key.is_some())
            .field("secret_key_file", &self.secret_key_file)
            .finish()
    }
}

impl SecretKeyArgs {
    /// The configured key, or `None` when neither the key nor a key file is given.
    pub fn load(&self) -> Result<Option<SecretKey>, SecretKeyError> {
        SecretKey::load(self.secret_key.as_deref(), self.secret_key_file.as_deref())
    }
}

/// Why the secret key cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SecretKeyError {
    #[error("cannot read the secret key file {path}: {source}")]
    ReadFile { path: PathBuf, source: std::io::Error },
    #[error("the secret key must be 32 bytes in base64 (44 characters) or hex (64 characters): {0}")]
    Malformed(&'static str),
}

/// Why a sealed password does not open.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("the stored password is not in a format this pgmon knows")]
    UnknownFormat,
    #[error("the secret key does not open the stored password (a different key sealed it, or it was altered)")]
    WrongKey,
}

/// The key that seals and opens target passwords. Its Debug output never shows the key.
#[derive(Clone)]
pub struct SecretKey(Aes256Gcm);

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("SecretKey(..)")
    }
}

impl SecretKey {
    /// Parses a key given as base64 or hex (surrounding whitespace ignored).
    pub fn parse(text: &str) -> Result<SecretKey, SecretKeyError> {
        let text = text.trim();
        let bytes = if text.len() == 64 && text.chars().all(|c| c.is_ascii_hexdigit()) {
            (0..32)
                .map(|index| u8::from_str_radix(&text[index * 2..index * 2 + 2], 16))
                .collect::<Result<Vec<u8>, _>>()
                .map_err(|_| SecretKeyError::Malformed("not hex"))?
        } else {
            BASE64
                .decode(text)
                .map_err(|_| SecretKeyError::Malformed("neither hex nor base64"))?
        };
        let cipher = Aes256Gcm::new_from_slice(&bytes).map_err(|_| SecretKeyError::Malformed("wrong length"))?;
        Ok(SecretKey(cipher))
    }

    /// The key from `PGMON_SECRET_KEY` (given as `from_environment`) or a key file; `None` when
    /// neither is set.
    pub fn load(from_environment: Option<&str>, file: Option<&Path>) -> Result<Option<SecretKey>, SecretKeyError> {
        if let Some(text) = from_environment.filter(|text| !text.trim().is_empty()) {
            return SecretKey::parse(text).map(Some);
        }
        let Some(path) = file else { return Ok(None) };
        let text = std::fs::read_to_string(path).map_err(|source| SecretKeyError::ReadFile {
            path: path.to_owned(),
            source,
        })?;
        SecretKey::parse(&text).map(Some)
    }

    /// A new random key, base64-encoded, for `pgmon targets generate-key`.
    pub fn generate() -> String {
        BASE64.encode(rand::random::<[u8; 32]>())
    }

    /// Seals `password` for the target `context` (its name).
    pub fn seal(&self, password: &str, context: &str) -> String {
        let nonce = Nonce::generate();
        let ciphertext = self
            .0
            .encrypt(
                &nonce,
                Payload {
                    msg: password.as_bytes(),
                    aad: context.as_bytes(),
                },
            )
            .expect("AES-GCM encrypts any password shorter than 64 GiB");
        let mut sealed = nonce.to_vec();
        sealed.extend_from_slice(&ciphertext);
        format!("{SEALED_PREFIX}{}", BASE64.encode(sealed))
    }

    /// Opens a password sealed for the target `context`.
    pub fn open(&self, sealed: &str, context: &str) -> Result<String, OpenError> {
        let encoded = sealed.strip_prefix(SEALED_PREFIX).ok_or(OpenError::UnknownFormat)?;
        let bytes = BASE64.decode(encoded).map_err(|_| OpenError::UnknownFormat)?;
        if bytes.len() < NONCE_BYTES {
            return Err(OpenError::UnknownFormat);
        }
        let (nonce, ciphertext) = bytes.split_at(NONCE_BYTES);
        let nonce = Nonce::try_from(nonce).map_err(|_| OpenError::UnknownFormat)?;
        let plaintext = self
            .0
            .decrypt(
                &nonce,
                Payload {
                    msg: ciphertext,
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| OpenError::WrongKey)?;
        String::from_utf8(plaintext).map_err(|_| OpenError::WrongKey)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_passwords_open_with_their_key_and_target_only() {
        let key = SecretKey::parse(&SecretKey::generate()).unwrap();
        let sealed = key.seal("s3cret", "db1");
        assert!(sealed.starts_with(SEALED_PREFIX) && !sealed.contains("s3cret"));
        assert_ne!(sealed, key.seal("s3cret", "db1"), "every seal has its own nonce");
        assert_eq!(key.open(&sealed, "db1").unwrap(), "s3cret");
        assert!(matches!(key.open(&sealed, "db2"), Err(OpenError::WrongKey)));
        let other = SecretKey::parse(&SecretKey::generate()).unwrap();
        assert!(matches!(other.open(&sealed, "db1"), Err(OpenError::WrongKey)));
        assert!(matches!(key.open("plain", "db1"), Err(OpenError::UnknownFormat)));
    }

    #[test]
    fn keys_are_read_as_base64_or_hex_and_bad_ones_are_named() {
        assert!(SecretKey::parse(&"ab".repeat(32)).is_ok());
        assert!(SecretKey::parse(&format!(" {} \n", SecretKey::generate())).is_ok());
        let error = SecretKey::parse("too-short").unwrap_err();
        assert!(error.to_string().starts_with("the secret key must be 32 bytes"), "{error}");
        assert!(SecretKey::parse(&BASE64.encode([1u8; 16])).is_err());
        assert!(format!("{:?}", SecretKey::parse(&"ab".repeat(32)).unwrap()) == "SecretKey(..)");
    }

    #[test]
    fn a_key_file_is_read_and_the_environment_wins() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("key");
        std::fs::write(&path, format!("{}\n", SecretKey::generate())).unwrap();
        assert!(SecretKey::load(None, Some(&path)).unwrap().is_some());
        assert!(SecretKey::load(None, None).unwrap().is_none());
        assert!(SecretKey::load(Some("bad"), Some(&path)).is_err());
        let error = SecretKey::load(None, Some(&directory.path().join("missing"))).unwrap_err();
        assert!(error.to_string().starts_with("cannot read the secret key file"), "{error}");
    }
}
