//! The pipeline steps with their I/O: PostgreSQL, MLflow tracking, artifacts and registry.
//! Each step is an MLflow run tagged `airq.step`; the steps find each other's outputs
//! through MLflow, so each can run in its own process or container.

use std::collections::BTreeMap;

use airq_features::{FeatureSpec, Series, build_dataset};
use airq_model::Artifact;
use airq_model::tree::Binned;
use anyhow::{Context, bail};
use chrono::{DateTime, Duration, Utc};
use indicatif::{ProgressBar, ProgressStyle};
use mlflow_client::{Metric, MlflowClient, Run, RunInfo, RunStatus, Stage, metric, param, tag};

use crate::config::Settings;
use crate::train::{self, Trained};
use crate::{plot, snapshot, validate};

pub const STAGING: &str = "staging";
pub const PRODUCTION: &str = "production";
const MODEL_FILE: &str = "model.json";

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

    /// `extract`: hourly means of `[from, to)` from PostgreSQL into a snapshot artifact.
    pub async fn extract(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> anyhow::Result<String> {
        let pool = self.settings.database.connect()?;
        let data = airq_store::hourly::hourly_series(&pool, from, to, None)
            .await
            .context("reading readings")?;
        let bytes = snapshot::to_csv(&data)?;
        let s = snapshot::summarize(&data, &bytes);
        let run = self
            .start(
                "extract",
                "extract",
                &[("airq.snapshot.sha256", s.sha256.clone())],
            )
            .await?;
        let mut params = vec![
            param("from", from.to_rfc3339()),
            param("to", to.to_rfc3339()),
        ];
        if let (Some(a), Some(b)) = (s.first_hour, s.last_hour) {
            params.push(param("first_hour", a.to_rfc3339()));
            params.push(param("last_hour", b.to_rfc3339()));
        }
        let metrics = [
            metric("rows", s.rows as f64, 0),
            metric("sensors", s.sensors as f64, 0),
        ];
        self.mlflow
            .log_batch(&run.run_id, &metrics, &params, &[])
            .await?;
        self.mlflow
            .upload_artifact(&run.artifact_uri, snapshot::ARTIFACT, bytes)
            .await?;
        self.mlflow
            .upload_artifact(
                &run.artifact_uri,
                "dataset/summary.json",
                serde_json::to_vec_pretty(&s)?,
            )
            .await?;
        self.mlflow
            .update_run(&run.run_id, RunStatus::Finished)
            .await?;
        tracing::info!(run = %run.run_id, rows = s.rows, sensors = s.sensors, sha256 = %s.sha256, "snapshot extracted");
        Ok(run.run_id)
    }

    /// `validate`: the data-quality gate on a snapshot (default: the newest). Fails with the
    /// reasons; a pass tags the snapshot `airq.validated = true`.
    pub async fn validate(&self, snapshot_run: Option<&str>) -> anyhow::Result<()> {
        let snap = self.find("extract", "", snapshot_run).await?;
        let (bytes, data) = self.load_snapshot(&snap).await?;
        let checks = validate::checks(
            &data,
            validate::duplicate_keys(&bytes),
            &self.settings.validate,
        );
        let passed = checks.iter().all(|c| c.passed);
        let run = self
            .start(
                "validate",
                "validate",
                &[
                    ("airq.snapshot_run", snap.info.run_id.clone()),
                    (
                        "airq.validation",
                        if passed { "passed" } else { "failed" }.into(),
                    ),
                ],
            )
            .await?;
        let metrics: Vec<Metric> = checks
            .iter()
            .flat_map(|c| {
                [
                    metric(&format!("{}_value", c.name), c.value, 0),
                    metric(
                        &format!("{}_passed", c.name),
                        f64::from(u8::from(c.passed)),
                        0,
                    ),
                ]
            })
            .collect();
        self.mlflow
            .log_batch(&run.run_id, &metrics, &[], &[])
            .await?;
        self.mlflow
            .upload_artifact(
                &run.artifact_uri,
                "validation.json",
                serde_json::to_vec_pretty(&checks)?,
            )
            .await?;
        for c in &checks {
            tracing::info!(check = %c.name, passed = c.passed, "{}", c.detail);
        }
        if passed {
            self.mlflow
                .log_batch(
                    &snap.info.run_id,
                    &[],
                    &[],
                    &[tag("airq.validated", "true")],
                )
                .await?;
            self.mlflow
                .update_run(&run.run_id, RunStatus::Finished)
                .await?;
            return Ok(());
        }
        self.mlflow
            .update_run(&run.run_id, RunStatus::Failed)
            .await?;
        let failed: Vec<String> = checks
            .iter()
            .filter(|c| !c.passed)
            .map(|c| format!("{}: {}", c.name, c.detail))
            .collect();
        bail!(
            "snapshot {} failed validation: {}",
            snap.info.run_id,
            failed.join("; ")
        )
    }

    /// `train`: every candidate on the newest validated snapshot; the best one (test RMSE)
    /// becomes a new version of the registered model with alias `staging`. Returns it.
    pub async fn train(
        &self,
        snapshot_run: Option<&str>,
        test_from: Option<DateTime<Utc>>,
        export_features: Option<&std::path::Path>,
    ) -> anyhow::Result<String> {
        let snap = self
            .find(
                "extract",
                " and tags.`airq.validated` = 'true'",
                snapshot_run,
            )
            .await?;
        let (_, data) = self.load_snapshot(&snap).await?;
        let spec = FeatureSpec::default();
        let dataset = build_dataset(&spec, &data);
        let cfg = &self.settings.train;
        let test_from = match test_from {
            Some(t) => t,
            None => train::test_start(&dataset, cfg.test_fraction)
                .context("the snapshot has no usable rows")?,
        };
        let (train_set, test_set) = train::split(&dataset, test_from);
        anyhow::ensure!(
            !train_set.is_empty() && !test_set.is_empty(),
            "empty split at {test_from}: {} train, {} test rows",
            train_set.len(),
            test_set.len()
        );
        tracing::info!(train = train_set.len(), test = test_set.len(), %test_from, "data set built");
        if let Some(dir) = export_features {
            std::fs::create_dir_all(dir)?;
            for (name, d) in [("train.csv", &train_set), ("test.csv", &test_set)] {
                std::fs::write(dir.join(name), features_csv(&spec, d)?)
                    .with_context(|| format!("writing {}", dir.join(name).display()))?;
            }
        }
        let binned = Binned::new(&train_set.x, 255);
        let mut candidates = vec![train::persistence(), train::linear(&train_set)?];
        let bar = |n: usize, what: &str| {
            let b = ProgressBar::new(n as u64).with_message(what.to_owned());
            b.set_style(
                ProgressStyle::with_template("{msg:18} {bar:40} {pos}/{len} {elapsed}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            b
        };
        let b = bar(cfg.forest.trees, "random forest");
        candidates.push(train::forest(&train_set, &binned, cfg, &|| b.inc(1)));
        b.finish();
        let b = bar(cfg.boosting.rounds, "gradient boosting");
        candidates.push(train::boosting(&train_set, &binned, cfg, &|| b.inc(1)));
        b.finish();

        let mut best: Option<(f64, RunInfo, &Trained)> = None;
        for c in &candidates {
            let (rmse, run) = self
                .log_candidate(c, &spec, &snap, &train_set, &test_set, test_from)
                .await?;
            tracing::info!(
                model = c.name,
                rmse,
                seconds = c.train_seconds,
                "candidate trained"
            );
            if c.name != "persistence" && best.as_ref().is_none_or(|(r, _, _)| rmse < *r) {
                best = Some((rmse, run, c));
            }
        }
        let (rmse, run, c) = best.context("no candidate model")?;
        let name = &self.settings.mlflow.model;
        self.mlflow
            .ensure_registered_model(name, "PM2.5 one hour ahead, per sensor (airq)")
            .await?;
        let v = self
            .mlflow
            .create_model_version(
                name,
                &format!("{}/model", run.artifact_uri),
                &run.run_id,
                &[
                    tag("model", c.name),
                    tag("test_rmse", format!("{rmse:.4}")),
                    tag("snapshot_run", &snap.info.run_id),
                ],
            )
            .await?;
        self.mlflow.set_alias(name, STAGING, &v.version).await?;
        self.mlflow
            .transition_stage(name, &v.version, Stage::Staging, false)
            .await?;
        tracing::info!(model = c.name, version = %v.version, rmse, "registered as staging");
        Ok(v.version)
    }

    async fn log_candidate(
        &self,
        c: &Trained,
        spec: &FeatureSpec,
        snap: &Run,
        train_set: &airq_features::Dataset,
        test_set: &airq_features::Dataset,
        test_from: DateTime<Utc>,
    ) -> anyhow::Result<(f64, RunInfo)> {
        let run = self
            .start(
                "train",
                c.name,
                &[
                    ("airq.snapshot_run", snap.info.run_id.clone()),
                    ("airq.model", c.name.to_owned()),
                ],
            )
            .await?;
        let test = train::evaluate(&c.model, test_set);
        let fit = train::evaluate(&c.model, train_set);
        let mut params: Vec<_> = c.params.iter().map(|(k, v)| param(k, v)).collect();
        params.extend([
            param("model", c.name),
            param("features", spec.names().len()),
            param("feature_spec_version", spec.version),
            param("lags", spec.lags),
            param("test_from", test_from.to_rfc3339()),
            param("train_rows", train_set.len()),
            param("test_rows", test_set.len()),
        ]);
        let mut metrics = vec![
            metric("test_rmse", test.overall.rmse, 0),
            metric("test_mae", test.overall.mae, 0),
            metric("test_r2", test.overall.r2, 0),
            metric("train_rmse", fit.overall.rmse, 0),
            metric("train_seconds", c.train_seconds, 0),
        ];
        metrics.extend(
            test.per_sensor
                .iter()
                .map(|(s, sc)| metric(&format!("test_rmse_{}", sanitize(s)), sc.rmse, 0)),
        );
        self.mlflow
            .log_batch(&run.run_id, &metrics, &params, &[])
            .await?;
        let artifact = Artifact::new(c.name, spec.clone(), c.model.clone());
        let uri = &run.artifact_uri;
        self.mlflow
            .upload_artifact(uri, &format!("model/{MODEL_FILE}"), artifact.to_json())
            .await?;
        let importances: BTreeMap<String, f64> = spec
            .names()
            .into_iter()
            .zip(c.model.importances(spec.names().len()))
            .collect();
        self.mlflow
            .upload_artifact(
                uri,
                "feature_importances.json",
                serde_json::to_vec_pretty(&importances)?,
            )
            .await?;
        let pairs: Vec<(f64, f64)> = test_set
            .y
            .iter()
            .copied()
            .zip(test.predicted.iter().copied())
            .collect();
        self.mlflow
            .upload_artifact(
                uri,
                "plots/predicted_vs_actual.png",
                plot::scatter(&pairs, true)?,
            )
            .await?;
        let residuals: Vec<(f64, f64)> = pairs.iter().map(|(t, p)| (*p, t - p)).collect();
        self.mlflow
            .upload_artifact(
                uri,
                "plots/residuals.png",
                plot::scatter(&residuals, false)?,
            )
            .await?;
        self.mlflow
            .update_run(&run.run_id, RunStatus::Finished)
            .await?;
        Ok((test.overall.rmse, run))
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

    /// `evaluate`: a candidate (the given version, e.g. the one this DAG run's `train`
    /// registered, or else the `staging` alias) against production and persistence, on the
    /// newest `window_days` of the candidate's snapshot that the candidate never trained on
    /// (at or after its own `test_from`); promotes it when it beats both. Returns the decision.
    pub async fn evaluate(&self, candidate: Option<&str>) -> anyhow::Result<Decision> {
        let name = &self.settings.mlflow.model;
        let version = match candidate {
            Some(v) => self
                .mlflow
                .get_model_version(name, v)
                .await
                .with_context(|| format!("model {name} has no version {v:?}"))?,
            None => self
                .mlflow
                .get_by_alias(name, STAGING)
                .await?
                .context("no model version has the alias staging: run train first")?,
        };
        let staging_v = version.version.clone();
        let staging = self.load_artifact(&version).await?;
        let production = self.load_version(PRODUCTION).await?;
        let train_run = self.mlflow.get_run(&version.run_id).await?;
        let held_out_from: DateTime<Utc> = train_run
            .param("test_from")
            .context("the candidate's run records no test_from")?
            .parse()
            .context("the candidate's test_from is not a time")?;
        let snap_id = train_run
            .tag("airq.snapshot_run")
            .map(str::to_owned)
            .context("the staging run names no snapshot")?;
        let snap = self.mlflow.get_run(&snap_id).await?;
        let (_, data) = self.load_snapshot(&snap).await?;
        let dataset = build_dataset(&staging.spec, &data);
        let end = *dataset.target.last().context("empty snapshot")?;
        let window_start =
            held_out_from.max(end - Duration::days(self.settings.evaluate.window_days));
        let window = dataset.filter(|t| t >= window_start);
        anyhow::ensure!(
            !window.is_empty(),
            "no held-out data to evaluate version {staging_v} on (its test set starts {held_out_from}, the snapshot ends {end})"
        );
        let rmse = |m: &airq_model::Model| train::evaluate(m, &window).overall.rmse;
        let staging_rmse = rmse(&staging.model);
        let persistence_rmse = rmse(&airq_model::Model::Persistence);
        let production_rmse = production
            .as_ref()
            .map(|(v, a)| (v.clone(), rmse(&a.model)));
        let decision = decide(
            &staging_v,
            staging_rmse,
            persistence_rmse,
            production_rmse.as_ref().map(|(v, r)| (v.as_str(), *r)),
        );
        let run = self
            .start(
                "evaluate",
                "evaluate",
                &[
                    ("airq.decision", decision.action.as_str().to_owned()),
                    ("airq.staging_version", staging_v.clone()),
                ],
            )
            .await?;
        let mut metrics = vec![
            metric("staging_rmse", staging_rmse, 0),
            metric("persistence_rmse", persistence_rmse, 0),
            metric("window_rows", window.len() as f64, 0),
        ];
        if let Some((_, r)) = &production_rmse {
            metrics.push(metric("production_rmse", *r, 0));
        }
        let params = [
            param("window_days", self.settings.evaluate.window_days),
            param("window_start", window_start.to_rfc3339()),
            param("window_end", end.to_rfc3339()),
            param("candidate_test_from", held_out_from.to_rfc3339()),
            param("reason", &decision.reason),
        ];
        self.mlflow
            .log_batch(&run.run_id, &metrics, &params, &[])
            .await?;
        if decision.action == Action::Promote {
            self.mlflow.set_alias(name, PRODUCTION, &staging_v).await?;
            // Archives the previous Production version (legacy stages follow the aliases).
            self.mlflow
                .transition_stage(name, &staging_v, Stage::Production, true)
                .await?;
        }
        self.mlflow
            .update_run(&run.run_id, RunStatus::Finished)
            .await?;
        tracing::info!(action = decision.action.as_str(), reason = %decision.reason, "evaluation done");
        Ok(decision)
    }
}

/// The feature matrix with target, time and sensor, for comparisons outside this program
/// (bench/sklearn_rf.py).
fn features_csv(spec: &FeatureSpec, d: &airq_features::Dataset) -> anyhow::Result<Vec<u8>> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut header = spec.names();
    header.extend(["y", "target", "sensor"].map(str::to_owned));
    w.write_record(&header)?;
    for i in 0..d.len() {
        let mut row: Vec<String> = d.x[i].iter().map(f64::to_string).collect();
        row.extend([
            d.y[i].to_string(),
            d.target[i].to_rfc3339(),
            d.sensor[i].clone(),
        ]);
        w.write_record(&row)?;
    }
    Ok(w.into_inner()?)
}

/// Metric keys allow letters, digits and `_-./ `.
fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_-./".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Promote,
    Keep,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Promote => "promote",
            Action::Keep => "keep",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub action: Action,
    pub reason: String,
}

/// Promote staging only if it beats persistence and the current production (if any).
pub fn decide(
    staging_version: &str,
    staging: f64,
    persistence: f64,
    production: Option<(&str, f64)>,
) -> Decision {
    let keep = |reason: String| Decision {
        action: Action::Keep,
        reason,
    };
    // NaN never beats anything.
    if staging.is_nan() || staging >= persistence {
        return keep(format!(
            "staging v{staging_version} RMSE {staging:.3} does not beat persistence {persistence:.3}"
        ));
    }
    match production {
        Some((v, _)) if v == staging_version => keep(format!("v{v} is already production")),
        Some((v, p)) if staging >= p => keep(format!(
            "staging v{staging_version} RMSE {staging:.3} does not beat production v{v} {p:.3}"
        )),
        Some((v, p)) => Decision {
            action: Action::Promote,
            reason: format!(
                "staging v{staging_version} RMSE {staging:.3} beats production v{v} {p:.3} and persistence {persistence:.3}"
            ),
        },
        None => Decision {
            action: Action::Promote,
            reason: format!(
                "no production model; staging v{staging_version} RMSE {staging:.3} beats persistence {persistence:.3}"
            ),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn promotes_only_what_beats_both() {
        assert_eq!(decide("2", 10.0, 12.0, None).action, Action::Promote);
        assert_eq!(
            decide("2", 10.0, 12.0, Some(("1", 11.0))).action,
            Action::Promote
        );
        let k = decide("2", 11.5, 12.0, Some(("1", 11.0)));
        assert_eq!(
            (k.action, k.reason.as_str()),
            (
                Action::Keep,
                "staging v2 RMSE 11.500 does not beat production v1 11.000"
            )
        );
        assert_eq!(decide("2", 12.5, 12.0, None).action, Action::Keep);
        assert_eq!(decide("2", f64::NAN, 12.0, None).action, Action::Keep);
        assert_eq!(
            decide("1", 10.0, 12.0, Some(("1", 10.0))).action,
            Action::Keep
        );
    }
}
