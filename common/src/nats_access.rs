//! Who may do what on NATS: one identity per pgmon role, an NKey (an Ed25519 key pair), and the
//! subjects each may publish and subscribe to, written as the `authorization` block of a
//! nats-server configuration.
//!
//! NKeys rather than passwords: the server's configuration holds public keys only (it can live
//! in a ConfigMap or a repository), a role proves its identity by signing the server's nonce,
//! so the seed never crosses the network, and no operator/account infrastructure is needed as
//! with JWTs. A role's replies come to an inbox prefix of its own (`_INBOX_<role>`), so no role
//! can read another's answers (the users bucket, query texts) by subscribing to `_INBOX.>`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use pgmon_contract::subjects::{
    ALERT_RULES_BUCKET, ALERT_SILENCES_BUCKET, ALERT_STATE_BUCKET, ALERT_STREAM, API_TOKENS_BUCKET, COLLECTORS_BUCKET, DEAD_LETTER_STREAM,
    SESSIONS_BUCKET, SNAPSHOT_STREAM, TARGETS_BUCKET, USERS_BUCKET,
};

/// A NATS identity of pgmon.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum NatsRole {
    /// Publishes snapshots; reads the targets, holds leases in the collectors bucket.
    Collector,
    /// Consumes the snapshot stream, dead-letters, answers named queries; owns the streams.
    Ingester,
    /// Asks named queries, reads "now" from the stream; owns users, sessions, tokens, targets.
    Web,
    /// Reads the snapshot stream, no more: `pgmon replay`, `pgmon rebuild`, the `nats` CLI.
    Reader,
    /// Follows the snapshot stream; owns the alert stream, the rules and alert-state buckets.
    Alerter,
    /// Everything on pgmon's streams and buckets: `pgmon targets`, `pgmon users`, operators.
    Admin,
}

