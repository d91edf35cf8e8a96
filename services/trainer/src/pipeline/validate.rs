//! `validate`: the data-quality gate on a snapshot.

use mlflow_client::{Metric, Run, RunInfo, metric, tag};

use super::Pipeline;
use crate::failure::Permanent;
use crate::validate;

impl Pipeline {
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
        let done = self.record_checks(&run, &snap, &checks).await;
        self.close(&run, done).await
    }

    /// Logs the checks in the gate's run; tags the snapshot validated if all passed, else
    /// fails (permanently: the same snapshot fails again) naming each failed check.
    async fn record_checks(
        &self,
        run: &RunInfo,
        snap: &Run,
        checks: &[validate::Check],
    ) -> anyhow::Result<()> {
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
                serde_json::to_vec_pretty(checks)?,
            )
            .await?;
        for c in checks {
            tracing::info!(check = %c.name, passed = c.passed, "{}", c.detail);
        }
        if checks.iter().all(|c| c.passed) {
            return Ok(self
                .mlflow
                .log_batch(
                    &snap.info.run_id,
                    &[],
                    &[],
                    &[tag("airq.validated", "true")],
                )
                .await?);
        }
        let failed: Vec<String> = checks
            .iter()
            .filter(|c| !c.passed)
            .map(|c| format!("{}: {}", c.name, c.detail))
            .collect();
        Err(Permanent(format!(
            "snapshot {} failed validation: {}",
            snap.info.run_id,
            failed.join("; ")
        ))
        .into())
    }
}
