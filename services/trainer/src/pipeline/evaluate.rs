//! `evaluate`: a candidate against production and persistence on data it never trained
//! on; promotes it only if it beats both.

use airq_features::{Dataset, build_dataset, build_dataset_ahead};
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
        let mut net = self.load_network(&snap).await?;
        // The neighbours the model was trained with (its artifact's locations), if any.
        if !staging.locations.is_empty() {
            net.locations = staging.locations.clone();
        }
        let one_hour = build_dataset(&staging.spec, &net);
        let end = *one_hour.target.last().context("empty snapshot")?;
        let window_start =
            held_out_from.max(end - Duration::days(self.settings.evaluate.window_days));
        let in_window = |t: DateTime<Utc>| t >= window_start;
        // Every horizon of the candidate on the same window of target hours.
        let mut table = Vec::new();
        for hours in staging.hours() {
            let window = match hours {
                1 => one_hour.filter(in_window),
                h => build_dataset_ahead(&staging.spec, &net, h).filter(in_window),
            };
            anyhow::ensure!(
                !window.is_empty(),
                "no held-out data to evaluate version {staging_v} on at {hours} h (its test set starts {held_out_from}, the snapshot ends {end})"
            );
            let rmse = |m: &airq_model::Model, d: &Dataset| train::evaluate(m, d).overall.rmse;
            let production = production.as_ref().and_then(|(v, a)| {
                let m = a.model_for(hours)?;
                // Production reads its own features: the same vectors when its feature names
                // begin staging's (a spec that only appends, as v2's neighbours did to v1),
                // else its own rows of the window.
                let r = if staging.feature_names.starts_with(&a.feature_names) {
                    rmse(m, &window)
                } else {
                    let mut own = net.clone();
                    own.locations = a.locations.clone();
                    rmse(
                        m,
                        &build_dataset_ahead(&a.spec, &own, hours).filter(in_window),
                    )
                };
                Some((v.clone(), r))
            });
            table.push(Gate {
                hours,
                staging: staging
                    .model_for(hours)
                    .map_or(f64::NAN, |m| rmse(m, &window)),
                persistence: rmse(&airq_model::Model::Persistence, &window),
                production,
                rows: window.len(),
            });
        }
        let decision = decide_horizons(&staging_v, &table);
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
            let mut metrics = Vec::new();
            for g in &table {
                // The one-hour figures keep their names; longer horizons get a suffix.
                let suffix = if g.hours == 1 {
                    String::new()
                } else {
                    format!("_h{}", g.hours)
                };
                metrics.extend([
                    metric(&format!("staging_rmse{suffix}"), g.staging, 0),
                    metric(&format!("persistence_rmse{suffix}"), g.persistence, 0),
                    metric(&format!("window_rows{suffix}"), g.rows as f64, 0),
                ]);
                if let Some((_, r)) = &g.production {
                    metrics.push(metric(&format!("production_rmse{suffix}"), *r, 0));
                }
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
            let rows: Vec<serde_json::Value> = table
                .iter()
                .map(|g| {
                    serde_json::json!({
                        "hours": g.hours,
                        "staging_rmse": g.staging,
                        "production_rmse": g.production.as_ref().map(|(_, r)| *r),
                        "persistence_rmse": g.persistence,
                        "window_rows": g.rows,
                    })
                })
                .collect();
            self.mlflow
                .upload_artifact(
                    &run.artifact_uri,
                    "gate.json",
                    serde_json::to_vec_pretty(&rows)?,
                )
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

/// One horizon of the gate: RMSE of each model on the window (`NaN`: no model).
#[derive(Debug, Clone, PartialEq)]
pub struct Gate {
    pub hours: u32,
    pub staging: f64,
    pub persistence: f64,
    /// Production's version and RMSE, when production has a model for this horizon.
    pub production: Option<(String, f64)>,
    pub rows: usize,
}

/// Promote staging only if, at every horizon it has, it beats persistence and production
/// (where production has that horizon). The reason is the first horizon that fails, else the
/// one-hour comparison.
pub fn decide_horizons(staging_version: &str, table: &[Gate]) -> Decision {
    let mut first = None;
    for g in table {
        let production = g.production.as_ref().map(|(v, r)| (v.as_str(), *r));
        let d = decide(staging_version, g.staging, g.persistence, production);
        if d.action == Action::Keep {
            let reason = if g.hours == 1 {
                d.reason
            } else {
                format!("at {} h: {}", g.hours, d.reason)
            };
            return Decision {
                action: Action::Keep,
                reason,
            };
        }
        first.get_or_insert(d);
    }
    let hours: Vec<String> = table.iter().map(|g| g.hours.to_string()).collect();
    match first {
        Some(mut d) if table.len() > 1 => {
            d.reason = format!(
                "{} (and at every horizon: {} h)",
                d.reason,
                hours.join(", ")
            );
            d
        }
        Some(d) => d,
        None => Decision {
            action: Action::Keep,
            reason: "nothing to compare".into(),
        },
    }
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

    #[test]
    fn every_horizon_must_pass_the_gate() {
        let g = |hours, staging, production: Option<f64>| Gate {
            hours,
            staging,
            persistence: 12.0 * f64::from(hours),
            production: production.map(|r| ("1".to_owned(), r)),
            rows: 10,
        };
        let all = decide_horizons("2", &[g(1, 10.0, Some(11.0)), g(6, 30.0, None)]);
        assert_eq!(all.action, Action::Promote, "{}", all.reason);
        assert!(
            all.reason.ends_with("(and at every horizon: 1, 6 h)"),
            "{}",
            all.reason
        );
        let worse = decide_horizons("2", &[g(1, 10.0, Some(11.0)), g(6, 30.0, Some(29.0))]);
        assert_eq!(
            (worse.action, worse.reason.as_str()),
            (
                Action::Keep,
                "at 6 h: staging v2 RMSE 30.000 does not beat production v1 29.000"
            )
        );
        let missing = decide_horizons("2", &[g(1, 10.0, None), g(3, f64::NAN, None)]);
        assert_eq!(missing.action, Action::Keep);
    }
}
