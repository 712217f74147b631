//! The capture lease: exactly one agent captures a source at a time, even when a DaemonSet runs
//! several. The lease is a Redis key set with `SET NX PX`, renewed by compare-and-extend, and
//! released by compare-and-delete, so only its holder can touch it. Each acquisition takes a
//! fencing token from `INCR`; the token goes into every segment header the holder writes, so a
//! deposed holder's late writes are recognisable (and put-if-absent keeps them from replacing
//! anything).
//!
//! Every call is bounded ([`CALL_TIMEOUT`]: connecting, then each answer under the client's own
//! timeouts) and a call that fails on the connection (refused, reset, timed out) drops it, so
//! the next call connects afresh: a Redis that restarts, or a connection left half-open by a
//! partition, is reached again at the next renewal or acquisition attempt.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, RedisError, Script};

/// How long connecting to Redis may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// How long one command may wait for its answer.
const RESPONSE_TIMEOUT: Duration = Duration::from_millis(500);
/// How long one call (connecting when needed, then its commands) may take in all.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(2);

/// Lua: extend the lease only if we still hold it.
const RENEW: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
else
  return 0
end"#;

/// Lua: delete the lease only if we still hold it.
const RELEASE: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
else
  return 0
end"#;

/// Errors talking to Redis.
#[derive(Debug, thiserror::Error)]
#[error("lease store (Redis): {0}")]
pub struct LeaseError(String);

impl From<RedisError> for LeaseError {
    fn from(e: RedisError) -> Self {
        // The URL (which may hold a password) is not part of RedisError's message.
        LeaseError(e.to_string())
    }
}

/// True when `e` says the connection is unusable (refused, reset, closed, timed out, a reply
/// that could not be read), not that Redis answered with an error.
fn breaks_connection(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_timeout()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_unrecoverable_error()
}

/// A lease store for one source.
#[derive(Clone)]
pub struct LeaseStore {
    client: redis::Client,
    /// The open connection; `None` until the next call connects (at start, and after a call
    /// failed on it).
    conn: Arc<Mutex<Option<MultiplexedConnection>>>,
    key: String,
    fence_key: String,
    ttl: Duration,
}

impl std::fmt::Debug for LeaseStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaseStore")
            .field("key", &self.key)
            .field("ttl", &self.ttl)
            .finish()
    }
}

/// A held lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub holder: String,
    pub fence: u64,
    /// The value stored in Redis: `<holder> <fence>`.
    value: String,
}

impl LeaseStore {
    /// A lease store in the Redis at `url`; `prefix` namespaces the keys (e.g. `mc-backup`).
    /// Connects once to check the URL's server: an invalid URL is an error, an unreachable
    /// Redis only a warning (every call connects again until it answers).
    pub async fn connect(
        url: &str,
        prefix: &str,
        source: &str,
        ttl: Duration,
    ) -> Result<Self, LeaseError> {
        let client =
            redis::Client::open(url).map_err(|e| LeaseError(format!("invalid Redis URL: {e}")))?;
        let store = Self {
            client,
            conn: Arc::new(Mutex::new(None)),
            key: format!("{prefix}:lease:{source}"),
            fence_key: format!("{prefix}:fence:{source}"),
            ttl,
        };
        if let Err(e) = store.call(|_| async { Ok(()) }).await {
            tracing::warn!(error = %e, "cannot reach the lease store yet; standing by until it answers");
        }
        Ok(store)
    }

    /// The open connection, or a new one.
    async fn connection(&self) -> Result<MultiplexedConnection, RedisError> {
        if let Some(conn) = self.conn.lock().unwrap_or_else(|p| p.into_inner()).clone() {
            return Ok(conn);
        }
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT));
        let conn = self
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        *self.conn.lock().unwrap_or_else(|p| p.into_inner()) = Some(conn.clone());
        Ok(conn)
    }

    /// Forgets the connection, so that the next call opens a new one.
    fn forget_connection(&self) {
        *self.conn.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// Runs `commands` on the connection within [`CALL_TIMEOUT`]; a failure of the connection
    /// (or no answer in time) drops it.
    async fn call<T, F, Fut>(&self, commands: F) -> Result<T, LeaseError>
    where
        F: FnOnce(MultiplexedConnection) -> Fut,
        Fut: Future<Output = Result<T, RedisError>>,
    {
        let attempt = async { commands(self.connection().await?).await };
        match tokio::time::timeout(CALL_TIMEOUT, attempt).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => {
                if breaks_connection(&e) {
                    self.forget_connection();
                }
                Err(e.into())
            }
            Err(_) => {
                self.forget_connection();
                Err(LeaseError(format!(
                    "no answer within {CALL_TIMEOUT:?}; reconnecting at the next call"
                )))
            }
        }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Tries to take the lease. `None` when someone else holds it.
    pub async fn try_acquire(&self, holder: &str) -> Result<Option<Lease>, LeaseError> {
        self.call(|mut conn| async move {
            // Take the token first: tokens only grow, whether or not this attempt wins.
            let fence: u64 = redis::cmd("INCR")
                .arg(&self.fence_key)
                .query_async(&mut conn)
                .await?;
            let value = format!("{holder} {fence}");
            let set: Option<String> = redis::cmd("SET")
                .arg(&self.key)
                .arg(&value)
                .arg("NX")
                .arg("PX")
                .arg(self.ttl.as_millis() as u64)
                .query_async(&mut conn)
                .await?;
            Ok(set.map(|_| Lease {
                holder: holder.to_owned(),
                fence,
                value,
            }))
        })
        .await
    }

    /// Extends the lease; `false` when it is no longer ours (expired and taken, or deleted).
    pub async fn renew(&self, lease: &Lease) -> Result<bool, LeaseError> {
        let extended: i64 = self
            .call(|mut conn| async move {
                Script::new(RENEW)
                    .key(&self.key)
                    .arg(&lease.value)
                    .arg(self.ttl.as_millis() as u64)
                    .invoke_async(&mut conn)
                    .await
            })
            .await?;
        Ok(extended == 1)
    }

    /// Gives the lease up so a standby takes over at once instead of after the TTL.
    pub async fn release(&self, lease: &Lease) -> Result<bool, LeaseError> {
        let deleted: i64 = self
            .call(|mut conn| async move {
                Script::new(RELEASE)
                    .key(&self.key)
                    .arg(&lease.value)
                    .invoke_async(&mut conn)
                    .await
            })
            .await?;
        Ok(deleted == 1)
    }

    /// Who holds the lease now (`<holder> <fence>`), for status and metrics.
    pub async fn holder(&self) -> Result<Option<String>, LeaseError> {
        self.call(|mut conn| async move {
            redis::cmd("GET")
                .arg(&self.key)
                .query_async(&mut conn)
                .await
        })
        .await
    }
}
