//! Bytes in flight between replay's stages. A queue bounded by its number of entries holds
//! anything from a few KiB to gigabytes, since an oplog entry is anything from 100 B to 16 MiB:
//! 4,096 updates with 60 KiB bodies waiting for the decoder and 2,000 waiting for each worker
//! held ~300 MiB (a restore replaying 2 GB of large updates peaked at 573 MiB RSS,
//! docs/performance.md, "Growth to 16 GB"). A [`ByteBudget`] bounds what a queue holds in bytes.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Bytes that may be queued at once. Cloned handles share the budget.
#[derive(Clone)]
pub struct ByteBudget {
    bytes: Arc<Semaphore>,
    total: u32,
}

/// Bytes of a [`ByteBudget`] held by one queued item; given back when dropped.
pub struct Reserved {
    _bytes: Option<OwnedSemaphorePermit>,
}

impl ByteBudget {
    pub fn new(total: usize) -> Self {
        let total = u32::try_from(total).unwrap_or(u32::MAX).max(1);
        Self {
            bytes: Arc::new(Semaphore::new(total as usize)),
            total,
        }
    }

    /// Waits until `bytes` more fit. An item larger than the whole budget waits for all of it,
    /// and so passes alone.
    pub async fn reserve(&self, bytes: usize) -> Reserved {
        let n = u32::try_from(bytes)
            .unwrap_or(u32::MAX)
            .clamp(1, self.total);
        // The semaphore is never closed, so acquiring only ends by succeeding.
        Reserved {
            _bytes: self.bytes.clone().acquire_many_owned(n).await.ok(),
        }
    }

    /// [`Self::reserve`] from a blocking thread (the segment reader's).
    pub fn reserve_blocking(&self, bytes: usize) -> Reserved {
        futures::executor::block_on(self.reserve(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::ByteBudget;

    #[tokio::test]
    async fn a_full_budget_waits_until_bytes_are_given_back() {
        let budget = ByteBudget::new(100);
        let first = budget.reserve(60).await;
        // 60 + 60 > 100: the second waits...
        let second = budget.reserve(60);
        tokio::pin!(second);
        assert!(futures::poll!(second.as_mut()).is_pending());
        // ...until the first is dropped.
        drop(first);
        let _second = second.await;
        // An item larger than the budget takes all of it, and passes once the rest is free.
        let big = budget.reserve(1000);
        tokio::pin!(big);
        assert!(futures::poll!(big.as_mut()).is_pending());
        drop(_second);
        let _big = big.await;
        assert!(futures::poll!(std::pin::pin!(budget.reserve(0))).is_pending());
    }
}
