//! The capture lease's metrics: whether this agent holds it, its fencing token, and how often it
//! was acquired (`mc_lease_*`).

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Debug, Default)]
pub struct LeaseMetrics {
    /// 1 while this agent holds the capture lease (always 1 without a lease).
    pub held: Gauge,
    /// Fencing token of the current or last lease.
    pub fence: Gauge<u64, std::sync::atomic::AtomicU64>,
    /// Times this agent acquired the lease (a fast-growing count means flapping).
    pub acquisitions: Counter,
}

impl LeaseMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "mc_lease_held",
            "1 while this agent holds the capture lease (always 1 without a lease)",
            self.held.clone(),
        );
        registry.register(
            "mc_lease_fence",
            "Fencing token of this agent's current or last lease",
            self.fence.clone(),
        );
        registry.register(
            "mc_lease_acquisitions",
            "Times this agent acquired the capture lease (fast growth means flapping)",
            self.acquisitions.clone(),
        );
    }

    /// This agent acquired the lease with fencing token `fence`.
    pub fn acquired(&self, fence: u64) {
        self.held.set(1);
        self.fence.set(fence);
        self.acquisitions.inc();
    }

    pub fn is_held(&self) -> bool {
        self.held.get() == 1
    }
}
