//! The target registry: monitored servers as records in the `pgmon_targets` KV bucket, which
//! collectors watch and `pgmon targets` edits while everything runs.
//!
//! A record holds the connection string without its password; the password, when there is one,
//! is sealed with the operator's secret key ([`crate::secret`]) and never stored in clear.

use std::collections::BTreeMap;

use async_nats::jetstream::{self, kv};
use futures::{Stream, StreamExt};
use serde::{Deserialize, Serialize};

use pgmon_contract::subjects::TARGETS_BUCKET;
use pgmon_contract::target::TargetName;

/// One monitored server, as stored under its name in the bucket.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetRecord {
    pub name: TargetName,
    /// A libpq connection string or `postgresql://` URL, without a password.
    pub dsn: String,
    /// The password, sealed for this target's name; absent for password-less authentication.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed_password: Option<String>,
    /// Disabled targets stay registered but are not sampled.
    #[serde(default = "enabled_by_default")]
    pub enabled: bool,
    /// Free-form labels (`region=eu`); collectors may take only targets with given labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Sampling intervals of this target that differ from the collector's defaults, by kind
    /// (`activity`, `locks`, `database`, `statements`, `objects`), e.g. `"5s"`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub intervals: BTreeMap<String, String>,
}

fn enabled_by_default() -> bool {
    true
}

impl std::fmt::Debug for TargetRecord {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("TargetRecord")
            .field("name", &self.name)
            .field("enabled", &self.enabled)
            .field("has_password", &self.sealed_password.is_some())
            .field("labels", &self.labels)
            .finish_non_exhaustive()
    }
}

/// The outcome of "test connection": whether pgmon could connect, and what it could not do.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ConnectionTestReport {
    /// Connected and identified the server (checks may still have failed).
    pub ok: bool,
    /// Why connecting failed, as in a `down` status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<pgmon_contract::event::DownReason>,
    /// One sentence for the person testing; never contains a password.
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_version: Option<String>,
    /// What pgmon needs beyond a connection, each passed or not.
    pub checks: Vec<ConnectionCheck>,
}

/// One requirement checked on a connected target.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ConnectionCheck {
    /// `privileges` or `pg_stat_statements`.
    pub name: String,
    pub passed: bool,
    /// What was found, and how to fix it when it failed.
    pub message: String,
}

impl ConnectionCheck {
    pub fn passed(name: &str, message: impl Into<String>) -> ConnectionCheck {
        ConnectionCheck {
            name: name.to_owned(),
            passed: true,
            message: message.into(),
        }
    }

