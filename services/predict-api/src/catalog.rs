//! `GET /catalog`: the platform's data catalog (`airq-catalog`) with its freshness read live
//! from PostgreSQL, the broker and the MLflow registry. Read on each request: it is for
//! people and scripts, a few calls a minute, not for the prediction path.

use std::time::Duration;

use airq_catalog::{Catalog, Freshness, LiveCatalog, live};
use mlflow_client::MlflowClient;
use sqlx::PgPool;

use crate::config::CatalogSettings;

/// Where the live part is read.
pub struct CatalogSource {
    pub settings: CatalogSettings,
    pub mlflow: MlflowClient,
    /// The registered model this deployment serves (`[mlflow] model`).
    pub model: String,
}

impl CatalogSource {
    pub async fn read(&self, pool: &PgPool) -> LiveCatalog {
        let catalog = Catalog::platform();
        let t = &self.settings.topics;
        let names = [
            ("raw_data", t.raw.clone()),
            ("processed_data", t.processed.clone()),
            ("anomalies", t.anomalies.clone()),
            ("dead_letter", t.dead_letter.clone()),
        ];
        let brokers = self.settings.brokers.clone();
        let timeout = Duration::from_millis(self.settings.timeout_ms);
        let topics = tokio::task::spawn_blocking(move || {
            let names: Vec<(&str, &str)> = names.iter().map(|(a, b)| (*a, b.as_str())).collect();
            live::topics(&brokers, &names, timeout)
        });
        let model = [self.model.as_str()];
        let (tables, models) = tokio::join!(
            live::tables(pool, &catalog.tables),
            live::models(&self.mlflow, &model)
        );
        let topics = topics.await.unwrap_or_default();
        LiveCatalog {
            catalog,
            freshness: Freshness {
                read_at: chrono::Utc::now(),
                topics,
                tables,
                models,
            },
        }
    }
}
