//! predict-api: next-hour PM2.5 per sensor over HTTP (axum), from the production model of
//! the MLflow registry.
//!
//! - [`forecast`]: pure: readings to hourly series (as the trainer extracts them) to a forecast;
//! - [`registry`]: the loaded model, swapped atomically when the alias moves;
//! - [`api`]: routes, validation (422 with field and reason), errors, metrics;
//! - [`cache`]: each sensor's stored series, reused for a second;
//! - [`openapi`]: `/openapi.json` and the `/docs` page;
//! - [`record`]: served forecasts into the `forecasts` table, off the request path;
//! - [`catalog`]: `GET /catalog`, the data catalog with its freshness read live.

pub mod api;
pub mod cache;
pub mod catalog;
pub mod config;
pub mod forecast;
pub mod metrics;
pub mod openapi;
pub mod record;
pub mod registry;

use std::sync::Arc;
use std::time::Duration;

use std::future::IntoFuture;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

/// Serves until `shutdown` on an already bound listener (tests bind port 0); requests in
/// flight are finished.
pub async fn serve(
    settings: config::Settings,
    listener: tokio::net::TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let pool = settings.database.connect()?;
    let client = mlflow_client::MlflowClient::new(&settings.mlflow.url)?;
    let current = Arc::new(registry::Current::default());
    if let Err(e) = registry::refresh(
        &client,
        &settings.mlflow.model,
        &settings.mlflow.alias,
        &current,
    )
    .await
    {
        tracing::warn!(error = %e, "no model at start; /ready answers 503 until one is loaded");
    }
    let catalog = catalog::CatalogSource {
        settings: settings.catalog.clone(),
        mlflow: client.clone(),
        model: settings.mlflow.model.clone(),
    };
    let poller = tokio::spawn(registry::poll(
        client,
        settings.mlflow.model.clone(),
        settings.mlflow.alias.clone(),
        current.clone(),
        Duration::from_secs(settings.mlflow.poll_secs.max(1)),
        shutdown.clone(),
    ));
    let mut state = api::AppState::new(pool.clone(), current, settings.server.clone())
        .with_catalog(Arc::new(catalog));
    let mut writer = None;
    if settings.forecasts.record {
        let (recorder, task) = record::Recorder::spawn(pool, settings.forecasts.queue);
        state = state.with_recorder(recorder);
        writer = Some(task);
    }
    let state = Arc::new(state);
    tracing::info!(addr = %listener.local_addr()?, "predict-api listening");
    let server = axum::serve(listener, api::router(state))
        .with_graceful_shutdown(shutdown.clone().cancelled_owned())
        .into_future();
    tokio::pin!(server);
    // Requests in flight get `drain_timeout_secs` after the shutdown signal, not forever.
    let drain = Duration::from_secs(settings.server.drain_timeout_secs);
    tokio::select! {
        r = &mut server => r.context("serving")?,
        _ = async { shutdown.cancelled().await; tokio::time::sleep(drain).await } => {
            tracing::warn!(drain_secs = drain.as_secs(), "requests still in flight after the drain timeout; exiting");
        }
    }
    shutdown.cancel();
    let _ = poller.await;
    // The router (and with it the recorder) is gone: the writer ends after the queued records.
    if let Some(w) = writer {
        let _ = tokio::time::timeout(Duration::from_secs(5), w).await;
    }
    Ok(())
}
