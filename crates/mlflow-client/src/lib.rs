//! A typed client for the MLflow REST API 2.0 (tested against MLflow 3.17.2).
//!
//! - tracking: [`MlflowClient::get_or_create_experiment`], [`MlflowClient::create_run`],
//!   [`MlflowClient::log_batch`], [`MlflowClient::update_run`], [`MlflowClient::get_run`],
//!   [`MlflowClient::search_runs`];
//! - artifacts through the server's `mlflow-artifacts` proxy (`mlflow server
//!   --serve-artifacts`): [`MlflowClient::upload_artifact`],
//!   [`MlflowClient::download_artifact`], [`MlflowClient::list_artifacts`];
//! - registry: registered models, model versions, aliases and the legacy stages.

mod types;

pub use types::*;

use reqwest::{Method, StatusCode};

use serde::de::DeserializeOwned;
use serde_json::{Value, json};

/// Errors of the MLflow client.
#[derive(Debug, thiserror::Error)]
pub enum MlflowError {
    /// The server could not be reached or the connection broke: retryable.
    #[error("MLflow unreachable: {0}")]
    Transport(#[source] reqwest::Error),
    /// The server answered with an error.
    #[error("MLflow {status}: {code}: {message}")]
    Api {
        status: u16,
        code: String,
        message: String,
    },
    /// The answer was not what the API documents.
    #[error("unexpected MLflow response: {0}")]
    Decode(String),
}

impl MlflowError {
    pub fn is_retryable(&self) -> bool {
        match self {
            MlflowError::Transport(_) => true,
            MlflowError::Api { status, .. } => *status >= 500 || *status == 429,
            MlflowError::Decode(_) => false,
        }
    }

    /// Whether the thing asked for does not exist (run, model, version, alias).
    pub fn is_not_found(&self) -> bool {
        match self {
            MlflowError::Api {
                status,
                code,
                message,
                ..
            } => {
                *status == 404
                    || code == "RESOURCE_DOES_NOT_EXIST"
                    || (code == "INVALID_PARAMETER_VALUE" && message.contains("not found"))
            }
            _ => false,
        }
    }

    fn is_already_exists(&self) -> bool {
        matches!(self, MlflowError::Api { code, .. } if code == "RESOURCE_ALREADY_EXISTS")
    }
}

/// The client; cheap to clone (one connection pool).
#[derive(Debug, Clone)]
pub struct MlflowClient {
    base: String,
    http: reqwest::Client,
}

impl MlflowClient {
    /// `base`: the tracking server, e.g. `http://127.0.0.1:5500`.
    pub fn new(base: &str) -> Result<Self, MlflowError> {
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(60))
            .build()
            .map_err(MlflowError::Transport)?;
        Ok(Self {
            base: base.trim_end_matches('/').to_owned(),
            http,
        })
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        endpoint: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<T, MlflowError> {
        let mut req = self
            .http
            .request(method, format!("{}/api/2.0/mlflow/{endpoint}", self.base))
            .query(query);
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.map_err(MlflowError::Transport)?;
        decode(resp).await
    }

    async fn post<T: DeserializeOwned>(
        &self,
        endpoint: &str,
        body: Value,
    ) -> Result<T, MlflowError> {
        self.call(Method::POST, endpoint, &[], Some(&body)).await
    }

    async fn get<T: DeserializeOwned>(
        &self,
        endpoint: &str,
        query: &[(&str, &str)],
    ) -> Result<T, MlflowError> {
        self.call(Method::GET, endpoint, query, None).await
    }

    // ---- experiments and runs ----

    /// The id of the experiment `name`, created if missing.
    pub async fn get_or_create_experiment(&self, name: &str) -> Result<String, MlflowError> {
        match self
            .get::<ExperimentEnvelope>("experiments/get-by-name", &[("experiment_name", name)])
            .await
        {
            Ok(e) => return Ok(e.experiment.experiment_id),
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e),
        }
        match self
            .post::<Created>("experiments/create", json!({ "name": name }))
            .await
        {
            Ok(c) => Ok(c.experiment_id),
            // Created concurrently by someone else.
            Err(e) if e.is_already_exists() => Ok(self
                .get::<ExperimentEnvelope>("experiments/get-by-name", &[("experiment_name", name)])
                .await?
                .experiment
                .experiment_id),
            Err(e) => Err(e),
        }
    }