impl NatsRole {
    pub const ALL: &'static [NatsRole] = &[
        NatsRole::Collector,
        NatsRole::Ingester,
        NatsRole::Web,
        NatsRole::Reader,
        NatsRole::Alerter,
        NatsRole::Admin,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            NatsRole::Collector => "collector",
            NatsRole::Ingester => "ingester",
            NatsRole::Web => "web",
            NatsRole::Reader => "reader",
            NatsRole::Alerter => "alerter",
            NatsRole::Admin => "admin",
        }
    }

    /// The prefix of this role's reply subjects; only this role may subscribe below it.
    pub fn inbox_prefix(self) -> String {
        format!("_INBOX_{}", self.as_str())
    }

    /// The environment variable the shipped server configurations read this role's public
    /// key from.
    pub fn public_key_variable(self) -> String {
        format!("PGMON_NKEY_{}", self.as_str().to_uppercase())
    }

    /// The streams and buckets this role creates where missing and keeps at its settings.
    pub fn owned_streams(self) -> &'static [&'static str] {
        match self {
            NatsRole::Ingester => &[SNAPSHOT_STREAM, DEAD_LETTER_STREAM],
            NatsRole::Collector => &[COLLECTORS_BUCKET],
            NatsRole::Web => &[TARGETS_BUCKET, USERS_BUCKET, API_TOKENS_BUCKET, SESSIONS_BUCKET],
            NatsRole::Reader => &[],
            NatsRole::Alerter => &[ALERT_STREAM, ALERT_RULES_BUCKET, ALERT_STATE_BUCKET, ALERT_SILENCES_BUCKET],
            NatsRole::Admin => &[
                SNAPSHOT_STREAM,
                DEAD_LETTER_STREAM,
                TARGETS_BUCKET,
                COLLECTORS_BUCKET,
                USERS_BUCKET,
                API_TOKENS_BUCKET,
                SESSIONS_BUCKET,
                ALERT_STREAM,
                ALERT_RULES_BUCKET,
                ALERT_STATE_BUCKET,
                ALERT_SILENCES_BUCKET,
            ],
        }
    }

    /// The streams and buckets this role creates where missing but never changes: those it
    /// needs before their owner may have started.
    pub fn creates_when_missing(self) -> &'static [&'static str] {
        match self {
            NatsRole::Collector => &[SNAPSHOT_STREAM, TARGETS_BUCKET],
            // The Alerts page works before any alerter started.
            NatsRole::Web => &[
                SNAPSHOT_STREAM,
                ALERT_STREAM,
                ALERT_RULES_BUCKET,
                ALERT_STATE_BUCKET,
                ALERT_SILENCES_BUCKET,
            ],
            NatsRole::Alerter => &[SNAPSHOT_STREAM, TARGETS_BUCKET],
            NatsRole::Ingester | NatsRole::Reader => &[],
            NatsRole::Admin => NatsRole::Admin.owned_streams(),
        }
    }

    /// What this role may publish and subscribe to.
    pub fn permissions(self) -> Permissions {
        let inbox = format!("{}.>", self.inbox_prefix());
        let mut permissions = Permissions {
            // The account's JetStream limits, which creating a bucket reads first.
            publish: vec!["$JS.API.INFO".to_owned()],
            subscribe: vec![inbox],
            allow_responses: false,
        };
        match self {
            NatsRole::Collector => {
                permissions.publish.push("pgmon.snap.>".to_owned());
                permissions.publish.extend(kv_read(TARGETS_BUCKET));
                // Met missing when the collector starts first: it may create them, not change them.
                permissions.publish.push(format!("$JS.API.STREAM.CREATE.KV_{TARGETS_BUCKET}"));
                permissions.publish.push(format!("$JS.API.STREAM.CREATE.{SNAPSHOT_STREAM}"));
                permissions.publish.extend(kv_write(COLLECTORS_BUCKET));
                permissions.publish.extend(stream_management(&format!("KV_{COLLECTORS_BUCKET}")));
                // To find out whether the snapshot stream exists before publishing.
                permissions.publish.push(format!("$JS.API.STREAM.INFO.{SNAPSHOT_STREAM}"));
            }
            NatsRole::Ingester => {
                permissions.publish.extend(stream_management(SNAPSHOT_STREAM));
                permissions.publish.extend(stream_consuming(SNAPSHOT_STREAM));
                permissions.publish.extend(stream_management(DEAD_LETTER_STREAM));
                permissions.publish.push("pgmon.deadletter.>".to_owned());
                permissions.subscribe.push("pgmon.query.>".to_owned());
                // Answers go to the reply subject of each request it received, and nowhere else.
                permissions.allow_responses = true;
            }
            NatsRole::Web => {
                permissions.publish.push("pgmon.query.>".to_owned());
                permissions.publish.extend(stream_reading_now(SNAPSHOT_STREAM));
                permissions.publish.push(format!("$JS.API.STREAM.CREATE.{SNAPSHOT_STREAM}"));
                for bucket in [TARGETS_BUCKET, USERS_BUCKET, API_TOKENS_BUCKET, SESSIONS_BUCKET] {
                    permissions.publish.extend(kv_write(bucket));
                    permissions.publish.extend(stream_management(&format!("KV_{bucket}")));
                }
                // The Alerts page: alert state and history read, rules and silences edited by
                // admins; created when missing (an alerter owns them).
                permissions.publish.extend(kv_read(ALERT_STATE_BUCKET));
                for bucket in [ALERT_RULES_BUCKET, ALERT_SILENCES_BUCKET] {
                    permissions.publish.extend(kv_write(bucket));
                }
                for bucket in [ALERT_RULES_BUCKET, ALERT_STATE_BUCKET, ALERT_SILENCES_BUCKET] {
                    permissions.publish.push(format!("$JS.API.STREAM.CREATE.KV_{bucket}"));
                }
                permissions.publish.push(format!("$JS.API.STREAM.CREATE.{ALERT_STREAM}"));
                permissions.publish.extend(stream_reading_now(ALERT_STREAM));
                permissions.publish.extend(ordered_reading(ALERT_STREAM));
            }
            NatsRole::Reader => {
                permissions.publish.extend(stream_consuming(SNAPSHOT_STREAM));
                permissions.publish.extend(stream_reading_now(SNAPSHOT_STREAM));
            }
            NatsRole::Alerter => {
                permissions.publish.extend(stream_consuming(SNAPSHOT_STREAM));
                // Met missing when the alerter starts first: it may create them, not change them.
                permissions.publish.push(format!("$JS.API.STREAM.CREATE.{SNAPSHOT_STREAM}"));
                permissions.publish.push(format!("$JS.API.STREAM.CREATE.KV_{TARGETS_BUCKET}"));
                permissions.publish.extend(kv_read(TARGETS_BUCKET));
                permissions.publish.extend(stream_management(ALERT_STREAM));
                permissions.publish.extend(stream_consuming(ALERT_STREAM));
                permissions.publish.push("pgmon.alert.>".to_owned());
                for bucket in [ALERT_RULES_BUCKET, ALERT_STATE_BUCKET] {
                    permissions.publish.extend(kv_write(bucket));
                    permissions.publish.extend(stream_management(&format!("KV_{bucket}")));
                }
                permissions.publish.extend(kv_read(ALERT_SILENCES_BUCKET));
                // Statement regressions are asked of the ingesters' history.
                permissions.publish.push("pgmon.query.>".to_owned());
                permissions
                    .publish
                    .extend(stream_management(&format!("KV_{ALERT_SILENCES_BUCKET}")));
            }
            NatsRole::Admin => {
                permissions
                    .publish
                    .extend(["$JS.API.>", "$JS.ACK.>", "$JS.FC.>", "$KV.>", "pgmon.>"].map(str::to_owned));
                permissions.subscribe.push("pgmon.>".to_owned());
            }
        }
        let mut seen = std::collections::HashSet::new();
        permissions.publish.retain(|subject| seen.insert(subject.clone()));
        permissions
    }
}

