//! Target passwords at rest: sealed with AES-256-GCM under the operator's secret key, bound to
//! the target and to where the password goes (user, hosts, ports, TLS mode), so a sealed
//! password copied to another target, or kept while the connection string points elsewhere,
//! does not open.

use std::path::{Path, PathBuf};

use aes_gcm::aead::{Aead, Generate, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;

/// The prefix of values sealed for the target name only (before destinations were bound):
/// still opened, resealed by `pgmon targets rotate-key`.
const TARGET_ONLY_PREFIX: &str = "aes256gcm:v1:";
/// The prefix of values sealed for the target and its destination.
const SEALED_PREFIX: &str = "aes256gcm:v2:";
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

    /// While rotating keys: the key passwords were sealed with before. Passwords it opens
    /// still work, and `pgmon targets reseal` seals them again with the current key.
    #[arg(
        long = "previous-secret-key",
        env = "PGMON_PREVIOUS_SECRET_KEY",
        hide_env_values = true,
        value_name = "KEY"
    )]
    pub previous_secret_key: Option<String>,

    /// A file holding the previous secret key (used when PGMON_PREVIOUS_SECRET_KEY is not set).
    #[arg(long, env = "PGMON_PREVIOUS_SECRET_KEY_FILE", value_name = "FILE")]
    pub previous_secret_key_file: Option<PathBuf>,
}

impl std::fmt::Debug for SecretKeyArgs {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("SecretKeyArgs")
            .field("secret_key_given", &self.secret_key.is_some())
            .field("secret_key_file", &self.secret_key_file)
            .field("previous_secret_key_given", &self.previous_secret_key.is_some())
            .field("previous_secret_key_file", &self.previous_secret_key_file)
            .finish()
    }
}

impl SecretKeyArgs {
    /// The configured key (with the previous one while rotating), or `None` when neither the
    /// key nor a key file is given.
    pub fn load(&self) -> Result<Option<SecretKey>, SecretKeyError> {
        let current = SecretKey::load(self.secret_key.as_deref(), self.secret_key_file.as_deref())?;
        let previous = SecretKey::load(self.previous_secret_key.as_deref(), self.previous_secret_key_file.as_deref())?;
        match (current, previous) {
            (Some(current), previous) => Ok(Some(SecretKey {
                previous: previous.map(|key| key.current),
                ..current
            })),
            (None, Some(_)) => Err(SecretKeyError::PreviousWithoutCurrent),
            (None, None) => Ok(None),
        }
    }
}

/// Why the secret key cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SecretKeyError {
    #[error("cannot read the secret key file {path}: {source}")]
    ReadFile { path: PathBuf, source: std::io::Error },
    #[error("the secret key must be 32 bytes in base64 (44 characters) or hex (64 characters): {0}")]
    Malformed(&'static str),
    #[error("a previous secret key is given without a current one: set PGMON_SECRET_KEY (or its file) to the new key")]
    PreviousWithoutCurrent,
}

/// Why a sealed password does not open.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("the stored password is not in a format this pgmon knows")]
    UnknownFormat,
    #[error("the secret key does not open the stored password (a different key sealed it, it was altered, or the target's user, host, port or TLS mode changed since it was stored)")]
    WrongKey,
}

/// What a sealed password is bound to: the target's name and where its password is sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PasswordBinding {
    /// The target's name.
    pub target: String,
    /// The user, hosts, ports and TLS mode, in one canonical text.
    pub destination: String,
}

impl PasswordBinding {
    fn associated_data(&self) -> String {
        format!("{}\n{}", self.target, self.destination)
    }
}

