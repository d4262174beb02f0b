//! Splitting registry targets between collectors: each collector announces itself in the
//! `pgmon_collectors` KV bucket, every collector computes the same owner per target
//! (rendezvous hashing over the collectors alive and willing to take it), and a collector
//! samples a target only while it holds that target's lease.
//!
//! The lease is what makes "never polled twice" hold while views of the membership differ: a
//! lease is created only where none exists, renewed with the revision the holder last wrote,
//! and expires with the bucket's max age when its holder dies. A collector that is no longer a
//! target's owner stops sampling it first and then deletes the lease.

use std::collections::{BTreeMap, HashMap};

use async_nats::jetstream::{self, kv};
use futures::StreamExt;
use pgmon_common::nats_setup::COLLECTOR_LEASE_TIME;
use pgmon_common::registry::TargetRecord;
use pgmon_contract::subjects::COLLECTORS_BUCKET;
use pgmon_contract::target::TargetName;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

const MEMBER_PREFIX: &str = "member.";
const LEASE_PREFIX: &str = "lease.";

/// What a collector announces about itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Member {
    id: String,
    #[serde(default)]
    only_labels: BTreeMap<String, String>,
}

impl Member {
    fn takes(&self, record: &TargetRecord) -> bool {
        self.only_labels.iter().all(|(key, value)| record.labels.get(key) == Some(value))
    }
}

struct HeldLease {
    revision: u64,
    renewed_at: Instant,
}

#[derive(Debug, thiserror::Error)]
pub enum ShardError {
    #[error("cannot open the collectors bucket {COLLECTORS_BUCKET}: {0}")]
    Open(String),
}

/// This collector's place among the collectors.
pub(crate) struct Shard {
    store: kv::Store,
    me: Member,
    members: Vec<Member>,
    leases: HashMap<TargetName, HeldLease>,
}

impl Shard {
    pub(crate) async fn join(
        jetstream: &jetstream::Context,
        id: &str,
        only_labels: &BTreeMap<String, String>,
    ) -> Result<Shard, ShardError> {
        let store = jetstream
            .get_key_value(COLLECTORS_BUCKET)
            .await
            .map_err(|error| ShardError::Open(error.to_string()))?;
        let me = Member {
            id: id.to_owned(),
            only_labels: only_labels.clone(),
        };
        let mut shard = Shard {
            store,
            members: vec![me.clone()],
            me,
            leases: HashMap::new(),
        };
        shard.refresh_members().await;
        Ok(shard)
    }

    /// Announces this collector again and reads who else is alive. On a NATS error the last
    /// view is kept: leases still prevent two collectors from sampling one target.
    pub(crate) async fn refresh_members(&mut self) {
        let announcement = serde_json::to_vec(&self.me).expect("members always serialise");
        if let Err(error) = self.store.put(member_key(&self.me.id), announcement.into()).await {
            tracing::warn!(collector = %self.me.id, %error, "cannot announce this collector");
            return;
        }
        let keys: Vec<String> = match self.store.keys().await {
            Ok(keys) => keys.filter_map(|key| async move { key.ok() }).collect().await,
            Err(error) => {
                tracing::warn!(%error, "cannot list the collectors");
                return;
            }
        };
        let mut members = Vec::new();
        for key in keys.iter().filter(|key| key.starts_with(MEMBER_PREFIX)) {
            if let Ok(Some(value)) = self.store.get(key).await {
                if let Ok(member) = serde_json::from_slice::<Member>(&value) {
                    members.push(member);
                }
            }
        }
        if !members.contains(&self.me) {
            members.push(self.me.clone());
        }
        members.sort_by(|left, right| left.id.cmp(&right.id));
        if members
            .iter()
            .map(|member| &member.id)
            .ne(self.members.iter().map(|member| &member.id))
        {
            tracing::info!(collectors = ?members.iter().map(|member| member.id.as_str()).collect::<Vec<_>>(), "collectors changed");
        }
        self.members = members;
    }

    /// Whether this collector is the one that should sample `record` among those alive.
    pub(crate) fn owns(&self, record: &TargetRecord) -> bool {
        self.members
            .iter()
            .filter(|member| member.takes(record))
            .max_by_key(|member| rendezvous_weight(&member.id, record.name.as_str()))
            .is_some_and(|owner| owner.id == self.me.id)
    }