impl std::str::FromStr for NatsRole {
    type Err = String;

    fn from_str(text: &str) -> Result<NatsRole, String> {
        NatsRole::ALL
            .iter()
            .copied()
            .find(|role| role.as_str() == text)
            .ok_or_else(|| format!("{text:?} is not a pgmon NATS role (collector, ingester, web, reader, alerter, admin)"))
    }
}

/// How many messages may answer one request: as many as the largest reply allowed has parts
/// (`Pgmon-Reply-Part`).
pub const MAX_RESPONSES_PER_REQUEST: usize = pgmon_contract::query::MAX_REPLY_PARTS;

/// Subjects a role may publish and subscribe to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Permissions {
    pub publish: Vec<String>,
    pub subscribe: Vec<String>,
    /// Whether it may answer requests: publish to the reply subject of a request it received,
    /// up to [`MAX_RESPONSES_PER_REQUEST`] messages within a minute.
    pub allow_responses: bool,
}

/// Creating, reading and changing the definition of one stream.
fn stream_management(stream: &str) -> Vec<String> {
    ["CREATE", "UPDATE", "INFO"]
        .iter()
        .map(|operation| format!("$JS.API.STREAM.{operation}.{stream}"))
        .collect()
}

/// Reading a stream through consumers of one's own: ordered or durable, pulled, acknowledged.
fn stream_consuming(stream: &str) -> Vec<String> {
    let mut subjects: Vec<String> = ["CREATE", "DURABLE.CREATE", "DELETE", "INFO", "MSG.NEXT"]
        .iter()
        .map(|operation| format!("$JS.API.CONSUMER.{operation}.{stream}.>"))
        .collect();
    subjects.extend([
        // An unnamed (ordered) consumer is created on the stream's own subject.
        format!("$JS.API.CONSUMER.CREATE.{stream}"),
        format!("$JS.API.STREAM.INFO.{stream}"),
        format!("$JS.ACK.{stream}.>"),
        format!("$JS.FC.{stream}.>"),
    ]);
    subjects
}

/// Reading a stream through ordered consumers only (the server names them): no durable one.
fn ordered_reading(stream: &str) -> Vec<String> {
    vec![
        format!("$JS.API.CONSUMER.CREATE.{stream}"),
        format!("$JS.API.CONSUMER.CREATE.{stream}.>"),
        format!("$JS.API.CONSUMER.DELETE.{stream}.>"),
        format!("$JS.API.CONSUMER.INFO.{stream}.>"),
        format!("$JS.API.CONSUMER.MSG.NEXT.{stream}.>"),
        format!("$JS.FC.{stream}.>"),
    ]
}