    pub async fn create_run(
        &self,
        experiment_id: &str,
        run_name: &str,
        tags: &[Tag],
    ) -> Result<RunInfo, MlflowError> {
        let r: RunEnvelope = self
            .post(
                "runs/create",
                json!({
                    "experiment_id": experiment_id,
                    "run_name": run_name,
                    "start_time": now_ms(),
                    "tags": tags,
                }),
            )
            .await?;
        Ok(r.run.info)
    }

    /// Logs metrics, params and tags. MLflow takes at most 1000 items per request, of which
    /// at most 100 params and 100 tags: larger batches are split here.
    pub async fn log_batch(
        &self,
        run_id: &str,
        metrics: &[Metric],
        params: &[Param],
        tags: &[Tag],
    ) -> Result<(), MlflowError> {
        const METRICS: usize = 800;
        const PARAMS: usize = 100;
        const TAGS: usize = 100;
        let chunks = metrics
            .len()
            .div_ceil(METRICS)
            .max(params.len().div_ceil(PARAMS))
            .max(tags.len().div_ceil(TAGS))
            .max(1);
        let part = |len: usize, per: usize, i: usize| (i * per).min(len)..((i + 1) * per).min(len);
        for i in 0..chunks {
            let _: Value = self
                .post(
                    "runs/log-batch",
                    json!({
                        "run_id": run_id,
                        "metrics": &metrics[part(metrics.len(), METRICS, i)],
                        "params": &params[part(params.len(), PARAMS, i)],
                        "tags": &tags[part(tags.len(), TAGS, i)],
                    }),
                )
                .await?;
        }
        Ok(())
    }

    /// Sets a run's status (and its end time when it is terminal).
    pub async fn update_run(
        &self,
        run_id: &str,
        status: RunStatus,
    ) -> Result<RunInfo, MlflowError> {
        let mut body = json!({ "run_id": run_id, "status": status });
        if status != RunStatus::Running {
            body["end_time"] = json!(now_ms());
        }
        let r: RunInfoEnvelope = self.post("runs/update", body).await?;
        Ok(r.run_info)
    }

    pub async fn get_run(&self, run_id: &str) -> Result<Run, MlflowError> {
        let r: RunEnvelope = self.get("runs/get", &[("run_id", run_id)]).await?;
        Ok(r.run)
    }

    /// Runs of the experiments matching `filter` (MLflow search syntax, may be empty),
    /// newest first.
    pub async fn search_runs(
        &self,
        experiment_ids: &[&str],
        filter: &str,
        max_results: u32,
    ) -> Result<Vec<Run>, MlflowError> {
        let r: RunsPage = self
            .post(
                "runs/search",
                json!({
                    "experiment_ids": experiment_ids,
                    "filter": filter,
                    "max_results": max_results,
                    "order_by": ["attributes.start_time DESC"],
                }),
            )
            .await?;
        Ok(r.runs)
    }

    // ---- artifacts (mlflow-artifacts proxy) ----

    fn artifact_url(&self, artifact_uri: &str, path: &str) -> Result<String, MlflowError> {
        let rest = artifact_uri
            .strip_prefix("mlflow-artifacts:")
            .ok_or_else(|| {
                MlflowError::Decode(format!(
                    "artifact URI {artifact_uri:?} is not served by the tracking server (start it with --serve-artifacts)"
                ))
            })?
            .trim_start_matches('/');
        let path = path.trim_start_matches('/');
        let full = if path.is_empty() {
            rest.to_owned()
        } else {
            format!("{rest}/{path}")
        };
        Ok(format!(
            "{}/api/2.0/mlflow-artifacts/artifacts/{full}",
            self.base
        ))
    }