    pub fn failed(name: &str, message: impl Into<String>) -> ConnectionCheck {
        ConnectionCheck {
            name: name.to_owned(),
            passed: false,
            message: message.into(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("cannot open the target registry (KV bucket {TARGETS_BUCKET}): {0}")]
    Open(String),
    #[error("cannot read the target registry: {0}")]
    Read(String),
    #[error("cannot write target {name} to the registry: {reason}")]
    Write { name: TargetName, reason: String },
    #[error("registry entry {key:?} is not a valid target record: {reason}")]
    InvalidRecord { key: String, reason: String },
}

/// A change seen by [`Registry::watch`].
#[derive(Debug)]
pub enum RegistryChange {
    /// A target was added or edited (or existed when the watch began).
    Put(TargetRecord),
    Removed(TargetName),
    /// An entry pgmon cannot use; it is reported and otherwise ignored.
    Invalid(RegistryError),
}

/// The registry in a NATS JetStream KV bucket.
#[derive(Clone)]
pub struct Registry {
    store: kv::Store,
}

impl Registry {
    /// Opens the bucket (created at start-up by [`crate::nats_setup::connect_jetstream`]).
    pub async fn open(jetstream: &jetstream::Context) -> Result<Registry, RegistryError> {
        let store = jetstream
            .get_key_value(TARGETS_BUCKET)
            .await
            .map_err(|error| RegistryError::Open(error.to_string()))?;
        Ok(Registry { store })
    }

    /// Every valid record, by name; invalid entries are returned as errors beside them.
    pub async fn list(&self) -> Result<(Vec<TargetRecord>, Vec<RegistryError>), RegistryError> {
        let mut keys: Vec<String> = self
            .store
            .keys()
            .await
            .map_err(|error| RegistryError::Read(error.to_string()))?
            .filter_map(|key| async move { key.ok() })
            .collect()
            .await;
        keys.sort();
        let mut records = Vec::new();
        let mut invalid = Vec::new();
        for key in keys {
            match self.store.get(&key).await {
                Ok(Some(value)) => match decode_record(&key, &value) {
                    Ok(record) => records.push(record),
                    Err(error) => invalid.push(error),
                },
                Ok(None) => {}
                Err(error) => return Err(RegistryError::Read(error.to_string())),
            }
        }
        Ok((records, invalid))
    }

    pub async fn get(&self, name: &TargetName) -> Result<Option<TargetRecord>, RegistryError> {
        match self.store.get(name.as_str()).await {
            Ok(Some(value)) => decode_record(name.as_str(), &value).map(Some),
            Ok(None) => Ok(None),
            Err(error) => Err(RegistryError::Read(error.to_string())),
        }
    }

    /// Adds or replaces a record.
    pub async fn put(&self, record: &TargetRecord) -> Result<(), RegistryError> {
        let value = serde_json::to_vec(record).expect("target records always serialise");
        self.store
            .put(record.name.as_str(), value.into())
            .await
            .map(|_| ())
            .map_err(|error| RegistryError::Write {
                name: record.name.clone(),
                reason: error.to_string(),
            })
    }

    /// Removes a record; false when there was none.
    pub async fn remove(&self, name: &TargetName) -> Result<bool, RegistryError> {
        if self.get(name).await?.is_none() {
            return Ok(false);
        }
        self.store.delete(name.as_str()).await.map_err(|error| RegistryError::Write {
            name: name.clone(),
            reason: error.to_string(),
        })?;
        Ok(true)
    }

    /// Every record as it is now, then every change as it happens.
    pub async fn watch(&self) -> Result<impl Stream<Item = RegistryChange> + Send + 'static, RegistryError> {
        let entries = self
            .store
            .watch_with_history(">")
            .await
            .map_err(|error| RegistryError::Read(error.to_string()))?;
        Ok(entries.map(|entry| match entry {
            Err(error) => RegistryChange::Invalid(RegistryError::Read(error.to_string())),
            Ok(entry) => match entry.operation {
                kv::Operation::Put => match decode_record(&entry.key, &entry.value) {
                    Ok(record) => RegistryChange::Put(record),
                    Err(error) => RegistryChange::Invalid(error),
                },
                kv::Operation::Delete | kv::Operation::Purge => match entry.key.parse() {
                    Ok(name) => RegistryChange::Removed(name),
                    Err(error) => RegistryChange::Invalid(RegistryError::InvalidRecord {
                        key: entry.key,
                        reason: format!("{error}"),
                    }),
                },
            },
        }))
    }
}

fn decode_record(key: &str, value: &[u8]) -> Result<TargetRecord, RegistryError> {
    let invalid = |reason: String| RegistryError::InvalidRecord {
        key: key.to_owned(),
        reason,
    };
    let record: TargetRecord = serde_json::from_slice(value).map_err(|error| invalid(error.to_string()))?;
    if record.name.as_str() != key {
        return Err(invalid(format!("it names target {}", record.name)));
    }
    Ok(record)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_decode_with_defaults_and_must_match_their_key() {
        let record = decode_record("db1", br#"{"name":"db1","dsn":"host=h user=u"}"#).unwrap();
        assert!(record.enabled && record.sealed_password.is_none() && record.labels.is_empty());
        let error = decode_record("db2", br#"{"name":"db1","dsn":"host=h"}"#).unwrap_err();
        assert_eq!(
            error.to_string(),
            "registry entry \"db2\" is not a valid target record: it names target db1"
        );
        assert!(decode_record("x", b"not json").is_err());
    }

    #[test]
    fn debug_output_hides_the_sealed_password() {
        let record = TargetRecord {
            name: "db1".parse().unwrap(),
            dsn: "host=h".into(),
            sealed_password: Some("aes256gcm:v1:abc".into()),
            enabled: true,
            labels: BTreeMap::new(),
            intervals: BTreeMap::new(),
        };
        let debug = format!("{record:?}");
        assert!(!debug.contains("abc") && debug.contains("has_password: true"), "{debug}");
    }
}