/// Reading the newest messages of a stream (direct get) and its subjects.
fn stream_reading_now(stream: &str) -> Vec<String> {
    vec![
        format!("$JS.API.STREAM.INFO.{stream}"),
        format!("$JS.API.DIRECT.GET.{stream}"),
        format!("$JS.API.DIRECT.GET.{stream}.>"),
        format!("$JS.API.STREAM.MSG.GET.{stream}"),
    ]
}

/// Reading and watching a KV bucket.
fn kv_read(bucket: &str) -> Vec<String> {
    let stream = format!("KV_{bucket}");
    let mut subjects = stream_reading_now(&stream);
    subjects.extend([
        format!("$JS.API.CONSUMER.CREATE.{stream}"),
        format!("$JS.API.CONSUMER.CREATE.{stream}.>"),
        format!("$JS.API.CONSUMER.DELETE.{stream}.>"),
        format!("$JS.API.CONSUMER.INFO.{stream}.>"),
        format!("$JS.FC.{stream}.>"),
    ]);
    subjects
}

/// Reading, watching and changing a KV bucket.
fn kv_write(bucket: &str) -> Vec<String> {
    let mut subjects = kv_read(bucket);
    subjects.push(format!("$KV.{bucket}.>"));
    subjects
}

/// A role's new identity: its seed (secret) and public key.
pub struct NatsIdentity {
    pub role: NatsRole,
    pub seed: String,
    pub public_key: String,
}

impl NatsIdentity {
    pub fn generate(role: NatsRole) -> NatsIdentity {
        let key_pair = nkeys::KeyPair::new_user();
        NatsIdentity {
            role,
            seed: key_pair.seed().expect("a new key pair has its seed"),
            public_key: key_pair.public_key(),
        }
    }
}

/// The public key of a seed, checking it is a user seed.
pub fn public_key_of_seed(seed: &str) -> Result<String, String> {
    let key_pair = nkeys::KeyPair::from_seed(seed.trim()).map_err(|e| format!("not an NKey seed: {e}"))?;
    if !key_pair.public_key().starts_with('U') {
        return Err("not a user NKey seed (it must start with SU)".to_owned());
    }
    Ok(key_pair.public_key())
}

fn quoted(subjects: &[String]) -> String {
    let items: Vec<String> = subjects.iter().map(|subject| format!("\"{subject}\"")).collect();
    format!("[{}]", items.join(", "))
}

/// The `authorization` block of a nats-server configuration: each role's key with its
/// permissions. `key_of` gives the text standing for a role's key: a public key, or a
/// `$VARIABLE` the server reads from its environment.
pub fn authorization_block(key_of: impl Fn(NatsRole) -> String) -> String {
    let mut block = String::from("authorization {\n  users = [\n");
    let responses = format!("        allow_responses: {{ max: {MAX_RESPONSES_PER_REQUEST}, expires: \"1m\" }}\n");
    for role in NatsRole::ALL {
        let permissions = role.permissions();
        block.push_str(&format!(
            "    # {}\n    {{\n      nkey: {}\n      permissions: {{\n        publish: {{ allow: {} }}\n        subscribe: {{ allow: {} }}\n{}      }}\n    }}\n",
            role.as_str(),
            key_of(*role),
            quoted(&permissions.publish),
            quoted(&permissions.subscribe),
            if permissions.allow_responses {
                &responses
            } else {
                ""
            }
        ));
    }
    block.push_str("  ]\n}\n");
    block
}

/// The body of a nats-server configuration for pgmon: JetStream stored in `store_dir`, and
/// only the roles whose public keys are given admitted. Callers add where it listens.
pub fn server_configuration(store_dir: &Path, public_keys: &BTreeMap<NatsRole, String>) -> String {
    // Debug formatting quotes and escapes the path as the configuration's strings are.
    format!(
        "jetstream {{\n  store_dir: {:?}\n}}\n{}",
        store_dir.display().to_string(),
        authorization_block(|role| public_keys[&role].clone())
    )
}

