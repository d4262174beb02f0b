//! Who may use the web UI and API: users with argon2-hashed passwords and a role, and API
//! tokens, kept in NATS KV buckets so every web server (and `pgmon users`) sees the same.
//!
//! Only hashes are stored: a user's password as an argon2id PHC string, a token as its SHA-256
//! (tokens are 256 random bits, so a fast hash cannot be brute-forced).
//!
//! Every user record carries a credentials generation, new at each password or role change and
//! for a user added again under an old name; sessions and tokens record the generation they
//! were issued under and stop working when it is no longer the user's.

use std::fmt;
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::Argon2;
use async_nats::jetstream::{self, kv};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as BASE64_URL;
use base64::Engine;
use futures::TryStreamExt;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use pgmon_contract::subjects::{API_TOKENS_BUCKET, USERS_BUCKET};

/// What a signed-in user may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Everything a viewer may, and managing monitored connections.
    Admin,
    /// Reads every page and API endpoint; changes nothing.
    Viewer,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Viewer => "viewer",
        }
    }
}

/// A user name: 1 to 64 of lowercase letters, digits, `.`, `_` and `-`, starting with a letter
/// or digit (it is also the user's key in the KV bucket).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct UserName(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("user name must be 1 to 64 of lowercase letters, digits, '.', '_' and '-', starting with a letter or digit")]
pub struct UserNameError;

impl FromStr for UserName {
    type Err = UserNameError;

    fn from_str(text: &str) -> Result<UserName, UserNameError> {
        let valid = (1..=64).contains(&text.len())
            && text.starts_with(|first: char| first.is_ascii_lowercase() || first.is_ascii_digit())
            && text
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'));
        if valid {
            Ok(UserName(text.to_owned()))
        } else {
            Err(UserNameError)
        }
    }
}

impl TryFrom<String> for UserName {
    type Error = UserNameError;
    fn try_from(text: String) -> Result<UserName, UserNameError> {
        text.parse()
    }
}

impl From<UserName> for String {
    fn from(name: UserName) -> String {
        name.0
    }
}

impl UserName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UserName {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.0)
    }
}

/// The shortest password pgmon accepts for a user.
pub const MINIMUM_PASSWORD_LENGTH: usize = 12;

/// One user, as stored under its name in the users bucket.
#[derive(Clone, Serialize, Deserialize)]
pub struct UserRecord {
    pub name: UserName,
    pub role: Role,
    /// argon2id PHC string (`$argon2id$v=19$...`).
    pub password_hash: String,
    pub created_at_us: i64,
    /// Changes with the password or the role: sessions and tokens of another generation end.
    /// (Records stored before generations existed have none, as do their sessions and tokens.)
    #[serde(default)]
    pub credentials_generation: String,
}

impl fmt::Debug for UserRecord {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("UserRecord")
            .field("name", &self.name)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

/// One API token, as stored under the hex SHA-256 of the token.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ApiTokenRecord {
    /// What the token is for, as its creator called it (`grafana`, `ci`).
    pub label: String,
    /// The user the token acts as: it has that user's role, and dies with the user.
    pub user: UserName,
    pub created_at_us: i64,
    /// The user's credentials generation when the token was made.
    #[serde(default)]
    pub credentials_generation: String,
    /// When the token stops working; `None`: when it is revoked or its user changes.
    #[serde(default)]
    pub expires_at_us: Option<i64>,
    /// When it was last used, to within [`LAST_USED_PRECISION`].
    #[serde(default)]
    pub last_used_at_us: Option<i64>,
}

/// How stale a token's "last used" may be: it is written at most this often per token, so
/// API traffic does not turn into a KV write per request.
pub const LAST_USED_PRECISION: std::time::Duration = std::time::Duration::from_secs(600);

/// The shortest prefix of a token id that `revoke` accepts, so one id cannot match many.
pub const MINIMUM_TOKEN_ID_PREFIX: usize = 8;

/// An API token as listed: its id (the start of its stored key, never the token) and record.
#[derive(Clone, Debug)]
pub struct ListedApiToken {
    pub id: String,
    pub record: ApiTokenRecord,
    /// The whole stored key.
    key: String,
}

/// The length of a listed token id.
const TOKEN_ID_LENGTH: usize = 16;

/// A new credentials generation.
fn new_credentials_generation() -> String {
    BASE64_URL.encode(rand::random::<[u8; 16]>())
}

