//! PostgreSQL access for airq. The schema lives in the workspace's `migrations/`,
//! embedded here so every binary can bring a database up to date.
//!
//! - [`connect`] / [`migrate`]: pool and schema;
//! - [`readings`]: idempotent batch insert of cleaned readings keyed by `(sensor_id, ts)`;
//! - [`anomalies`]: idempotent upsert of anomaly episodes keyed by their id;
//! - [`hourly`]: hourly means per sensor, the grain of the forecasting features;
//! - [`daily`]: the daily per-sensor statistics batch.

pub mod anomalies;
pub mod daily;
pub mod hourly;
pub mod readings;

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use sqlx::PgPool;
use sqlx::migrate::Migrator;
use sqlx::postgres::PgPoolOptions;

/// The workspace migrations, embedded at build time.
pub static MIGRATOR: Migrator = sqlx::migrate!("../../migrations");

/// Errors of the store. Connection-level failures are retryable (the database may come
/// back); anything else is a bug or a schema mismatch.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    #[error("database error: {0}")]
    Query(#[source] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

impl StoreError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Tls(_) => StoreError::Unavailable(e),
            // 57P01 admin_shutdown, 57P02 crash_shutdown, 57P03 cannot_connect_now, 08xxx connection.
            sqlx::Error::Database(db)
                if db
                    .code()
                    .is_some_and(|c| c.starts_with("57P") || c.starts_with("08")) =>
            {
                StoreError::Unavailable(e)
            }
            _ => StoreError::Query(e),
        }
    }
}

/// The `[database]` section every service's configuration has.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    pub url: SecretString,
    /// Pool size (for the cleaner also the number of concurrent inserts of one batch).
    pub max_connections: u32,
}

impl DatabaseSettings {
    pub fn connect(&self) -> Result<PgPool, StoreError> {
        connect(&self.url, self.max_connections)
    }
}

/// A `chrono` duration as a PostgreSQL interval parameter.
pub(crate) fn interval(
    d: chrono::Duration,
) -> Result<sqlx::postgres::types::PgInterval, StoreError> {
    sqlx::postgres::types::PgInterval::try_from(d)
        .map_err(|e| StoreError::Query(sqlx::Error::Encode(e)))
}

/// A lazily connecting pool: the service starts even if the database is down, and each
/// query fails fast (`acquire_timeout`) so the caller can back off and retry.
pub fn connect(url: &SecretString, max_connections: u32) -> Result<PgPool, StoreError> {
    Ok(PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(5))
        .connect_lazy(url.expose_secret())?)
}

/// Applies pending migrations.
pub async fn migrate(pool: &PgPool) -> Result<(), StoreError> {
    MIGRATOR.run(pool).await?;
    Ok(())
}

/// Applies migrations, retrying while the database is not reachable (until `shutdown`).
pub async fn migrate_with_retry(
    pool: &PgPool,
    shutdown: &tokio_util::sync::CancellationToken,
) -> Result<(), StoreError> {
    let mut backoff = Duration::from_millis(200);
    loop {
        match migrate(pool).await {
            Ok(()) => return Ok(()),
            Err(e) if e.is_retryable() => {
                tracing::warn!(error = %e, "database not ready; retrying migrations");
                tokio::select! {
                    _ = shutdown.cancelled() => return Err(e),
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
            Err(e) => return Err(e),
        }
    }
}