    /// Creates or renews this collector's lease on `target`; true while it holds the lease.
    pub(crate) async fn hold(&mut self, target: &TargetName) -> bool {
        let key = lease_key(target);
        if let Some(held) = self.leases.get_mut(target) {
            match self.store.update(&key, self.me.id.clone().into(), held.revision).await {
                Ok(revision) => {
                    held.revision = revision;
                    held.renewed_at = Instant::now();
                    return true;
                }
                // Keep it through a short NATS hiccup; past its lifetime it is someone else's.
                Err(error) if held.renewed_at.elapsed() < COLLECTOR_LEASE_TIME / 2 => {
                    tracing::warn!(%target, %error, "cannot renew the lease, retrying");
                    return true;
                }
                Err(error) => {
                    tracing::warn!(%target, %error, "lease lost");
                    self.leases.remove(target);
                    return false;
                }
            }
        }
        let revision = match self.store.create(&key, self.me.id.clone().into()).await {
            Ok(revision) => revision,
            // Held by another collector, or by an earlier run of this one under the same id.
            Err(_) => match self.store.entry(&key).await {
                Ok(Some(entry)) if entry.operation == kv::Operation::Put && entry.value == self.me.id.as_bytes() => entry.revision,
                _ => return false,
            },
        };
        self.leases.insert(
            target.clone(),
            HeldLease {
                revision,
                renewed_at: Instant::now(),
            },
        );
        true
    }

    /// Gives up the lease on `target` (after its sampling stopped), so its new owner can start.
    pub(crate) async fn release(&mut self, target: &TargetName) {
        if let Some(held) = self.leases.remove(target) {
            if let Err(error) = self.store.delete_expect_revision(lease_key(target), Some(held.revision)).await {
                tracing::debug!(%target, %error, "lease not deleted; it expires on its own");
            }
        }
    }

    pub(crate) fn holds(&self, target: &TargetName) -> bool {
        self.leases.contains_key(target)
    }

    /// Leaves: every lease released and the announcement withdrawn, so others take over now.
    pub(crate) async fn leave(&mut self) {
        let held: Vec<TargetName> = self.leases.keys().cloned().collect();
        for target in held {
            self.release(&target).await;
        }
        if let Err(error) = self.store.delete(member_key(&self.me.id)).await {
            tracing::debug!(%error, "announcement not withdrawn; it expires on its own");
        }
    }
}

fn member_key(id: &str) -> String {
    format!("{MEMBER_PREFIX}{id}")
}

fn lease_key(target: &TargetName) -> String {
    format!("{LEASE_PREFIX}{target}")
}

/// Highest-random-weight hashing: every collector computes the same weights, and when one
/// leaves only its targets move. FNV-1a keeps the weights equal across builds and platforms.
fn rendezvous_weight(member: &str, target: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in member.bytes().chain([0]).chain(target.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    // A final mix, so similar names do not give similar weights.
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
    hash ^ (hash >> 33)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(name: &str, labels: &[(&str, &str)]) -> TargetRecord {
        TargetRecord {
            name: name.parse().unwrap(),
            dsn: "host=h".into(),
            sealed_password: None,
            enabled: true,
            labels: labels.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
            intervals: BTreeMap::new(),
        }
    }

    fn owner<'a>(members: &'a [Member], record: &TargetRecord) -> Option<&'a str> {
        members
            .iter()
            .filter(|member| member.takes(record))
            .max_by_key(|member| rendezvous_weight(&member.id, record.name.as_str()))
            .map(|member| member.id.as_str())
    }

    fn member(id: &str, labels: &[(&str, &str)]) -> Member {
        Member {
            id: id.into(),
            only_labels: labels.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
        }
    }

    #[test]
    fn targets_spread_and_only_the_leavers_targets_move() {
        let three = [member("a", &[]), member("b", &[]), member("c", &[])];
        let records: Vec<TargetRecord> = (0..300).map(|i| record(&format!("db{i}"), &[])).collect();
        let before: Vec<&str> = records.iter().map(|r| owner(&three, r).unwrap()).collect();
        for id in ["a", "b", "c"] {
            let share = before.iter().filter(|owner| **owner == id).count();
            assert!((60..=140).contains(&share), "{id} owns {share} of 300");
        }
        let two = [member("a", &[]), member("b", &[])];
        for (record, previous) in records.iter().zip(&before) {
            let now = owner(&two, record).unwrap();
            if *previous != "c" {
                assert_eq!(now, *previous, "{} moved without need", record.name);
            }
        }
    }

    #[test]
    fn labels_limit_who_may_take_a_target() {
        let members = [member("eu-1", &[("region", "eu")]), member("us-1", &[("region", "us")])];
        assert_eq!(owner(&members, &record("x", &[("region", "eu")])), Some("eu-1"));
        assert_eq!(owner(&members, &record("y", &[("region", "us")])), Some("us-1"));
        assert_eq!(owner(&members, &record("z", &[])), None, "no collector takes an unlabelled target");
    }
}
