//! Prometheus metrics: the recorder every crate's `metrics` handles report to, and the
//! listener that serves them (`GET /metrics`, on its own address, `--metrics-listen`). The
//! recorder is process-global: [`install`] runs once, in `tidings serve`, before the engine
//! starts (handles made before it would be no-ops). docs/operations.md lists every metric.

use std::time::Duration;

use anyhow::Context;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Buckets of the latency histograms (every `*_seconds` one), in seconds. Below 5 ms they are
/// close together: a PUBACK or a delivery on an unloaded server takes a fraction of a
/// millisecond plus an fsync, and the tail that matters sits between 1 and 5 ms.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.00075, 0.001, 0.0015, 0.002, 0.003, 0.004, 0.005, 0.0075, 0.01,
    0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Buckets of the size histograms (devices per fan-out, ops per store transaction).
pub const SIZE_BUCKETS: &[f64] = &[
    0.0, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0, 4096.0, 8192.0,
];
/// Process metrics (CPU, memory, file descriptors, threads) are named `tidings_process_*`.
const PROCESS_PREFIX: &str = "tidings_";
/// How often histogram samples are folded into their buckets between scrapes.
const UPKEEP: Duration = Duration::from_secs(5);

/// What the metrics route needs.
#[derive(Clone)]
pub struct Metrics {
    handle: PrometheusHandle,
    process: metrics_process::Collector,
}

/// Installs the process-global recorder (histograms as Prometheus histograms with fixed
/// buckets, so `histogram_quantile` works across nodes) and makes every crate's handles.
pub fn install() -> anyhow::Result<Metrics> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)?
        .set_buckets_for_metric(
            Matcher::Full(tidings_engine::metrics::FANOUT_SESSIONS.into()),
            SIZE_BUCKETS,
        )?
        .set_buckets_for_metric(
            Matcher::Full(tidings_store::metrics::BATCH_OPS.into()),
            SIZE_BUCKETS,
        )?
        .install_recorder()
        .context("installing the metrics recorder")?;
    tidings_engine::metrics::register();
    tidings_gateway::metrics::register();
    tidings_store::metrics::register();
    tidings_bus::metrics::register();
    tidings_push::metrics::register();
    tidings_hooks::metrics::register();
    let process = metrics_process::Collector::new(PROCESS_PREFIX);
    process.describe();
    process.collect();
    let _ = INSTALLED.set(handle.clone());
    Ok(Metrics { handle, process })
}

/// The recorder [`install`] installed in this process, if it did.
static INSTALLED: std::sync::OnceLock<PrometheusHandle> = std::sync::OnceLock::new();

/// The metrics rendered, for the admin console's overview: `None` unless [`install`] ran.
pub fn source() -> Option<tidings_gateway::MetricsSource> {
    let handle = INSTALLED.get()?.clone();
    Some(tidings_gateway::MetricsSource(std::sync::Arc::new(
        move || handle.render(),
    )))
}

/// Serves `GET /metrics` on `listener` until `shutdown` completes, and folds histogram samples
/// into their buckets every few seconds meanwhile.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Metrics,
    engine: tidings_engine::Engine,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let upkeep = {
        let handle = metrics.handle.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(UPKEEP);
            loop {
                tick.tick().await;
                handle.run_upkeep();
            }
        })
    };
    let router = axum::Router::new()
        .route("/metrics", axum::routing::get(scrape))
        .with_state((metrics, engine));
    let served = axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await;
    upkeep.abort();
    served
}

async fn scrape(State((metrics, engine)): State<(Metrics, tidings_engine::Engine)>) -> Response {
    engine.observe_metrics();
    metrics.process.collect();
    let body = metrics.handle.render();
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response()
}
