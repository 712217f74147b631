//! The timeout layer: every attempt on the store gets a deadline sized for the object, a base
//! plus its bytes at a minimum throughput. A 1 GiB multipart upload on a slow link is not a hang;
//! a HEAD without an answer for 15 s is. When the deadline passes the attempt's future is
//! dropped, and with it the connection it waited on (hyper closes a connection whose request is
//! cancelled): a retry never waits on that connection again.
//!
//! Streams (`get_stream`) get the base deadline for the answer and again between chunks, so a
//! read that stops half-way ends with an error instead of waiting forever.

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;

use super::{
    ByteStream, ErrorKind, ListPage, ObjectMeta, ObjectStore, PutSource, StorageError, StoreHealth,
};

/// How long one attempt may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttemptTimeouts {
    /// The deadline of a request that moves (almost) no data: HEAD, LIST, DELETE, a small GET.
    pub base: Duration,
    /// Bytes per second the slowest acceptable link still moves; an object of `n` bytes gets
    /// `base + n / min_throughput`.
    pub min_throughput: u64,
}

impl Default for AttemptTimeouts {
    /// 15 s, plus a second per MiB.
    fn default() -> Self {
        Self {
            base: Duration::from_secs(15),
            min_throughput: 1 << 20,
        }
    }
}

impl AttemptTimeouts {
    /// The defaults, overridden by `MC_STORE_ATTEMPT_TIMEOUT` (a duration, e.g. `5s`) and
    /// `MC_STORE_MIN_THROUGHPUT` (bytes per second) when set and valid.
    pub fn from_env() -> Self {
        let mut t = Self::default();
        if let Some(base) = std::env::var("MC_STORE_ATTEMPT_TIMEOUT")
            .ok()
            .and_then(|v| humantime::parse_duration(v.trim()).ok())
            .filter(|d| !d.is_zero())
        {
            t.base = base;
        }
        if let Some(bps) = std::env::var("MC_STORE_MIN_THROUGHPUT")
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .filter(|b| *b > 0)
        {
            t.min_throughput = bps;
        }
        t
    }

    /// The deadline of an attempt that moves `bytes`.
    pub fn for_bytes(&self, bytes: u64) -> Duration {
        self.base + Duration::from_secs_f64(bytes as f64 / self.min_throughput.max(1) as f64)
    }
}

/// Wraps a store so that no attempt outlives its deadline.
#[derive(Debug)]
pub struct Timeout {
    inner: Arc<dyn ObjectStore>,
    timeouts: AttemptTimeouts,
}

impl Timeout {
    pub fn new(inner: Arc<dyn ObjectStore>, timeouts: AttemptTimeouts) -> Self {
        Self { inner, timeouts }
    }

    fn timed_out(&self, op: &'static str, key: &str, after: Duration, bytes: u64) -> StorageError {
        let size = if bytes > 0 {
            format!(" for {bytes} bytes")
        } else {
            String::new()
        };
        StorageError::Backend {
            op,
            repo: self.inner.describe(),
            key: key.to_owned(),
            kind: ErrorKind::Timeout,
            message: format!("no answer within {after:?} (the attempt's deadline{size}); the connection is dropped"),
        }
    }

    async fn within<T>(
        &self,
        op: &'static str,
        key: &str,
        bytes: u64,
        fut: impl std::future::Future<Output = Result<T, StorageError>> + Send,
    ) -> Result<T, StorageError> {
        let limit = self.timeouts.for_bytes(bytes);
        match tokio::time::timeout(limit, fut).await {
            Ok(result) => result,
            Err(_) => Err(self.timed_out(op, key, limit, bytes)),
        }
    }
}

/// `stream` with `idle` as the longest wait for each chunk; a stall ends it with a timeout error.
pub(crate) fn with_idle_timeout(
    stream: ByteStream,
    idle: Duration,
    on_stall: impl Fn() -> StorageError + Send + Sync + 'static,
) -> ByteStream {
    let on_stall = Arc::new(on_stall);
    futures::stream::unfold(Some(stream), move |state| {
        let on_stall = on_stall.clone();
        async move {
            let mut stream = state?;
            match tokio::time::timeout(idle, stream.next()).await {
                Ok(Some(item)) => Some((item, Some(stream))),
                Ok(None) => None,
                Err(_) => Some((Err(on_stall()), None)),
            }
        }
    })
    .boxed()
}

#[async_trait]
impl ObjectStore for Timeout {
    fn describe(&self) -> String {
        self.inner.describe()
    }

    async fn put_if_absent(&self, key: &str, source: PutSource) -> Result<(), StorageError> {
        let bytes = match &source {
            PutSource::Bytes(b) => b.len() as u64,
            PutSource::File(path) => tokio::fs::metadata(path).await.map_or(0, |m| m.len()),
        };
        self.within("put", key, bytes, self.inner.put_if_absent(key, source))
            .await
    }

    async fn get_stream(&self, key: &str) -> Result<ByteStream, StorageError> {
        let stream = self
            .within("get", key, 0, self.inner.get_stream(key))
            .await?;
        let idle = self.timeouts.base;
        let repo = self.inner.describe();
        let key = key.to_owned();
        Ok(with_idle_timeout(stream, idle, move || {
            StorageError::Backend {
                op: "get",
                repo: repo.clone(),
                key: key.clone(),
                kind: ErrorKind::Timeout,
                message: format!("the object stopped arriving: no bytes for {idle:?}"),
            }
        }))
    }

    async fn get(&self, key: &str) -> Result<Bytes, StorageError> {
        use futures::TryStreamExt;
        let chunks: Vec<Bytes> = self.get_stream(key).await?.try_collect().await?;
        Ok(chunks.concat().into())
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes, StorageError> {
        let bytes = range.end.saturating_sub(range.start);
        self.within("get", key, bytes, self.inner.get_range(key, range))
            .await
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>, StorageError> {
        self.within("head", key, 0, self.inner.head(key)).await
    }

    async fn list_page(
        &self,
        prefix: &str,
        after: Option<String>,
    ) -> Result<ListPage, StorageError> {
        self.within("list", prefix, 0, self.inner.list_page(prefix, after))
            .await
    }

    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        self.within("delete", key, 0, self.inner.delete(key)).await
    }

    async fn check(&self) -> Result<(), StorageError> {
        self.within("check", "bucket", 0, self.inner.check()).await
    }

    fn health(&self) -> Option<Arc<StoreHealth>> {
        self.inner.health()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_grow_with_the_object() {
        let t = AttemptTimeouts::default();
        assert_eq!(t.for_bytes(0), Duration::from_secs(15));
        assert_eq!(t.for_bytes(1 << 30), Duration::from_secs(15 + 1024));
    }
}