#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    #[error("cannot open the KV bucket {bucket}: {reason}")]
    Open { bucket: &'static str, reason: String },
    #[error("cannot read {what}: {reason}")]
    Read { what: String, reason: String },
    #[error("cannot write {what}: {reason}")]
    Write { what: String, reason: String },
    #[error("user {0} already exists")]
    UserExists(UserName),
    #[error("user {0} does not exist")]
    NoSuchUser(UserName),
    #[error("a password must have at least {MINIMUM_PASSWORD_LENGTH} characters")]
    PasswordTooShort,
    #[error("cannot hash the password: {0}")]
    Hash(String),
    #[error("a token id needs at least {MINIMUM_TOKEN_ID_PREFIX} characters (pgmon users tokens lists them)")]
    TokenIdTooShort,
    #[error("no API token has an id starting with {0}")]
    NoSuchToken(String),
    #[error("{0} API tokens have ids starting with {1}: give more of the id")]
    AmbiguousToken(usize, String),
}

/// Users and API tokens in their KV buckets.
#[derive(Clone)]
pub struct AccessStore {
    users: kv::Store,
    tokens: kv::Store,
}

fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|since| since.as_micros() as i64)
        .unwrap_or(0)
}

/// Hashes a password with argon2id and a random salt; slow on purpose (tens of milliseconds),
/// so callers on an async runtime run it on the blocking pool.
pub fn hash_password(password: &str) -> Result<String, AccessError> {
    if password.chars().count() < MINIMUM_PASSWORD_LENGTH {
        return Err(AccessError::PasswordTooShort);
    }
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|hash| hash.to_string())
        .map_err(|e| AccessError::Hash(e.to_string()))
}

/// Whether `password` matches a stored PHC string; a malformed hash matches nothing.
pub fn password_matches(password_hash: &str, password: &str) -> bool {
    PasswordHash::new(password_hash)
        .ok()
        .is_some_and(|parsed| Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok())
}

/// A hash that matches no password, checked when a user does not exist so that signing in as an
/// unknown user takes as long as with a wrong password.
pub fn decoy_password_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| {
        let random: String = BASE64_URL.encode(rand::random::<[u8; 24]>());
        hash_password(&random).expect("a random 32-character password hashes")
    })
}

/// The prefix of every API token, so a leaked one is easy to recognise (and to scan for).
pub const API_TOKEN_PREFIX: &str = "pgmon_";

/// A new random API token (`pgmon_` and 43 characters).
pub fn generate_api_token() -> String {
    format!("{API_TOKEN_PREFIX}{}", BASE64_URL.encode(rand::random::<[u8; 32]>()))
}

