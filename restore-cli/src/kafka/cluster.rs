//! The cluster a reset talks to: connecting with the options' TLS/SASL, and running the
//! blocking Kafka client off the async runtime.

use std::sync::Arc;

use mc_core::kafka::KafkaClient;

use super::{KafkaResetOptions, KafkaRestoreError};

/// A client of `options.bootstrap`.
pub(super) async fn connect(
    options: &KafkaResetOptions,
) -> Result<Arc<KafkaClient>, KafkaRestoreError> {
    let bootstrap = options.bootstrap.clone();
    let timeout = options.timeout;
    let security = options.security.clone();
    blocking(move || {
        Ok(Arc::new(KafkaClient::connect_secured(
            &bootstrap, &security, timeout,
        )?))
    })
    .await
}

/// Runs `f` (blocking Kafka calls) on a blocking thread.
pub(super) async fn blocking<R: Send + 'static>(
    f: impl FnOnce() -> Result<R, KafkaRestoreError> + Send + 'static,
) -> Result<R, KafkaRestoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| KafkaRestoreError::Task(e.to_string()))?
}
