//! Forecasts predict-api served (table `forecasts`), insert-if-absent.

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use crate::StoreError;

/// One served forecast.
#[derive(Debug, Clone, PartialEq)]
pub struct ServedForecast {
    pub sensor_id: String,
    pub forecast_for: DateTime<Utc>,
    pub based_on_hour: DateTime<Utc>,
    pub pm2_5: f64,
    /// Hours between `based_on_hour` and `forecast_for`.
    pub hours_ahead: i16,
    /// The prediction interval, when the model has one.
    pub pm2_5_lower: Option<f64>,
    pub pm2_5_upper: Option<f64>,
    pub model_name: String,
    pub model_version: String,
    pub model_kind: String,
    pub made_at: DateTime<Utc>,
}

const INSERT: &str = r#"
INSERT INTO forecasts (sensor_id, forecast_for, based_on_hour, pm2_5, model_name, model_version,
                       model_kind, made_at, hours_ahead, pm2_5_lower, pm2_5_upper)
SELECT * FROM UNNEST($1::text[], $2::timestamptz[], $3::timestamptz[], $4::float8[], $5::text[],
                     $6::text[], $7::text[], $8::timestamptz[], $9::int2[], $10::float8[],
                     $11::float8[])
ON CONFLICT DO NOTHING
"#;

/// Inserts the forecasts not recorded yet; returns how many were new.
pub async fn insert_forecasts(pool: &PgPool, rows: &[ServedForecast]) -> Result<u64, StoreError> {
    if rows.is_empty() {
        return Ok(0);
    }
    let text =
        |f: fn(&ServedForecast) -> &str| rows.iter().map(|r| f(r).to_owned()).collect::<Vec<_>>();
    let time = |f: fn(&ServedForecast) -> DateTime<Utc>| rows.iter().map(f).collect::<Vec<_>>();
    let done = sqlx::query(INSERT)
        .bind(text(|r| &r.sensor_id))
        .bind(time(|r| r.forecast_for))
        .bind(time(|r| r.based_on_hour))
        .bind(rows.iter().map(|r| r.pm2_5).collect::<Vec<_>>())
        .bind(text(|r| &r.model_name))
        .bind(text(|r| &r.model_version))
        .bind(text(|r| &r.model_kind))
        .bind(time(|r| r.made_at))
        .bind(rows.iter().map(|r| r.hours_ahead).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.pm2_5_lower).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.pm2_5_upper).collect::<Vec<_>>())
        .execute(pool)
        .await?;
    Ok(done.rows_affected())
}
