//! The pipeline steps with their I/O: PostgreSQL, MLflow tracking, artifacts and registry,
//! one module per step ([`extract`], [`validate`], [`train`], [`evaluate`]). Each step is an
//! MLflow run tagged `airq.step`; the steps find each other's outputs through MLflow, so each
//! can run in its own process or container. A step that fails leaves its run FAILED with the
//! reason in the tag `airq.error`, never RUNNING ([`Pipeline::close`]).

mod evaluate;
mod extract;
mod train;
mod validate;

use std::collections::BTreeMap;

use airq_features::{Locations, Network, Series};
use airq_model::Artifact;
use anyhow::Context;
use mlflow_client::{MlflowClient, Run, RunInfo, RunStatus, tag};

use crate::config::Settings;
use crate::snapshot;

pub use evaluate::{Action, Decision, decide};

pub const STAGING: &str = "staging";
pub const PRODUCTION: &str = "production";
const MODEL_FILE: &str = "model.json";
/// MLflow keeps tag values up to 8,000 characters; a reason longer than this is cut.
const MAX_REASON: usize = 4000;

pub struct Pipeline {
    pub settings: Settings,
    pub mlflow: MlflowClient,
    experiment: String,
}

impl Pipeline {
    pub async fn new(settings: Settings) -> anyhow::Result<Self> {
        let mlflow = MlflowClient::new(&settings.mlflow.url)?;
        let experiment = mlflow
            .get_or_create_experiment(&settings.mlflow.experiment)
            .await
            .with_context(|| format!("MLflow experiment at {}", settings.mlflow.url))?;
        Ok(Self {
            settings,
            mlflow,
            experiment,
        })
    }

    async fn start(
        &self,
        step: &str,
        name: &str,
        extra: &[(&str, String)],
    ) -> anyhow::Result<RunInfo> {
        let mut tags = vec![tag("airq.step", step)];
        tags.extend(extra.iter().map(|(k, v)| tag(k, v)));
        Ok(self
            .mlflow
            .create_run(&self.experiment, name, &tags)
            .await?)
    }

    /// The newest finished run of `step` (and `extra` filter), or the given one.
    async fn find(&self, step: &str, extra: &str, given: Option<&str>) -> anyhow::Result<Run> {
        if let Some(id) = given {
            return Ok(self.mlflow.get_run(id).await?);
        }
        let filter =
            format!("tags.`airq.step` = '{step}' and attributes.status = 'FINISHED'{extra}");
        self.mlflow
            .search_runs(&[&self.experiment], &filter, 1)
            .await?
            .into_iter()
            .next()
            .with_context(|| {
                format!(
                    "no finished {step} run{extra} in experiment {}",
                    self.settings.mlflow.experiment
                )
            })
    }

    async fn load_snapshot(
        &self,
        run: &Run,
    ) -> anyhow::Result<(Vec<u8>, BTreeMap<String, Series>)> {
        let bytes = self
            .mlflow
            .download_artifact(&run.info.artifact_uri, snapshot::ARTIFACT)
            .await?;
        let data = snapshot::from_csv(&bytes)?;
        Ok((bytes, data))
    }

    /// The snapshot's series and its sensors' locations (none for a snapshot extracted
    /// before locations were: no neighbour features then).
    async fn load_network(&self, run: &Run) -> anyhow::Result<Network> {
        let (_, series) = self.load_snapshot(run).await?;
        let locations = match self
            .mlflow
            .download_artifact(&run.info.artifact_uri, snapshot::LOCATIONS)
            .await
        {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .with_context(|| format!("{} of run {}", snapshot::LOCATIONS, run.info.run_id))?,
            Err(e) => {
                tracing::warn!(run = %run.info.run_id, error = %e, "the snapshot has no sensor locations: no neighbour features");
                Locations::new()
            }
        };
        Ok(Network { series, locations })
    }

    /// Ends a step's run: FINISHED if `result` is a success, else FAILED with the reason
    /// (the error and its causes) in the tag `airq.error`. Returns `result`.
    async fn close<T>(&self, run: &RunInfo, result: anyhow::Result<T>) -> anyhow::Result<T> {
        let status = match &result {
            Ok(_) => RunStatus::Finished,
            Err(e) => {
                let reason: String = format!("{e:#}").chars().take(MAX_REASON).collect();
                // Best effort: the step's own error is what the caller must see.
                if let Err(tag_err) = self
                    .mlflow
                    .log_batch(&run.run_id, &[], &[], &[tag("airq.error", reason)])
                    .await
                {
                    tracing::warn!(run = %run.run_id, error = %tag_err, "could not record the failure");
                }
                RunStatus::Failed
            }
        };
        if let Err(e) = self.mlflow.update_run(&run.run_id, status).await {
            return match result {
                Ok(_) => Err(e).context("closing the run"),
                Err(step) => {
                    tracing::warn!(run = %run.run_id, error = %e, "could not mark the run FAILED");
                    Err(step)
                }
            };
        }
        result
    }

    async fn load_version(&self, alias: &str) -> anyhow::Result<Option<(String, Artifact)>> {
        let Some(v) = self
            .mlflow
            .get_by_alias(&self.settings.mlflow.model, alias)
            .await?
        else {
            return Ok(None);
        };
        let artifact = self.load_artifact(&v).await?;
        Ok(Some((v.version, artifact)))
    }

    /// The model artifact of a registered version.
    async fn load_artifact(&self, v: &mlflow_client::ModelVersion) -> anyhow::Result<Artifact> {
        let bytes = self.mlflow.download_artifact(&v.source, MODEL_FILE).await?;
        Ok(Artifact::from_json(&bytes)?)
    }
}