/// The key a token (or a session id) is stored under: its SHA-256 in hex, never the token.
pub fn token_key(token: &str) -> String {
    Sha256::digest(token.as_bytes()).iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Every key of a bucket; `what` names its contents in the error.
async fn bucket_keys(bucket: &kv::Store, what: &str) -> Result<Vec<String>, AccessError> {
    let read_error = |e: &dyn fmt::Display| AccessError::Read {
        what: what.to_owned(),
        reason: e.to_string(),
    };
    match bucket.keys().await {
        Ok(keys) => keys.try_collect().await.map_err(|e| read_error(&e)),
        Err(e) => Err(read_error(&e)),
    }
}

async fn open_bucket(jetstream: &jetstream::Context, bucket: &'static str) -> Result<kv::Store, AccessError> {
    jetstream.get_key_value(bucket).await.map_err(|e| AccessError::Open {
        bucket,
        reason: e.to_string(),
    })
}

impl AccessStore {
    /// Opens the buckets, which [`crate::nats_setup::connect_jetstream`] creates.
    pub async fn open(jetstream: &jetstream::Context) -> Result<AccessStore, AccessError> {
        Ok(AccessStore {
            users: open_bucket(jetstream, USERS_BUCKET).await?,
            tokens: open_bucket(jetstream, API_TOKENS_BUCKET).await?,
        })
    }

    pub async fn user(&self, name: &UserName) -> Result<Option<UserRecord>, AccessError> {
        let read_error = |reason: String| AccessError::Read {
            what: format!("user {name}"),
            reason,
        };
        let Some(bytes) = self.users.get(name.as_str()).await.map_err(|e| read_error(e.to_string()))? else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes).map(Some).map_err(|e| read_error(e.to_string()))
    }

    /// Every user, by name; entries that do not decode are skipped with a warning.
    pub async fn users(&self) -> Result<Vec<UserRecord>, AccessError> {
        let keys = bucket_keys(&self.users, "the users").await?;
        let mut users = Vec::with_capacity(keys.len());
        for key in keys {
            let Ok(name) = key.parse::<UserName>() else {
                tracing::warn!(key = %key, "users bucket entry with an invalid name skipped");
                continue;
            };
            if let Some(user) = self.user(&name).await? {
                users.push(user);
            }
        }
        users.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(users)
    }

    /// Adds a user; fails if one of that name exists (even when created concurrently).
    pub async fn add_user(&self, name: &UserName, role: Role, password: &str) -> Result<UserRecord, AccessError> {
        let record = UserRecord {
            name: name.clone(),
            role,
            password_hash: hash_password(password)?,
            created_at_us: now_us(),
            credentials_generation: new_credentials_generation(),
        };
        let bytes = serde_json::to_vec(&record).expect("a user record serialises");
        self.users.create(name.as_str(), bytes.into()).await.map_err(|e| {
            if matches!(e.kind(), kv::CreateErrorKind::AlreadyExists) {
                AccessError::UserExists(name.clone())
            } else {
                AccessError::Write {
                    what: format!("user {name}"),
                    reason: e.to_string(),
                }
            }
        })?;
        Ok(record)
    }

    /// Changes a user's password, role, or both; their sessions and tokens end.
    pub async fn update_user(&self, name: &UserName, role: Option<Role>, password: Option<&str>) -> Result<(), AccessError> {
        let mut record = self.user(name).await?.ok_or_else(|| AccessError::NoSuchUser(name.clone()))?;
        if let Some(role) = role {
            record.role = role;
        }
        if let Some(password) = password {
            record.password_hash = hash_password(password)?;
        }
        record.credentials_generation = new_credentials_generation();
        let bytes = serde_json::to_vec(&record).expect("a user record serialises");
        self.users.put(name.as_str(), bytes.into()).await.map_err(|e| AccessError::Write {
            what: format!("user {name}"),
            reason: e.to_string(),
        })?;
        Ok(())
    }

    /// Removes a user and their tokens; their sessions stop working at their next use (and
    /// stay dead if the name is added again: the new user has a new generation).
    pub async fn remove_user(&self, name: &UserName) -> Result<(), AccessError> {
        if self.user(name).await?.is_none() {
            return Err(AccessError::NoSuchUser(name.clone()));
        }
        self.users.delete(name.as_str()).await.map_err(|e| AccessError::Write {
            what: format!("user {name}"),
            reason: e.to_string(),
        })?;
        for token in self.api_tokens(Some(name)).await? {
            if let Err(error) = self.delete_token(&token).await {
                tracing::warn!(user = %name, %error, "a removed user's token was not deleted; it no longer works anyway");
            }
        }
        Ok(())
    }

    /// Creates an API token acting as `user`, valid for `valid_for` when given; the token is
    /// returned once and never stored.
    pub async fn create_api_token(
        &self,
        user: &UserName,
        label: &str,
        valid_for: Option<std::time::Duration>,
    ) -> Result<String, AccessError> {
        let owner = self.user(user).await?.ok_or_else(|| AccessError::NoSuchUser(user.clone()))?;
        let token = generate_api_token();
        let created_at_us = now_us();
        let record = ApiTokenRecord {
            label: label.to_owned(),
            user: user.clone(),
            created_at_us,
            credentials_generation: owner.credentials_generation,
            expires_at_us: valid_for.map(|valid_for| created_at_us.saturating_add(valid_for.as_micros() as i64)),
            last_used_at_us: None,
        };
        let bytes = serde_json::to_vec(&record).expect("a token record serialises");
        self.tokens
            .put(token_key(&token), bytes.into())
            .await
            .map_err(|e| AccessError::Write {
                what: format!("an API token of {user}"),
                reason: e.to_string(),
            })?;
        Ok(token)
    }

    /// The user a token acts as, when the token exists, has not expired, and was made under
    /// its user's current generation. Records when it was used (at most every
    /// [`LAST_USED_PRECISION`]).
    pub async fn user_of_api_token(&self, token: &str) -> Result<Option<UserRecord>, AccessError> {
        let key = token_key(token);
        let entry = self.tokens.get(&key).await.map_err(|e| AccessError::Read {
            what: "an API token".to_owned(),
            reason: e.to_string(),
        })?;
        let Some(bytes) = entry else { return Ok(None) };
        let Ok(mut record) = serde_json::from_slice::<ApiTokenRecord>(&bytes) else {
            return Ok(None);
        };
        let now = now_us();
        if record.expires_at_us.is_some_and(|expires_at_us| expires_at_us <= now) {
            return Ok(None);
        }
        let Some(user) = self.user(&record.user).await? else {
            return Ok(None);
        };
        if user.credentials_generation != record.credentials_generation {
            return Ok(None);
        }
        if record
            .last_used_at_us
            .is_none_or(|last_used| now - last_used >= LAST_USED_PRECISION.as_micros() as i64)
        {
            record.last_used_at_us = Some(now);
            let bytes = serde_json::to_vec(&record).expect("a token record serialises");
            if let Err(error) = self.tokens.put(&key, bytes.into()).await {
                tracing::debug!(%error, "a token's last use was not recorded");
            }
        }
        Ok(Some(user))
    }

    /// The API tokens (of `user` only, when given), oldest first.
    pub async fn api_tokens(&self, user: Option<&UserName>) -> Result<Vec<ListedApiToken>, AccessError> {
        let read_error = |e: &dyn fmt::Display| AccessError::Read {
            what: "the API tokens".to_owned(),
            reason: e.to_string(),
        };
        let keys = bucket_keys(&self.tokens, "the API tokens").await?;
        let mut tokens = Vec::with_capacity(keys.len());
        for key in keys {
            let Some(bytes) = self.tokens.get(&key).await.map_err(|e| read_error(&e))? else {
                continue;
            };
            let Ok(record) = serde_json::from_slice::<ApiTokenRecord>(&bytes) else {
                continue;
            };
            if user.is_none_or(|user| &record.user == user) {
                tokens.push(ListedApiToken {
                    id: key.chars().take(TOKEN_ID_LENGTH).collect(),
                    record,
                    key,
                });
            }
        }
        tokens.sort_by_key(|token| token.record.created_at_us);
        Ok(tokens)
    }

    /// Revokes the one token whose id starts with `id_prefix`; returns what it was.
    pub async fn revoke_api_token(&self, id_prefix: &str) -> Result<ApiTokenRecord, AccessError> {
        let id_prefix = id_prefix.trim().to_ascii_lowercase();
        if id_prefix.len() < MINIMUM_TOKEN_ID_PREFIX {
            return Err(AccessError::TokenIdTooShort);
        }
        let mut matching: Vec<ListedApiToken> = self
            .api_tokens(None)
            .await?
            .into_iter()
            .filter(|token| token.id.starts_with(&id_prefix))
            .collect();
        match matching.len() {
            0 => Err(AccessError::NoSuchToken(id_prefix)),
            1 => {
                let token = matching.remove(0);
                self.delete_token(&token).await?;
                Ok(token.record)
            }
            many => Err(AccessError::AmbiguousToken(many, id_prefix)),
        }
    }

    async fn delete_token(&self, token: &ListedApiToken) -> Result<(), AccessError> {
        self.tokens.delete(&token.key).await.map_err(|e| AccessError::Write {
            what: format!("API token {}", token.id),
            reason: e.to_string(),
        })
    }

    /// Signs a user in: their record when the password matches, `None` otherwise. Runs argon2
    /// on the blocking pool, against a decoy hash for unknown users so both take as long.
    pub async fn verify(&self, name: &str, password: &str) -> Result<Option<UserRecord>, AccessError> {
        let user = match name.parse::<UserName>() {
            Ok(name) => self.user(&name).await?,
            Err(_) => None,
        };
        let stored_hash = user
            .as_ref()
            .map_or_else(|| decoy_password_hash().to_owned(), |user| user.password_hash.clone());
        let password = password.to_owned();
        let matches = tokio::task::spawn_blocking(move || password_matches(&stored_hash, &password))
            .await
            .unwrap_or(false);
        Ok(user.filter(|_| matches))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_names_are_plain_lowercase_words() {
        for good in ["admin", "alice.smith", "ops-1", "0day_user"] {
            assert!(good.parse::<UserName>().is_ok(), "{good}");
        }
        for bad in ["", "Admin", "-x", "a b", "é", "a/b", &"x".repeat(65)] {
            assert!(bad.parse::<UserName>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn passwords_hash_with_argon2id_and_verify() {
        let hash = hash_password("correct horse battery").unwrap();
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert!(!hash.contains("correct horse"));
        assert!(password_matches(&hash, "correct horse battery"));
        assert!(!password_matches(&hash, "correct horse batter"));
        assert!(!password_matches("not a hash", "correct horse battery"));
        assert!(!password_matches(decoy_password_hash(), ""));
        assert!(matches!(hash_password("short"), Err(AccessError::PasswordTooShort)));
    }

    #[test]
    fn tokens_are_random_and_stored_by_hash() {
        let first = generate_api_token();
        let second = generate_api_token();
        assert_ne!(first, second);
        assert!(first.starts_with(API_TOKEN_PREFIX) && first.len() == API_TOKEN_PREFIX.len() + 43);
        let key = token_key(&first);
        assert_eq!(key.len(), 64);
        assert!(!key.contains(&first[API_TOKEN_PREFIX.len()..]));
        assert_eq!(key, token_key(&first));
    }

    #[test]
    fn user_records_never_debug_print_the_hash() {
        let record = UserRecord {
            name: "alice".parse().unwrap(),
            role: Role::Viewer,
            password_hash: "$argon2id$secret".to_owned(),
            created_at_us: 0,
            credentials_generation: String::new(),
        };
        assert!(!format!("{record:?}").contains("argon2id"));
    }
}
