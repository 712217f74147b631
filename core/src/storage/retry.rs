//! The retry layer, after restic's `backend/retry`: a failed or timed-out attempt is tried again
//! after an exponential backoff with jitter (`backon`), on a new connection (the timeout layer
//! dropped the old one). Answers (not found, already exists, a bad key) are returned at once.
//!
//! Two policies: [`RetryPolicy::bounded`] for commands (a few attempts, and none for failures a
//! retry repeats: credentials, a wrong request), [`RetryPolicy::forever`] for the agent, whose
//! captured entries exist only in memory and in the oplog: it waits for the store as long as it
//! takes, and its callers decide how long they wait (shutdown has a grace period).
//!
//! [`Backoff`] is the one backoff of the workspace: loops that retry something other than a
//! store call (reconnecting to MongoDB, sealing into a full spool) use it too.

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use bytes::Bytes;

use super::logging::Logging;
use super::timeout::{AttemptTimeouts, Timeout};
use super::{ByteStream, ListPage, ObjectMeta, ObjectStore, PutSource, StorageError, StoreHealth};

/// When to try again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts per operation, the first included; `None`: until it succeeds.
    pub max_attempts: Option<u32>,
    /// The first wait; each next one doubles, plus jitter.
    pub first_backoff: Duration,
    /// The longest wait between attempts.
    pub max_backoff: Duration,
}

impl RetryPolicy {
    /// `attempts` attempts (at least one); failures a retry would repeat are not retried.
    pub fn bounded(attempts: u32) -> Self {
        Self {
            max_attempts: Some(attempts.max(1)),
            first_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(10),
        }
    }

    /// Until the operation succeeds or gets an answer, whatever the failure. Waits are capped
    /// at 5 s (10 s with jitter), so that once the store answers again the agent notices within
    /// seconds: capture must be back under its RPO soon after an outage, and an idle retry
    /// every few seconds costs a down store nothing.
    pub fn forever() -> Self {
        Self {
            max_attempts: None,
            first_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(5),
        }
    }

    /// The waits between attempts.
    pub fn backoff(&self) -> Backoff {
        Backoff::new(self.first_backoff, self.max_backoff)
    }

    fn retries(&self, error: &StorageError, attempt: u32) -> bool {
        if error.is_answer() {
            return false;
        }
        match self.max_attempts {
            None => true,
            Some(max) => attempt < max && error.kind().is_transient(),
        }
    }
}

/// Exponential waits with jitter, without end; [`Backoff::reset`] after a success.
#[derive(Debug)]
pub struct Backoff {
    builder: ExponentialBuilder,
    waits: ExponentialBackoff,
}

impl Backoff {
    /// From `first` doubling up to `max`, each plus a random part of itself.
    pub fn new(first: Duration, max: Duration) -> Self {
        let builder = ExponentialBuilder::new()
            .with_min_delay(first)
            .with_max_delay(max)
            .with_factor(2.0)
            .with_jitter()
            .without_max_times();
        Self {
            builder,
            waits: builder.build(),
        }
    }

    /// The next wait.
    pub fn next_wait(&mut self) -> Duration {
        self.waits
            .next()
            .unwrap_or_else(|| self.builder.build().next().unwrap_or_default())
    }

    /// Starts again from the first wait.
    pub fn reset(&mut self) {
        self.waits = self.builder.build();
    }
}

/// How [`open_with`](super::open_with) stacks the layers.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// `None`: [`RetryPolicy::bounded`] with the backend's attempts (an S3 URL's
    /// `max_attempts`, 5 by default).
    pub retry: Option<RetryPolicy>,
    pub timeouts: AttemptTimeouts,
    /// Shared with whoever reports the store's health.
    pub health: Arc<StoreHealth>,
}

impl Default for StoreOptions {
    /// Bounded retries, deadlines from the environment ([`AttemptTimeouts::from_env`]).
    fn default() -> Self {
        Self {
            retry: None,
            timeouts: AttemptTimeouts::from_env(),
            health: StoreHealth::new(),
        }
    }
}

impl StoreOptions {
    /// The agent's: retry forever, report into `health`.
    pub fn daemon(health: Arc<StoreHealth>) -> Self {
        Self {
            retry: Some(RetryPolicy::forever()),
            timeouts: AttemptTimeouts::from_env(),
            health,
        }
    }

    /// `Retry(Logging(Timeout(raw)))`; `attempts` is the backend's bounded default.
    pub fn stack(&self, raw: Arc<dyn ObjectStore>, attempts: u32) -> Arc<dyn ObjectStore> {
        let timed: Arc<dyn ObjectStore> = Arc::new(Timeout::new(raw, self.timeouts));
        let logged: Arc<dyn ObjectStore> = Arc::new(Logging::new(timed, self.health.clone()));
        let policy = self.retry.unwrap_or(RetryPolicy::bounded(attempts));
        Arc::new(Retry::new(logged, policy))
    }
}

/// Wraps a store to retry failed attempts.
#[derive(Debug)]
pub struct Retry {
    inner: Arc<dyn ObjectStore>,
    policy: RetryPolicy,
}

impl Retry {
    pub fn new(inner: Arc<dyn ObjectStore>, policy: RetryPolicy) -> Self {
        Self { inner, policy }
    }

