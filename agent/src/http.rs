//! The agent's HTTP endpoint: `/metrics` (every part's registered metrics, encoded by
//! prometheus-client in the Prometheus text format), `/healthz` (the process is alive),
//! `/readyz` (capture is connected and tailing; otherwise what it waits for), `/status` (JSON for
//! people and scripts, with the store's state and since when).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use prometheus_client::registry::Registry;
use tokio::sync::watch;

use crate::metrics::{self, Metrics};

#[derive(Clone)]
struct AppState {
    metrics: Arc<Metrics>,
    /// `metrics`' parts, registered once, labelled with the source id.
    registry: Arc<Registry>,
    source: Arc<str>,
}

/// The routes, for serving or testing.
pub fn router(metrics: Arc<Metrics>, source: &str) -> Router {
    let state = AppState {
        registry: Arc::new(metrics.registry(source)),
        metrics,
        source: source.into(),
    };
    Router::new()
        .route("/metrics", get(metrics_text))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .route("/status", get(status))
        .with_state(state)
}

/// Binds `listen` and serves until `shutdown` turns true. Returns the bound address through
/// `bound` (useful with port 0).
pub async fn serve(
    listen: SocketAddr,
    metrics: Arc<Metrics>,
    source: String,
    mut shutdown: watch::Receiver<bool>,
    bound: tokio::sync::oneshot::Sender<SocketAddr>,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let _ = bound.send(listener.local_addr()?);
    axum::serve(listener, router(metrics, &source))
        .with_graceful_shutdown(async move {
            let _ = shutdown.wait_for(|stop| *stop).await;
        })
        .await
}

async fn metrics_text(State(s): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, metrics::CONTENT_TYPE)],
        metrics::encode(&s.registry),
    )
}

async fn ready(State(s): State<AppState>) -> impl IntoResponse {
    if s.metrics.capture.is_capturing() {
        return (StatusCode::OK, "capturing\n".to_owned());
    }
    let waiting = s.metrics.waiting_for.lock().ok().and_then(|w| w.clone());
    let reason = match waiting {
        Some(what) => format!("not ready: waiting for {what}\n"),
        None => "not capturing (connecting, standing by or stopping)\n".to_owned(),
    };
    (StatusCode::SERVICE_UNAVAILABLE, reason)
}

async fn status(State(s): State<AppState>) -> impl IntoResponse {
    Json(serde_json::json!({
        "source": &*s.source,
        "capture": s.metrics.status(),
        "store": s.metrics.store_status(),
    }))
}
