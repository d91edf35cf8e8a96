//! The API's data types (the subset airq uses), as the server sends them.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tag {
    pub key: String,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Param {
    pub key: String,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metric {
    pub key: String,
    pub value: f64,
    pub timestamp: i64,
    #[serde(default)]
    pub step: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum RunStatus {
    Running,
    Scheduled,
    Finished,
    Failed,
    Killed,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct RunInfo {
    pub run_id: String,
    pub experiment_id: String,
    #[serde(default)]
    pub run_name: String,
    pub status: RunStatus,
    pub artifact_uri: String,
    #[serde(default)]
    pub start_time: Option<i64>,
    #[serde(default)]
    pub end_time: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
pub struct RunData {
    #[serde(default)]
    pub metrics: Vec<Metric>,
    #[serde(default)]
    pub params: Vec<Param>,
    #[serde(default)]
    pub tags: Vec<Tag>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Run {
    pub info: RunInfo,
    #[serde(default)]
    pub data: RunData,
}

impl Run {
    pub fn metric(&self, key: &str) -> Option<f64> {
        self.data
            .metrics
            .iter()
            .find(|m| m.key == key)
            .map(|m| m.value)
    }

    pub fn param(&self, key: &str) -> Option<&str> {
        self.data
            .params
            .iter()
            .find(|p| p.key == key)
            .map(|p| p.value.as_str())
    }

    pub fn tag(&self, key: &str) -> Option<&str> {
        self.data
            .tags
            .iter()
            .find(|t| t.key == key)
            .map(|t| t.value.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Stage {
    None,
    Staging,
    Production,
    Archived,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Alias {
    pub alias: String,
    pub version: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ModelVersion {
    pub name: String,
    pub version: String,
    #[serde(default)]
    pub source: String,
    #[serde(default)]
    pub run_id: String,
    pub current_stage: Stage,
    #[serde(default)]
    pub aliases: Vec<String>,
    #[serde(default)]
    pub tags: Vec<Tag>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct RegisteredModel {
    pub name: String,
    #[serde(default)]
    pub aliases: Vec<Alias>,
    #[serde(default)]
    pub latest_versions: Vec<ModelVersion>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct FileInfo {
    pub path: String,
    pub is_dir: bool,
    #[serde(default)]
    pub file_size: Option<i64>,
}

// ---- envelopes ----

#[derive(Deserialize)]
pub(crate) struct Created {
    pub experiment_id: String,
}

#[derive(Deserialize)]
pub(crate) struct Experiment {
    pub experiment_id: String,
}

#[derive(Deserialize)]
pub(crate) struct ExperimentEnvelope {
    pub experiment: Experiment,
}

#[derive(Deserialize)]
pub(crate) struct RunEnvelope {
    pub run: Run,
}

#[derive(Deserialize)]
pub(crate) struct RunInfoEnvelope {
    pub run_info: RunInfo,
}

#[derive(Deserialize)]
pub(crate) struct ModelVersionsPage {
    #[serde(default)]
    pub model_versions: Vec<ModelVersion>,
}

#[derive(Deserialize)]
pub(crate) struct RunsPage {
    #[serde(default)]
    pub runs: Vec<Run>,
}

#[derive(Deserialize)]
pub(crate) struct FilesPage {
    #[serde(default)]
    pub files: Vec<FileInfo>,
}

#[derive(Deserialize)]
pub(crate) struct RegisteredModelEnvelope {
    pub registered_model: RegisteredModel,
}

#[derive(Deserialize)]
pub(crate) struct ModelVersionEnvelope {
    pub model_version: ModelVersion,
}
