//! Target names: the slug that identifies a monitored PostgreSQL server in subjects, files and URLs.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The longest target name accepted; it keeps subjects and file names short.
pub const TARGET_NAME_MAX_LEN: usize = 63;

/// A validated target name: `[a-z0-9_-]+`, at most 63 characters.
///
/// It is a NATS subject token, a URL path segment and part of DuckDB rows, so the
/// alphabet is deliberately narrow: no dots, wildcards, spaces or upper case.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(try_from = "String", into = "String")]
pub struct TargetName(String);

impl schemars::JsonSchema for TargetName {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "TargetName".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": "^[a-z0-9_-]+$",
            "minLength": 1,
            "maxLength": TARGET_NAME_MAX_LEN,
            "description": "A target name: a-z, 0-9, '_' and '-'"
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetNameError {
    #[error("target name is empty")]
    Empty,
    #[error("target name {name:?} is longer than {TARGET_NAME_MAX_LEN} characters")]
    TooLong { name: String },
    #[error("target name {name:?} may only contain a-z, 0-9, '_' and '-'")]
    InvalidCharacter { name: String },
}

impl TargetName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for TargetName {
    type Err = TargetNameError;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        if name.is_empty() {
            return Err(TargetNameError::Empty);
        }
        if name.len() > TARGET_NAME_MAX_LEN {
            return Err(TargetNameError::TooLong { name: name.to_owned() });
        }
        let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-';
        if !name.chars().all(allowed) {
            return Err(TargetNameError::InvalidCharacter { name: name.to_owned() });
        }
        Ok(TargetName(name.to_owned()))
    }
}

impl TryFrom<String> for TargetName {
    type Error = TargetNameError;

    fn try_from(name: String) -> Result<Self, Self::Error> {
        name.parse()
    }
}

impl From<TargetName> for String {
    fn from(name: TargetName) -> String {
        name.0
    }
}

impl fmt::Display for TargetName {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_slugs() {
        for name in ["prod-db1", "a", "db_2", "x-y_z-0"] {
            assert_eq!(name.parse::<TargetName>().unwrap().as_str(), name);
        }
    }

    #[test]
    fn rejects_what_would_break_subjects_or_urls() {
        assert_eq!("".parse::<TargetName>(), Err(TargetNameError::Empty));
        for name in ["Prod", "a.b", "a b", "a*", "a>", "é", "a/b"] {
            assert!(
                matches!(name.parse::<TargetName>(), Err(TargetNameError::InvalidCharacter { .. })),
                "{name} must be rejected"
            );
        }
        let long = "a".repeat(TARGET_NAME_MAX_LEN + 1);
        assert!(matches!(long.parse::<TargetName>(), Err(TargetNameError::TooLong { .. })));
    }

    #[test]
    fn deserialising_validates() {
        assert!(serde_json::from_str::<TargetName>("\"ok-1\"").is_ok());
        assert!(serde_json::from_str::<TargetName>("\"Not.Ok\"").is_err());
    }
}
