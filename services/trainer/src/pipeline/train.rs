//! `train`: every candidate on a validated snapshot, each its own run; the best one
//! registered with the alias `staging`.

use std::collections::BTreeMap;

use airq_features::{Dataset, FeatureSpec, Network, build_dataset};
use airq_model::Artifact;
use airq_model::tree::Binned;
use anyhow::Context;
use chrono::{DateTime, Utc};
use indicatif::{ProgressBar, ProgressStyle};
use mlflow_client::{Run, RunInfo, Stage, metric, param, tag};

use super::{MODEL_FILE, Pipeline, STAGING};
use crate::horizons::{self, HorizonFit};
use crate::plot;
use crate::train::{self, Evaluation, Trained, Trial};

impl Pipeline {
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
        let net = self.load_network(&snap).await?;
        let spec = FeatureSpec::default();
        let dataset = build_dataset(&spec, &net);
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
        candidates.push(train::boosting(&train_set, cfg, &|| b.inc(1)));
        b.finish();

        // The winner (lowest test RMSE, persistence excluded, the first of equals) is known
        // before anything is logged, so that its run gets its whole artifact once.
        let tests: Vec<Evaluation> = candidates
            .iter()
            .map(|c| train::evaluate(&c.model, &test_set))
            .collect();
        let best = (0..candidates.len())
            .filter(|&i| candidates[i].name != "persistence")
            .min_by(|&a, &b| tests[a].overall.rmse.total_cmp(&tests[b].overall.rmse))
            .context("no candidate model")?;
        let c = &candidates[best];
        let fits = horizons::horizons(c, &spec, &net, &train_set, test_from, cfg)?;
        let validation_from = train::validation_start(&train_set, cfg.boosting.validation_days)
            .context("no validation window")?;
        let mut winner = horizons::artifact(c, &spec, &fits);
        winner.locations = net.locations.clone();
        winner.intervals = horizons::intervals(
            &horizons::held_out_anchors(&fits),
            &spec,
            &net,
            (validation_from, test_from),
            cfg.interval_coverage,
        );
        let judged = Judged {
            spec: &spec,
            snap: &snap,
            train_set: &train_set,
            test_set: &test_set,
            test_from,
        };
        let mut run = None;
        for (i, (cand, test)) in candidates.iter().zip(&tests).enumerate() {
            let artifact = if i == best {
                winner.clone()
            } else {
                Artifact::new(cand.name, spec.clone(), cand.model.clone())
            };
            let logged = self.log_candidate(cand, &artifact, test, &judged).await?;
            tracing::info!(
                model = cand.name,
                rmse = test.overall.rmse,
                seconds = cand.train_seconds,
                "candidate trained"
            );
            if i == best {
                run = Some(logged);
            }
        }
        let run = run.context("the winner was not logged")?;
        let rmse = tests[best].overall.rmse;
        self.record_horizons(&run, &winner, &fits, &net, test_from)
            .await?;
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
                    tag("horizons", hours_list(&fits)),
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

