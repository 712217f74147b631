//! The capture lease: exactly one agent captures a source at a time, even when a DaemonSet runs
//! several. The lease is a Redis key set with `SET NX PX`, renewed by compare-and-extend, and
//! released by compare-and-delete, so only its holder can touch it. Each acquisition takes a
//! fencing token from `INCR`; the token goes into every segment header the holder writes, so a
//! deposed holder's late writes are recognisable (and put-if-absent keeps them from replacing
//! anything).

use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::Script;

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

impl From<redis::RedisError> for LeaseError {
    fn from(e: redis::RedisError) -> Self {
        // The URL (which may hold a password) is not part of RedisError's message.
        LeaseError(e.to_string())
    }
}

/// A lease store for one source.
#[derive(Clone)]
pub struct LeaseStore {
    conn: MultiplexedConnection,
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
    /// Connects to Redis; `prefix` namespaces the keys (e.g. `mc-backup`).
    pub async fn connect(
        url: &str,
        prefix: &str,
        source: &str,
        ttl: Duration,
    ) -> Result<Self, LeaseError> {
        let client =
            redis::Client::open(url).map_err(|e| LeaseError(format!("invalid Redis URL: {e}")))?;
        let conn = client.get_multiplexed_async_connection().await?;
        Ok(Self {
            conn,
            key: format!("{prefix}:lease:{source}"),
            fence_key: format!("{prefix}:fence:{source}"),
            ttl,
        })
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Tries to take the lease. `None` when someone else holds it.
    pub async fn try_acquire(&self, holder: &str) -> Result<Option<Lease>, LeaseError> {
        let mut conn = self.conn.clone();
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
    }

    /// Extends the lease; `false` when it is no longer ours (expired and taken, or deleted).
    pub async fn renew(&self, lease: &Lease) -> Result<bool, LeaseError> {
        let mut conn = self.conn.clone();
        let extended: i64 = Script::new(RENEW)
            .key(&self.key)
            .arg(&lease.value)
            .arg(self.ttl.as_millis() as u64)
            .invoke_async(&mut conn)
            .await?;
        Ok(extended == 1)
    }

    /// Gives the lease up so a standby takes over at once instead of after the TTL.
    pub async fn release(&self, lease: &Lease) -> Result<bool, LeaseError> {
        let mut conn = self.conn.clone();
        let deleted: i64 = Script::new(RELEASE)
            .key(&self.key)
            .arg(&lease.value)
            .invoke_async(&mut conn)
            .await?;
        Ok(deleted == 1)
    }

    /// Who holds the lease now (`<holder> <fence>`), for status and metrics.
    pub async fn holder(&self) -> Result<Option<String>, LeaseError> {
        let mut conn = self.conn.clone();
        Ok(redis::cmd("GET")
            .arg(&self.key)
            .query_async(&mut conn)
            .await?)
    }
}
