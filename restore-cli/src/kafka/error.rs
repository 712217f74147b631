//! Why offsets could not be read, planned or reset ([`KafkaRestoreError`]).

use mc_core::catalog::RepoError;
use mc_core::kafka::{GroupMember, KafkaError};

/// Why offsets could not be read, planned or reset. Messages say what to do.
#[derive(Debug, thiserror::Error)]
pub enum KafkaRestoreError {
    #[error(transparent)]
    Repo(#[from] RepoError),
    #[error(transparent)]
    Kafka(#[from] KafkaError),
    #[error("source {source_id} has no Kafka offsets recorded at or before {point}{}; is `kafka:` in the agent's policy?",
        .first.as_ref().map(|f| format!(" (the first capture is at {f})")).unwrap_or_default())]
    NoOffsets {
        source_id: String,
        point: String,
        first: Option<String>,
    },
    #[error("no consumer group recorded at {point} matches {}; groups recorded then: {}",
        .patterns.iter().map(|p| format!("'{p}'")).collect::<Vec<_>>().join(", "),
        if .known.is_empty() { "none".to_owned() } else { .known.join(", ") })]
    UnknownGroups {
        patterns: Vec<String>,
        point: String,
        known: Vec<String>,
    },
    #[error("{}; stop their consumers first (or pass --wait-inactive to wait for them to leave)",
        .0.iter().map(|(g, m)| format!("group {g} has {} active member(s): {}", m.len(),
            m.iter().map(|m| format!("{} (client {}, host {})", m.id, m.client_id, m.host)).collect::<Vec<_>>().join(", ")))
            .collect::<Vec<_>>().join("; "))]
    ActiveGroups(Vec<(String, Vec<GroupMember>)>),
    #[error("partition {topic}/{partition} (recorded for group {group}) does not exist on the cluster at {bootstrap}; restoring into another cluster? map topics with --topic-map SOURCE=TARGET")]
    MissingPartition {
        group: String,
        topic: String,
        partition: i32,
        bootstrap: String,
    },
    #[error("{0}")]
    BadRecord(String),
    #[error("after committing, group {group} reads back {topic}/{partition} at {found:?}, not {expected}")]
    NotApplied {
        group: String,
        topic: String,
        partition: i32,
        expected: i64,
        found: Option<i64>,
    },
    #[error("bad --topic-map {0:?}: write SOURCE=TARGET, e.g. orders=dr.orders")]
    BadTopicMap(String),
    #[error("a background task failed: {0}")]
    Task(String),
}
