//! `evaluate`: a candidate against production and persistence on data it never trained
//! on; promotes it only if it beats both.

use airq_features::build_dataset;
use anyhow::Context;
use chrono::{DateTime, Duration, Utc};
use mlflow_client::{Stage, metric, param};

use super::{PRODUCTION, Pipeline, STAGING};
use crate::train;

impl Pipeline {
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
        let done = async {
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
                // The candidate trained on [train_window_start, candidate_test_from): the
                // evaluation window starts at or after its end.
                param(
                    "train_window_start",
                    snap.param("first_hour").unwrap_or("unknown"),
                ),
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
            anyhow::Ok(())
        }
        .await;
        self.close(&run, done).await?;
        tracing::info!(action = decision.action.as_str(), reason = %decision.reason, "evaluation done");
        Ok(decision)
    }
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
