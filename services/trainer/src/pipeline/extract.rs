//! `extract`: hourly means of a window from PostgreSQL into a snapshot artifact.

use anyhow::Context;
use chrono::{DateTime, Utc};
use mlflow_client::{RunInfo, metric, param};

use super::Pipeline;
use crate::snapshot;

impl Pipeline {
    /// `extract`: hourly means of `[from, to)` from PostgreSQL into a snapshot artifact.
    pub async fn extract(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> anyhow::Result<String> {
        let pool = self.settings.database.connect()?;
        let data = airq_store::hourly::hourly_series(&pool, from, to, None)
            .await
            .context("reading readings")?;
        let locations = airq_store::hourly::sensor_locations(&pool, from, to)
            .await
            .context("reading the sensors' locations")?;
        let bytes = snapshot::to_csv(&data)?;
        let s = snapshot::summarize(&data, &bytes);
        let run = self
            .start(
                "extract",
                "extract",
                &[("airq.snapshot.sha256", s.sha256.clone())],
            )
            .await?;
        let done = self
            .record_snapshot(&run, from, to, &s, bytes, &locations)
            .await;
        self.close(&run, done).await?;
        tracing::info!(run = %run.run_id, rows = s.rows, sensors = s.sensors, sha256 = %s.sha256, "snapshot extracted");
        Ok(run.run_id)
    }

    async fn record_snapshot(
        &self,
        run: &RunInfo,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        s: &snapshot::Summary,
        bytes: Vec<u8>,
        locations: &airq_features::Locations,
    ) -> anyhow::Result<()> {
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
                snapshot::LOCATIONS,
                serde_json::to_vec_pretty(locations)?,
            )
            .await?;
        self.mlflow
            .upload_artifact(
                &run.artifact_uri,
                "dataset/summary.json",
                serde_json::to_vec_pretty(s)?,
            )
            .await?;
        Ok(())
    }
}
