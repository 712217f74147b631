//! The logging layer: sees every attempt (it sits under the retry layer, over the timeout
//! layer) and keeps the store's [`StoreHealth`]. The first failed or timed-out attempt of an
//! outage logs a WARN, then at most one every 30 s while it lasts, naming the store, the
//! operation, the error kind and message (never credentials: the backends' messages hold none)
//! and, when the capture registered a backlog probe, the bytes waiting and the age of the
//! oldest entry not yet stored. The first answer after an outage logs an INFO with its length.
//!
//! Answers about an object (not found, already exists, a bad key or range) are answers: they
//! count as the store being up.

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use super::{ByteStream, ListPage, ObjectMeta, ObjectStore, PutSource, StorageError, StoreHealth};

/// How often a lasting outage is logged again.
pub const WARN_EVERY: Duration = Duration::from_secs(30);

/// Wraps a store to log and record how its attempts go.
#[derive(Debug)]
pub struct Logging {
    inner: Arc<dyn ObjectStore>,
    health: Arc<StoreHealth>,
    warn_every: Duration,
}

impl Logging {
    pub fn new(inner: Arc<dyn ObjectStore>, health: Arc<StoreHealth>) -> Self {
        health.set_describe(inner.describe());
        Self {
            inner,
            health,
            warn_every: WARN_EVERY,
        }
    }

    fn observe<T>(
        &self,
        op: &'static str,
        key: &str,
        result: Result<T, StorageError>,
    ) -> Result<T, StorageError> {
        match &result {
            Err(e) if !e.is_answer() => {
                let kind = e.kind();
                let message = e.to_string();
                if let Some(down_for) =
                    self.health
                        .record_failure(op, kind, message.clone(), self.warn_every)
                {
                    let store = self.inner.describe();
                    let down_s = down_for.as_secs();
                    // A store that times out or is unreachable may come back by itself; one that
                    // answers with a refusal (a missing bucket, denied credentials) needs a fix,
                    // and saying "not answering" would send the operator after the network.
                    let what = if kind.is_transient() {
                        "the object store is not answering"
                    } else {
                        "the object store refuses the request (the error says why; fix it)"
                    };
                    match self.health.backlog() {
                        Some(b) => tracing::warn!(
                            store = %store,
                            op,
                            key,
                            kind = kind.as_str(),
                            failing_for_s = down_s,
                            waiting_bytes = b.waiting_bytes,
                            oldest_unstored_age_s = b.oldest_age.map(|a| a.as_secs()),
                            error = %message,
                            "{what}; retrying (waiting bytes stay in memory or the spool, the rest in the oplog)"
                        ),
                        None => tracing::warn!(
                            store = %store,
                            op,
                            key,
                            kind = kind.as_str(),
                            failing_for_s = down_s,
                            error = %message,
                            "{what}; retrying"
                        ),
                    }
                }
            }
            _ => {
                if let Some(down_for) = self.health.record_success() {
                    tracing::info!(
                        store = %self.inner.describe(),
                        op,
                        down_for_s = down_for.as_secs(),
                        "the object store answers again"
                    );
                }
            }
        }
        result
    }
}

#[async_trait]
impl ObjectStore for Logging {
    fn describe(&self) -> String {
        self.inner.describe()
    }

    async fn put_if_absent(&self, key: &str, source: PutSource) -> Result<(), StorageError> {
        let r = self.inner.put_if_absent(key, source).await;
        self.observe("put", key, r)
    }

    async fn get_stream(&self, key: &str) -> Result<ByteStream, StorageError> {
        let r = self.inner.get_stream(key).await;
        self.observe("get", key, r)
    }

    async fn get(&self, key: &str) -> Result<Bytes, StorageError> {
        let r = self.inner.get(key).await;
        self.observe("get", key, r)
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes, StorageError> {
        let r = self.inner.get_range(key, range).await;
        self.observe("get", key, r)
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>, StorageError> {
        let r = self.inner.head(key).await;
        self.observe("head", key, r)
    }

    async fn list_page(
        &self,
        prefix: &str,
        after: Option<String>,
    ) -> Result<ListPage, StorageError> {
        let r = self.inner.list_page(prefix, after).await;
        self.observe("list", prefix, r)
    }

    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        let r = self.inner.delete(key).await;
        self.observe("delete", key, r)
    }

    async fn check(&self) -> Result<(), StorageError> {
        let r = self.inner.check().await;
        self.observe("check", "bucket", r)
    }

    fn health(&self) -> Option<Arc<StoreHealth>> {
        Some(self.health.clone())
    }
}