/// The key that seals and opens target passwords, and while keys are rotated the previous one,
/// which only opens. Its Debug output never shows a key.
#[derive(Clone)]
pub struct SecretKey {
    current: Aes256Gcm,
    previous: Option<Aes256Gcm>,
}

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
        Ok(SecretKey {
            current: cipher,
            previous: None,
        })
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

    /// Seals `password` for `binding`: it opens only with the same target and destination.
    pub fn seal(&self, password: &str, binding: &PasswordBinding) -> String {
        let nonce = Nonce::generate();
        let ciphertext = self
            .current
            .encrypt(
                &nonce,
                Payload {
                    msg: password.as_bytes(),
                    aad: binding.associated_data().as_bytes(),
                },
            )
            .expect("AES-GCM encrypts any password shorter than 64 GiB");
        let mut sealed = nonce.to_vec();
        sealed.extend_from_slice(&ciphertext);
        format!("{SEALED_PREFIX}{}", BASE64.encode(sealed))
    }

    /// Opens a password sealed for `binding` (or, in the older format, for its target only),
    /// with the current key or else the previous one.
    pub fn open(&self, sealed: &str, binding: &PasswordBinding) -> Result<String, OpenError> {
        self.open_telling_key(sealed, binding).map(|(password, _)| password)
    }

    /// `sealed` sealed again with the current key for `binding`, when it opens only with the
    /// previous key or is in the older format; `None` when it is current already.
    pub fn resealed(&self, sealed: &str, binding: &PasswordBinding) -> Result<Option<String>, OpenError> {
        let (password, with_current_key) = self.open_telling_key(sealed, binding)?;
        let current = with_current_key && !SecretKey::is_bound_to_target_only(sealed);
        Ok((!current).then(|| self.seal(&password, binding)))
    }

    /// The password, and whether the current key opened it.
    fn open_telling_key(&self, sealed: &str, binding: &PasswordBinding) -> Result<(String, bool), OpenError> {
        let (encoded, associated_data) = if let Some(encoded) = sealed.strip_prefix(SEALED_PREFIX) {
            (encoded, binding.associated_data())
        } else if let Some(encoded) = sealed.strip_prefix(TARGET_ONLY_PREFIX) {
            (encoded, binding.target.clone())
        } else {
            return Err(OpenError::UnknownFormat);
        };
        let bytes = BASE64.decode(encoded).map_err(|_| OpenError::UnknownFormat)?;
        if bytes.len() < NONCE_BYTES {
            return Err(OpenError::UnknownFormat);
        }
        let (nonce, ciphertext) = bytes.split_at(NONCE_BYTES);
        let nonce = Nonce::try_from(nonce).map_err(|_| OpenError::UnknownFormat)?;
        let payload = || Payload {
            msg: ciphertext,
            aad: associated_data.as_bytes(),
        };
        let (plaintext, with_current_key) = match self.current.decrypt(&nonce, payload()) {
            Ok(plaintext) => (plaintext, true),
            Err(_) => {
                let previous = self.previous.as_ref().ok_or(OpenError::WrongKey)?;
                (previous.decrypt(&nonce, payload()).map_err(|_| OpenError::WrongKey)?, false)
            }
        };
        let password = String::from_utf8(plaintext).map_err(|_| OpenError::WrongKey)?;
        Ok((password, with_current_key))
    }

    /// Whether `sealed` is in the older format, bound to its target's name only.
    pub fn is_bound_to_target_only(sealed: &str) -> bool {
        sealed.starts_with(TARGET_ONLY_PREFIX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding(target: &str, destination: &str) -> PasswordBinding {
        PasswordBinding {
            target: target.to_owned(),
            destination: destination.to_owned(),
        }
    }

    #[test]
    fn sealed_passwords_open_with_their_key_target_and_destination_only() {
        let key = SecretKey::parse(&SecretKey::generate()).unwrap();
        let db1 = binding("db1", "user=pgmon hosts=db1.internal ports=5432 sslmode=verify-full");
        let sealed = key.seal("s3cret", &db1);
        assert!(sealed.starts_with(SEALED_PREFIX) && !sealed.contains("s3cret"));
        assert!(!SecretKey::is_bound_to_target_only(&sealed));
        assert_ne!(sealed, key.seal("s3cret", &db1), "every seal has its own nonce");
        assert_eq!(key.open(&sealed, &db1).unwrap(), "s3cret");
        assert!(matches!(
            key.open(&sealed, &binding("db2", &db1.destination)),
            Err(OpenError::WrongKey)
        ));
        let elsewhere = binding("db1", "user=pgmon hosts=attacker.example ports=5432 sslmode=verify-full");
        assert!(matches!(key.open(&sealed, &elsewhere), Err(OpenError::WrongKey)));
        let other = SecretKey::parse(&SecretKey::generate()).unwrap();
        assert!(matches!(other.open(&sealed, &db1), Err(OpenError::WrongKey)));
        assert!(matches!(key.open("plain", &db1), Err(OpenError::UnknownFormat)));
    }

    #[test]
    fn passwords_sealed_for_the_target_name_only_still_open() {
        let key = SecretKey::parse(&SecretKey::generate()).unwrap();
        let nonce = [7u8; NONCE_BYTES];
        let ciphertext = key
            .current
            .encrypt(&Nonce::try_from(&nonce[..]).unwrap(), Payload { msg: b"old", aad: b"db1" })
            .unwrap();
        let sealed = format!("{TARGET_ONLY_PREFIX}{}", BASE64.encode([&nonce[..], &ciphertext].concat()));
        assert!(SecretKey::is_bound_to_target_only(&sealed));
        assert_eq!(key.open(&sealed, &binding("db1", "anything")).unwrap(), "old");
        assert!(matches!(key.open(&sealed, &binding("db2", "anything")), Err(OpenError::WrongKey)));
        assert!(key.resealed(&sealed, &binding("db1", "anything")).unwrap().is_some());
    }

    #[test]
    fn while_rotating_the_previous_key_opens_and_the_current_one_seals() {
        let old_key = SecretKey::generate();
        let new_key = SecretKey::generate();
        let db1 = binding("db1", "user=pgmon");
        let sealed_before = SecretKey::parse(&old_key).unwrap().seal("s3cret", &db1);
        let arguments = SecretKeyArgs {
            secret_key: Some(new_key.clone()),
            previous_secret_key: Some(old_key),
            ..SecretKeyArgs::default()
        };
        let rotating = arguments.load().unwrap().unwrap();
        assert_eq!(rotating.open(&sealed_before, &db1).unwrap(), "s3cret");
        assert!(rotating.resealed(&sealed_before, &db1).unwrap().is_some());
        let sealed_after = rotating.seal("s3cret", &db1);
        assert!(rotating.resealed(&sealed_after, &db1).unwrap().is_none());
        let new_only = SecretKey::parse(&new_key).unwrap();
        assert_eq!(new_only.open(&sealed_after, &db1).unwrap(), "s3cret");
        assert!(matches!(new_only.open(&sealed_before, &db1), Err(OpenError::WrongKey)));
        let previous_alone = SecretKeyArgs {
            previous_secret_key: Some(SecretKey::generate()),
            ..SecretKeyArgs::default()
        };
        assert!(matches!(previous_alone.load(), Err(SecretKeyError::PreviousWithoutCurrent)));
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
