//! A small, blocking Kafka client over `rdkafka` for what mc-backup needs of a cluster: the
//! consumer groups (with their members), the topic-partitions, a group's committed offsets, a
//! partition's watermarks, and committing a group's offsets from outside the group.
//!
//! Every call blocks (librdkafka waits on the network) and is bounded by the client's timeout:
//! async callers run these on `tokio::task::spawn_blocking`. Only standard Kafka APIs are used
//! (Metadata, ListGroups/DescribeGroups, OffsetFetch, ListOffsets, OffsetCommit), so any
//! Kafka-protocol broker works.
//!
//! Committed offsets are read and written with a consumer configured with the group's
//! `group.id` that never subscribes: it does not join the group, it only talks to the group's
//! coordinator. Such commits are accepted only while the group has no active member.

mod batch;
mod security;

pub use batch::{GroupOffsets, Watermarks};
pub use security::{
    KafkaSecurity, PemFile, SaslCredentials, SaslMechanism, SecurityError, SecurityProtocol,
    SecurityRule, SecurityShape,
};

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};

/// A failure talking to Kafka. Messages name the brokers and the operation; they never carry
/// credentials (passwords stay in [`KafkaSecurity`]).
#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    #[error("cannot reach Kafka at {bootstrap} within {timeout:?}: {detail}; check the address and that the brokers are up")]
    Unreachable {
        bootstrap: String,
        timeout: Duration,
        detail: String,
    },
    #[error("Kafka at {bootstrap}: {operation}: {detail}")]
    Operation {
        bootstrap: String,
        operation: String,
        detail: String,
    },
}

/// A member of a consumer group, as DescribeGroups reports it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct GroupMember {
    pub id: String,
    pub client_id: String,
    pub host: String,
}

/// A consumer group: name, state (`Stable`, `Empty`, `Dead`, …), protocol type and members.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct GroupDescription {
    pub name: String,
    pub state: String,
    pub protocol_type: String,
    pub members: Vec<GroupMember>,
}

/// A topic-partition's committed offset in a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Committed {
    pub partition: i32,
    pub offset: i64,
}

/// A blocking client of one Kafka cluster.
pub struct KafkaClient {
    bootstrap: String,
    timeout: Duration,
    security: KafkaSecurity,
    /// Not in any group: metadata, group listing, watermarks.
    meta: BaseConsumer,
    /// One consumer per group, configured with its `group.id` (created on first use).
    groups: Mutex<HashMap<String, BaseConsumer>>,
}

impl std::fmt::Debug for KafkaClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaClient")
            .field("bootstrap", &self.bootstrap)
            .field("timeout", &self.timeout)
            .field("security", &self.security.describe())
            .finish_non_exhaustive()
    }
}

impl KafkaClient {
    /// A client of the brokers `bootstrap` (`host:port,host:port`); each call waits at most
    /// `timeout`. Contacts the cluster once (a metadata request) so an unreachable cluster is
    /// reported here, as [`KafkaError::Unreachable`].
    pub fn connect(bootstrap: &str, timeout: Duration) -> Result<Self, KafkaError> {
        Self::connect_secured(bootstrap, &KafkaSecurity::default(), timeout)
    }

    /// [`KafkaClient::connect`] with TLS and SASL settings. A setting librdkafka refuses (a
    /// CA file it cannot read, say) is reported as [`KafkaError::Unreachable`] naming it.
    pub fn connect_secured(
        bootstrap: &str,
        security: &KafkaSecurity,
        timeout: Duration,
    ) -> Result<Self, KafkaError> {
        let unreachable = |e: rdkafka::error::KafkaError| KafkaError::Unreachable {
            bootstrap: bootstrap.to_owned(),
            timeout,
            detail: format!("{e} (security: {})", security.describe()),
        };
        let meta: BaseConsumer = Self::config(bootstrap, security, timeout)
            .create()
            .map_err(unreachable)?;
        let client = Self {
            bootstrap: bootstrap.to_owned(),
            timeout,
            security: security.clone(),
            meta,
            groups: Mutex::new(HashMap::new()),
        };
        client
            .meta
            .fetch_metadata(None, timeout)
            .map_err(unreachable)?;
        Ok(client)
    }

    /// The brokers this client bootstraps from.
    pub fn bootstrap(&self) -> &str {
        &self.bootstrap
    }

    fn config(bootstrap: &str, security: &KafkaSecurity, timeout: Duration) -> ClientConfig {
        let ms = timeout.as_millis().clamp(1000, 300_000).to_string();
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", bootstrap)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("socket.timeout.ms", &ms)
            .set("socket.connection.setup.timeout.ms", &ms)
            .set("log_level", "3");
        security.apply(&mut config);
        config
    }

    fn op_err(&self, operation: impl Into<String>, e: impl std::fmt::Display) -> KafkaError {
        KafkaError::Operation {
            bootstrap: self.bootstrap.clone(),
            operation: operation.into(),
            detail: e.to_string(),
        }
    }

    /// Every consumer group the cluster knows, with state and members, sorted by name.
    pub fn groups(&self) -> Result<Vec<GroupDescription>, KafkaError> {
        let list = self
            .meta
            .fetch_group_list(None, self.timeout)
            .map_err(|e| self.op_err("listing consumer groups", e))?;
        let mut groups: Vec<GroupDescription> = list.groups().iter().map(describe).collect();
        groups.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(groups)
    }

