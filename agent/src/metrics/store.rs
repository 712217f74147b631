//! The repository's store as its logging layer sees it ([`StoreHealth`], kept by mc-core's
//! storage layers): `mc_repository_up`, and `mc_store_errors_total` by operation and kind.

use std::fmt;
use std::sync::Arc;

use mc_core::storage::health::StoreState;
use mc_core::storage::StoreHealth;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::computed::{describe, Computed};

/// Registers the store's metrics, read from `health` at each scrape.
pub fn register(health: &Arc<StoreHealth>, registry: &mut Registry) {
    let h = health.clone();
    registry.register(
        "mc_repository_up",
        "1 while the repository's object store answers (the newest attempt got an answer), 0 while it fails or before it first answered",
        Computed::new(move || u8::from(h.state() == StoreState::Up) as u32),
    );
    registry.register_collector(Box::new(StoreErrors(health.clone())));
}

/// `mc_store_errors_total{op, kind}`: one series per pair seen, its `# HELP` and `# TYPE` always.
#[derive(Debug)]
struct StoreErrors(Arc<StoreHealth>);

impl Collector for StoreErrors {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let mut family = describe(
            &mut encoder,
            "mc_store_errors",
            "Failed or timed-out attempts on the object store, by operation and kind (each is retried)",
            MetricType::Counter,
        )?;
        for ((op, kind), n) in self.0.errors() {
            ConstCounter::new(n).encode(family.encode_family(&[("op", op), ("kind", kind)])?)?;
        }
        Ok(())
    }
}