/// `nats/authorization.conf`: the block with each role's public key read from the server's
/// environment (`$PGMON_NKEY_<ROLE>`), as `pgmon nats authorization` prints it.
pub fn shipped_authorization_config() -> String {
    format!(
        "# Who may do what on pgmon's NATS: one NKey per pgmon role. Generated by `pgmon nats authorization`\n# from common/src/nats_access.rs (a test checks this copy). The public keys come from the server's\n# environment: `pgmon nats keys --out DIR` writes them to DIR/public-keys.env.\n{}",
        authorization_block(|role| format!("${}", role.public_key_variable()))
    )
}

/// Where a role's seed file is in a directory of credentials (`<role>.nk`).
pub fn seed_file(directory: &Path, role: NatsRole) -> PathBuf {
    directory.join(format!("{}.nk", role.as_str()))
}

/// Writes a new identity for every role without one into `directory`: `<role>.nk` holding the
/// seed (readable by its owner only), and `public-keys.env` with every role's public key as the
/// variables the shipped server configurations read. Seeds already there are kept (a role added
/// by a newer pgmon gets its key beside the others). Returns the public keys.
pub fn write_identities(directory: &Path) -> std::io::Result<BTreeMap<NatsRole, String>> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::create_dir_all(directory)?;
    let mut public_keys = BTreeMap::new();
    let mut variables = String::from("# Public keys of pgmon's NATS identities, for the nats-server configuration.\n");
    for role in NatsRole::ALL {
        let path = seed_file(directory, *role);
        let public_key = if path.exists() {
            let seed = std::fs::read_to_string(&path)?;
            public_key_of_seed(&seed)
                .map_err(|reason| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{}: {reason}", path.display())))?
        } else {
            let identity = NatsIdentity::generate(*role);
            let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path)?;
            file.write_all(format!("{}\n", identity.seed).as_bytes())?;
            identity.public_key
        };
        variables.push_str(&format!("{}={}\n", role.public_key_variable(), public_key));
        public_keys.insert(*role, public_key);
    }
    std::fs::write(directory.join("public-keys.env"), variables)?;
    Ok(public_keys)
}

/// Whether `directory` lacks the seed of some role.
pub fn missing_identities(directory: &Path) -> bool {
    NatsRole::ALL.iter().any(|role| !seed_file(directory, *role).exists())
}

/// Reads the public keys of the seeds in `directory` (written by [`write_identities`]).
pub fn read_public_keys(directory: &Path) -> Result<BTreeMap<NatsRole, String>, String> {
    NatsRole::ALL
        .iter()
        .map(|role| {
            let path = seed_file(directory, *role);
            let seed = std::fs::read_to_string(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            Ok((*role, public_key_of_seed(&seed).map_err(|e| format!("{}: {e}", path.display()))?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_role_but_the_admin_may_touch_the_users_sessions_or_tokens_but_the_web() {
        for role in [NatsRole::Collector, NatsRole::Ingester, NatsRole::Reader] {
            let permissions = role.permissions();
            for bucket in [USERS_BUCKET, SESSIONS_BUCKET, API_TOKENS_BUCKET] {
                assert!(
                    permissions.publish.iter().all(|subject| !subject.contains(bucket)),
                    "{role:?} may reach {bucket}"
                );
            }
            assert!(!permissions.subscribe.iter().any(|subject| subject.starts_with("_INBOX.")));
        }
        assert!(NatsRole::Web.permissions().publish.contains(&format!("$KV.{USERS_BUCKET}.>")));
    }

    #[test]
    fn identities_are_written_readable_by_their_owner_and_read_back() {
        let directory = tempfile::tempdir().unwrap();
        let written = write_identities(directory.path()).unwrap();
        assert_eq!(read_public_keys(directory.path()).unwrap(), written);
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(seed_file(directory.path(), NatsRole::Collector))
                .unwrap()
                .permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
        let block = authorization_block(|role| written[&role].clone());
        assert!(block.contains(&written[&NatsRole::Web]), "{block}");
        assert!(public_key_of_seed("not a seed").is_err());
    }
}