    /// On the winner's run, each served hour's scores on the test rows (`horizons.json`,
    /// metrics `test_rmse_h6`, `interval_coverage_h6`, ...).
    async fn record_horizons(
        &self,
        run: &RunInfo,
        artifact: &Artifact,
        fits: &[HorizonFit],
        net: &Network,
        test_from: DateTime<Utc>,
    ) -> anyhow::Result<()> {
        let uri = &run.artifact_uri;
        let served = horizons::served_scores(&artifact.anchors(), &artifact.spec, net, test_from);
        let trained = |h: u32| fits.iter().find(|f| f.hours == h);
        let table: Vec<serde_json::Value> = served
            .iter()
            .map(|s| {
                serde_json::json!({
                    "hours": s.hours,
                    "interpolated": s.interpolated,
                    "test_rmse": s.test.rmse,
                    "test_mae": s.test.mae,
                    "persistence_rmse": s.persistence.rmse,
                    "interval_coverage": s.coverage,
                    "interval_mean_width": s.mean_width,
                    "test_rows": s.test.n,
                    "train_rows": trained(s.hours).map(|f| f.train_rows),
                    "train_seconds": trained(s.hours).map(|f| f.train_seconds),
                })
            })
            .collect();
        self.mlflow
            .upload_artifact(uri, "horizons.json", serde_json::to_vec_pretty(&table)?)
            .await?;
        let mut metrics = Vec::new();
        for s in &served {
            let h = s.hours;
            tracing::info!(
                hours = h,
                interpolated = s.interpolated,
                rmse = s.test.rmse,
                persistence = s.persistence.rmse,
                coverage = s.coverage,
                "horizon scored"
            );
            metrics.extend([
                metric(&format!("test_rmse_h{h}"), s.test.rmse, 0),
                metric(&format!("persistence_rmse_h{h}"), s.persistence.rmse, 0),
            ]);
            if s.coverage.is_finite() {
                metrics.extend([
                    metric(&format!("interval_coverage_h{h}"), s.coverage, 0),
                    metric(&format!("interval_width_h{h}"), s.mean_width, 0),
                ]);
            }
        }
        metrics.extend(
            fits.iter()
                .map(|f| metric(&format!("train_seconds_h{}", f.hours), f.train_seconds, 0)),
        );
        let params = [
            param("horizons", hours_list(fits)),
            param("interval_coverage", self.settings.train.interval_coverage),
        ];
        self.mlflow
            .log_batch(&run.run_id, &metrics, &params, &[])
            .await?;
        Ok(())
    }

    /// One candidate's run with its artifact and its scores on the test rows (`test`).
    async fn log_candidate(
        &self,
        c: &Trained,
        artifact: &Artifact,
        test: &Evaluation,
        judged: &Judged<'_>,
    ) -> anyhow::Result<RunInfo> {
        let run = self
            .start(
                "train",
                c.name,
                &[
                    ("airq.snapshot_run", judged.snap.info.run_id.clone()),
                    ("airq.model", c.name.to_owned()),
                ],
            )
            .await?;
        let done = self.record_candidate(&run, c, artifact, test, judged).await;
        self.close(&run, done).await?;
        for (i, t) in c.trials.iter().enumerate() {
            self.log_trial(&run, c.name, i, t).await?;
        }
        Ok(run)
    }

    /// One trial of a candidate's search, a child run of the candidate's run.
    async fn log_trial(
        &self,
        parent: &RunInfo,
        model: &str,
        i: usize,
        t: &Trial,
    ) -> anyhow::Result<()> {
        let run = self
            .start(
                "search",
                &format!("{model} trial {i}"),
                &[
                    ("mlflow.parentRunId", parent.run_id.clone()),
                    ("airq.model", model.to_owned()),
                ],
            )
            .await?;
        let params: Vec<_> = t.params.iter().map(|(k, v)| param(k, v)).collect();
        let metrics = [
            metric("validation_rmse", t.validation_rmse, 0),
            metric("fit_seconds", t.fit_seconds, 0),
        ];
        let done = self
            .mlflow
            .log_batch(&run.run_id, &metrics, &params, &[])
            .await
            .map_err(anyhow::Error::from);
        self.close(&run, done).await
    }

    /// Logs one candidate in its run: params, metrics, the model, its importances, plots.
    async fn record_candidate(
        &self,
        run: &RunInfo,
        c: &Trained,
        artifact: &Artifact,
        test: &Evaluation,
        judged: &Judged<'_>,
    ) -> anyhow::Result<()> {
        let Judged {
            spec,
            train_set,
            test_set,
            test_from,
            ..
        } = *judged;
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
        Ok(())
    }
}

/// The data a candidate is judged on, for its run.
struct Judged<'a> {
    spec: &'a FeatureSpec,
    snap: &'a Run,
    train_set: &'a Dataset,
    test_set: &'a Dataset,
    test_from: DateTime<Utc>,
}

/// The feature matrix with target, time and sensor, for comparisons outside this program
/// (bench/forecast_refs.py).
fn features_csv(spec: &FeatureSpec, d: &Dataset) -> anyhow::Result<Vec<u8>> {
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

/// `1,3,6`: the hours ahead with a model.
fn hours_list(fits: &[HorizonFit]) -> String {
    let hours: Vec<String> = fits.iter().map(|f| f.hours.to_string()).collect();
    hours.join(",")
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