    /// Uploads `bytes` as `path` under `artifact_uri` (a run's `artifact_uri`).
    pub async fn upload_artifact(
        &self,
        artifact_uri: &str,
        path: &str,
        bytes: Vec<u8>,
    ) -> Result<(), MlflowError> {
        let resp = self
            .http
            .put(self.artifact_url(artifact_uri, path)?)
            .body(bytes)
            .send()
            .await
            .map_err(MlflowError::Transport)?;
        let _: Value = decode(resp).await?;
        Ok(())
    }

    /// Downloads `path` under `artifact_uri` (a run's `artifact_uri` or a version's `source`).
    pub async fn download_artifact(
        &self,
        artifact_uri: &str,
        path: &str,
    ) -> Result<Vec<u8>, MlflowError> {
        let resp = self
            .http
            .get(self.artifact_url(artifact_uri, path)?)
            .send()
            .await
            .map_err(MlflowError::Transport)?;
        if !resp.status().is_success() {
            return Err(api_error(resp).await);
        }
        Ok(resp.bytes().await.map_err(MlflowError::Transport)?.to_vec())
    }

    /// The files and folders directly under `path` of `artifact_uri`, with their paths
    /// relative to `artifact_uri`.
    pub async fn list_artifacts(
        &self,
        artifact_uri: &str,
        path: &str,
    ) -> Result<Vec<FileInfo>, MlflowError> {
        let root = self.artifact_url(artifact_uri, "")?;
        let prefix = format!("{}/api/2.0/mlflow-artifacts/artifacts/", self.base);
        let rel = root.strip_prefix(&prefix).unwrap_or_default();
        let full = [rel, path.trim_matches('/')]
            .iter()
            .filter(|s| !s.is_empty())
            .copied()
            .collect::<Vec<_>>()
            .join("/");
        let resp = self
            .http
            .get(format!("{}/api/2.0/mlflow-artifacts/artifacts", self.base))
            .query(&[("path", full.as_str())])
            .send()
            .await
            .map_err(MlflowError::Transport)?;
        let r: FilesPage = decode(resp).await?;
        // The proxy answers names relative to `path`; like MLflow's own listing, return
        // paths relative to the artifact root.
        let dir = path.trim_matches('/');
        Ok(r.files
            .into_iter()
            .map(|f| FileInfo {
                path: if dir.is_empty() {
                    f.path
                } else {
                    format!("{dir}/{}", f.path)
                },
                ..f
            })
            .collect())
    }

    // ---- registry ----

    /// Creates the registered model unless it exists.
    pub async fn ensure_registered_model(
        &self,
        name: &str,
        description: &str,
    ) -> Result<(), MlflowError> {
        match self
            .post::<Value>(
                "registered-models/create",
                json!({ "name": name, "description": description }),
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.is_already_exists() => Ok(()),
            Err(e) => Err(e),
        }
    }

    pub async fn get_registered_model(&self, name: &str) -> Result<RegisteredModel, MlflowError> {
        let r: RegisteredModelEnvelope =
            self.get("registered-models/get", &[("name", name)]).await?;
        Ok(r.registered_model)
    }

    pub async fn create_model_version(
        &self,
        name: &str,
        source: &str,
        run_id: &str,
        tags: &[Tag],
    ) -> Result<ModelVersion, MlflowError> {
        let r: ModelVersionEnvelope = self
            .post(
                "model-versions/create",
                json!({ "name": name, "source": source, "run_id": run_id, "tags": tags }),
            )
            .await?;
        Ok(r.model_version)
    }

    pub async fn get_model_version(
        &self,
        name: &str,
        version: &str,
    ) -> Result<ModelVersion, MlflowError> {
        let r: ModelVersionEnvelope = self
            .get(
                "model-versions/get",
                &[("name", name), ("version", version)],
            )
            .await?;
        Ok(r.model_version)
    }

