//! The daily batch: per-sensor statistics of one UTC day, recomputed idempotently.

use chrono::NaiveDate;
use sqlx::PgPool;

use crate::StoreError;

const DAILY: &str = r#"
INSERT INTO daily_sensor_stats (sensor_id, day, n_readings, n_flagged, hours_covered, completeness,
                                pm2_5_mean, pm10_mean, no2_mean, pm2_5_max, pm10_max, no2_max, aqi_max, computed_at)
SELECT sensor_id, $1::date, count(*), count(*) FILTER (WHERE flags & ~128 <> 0),
       count(DISTINCT date_trunc('hour', ts)), count(DISTINCT date_trunc('hour', ts)) / 24.0,
       avg(pm2_5), avg(pm10), avg(no2), max(pm2_5), max(pm10), max(no2), max(aqi), now()
FROM readings
WHERE ts >= $1::date::timestamp AT TIME ZONE 'UTC' AND ts < ($1::date + 1)::timestamp AT TIME ZONE 'UTC'
GROUP BY sensor_id
ON CONFLICT (sensor_id, day) DO UPDATE SET
    n_readings = EXCLUDED.n_readings, n_flagged = EXCLUDED.n_flagged,
    hours_covered = EXCLUDED.hours_covered, completeness = EXCLUDED.completeness,
    pm2_5_mean = EXCLUDED.pm2_5_mean, pm10_mean = EXCLUDED.pm10_mean, no2_mean = EXCLUDED.no2_mean,
    pm2_5_max = EXCLUDED.pm2_5_max, pm10_max = EXCLUDED.pm10_max, no2_max = EXCLUDED.no2_max,
    aqi_max = EXCLUDED.aqi_max, computed_at = EXCLUDED.computed_at
"#;

/// Recomputes `daily_sensor_stats` for `day` (UTC); returns the number of sensors written.
/// Flags other than `missing` count as flagged.
pub async fn compute_daily_stats(pool: &PgPool, day: NaiveDate) -> Result<u64, StoreError> {
    Ok(sqlx::query(DAILY)
        .bind(day)
        .execute(pool)
        .await?
        .rows_affected())
}