    /// One group's description; `None` when the cluster does not know it (or it is `Dead`).
    pub fn group(&self, name: &str) -> Result<Option<GroupDescription>, KafkaError> {
        let list = self
            .meta
            .fetch_group_list(Some(name), self.timeout)
            .map_err(|e| self.op_err(format!("describing consumer group {name}"), e))?;
        Ok(list
            .groups()
            .iter()
            .map(describe)
            .find(|g| g.name == name && g.state != "Dead"))
    }

    /// Every topic whose name does not start with `__` (internal topics), with its partition
    /// ids, sorted by name.
    pub fn topics(&self) -> Result<Vec<(String, Vec<i32>)>, KafkaError> {
        let metadata = self
            .meta
            .fetch_metadata(None, self.timeout)
            .map_err(|e| self.op_err("reading topic metadata", e))?;
        let mut topics: Vec<(String, Vec<i32>)> = metadata
            .topics()
            .iter()
            .filter(|t| !t.name().starts_with("__") && t.error().is_none())
            .map(|t| {
                let mut ids: Vec<i32> = t.partitions().iter().map(|p| p.id()).collect();
                ids.sort_unstable();
                (t.name().to_owned(), ids)
            })
            .collect();
        topics.sort();
        Ok(topics)
    }

    /// The group's committed offsets among `partitions` (topic, partition); partitions without
    /// a committed offset are left out. Sorted by (topic, partition).
    pub fn committed(
        &self,
        group: &str,
        partitions: &[(String, i32)],
    ) -> Result<Vec<(String, Committed)>, KafkaError> {
        if partitions.is_empty() {
            return Ok(Vec::new());
        }
        let mut tpl = TopicPartitionList::with_capacity(partitions.len());
        for (topic, partition) in partitions {
            tpl.add_partition(topic, *partition);
        }
        let result = self.with_group(group, |consumer| {
            consumer
                .committed_offsets(tpl, self.timeout)
                .map_err(|e| self.op_err(format!("reading committed offsets of group {group}"), e))
        })?;
        let mut out: Vec<(String, Committed)> = result
            .elements()
            .iter()
            .filter_map(|e| match e.offset() {
                Offset::Offset(offset) if e.error().is_ok() => Some((
                    e.topic().to_owned(),
                    Committed {
                        partition: e.partition(),
                        offset,
                    },
                )),
                _ => None,
            })
            .collect();
        out.sort_by(|a, b| (&a.0, a.1.partition).cmp(&(&b.0, b.1.partition)));
        Ok(out)
    }

    /// The partition's (low, high) watermarks.
    pub fn watermarks(&self, topic: &str, partition: i32) -> Result<(i64, i64), KafkaError> {
        self.meta
            .fetch_watermarks(topic, partition, self.timeout)
            .map_err(|e| self.op_err(format!("reading watermarks of {topic}/{partition}"), e))
    }

    /// Commits `offsets` (topic, partition, offset) for `group`, synchronously. The broker
    /// refuses this while the group has active members.
    pub fn commit(&self, group: &str, offsets: &[(String, i32, i64)]) -> Result<(), KafkaError> {
        let mut tpl = TopicPartitionList::with_capacity(offsets.len());
        for (topic, partition, offset) in offsets {
            tpl.add_partition_offset(topic, *partition, Offset::Offset(*offset))
                .map_err(|e| self.op_err(format!("committing offsets of group {group}"), e))?;
        }
        self.with_group(group, |consumer| {
            consumer
                .commit(&tpl, CommitMode::Sync)
                .map_err(|e| self.op_err(format!("committing offsets of group {group}"), e))
        })
    }

    /// Forgets the per-group consumers of groups not in `keep` (they hold connections).
    pub fn retain_groups(&self, keep: &dyn Fn(&str) -> bool) {
        if let Ok(mut map) = self.groups.lock() {
            map.retain(|g, _| keep(g));
        }
    }

    fn with_group<R>(
        &self,
        group: &str,
        f: impl FnOnce(&BaseConsumer) -> Result<R, KafkaError>,
    ) -> Result<R, KafkaError> {
        let mut map = self
            .groups
            .lock()
            .map_err(|_| self.op_err(format!("group {group}"), "client lock poisoned"))?;
        if !map.contains_key(group) {
            let consumer: BaseConsumer =
                Self::config(&self.bootstrap, &self.security, self.timeout)
                    .set("group.id", group)
                    .create()
                    .map_err(|e| self.op_err(format!("creating a client for group {group}"), e))?;
            map.insert(group.to_owned(), consumer);
        }
        match map.get(group) {
            Some(consumer) => f(consumer),
            None => Err(self.op_err(format!("group {group}"), "client vanished")),
        }
    }
}

fn describe(g: &rdkafka::groups::GroupInfo) -> GroupDescription {
    GroupDescription {
        name: g.name().to_owned(),
        state: g.state().to_owned(),
        protocol_type: g.protocol_type().to_owned(),
        members: g
            .members()
            .iter()
            .map(|m| GroupMember {
                id: m.id().to_owned(),
                client_id: m.client_id().to_owned(),
                host: m.client_host().to_owned(),
            })
            .collect(),
    }
}
