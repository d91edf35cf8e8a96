//! Hourly means per sensor: the grain of the forecasting features (trainer and
//! prediction API read the same query).

use std::collections::BTreeMap;

use airq_features::{Hourly, Series};
use chrono::{DateTime, Utc};
use sqlx::PgPool;

use crate::StoreError;

const HOURLY: &str = r#"
SELECT sensor_id, date_trunc('hour', ts) AS hour, avg(pm2_5), avg(pm10), avg(no2)
FROM readings
WHERE ts >= $1 AND ts < $2 AND ($3::text[] IS NULL OR sensor_id = ANY($3))
GROUP BY 1, 2
ORDER BY 1, 2
"#;

/// Hourly means of the cleaned values in `[from, to)`, per sensor (all sensors, or `only`).
pub async fn hourly_series(
    pool: &PgPool,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    only: Option<&[String]>,
) -> Result<BTreeMap<String, Series>, StoreError> {
    type Row = (String, DateTime<Utc>, Option<f64>, Option<f64>, Option<f64>);
    let rows: Vec<Row> = sqlx::query_as(HOURLY)
        .bind(from)
        .bind(to)
        .bind(only)
        .fetch_all(pool)
        .await?;
    let mut out: BTreeMap<String, Series> = BTreeMap::new();
    for (sensor, hour, pm2_5, pm10, no2) in rows {
        out.entry(sensor)
            .or_default()
            .insert(hour, Hourly { pm2_5, pm10, no2 });
    }
    Ok(out)
}

/// The start of the last hour with a reading of `sensor`, or `None` for an unknown sensor.
pub async fn latest_hour(pool: &PgPool, sensor: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
    let t: Option<DateTime<Utc>> =
        sqlx::query_scalar("SELECT date_trunc('hour', max(ts)) FROM readings WHERE sensor_id = $1")
            .bind(sensor)
            .fetch_one(pool)
            .await?;
    Ok(t)
}
