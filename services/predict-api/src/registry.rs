//! The production model, loaded from the MLflow registry and swapped atomically when its
//! alias moves. A request clones the `Arc` once, so it finishes on the model it started with.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use airq_model::{Anchors, Artifact};
use mlflow_client::MlflowClient;
use tokio_util::sync::CancellationToken;

#[derive(Debug)]
pub struct Loaded {
    pub model_name: String,
    pub version: String,
    pub artifact: Artifact,
    /// The artifact's models (one per trained horizon) laid out for prediction.
    pub anchors: Anchors,
}

#[derive(Debug, Default)]
pub struct Current(RwLock<Option<Arc<Loaded>>>);

impl Current {
    pub fn get(&self) -> Option<Arc<Loaded>> {
        self.0
            .read()
            .map(|g| g.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    fn set(&self, m: Arc<Loaded>) {
        match self.0.write() {
            Ok(mut g) => *g = Some(m),
            Err(p) => *p.into_inner() = Some(m),
        }
    }
}

/// Loads the version `alias` points to, unless it is the one already loaded.
/// Returns whether the model changed.
pub async fn refresh(
    client: &MlflowClient,
    model: &str,
    alias: &str,
    current: &Current,
) -> anyhow::Result<bool> {
    let Some(v) = client.get_by_alias(model, alias).await? else {
        return Ok(false);
    };
    if current.get().is_some_and(|m| m.version == v.version) {
        return Ok(false);
    }
    let bytes = client.download_artifact(&v.source, "model.json").await?;
    let artifact = Artifact::from_json(&bytes)?;
    tracing::info!(model, version = %v.version, kind = %artifact.name, "model loaded");
    current.set(Arc::new(Loaded {
        model_name: model.to_owned(),
        version: v.version,
        anchors: artifact.anchors(),
        artifact,
    }));
    Ok(true)
}

/// Polls the registry every `every` until `shutdown`; errors are logged and retried.
pub async fn poll(
    client: MlflowClient,
    model: String,
    alias: String,
    current: Arc<Current>,
    every: Duration,
    shutdown: CancellationToken,
) {
    loop {
        if let Err(e) = refresh(&client, &model, &alias, &current).await {
            tracing::warn!(error = %e, "registry poll failed; keeping the current model");
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}
