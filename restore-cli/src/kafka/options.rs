//! How to reset: the cluster, the groups, `--topic-map`, waiting, timeouts and TLS/SASL
//! ([`KafkaResetOptions`], [`TopicMap`]).

use std::collections::BTreeMap;
use std::time::Duration;

use mc_core::kafka::KafkaSecurity;
use serde::Serialize;

use super::KafkaRestoreError;

/// `--topic-map SOURCE=TARGET`: recorded topic names to the target cluster's.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TopicMap(pub BTreeMap<String, String>);

impl TopicMap {
    /// Parses `a=b` entries.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Self, KafkaRestoreError> {
        let mut map = BTreeMap::new();
        for entry in entries {
            let entry = entry.as_ref();
            match entry.split_once('=') {
                Some((a, b)) if !a.trim().is_empty() && !b.trim().is_empty() => {
                    map.insert(a.trim().to_owned(), b.trim().to_owned());
                }
                _ => return Err(KafkaRestoreError::BadTopicMap(entry.to_owned())),
            }
        }
        Ok(Self(map))
    }

    /// The target topic of a recorded one.
    pub fn target<'a>(&'a self, topic: &'a str) -> &'a str {
        self.0.get(topic).map_or(topic, String::as_str)
    }
}

/// How to reset.
#[derive(Debug, Clone)]
pub struct KafkaResetOptions {
    /// `host:port,host:port` of the cluster to reset.
    pub bootstrap: String,
    /// Group patterns (`*`, `?`); each must match at least one recorded group.
    pub groups: Vec<String>,
    /// Plan only.
    pub dry_run: bool,
    /// Wait up to this long for active groups to become inactive instead of refusing them.
    pub wait_inactive: Option<Duration>,
    pub topic_map: TopicMap,
    /// Longest wait for one Kafka request (an unreachable cluster fails after it).
    pub timeout: Duration,
    /// TLS and SASL (the policy's `kafka.security`); plaintext by default.
    pub security: KafkaSecurity,
}

impl KafkaResetOptions {
    /// Options with a 10 s request timeout, no waiting, no topic mapping.
    pub fn new(bootstrap: impl Into<String>, groups: Vec<String>, dry_run: bool) -> Self {
        Self {
            bootstrap: bootstrap.into(),
            groups,
            dry_run,
            wait_inactive: None,
            topic_map: TopicMap::default(),
            timeout: Duration::from_secs(10),
            security: KafkaSecurity::default(),
        }
    }

    /// The plan-only reset a drill makes of `cluster` (the policy's, from
    /// [`mc_core::policy::Policy::kafka_cluster`]): its brokers, groups and security.
    pub fn drill_plan(cluster: mc_core::policy::KafkaCluster) -> Self {
        let mut options = Self::new(cluster.bootstrap, cluster.groups, true);
        options.security = cluster.security;
        options
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_maps() {
        let m = TopicMap::parse(&["a=b", " c = d "]).unwrap();
        assert_eq!(
            (m.target("a"), m.target("c"), m.target("x")),
            ("b", "d", "x")
        );
        assert!(TopicMap::parse(&["a"]).is_err());
        assert!(TopicMap::parse(&["=b"]).is_err());
    }
}
