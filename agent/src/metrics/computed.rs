//! Two small additions to prometheus-client's metric types: [`Computed`], a gauge whose value is
//! computed at each scrape from state the agent keeps anyway (the RPO from the newest durable
//! entry's wall time, the store's state), and [`describe`], which encodes one metric from a
//! [`Collector`](prometheus_client::collector::Collector) with its help text written the way
//! [`Registry::register`](prometheus_client::registry::Registry::register) writes it.

use std::fmt;

use prometheus_client::encoding::{
    DescriptorEncoder, EncodeGaugeValue, EncodeMetric, MetricEncoder,
};
use prometheus_client::metrics::MetricType;

/// A gauge read when scraped: `value` is called once per scrape.
pub struct Computed<V> {
    value: Box<dyn Fn() -> V + Send + Sync>,
}

impl<V> Computed<V> {
    pub fn new(value: impl Fn() -> V + Send + Sync + 'static) -> Self {
        Self {
            value: Box::new(value),
        }
    }
}

impl<V> fmt::Debug for Computed<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Computed")
    }
}

impl<V: EncodeGaugeValue> EncodeMetric for Computed<V> {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), fmt::Error> {
        encoder.encode_gauge(&(self.value)())
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Gauge
    }
}

/// Writes the `# HELP` and `# TYPE` lines of `name` from a collector and returns the encoder for
/// its samples. `help` is given without its final full stop, as to `Registry::register`, which
/// adds it; a counter's `name` is given without `_total`, which the encoder adds.
pub fn describe<'a>(
    encoder: &'a mut DescriptorEncoder,
    name: &'a str,
    help: &str,
    kind: MetricType,
) -> Result<MetricEncoder<'a>, fmt::Error> {
    encoder.encode_descriptor(name, &format!("{help}."), None, kind)
}
