//! The production model, loaded from the MLflow registry and swapped atomically when its
//! alias moves. A request clones the `Arc` once, so it finishes on the model it started with.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use airq_features::nearest;
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
    /// Each training sensor's nearest others and their weights (the neighbour features').
    pub nearby: HashMap<String, Vec<(String, f64)>>,
}

impl Loaded {
    pub fn new(model_name: &str, version: &str, artifact: Artifact) -> Self {
        let k = artifact.spec.neighbours;
        let nearby = if k == 0 {
            HashMap::new()
        } else {
            artifact
                .locations
                .keys()
                .map(|s| {
                    let near = nearest(s, k, &artifact.locations);
                    (
                        s.clone(),
                        near.into_iter().map(|(id, w)| (id.to_owned(), w)).collect(),
                    )
                })
                .collect()
        };
        Self {
            model_name: model_name.to_owned(),
            version: version.to_owned(),
            anchors: artifact.anchors(),
            nearby,
            artifact,
        }
    }

    /// The sensors whose stored series the neighbour features of `sensor` read.
    pub fn neighbours_of(&self, sensor: &str) -> &[(String, f64)] {
        self.nearby.get(sensor).map_or(&[], Vec::as_slice)
    }
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
    current.set(Arc::new(Loaded::new(model, &v.version, artifact)));
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