    /// Every version of the registered model `name` (up to `max_results`), newest first.
    pub async fn search_model_versions(
        &self,
        name: &str,
        max_results: u32,
    ) -> Result<Vec<ModelVersion>, MlflowError> {
        let filter = format!("name='{}'", name.replace('\'', "\\'"));
        let max = max_results.to_string();
        let r: ModelVersionsPage = self
            .get(
                "model-versions/search",
                &[("filter", filter.as_str()), ("max_results", max.as_str())],
            )
            .await?;
        let mut versions = r.model_versions;
        versions.sort_by_key(|v| std::cmp::Reverse(v.version.parse::<u64>().unwrap_or(0)));
        Ok(versions)
    }

    pub async fn set_alias(
        &self,
        name: &str,
        alias: &str,
        version: &str,
    ) -> Result<(), MlflowError> {
        let _: Value = self
            .post(
                "registered-models/alias",
                json!({ "name": name, "alias": alias, "version": version }),
            )
            .await?;
        Ok(())
    }

    pub async fn delete_alias(&self, name: &str, alias: &str) -> Result<(), MlflowError> {
        let _: Value = self
            .call(
                Method::DELETE,
                "registered-models/alias",
                &[],
                Some(&json!({ "name": name, "alias": alias })),
            )
            .await?;
        Ok(())
    }

    /// The version an alias points to; `None` if the model or the alias does not exist.
    pub async fn get_by_alias(
        &self,
        name: &str,
        alias: &str,
    ) -> Result<Option<ModelVersion>, MlflowError> {
        match self
            .get::<ModelVersionEnvelope>(
                "registered-models/alias",
                &[("name", name), ("alias", alias)],
            )
            .await
        {
            Ok(r) => Ok(Some(r.model_version)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Moves a version to a legacy stage (for older tooling; aliases are the truth here).
    pub async fn transition_stage(
        &self,
        name: &str,
        version: &str,
        stage: Stage,
        archive_existing_versions: bool,
    ) -> Result<ModelVersion, MlflowError> {
        let r: ModelVersionEnvelope = self
            .post(
                "model-versions/transition-stage",
                json!({
                    "name": name,
                    "version": version,
                    "stage": stage,
                    "archive_existing_versions": archive_existing_versions,
                }),
            )
            .await?;
        Ok(r.model_version)
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

async fn api_error(resp: reqwest::Response) -> MlflowError {
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    let parsed: Option<ApiErrorBody> = serde_json::from_str(&text).ok();
    match parsed {
        Some(b) => MlflowError::Api {
            status: status.as_u16(),
            code: b.error_code,
            message: b.message,
        },
        None => MlflowError::Api {
            status: status.as_u16(),
            code: status.canonical_reason().unwrap_or("error").to_owned(),
            message: text.chars().take(500).collect(),
        },
    }
}

async fn decode<T: DeserializeOwned>(resp: reqwest::Response) -> Result<T, MlflowError> {
    if !resp.status().is_success() {
        return Err(api_error(resp).await);
    }
    let status = resp.status();
    let text = resp.text().await.map_err(MlflowError::Transport)?;
    let text = if text.trim().is_empty() || status == StatusCode::NO_CONTENT {
        "{}".to_owned()
    } else {
        text
    };
    serde_json::from_str(&text).map_err(|e| {
        MlflowError::Decode(format!(
            "{e}: {}",
            text.chars().take(300).collect::<String>()
        ))
    })
}

#[derive(serde::Deserialize)]
struct ApiErrorBody {
    error_code: String,
    #[serde(default)]
    message: String,
}

/// Serializes a value for a param or tag.
pub fn param(key: &str, value: impl ToString) -> Param {
    Param {
        key: key.to_owned(),
        value: value.to_string(),
    }
}

pub fn tag(key: &str, value: impl ToString) -> Tag {
    Tag {
        key: key.to_owned(),
        value: value.to_string(),
    }
}

/// A metric at `step`, timestamped now.
pub fn metric(key: &str, value: f64, step: i64) -> Metric {
    Metric {
        key: key.to_owned(),
        value,
        timestamp: now_ms(),
        step,
    }
}
