//! The daily batch of one UTC day, recomputed idempotently: per-sensor statistics
//! (`daily_sensor_stats`), the data-quality summary (`daily_quality`), and the check that
//! the day is complete before either is trusted.

use chrono::{DateTime, Duration, NaiveDate, Utc};
use sqlx::PgPool;

use crate::{StoreError, interval};

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

/// The fleet of a day: every sensor with readings in the 7 days up to its end.
const QUALITY: &str = r#"
WITH b AS (SELECT $1::date::timestamp AT TIME ZONE 'UTC' AS t0,
                  ($1::date + 1)::timestamp AT TIME ZONE 'UTC' AS t1),
fleet AS (SELECT DISTINCT sensor_id FROM readings, b WHERE ts >= t0 - interval '7 days' AND ts < t1),
day AS (SELECT r.* FROM readings r, b WHERE ts >= t0 AND ts < t1),
counts AS (SELECT sensor_id, count(*) AS n, count(DISTINCT date_trunc('hour', ts)) AS hours,
                  count(*) FILTER (WHERE flags & ~128 <> 0) AS flagged
           FROM day GROUP BY sensor_id),
flags AS (SELECT sensor_id, jsonb_object_agg(name, n ORDER BY name) AS counts
          FROM (SELECT d.sensor_id, q.name, count(*) AS n FROM day d
                JOIN quality_flags q ON d.flags & q.bit <> 0 GROUP BY d.sensor_id, q.name) f
          GROUP BY sensor_id),
episodes AS (SELECT sensor_id, count(*) AS n, count(*) FILTER (WHERE severity = 'critical') AS critical
             FROM anomalies, b WHERE start_ts >= t0 AND start_ts < t1 GROUP BY sensor_id)
INSERT INTO daily_quality (sensor_id, day, n_readings, hours_covered, coverage, n_flagged,
                           flag_counts, n_anomalies, n_critical, computed_at)
SELECT fleet.sensor_id, $1::date, coalesce(c.n, 0), coalesce(c.hours, 0), coalesce(c.hours, 0) / 24.0,
       coalesce(c.flagged, 0), coalesce(f.counts, '{}'::jsonb), coalesce(e.n, 0), coalesce(e.critical, 0), now()
FROM fleet LEFT JOIN counts c USING (sensor_id) LEFT JOIN flags f USING (sensor_id)
     LEFT JOIN episodes e USING (sensor_id)
RETURNING sensor_id, n_readings, hours_covered, coverage, n_flagged, flag_counts::text, n_anomalies, n_critical
"#;

/// One sensor's line of the day's quality summary.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct Quality {
    pub sensor_id: String,
    pub n_readings: i32,
    pub hours_covered: i32,
    pub coverage: f64,
    pub n_flagged: i32,
    /// JSON object: flag name -> readings.
    pub flag_counts: String,
    pub n_anomalies: i32,
    pub n_critical: i32,
}

/// Recomputes `daily_quality` for `day` in one transaction (the day's rows are replaced,
/// so a rerun leaves exactly what a first run would). Returns the rows, by sensor.
pub async fn compute_daily_quality(
    pool: &PgPool,
    day: NaiveDate,
) -> Result<Vec<Quality>, StoreError> {
    let mut tx = pool.begin().await?;
    sqlx::query("DELETE FROM daily_quality WHERE day = $1")
        .bind(day)
        .execute(&mut *tx)
        .await?;
    let mut rows: Vec<Quality> = sqlx::query_as(QUALITY)
        .bind(day)
        .fetch_all(&mut *tx)
        .await?;
    tx.commit().await?;
    rows.sort_by(|a, b| a.sensor_id.cmp(&b.sensor_id));
    Ok(rows)
}

/// Sensors active before a day (readings in the `lookback` before its start) that have no
/// reading at or after its end, with their newest reading before it (if any).
const LATE: &str = r#"
WITH b AS (SELECT $1::date::timestamp AT TIME ZONE 'UTC' AS t0,
                  ($1::date + 1)::timestamp AT TIME ZONE 'UTC' AS t1),
active AS (SELECT DISTINCT sensor_id FROM readings, b WHERE ts >= t0 - $2::interval AND ts < t0)
SELECT a.sensor_id, (SELECT max(ts) FROM readings r, b WHERE r.sensor_id = a.sensor_id AND r.ts < b.t1) AS last
FROM active a, b
WHERE NOT EXISTS (SELECT 1 FROM readings r WHERE r.sensor_id = a.sensor_id AND r.ts >= b.t1)
ORDER BY a.sensor_id
"#;

/// Whether a day's data is complete.
#[derive(Debug, Clone, PartialEq)]
pub struct Completeness {
    /// Sensors with readings in the lookback before the day.
    pub active: i64,
    /// Those with nothing at or after the day's end yet, with their newest reading.
    pub late: Vec<(String, Option<DateTime<Utc>>)>,
}

impl Completeness {
    /// Complete: every active sensor has reported past the day's end, i.e. the fleet's low
    /// watermark (the oldest of the sensors' newest readings) has passed it.
    pub fn is_complete(&self) -> bool {
        self.late.is_empty()
    }
}

/// Checks that `day` is complete: every sensor active in the `lookback` before it has a
/// reading at or after its end.
pub async fn day_completeness(
    pool: &PgPool,
    day: NaiveDate,
    lookback: Duration,
) -> Result<Completeness, StoreError> {
    let late: Vec<(String, Option<DateTime<Utc>>)> = sqlx::query_as(LATE)
        .bind(day)
        .bind(interval(lookback)?)
        .fetch_all(pool)
        .await?;
    let (active,): (i64,) = sqlx::query_as(
        "SELECT count(DISTINCT sensor_id) FROM readings \
         WHERE ts >= $1::date::timestamp AT TIME ZONE 'UTC' - $2::interval \
           AND ts < $1::date::timestamp AT TIME ZONE 'UTC'",
    )
    .bind(day)
    .bind(interval(lookback)?)
    .fetch_one(pool)
    .await?;
    Ok(Completeness { active, late })
}