    async fn run<T, F, Fut>(&self, mut attempt: F) -> Result<T, StorageError>
    where
        F: FnMut() -> Fut + Send,
        Fut: std::future::Future<Output = Result<T, StorageError>> + Send,
        T: Send,
    {
        let mut backoff = self.policy.backoff();
        let mut n = 0u32;
        loop {
            n += 1;
            match attempt().await {
                Ok(v) => return Ok(v),
                Err(e) if !self.policy.retries(&e, n) => return Err(e),
                Err(e) => {
                    let wait = backoff.next_wait();
                    tracing::debug!(error = %e, attempt = n, retry_in = ?wait, "store attempt failed; retrying");
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }
}

#[async_trait]
impl ObjectStore for Retry {
    fn describe(&self) -> String {
        self.inner.describe()
    }

    async fn put_if_absent(&self, key: &str, source: PutSource) -> Result<(), StorageError> {
        self.run(|| self.inner.put_if_absent(key, source.clone()))
            .await
    }

    /// Only getting the stream is retried: a stream that fails half-way fails its reader.
    async fn get_stream(&self, key: &str) -> Result<ByteStream, StorageError> {
        self.run(|| self.inner.get_stream(key)).await
    }

    async fn get(&self, key: &str) -> Result<Bytes, StorageError> {
        self.run(|| self.inner.get(key)).await
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes, StorageError> {
        self.run(|| self.inner.get_range(key, range.clone())).await
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>, StorageError> {
        self.run(|| self.inner.head(key)).await
    }

    async fn list_page(
        &self,
        prefix: &str,
        after: Option<String>,
    ) -> Result<ListPage, StorageError> {
        self.run(|| self.inner.list_page(prefix, after.clone()))
            .await
    }

    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        self.run(|| self.inner.delete(key)).await
    }

    async fn check(&self) -> Result<(), StorageError> {
        self.run(|| self.inner.check()).await
    }

    fn health(&self) -> Option<Arc<StoreHealth>> {
        self.inner.health()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::ErrorKind;
    use std::sync::atomic::{AtomicU32, Ordering::Relaxed};

    /// Fails `head` with `kind` the first `fail` times, then answers.
    #[derive(Debug)]
    struct Flaky {
        fail: u32,
        kind: ErrorKind,
        calls: AtomicU32,
    }

    #[async_trait]
    impl ObjectStore for Flaky {
        fn describe(&self) -> String {
            "flaky".into()
        }
        async fn put_if_absent(&self, _: &str, _: PutSource) -> Result<(), StorageError> {
            unimplemented!()
        }
        async fn get_stream(&self, _: &str) -> Result<ByteStream, StorageError> {
            unimplemented!()
        }
        async fn get_range(&self, _: &str, _: Range<u64>) -> Result<Bytes, StorageError> {
            unimplemented!()
        }
        async fn head(&self, key: &str) -> Result<Option<ObjectMeta>, StorageError> {
            if self.calls.fetch_add(1, Relaxed) < self.fail {
                return Err(StorageError::Backend {
                    op: "head",
                    repo: "flaky".into(),
                    key: key.into(),
                    kind: self.kind,
                    message: "no".into(),
                });
            }
            Ok(None)
        }
        async fn list_page(&self, _: &str, _: Option<String>) -> Result<ListPage, StorageError> {
            unimplemented!()
        }
        async fn delete(&self, _: &str) -> Result<(), StorageError> {
            unimplemented!()
        }
    }

    /// `policy` with millisecond waits, so the test runs in no time.
    fn fast(policy: RetryPolicy) -> RetryPolicy {
        RetryPolicy {
            first_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(2),
            ..policy
        }
    }

    fn flaky(fail: u32, kind: ErrorKind) -> Arc<Flaky> {
        Arc::new(Flaky {
            fail,
            kind,
            calls: AtomicU32::new(0),
        })
    }

    #[tokio::test]
    async fn retries_transient_failures_within_the_bound_and_forever() {
        let raw = flaky(3, ErrorKind::Unreachable);
        let store = Retry::new(raw.clone(), fast(RetryPolicy::bounded(5)));
        assert!(store.head("k").await.unwrap().is_none());
        assert_eq!(raw.calls.load(Relaxed), 4);

        let raw = flaky(3, ErrorKind::Unreachable);
        let store = Retry::new(raw.clone(), fast(RetryPolicy::bounded(2)));
        assert!(store.head("k").await.is_err());
        assert_eq!(raw.calls.load(Relaxed), 2);

        let raw = flaky(50, ErrorKind::Denied);
        let store = Retry::new(raw.clone(), fast(RetryPolicy::bounded(5)));
        assert!(store.head("k").await.is_err());
        assert_eq!(raw.calls.load(Relaxed), 1, "denied is not retried");

        let store = Retry::new(raw.clone(), fast(RetryPolicy::forever()));
        assert!(store.head("k").await.unwrap().is_none());
        assert_eq!(
            raw.calls.load(Relaxed),
            51,
            "forever retries whatever fails"
        );
    }

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_cap() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let first = b.next_wait();
        assert!(first >= Duration::from_millis(100) && first <= Duration::from_millis(200));
        for _ in 0..20 {
            assert!(b.next_wait() <= Duration::from_secs(2));
        }
        b.reset();
        assert!(b.next_wait() <= Duration::from_millis(200));
    }
}
