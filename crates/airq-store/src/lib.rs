//! PostgreSQL access for airq. The schema lives in the workspace's `migrations/`,
//! embedded here so every binary can bring a database up to date.
//!
//! - [`connect`] / [`migrate`]: pool and schema;
//! - [`readings`]: idempotent batch insert of cleaned readings keyed by `(sensor_id, ts)`;
//! - [`anomalies`]: idempotent upsert of anomaly episodes keyed by their id;
//! - [`pollution`]: idempotent upsert of pollution episodes keyed by their id;
//! - [`hourly`]: hourly means per sensor, the grain of the forecasting features;
//! - [`daily`]: the daily per-sensor statistics batch.

pub mod anomalies;
pub mod daily;
pub mod forecasts;
pub mod hourly;
pub mod pollution;
pub mod readings;

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use sqlx::PgPool;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

/// The last item of each key, in first-seen order of those last items: one upsert statement
/// may touch a row only once.
pub(crate) fn last_of_each<T>(items: &[T], key: impl Fn(&T) -> &str) -> Vec<&T> {
    let mut last: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for (i, item) in items.iter().enumerate() {
        last.insert(key(item), i);
    }
    let mut keep: Vec<usize> = last.into_values().collect();
    keep.sort_unstable();
    keep.into_iter().map(|i| &items[i]).collect()
}

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

impl airq_runtime::retry::Retryable for StoreError {
    fn is_retryable(&self) -> bool {
        StoreError::is_retryable(self)
    }
}

/// SQLSTATE classes that a retry can fix: 08 connection, 40 transaction rollback
/// (serialization failure, deadlock), 53 insufficient resources, 57 operator intervention
/// (shutdown, statement timeout). Anything else (22 data exception, e.g. a NUL byte in a
/// text value; 23 constraint violation) is the same on every attempt.
fn transient_sqlstate(code: &str) -> bool {
    ["08", "40", "53", "57"].iter().any(|c| code.starts_with(c))
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Tls(_) => StoreError::Unavailable(e),
            sqlx::Error::Database(db) if db.code().is_some_and(|c| transient_sqlstate(&c)) => {
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
    /// Longest a statement may run before PostgreSQL cancels it (SQLSTATE 57014, retryable);
    /// none when absent.
    #[serde(default)]
    pub statement_timeout_ms: Option<u64>,
    /// Longest wait for a pooled connection (also while the database is unreachable);
    /// 5 s when absent. A server keeps it under its request timeout.
    #[serde(default)]
    pub acquire_timeout_ms: Option<u64>,
}

impl DatabaseSettings {
    pub fn connect(&self) -> Result<PgPool, StoreError> {
        let mut options: PgConnectOptions = self.url.expose_secret().parse()?;
        if let Some(ms) = self.statement_timeout_ms {
            options = options.options([("statement_timeout", ms.to_string())]);
        }
        let mut pool = pool_options(self.max_connections);
        if let Some(ms) = self.acquire_timeout_ms {
            pool = pool.acquire_timeout(Duration::from_millis(ms));
        }
        Ok(pool.connect_lazy_with(options))
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
    Ok(pool_options(max_connections).connect_lazy(url.expose_secret())?)
}

fn pool_options(max_connections: u32) -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(5))
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
    let backoff = airq_runtime::retry::Backoff::from_millis(200, 5000);
    airq_runtime::retry::retry(
        "applying migrations",
        backoff,
        shutdown,
        |_| {},
        || migrate(pool),
    )
    .await
    .map_err(airq_runtime::retry::RetryError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_and_resource_errors_are_transient_data_errors_are_not() {
        for code in ["08006", "40001", "40P01", "53300", "57P01", "57014"] {
            assert!(transient_sqlstate(code), "{code}");
        }
        for code in ["22021", "22P02", "23505", "42P01"] {
            assert!(!transient_sqlstate(code), "{code}");
        }
    }
}
