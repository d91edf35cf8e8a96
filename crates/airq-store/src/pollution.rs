//! Idempotent writes of pollution episodes, keyed by their deterministic id.

use airq_detect::PollutionEpisode;
use chrono::{DateTime, Utc};
use sqlx::PgPool;

use crate::StoreError;

const UPSERT: &str = r#"
INSERT INTO pollution_episodes AS p (id, status, start_ts, end_ts, peak_aqi, peak_category,
                                     peak_share, sensors, centroid_lat, centroid_lon, radius_km,
                                     explanation)
SELECT id, status, start_ts, end_ts, peak_aqi, peak_category, peak_share,
       string_to_array(sensors, E'\x1f'), centroid_lat, centroid_lon, radius_km, explanation
FROM UNNEST($1::text[], $2::text[], $3::timestamptz[], $4::timestamptz[], $5::int2[],
            $6::text[], $7::float8[], $8::text[], $9::float8[], $10::float8[], $11::float8[],
            $12::text[])
     AS u(id, status, start_ts, end_ts, peak_aqi, peak_category, peak_share, sensors,
          centroid_lat, centroid_lon, radius_km, explanation)
ON CONFLICT (id) DO UPDATE SET
    status = EXCLUDED.status, end_ts = EXCLUDED.end_ts, peak_aqi = EXCLUDED.peak_aqi,
    peak_category = EXCLUDED.peak_category, peak_share = EXCLUDED.peak_share,
    sensors = EXCLUDED.sensors, centroid_lat = EXCLUDED.centroid_lat,
    centroid_lon = EXCLUDED.centroid_lon, radius_km = EXCLUDED.radius_km,
    explanation = EXCLUDED.explanation, updated_at = now()
-- A closed episode is final: a redelivered open state must not reopen it.
WHERE p.status = 'open'
"#;

/// Upserts episodes (the last state of each id in the batch); returns the rows written.
pub async fn upsert_episodes(
    pool: &PgPool,
    episodes: &[PollutionEpisode],
) -> Result<u64, StoreError> {
    let eps = crate::last_of_each(episodes, |e| &e.id);
    if eps.is_empty() {
        return Ok(0);
    }
    let text =
        |f: &dyn Fn(&PollutionEpisode) -> String| eps.iter().map(|e| f(e)).collect::<Vec<_>>();
    let ts = |f: &dyn Fn(&PollutionEpisode) -> DateTime<Utc>| {
        eps.iter().map(|e| f(e)).collect::<Vec<_>>()
    };
    let float = |f: &dyn Fn(&PollutionEpisode) -> f64| eps.iter().map(|e| f(e)).collect::<Vec<_>>();
    let done = sqlx::query(UPSERT)
        .bind(text(&|e| e.id.clone()))
        .bind(text(&|e| e.status.as_str().to_owned()))
        .bind(ts(&|e| e.start))
        .bind(ts(&|e| e.end))
        .bind(
            eps.iter()
                .map(|e| i16::try_from(e.peak_aqi).unwrap_or(i16::MAX))
                .collect::<Vec<_>>(),
        )
        .bind(text(&|e| e.peak_category.clone()))
        .bind(float(&|e| e.peak_share))
        // One text per episode (UNNEST cannot take a ragged array): joined by the unit
        // separator, which a sensor id cannot hold (validation accepts `[A-Za-z0-9_.:-]` only).
        .bind(text(&|e| e.sensors.join("\u{1f}")))
        .bind(float(&|e| e.region.centroid.lat))
        .bind(float(&|e| e.region.centroid.lon))
        .bind(float(&|e| e.region.radius_km))
        .bind(text(&|e| e.explanation.clone()))
        .execute(pool)
        .await?;
    Ok(done.rows_affected())
}

/// One stored episode: (id, status, start, end, peak AQI, sensors).
pub type StoredEpisode = (
    String,
    String,
    DateTime<Utc>,
    DateTime<Utc>,
    i16,
    Vec<String>,
);

/// Every stored episode, by id.
pub async fn stored_episodes(pool: &PgPool) -> Result<Vec<StoredEpisode>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT id, status, start_ts, end_ts, peak_aqi, sensors FROM pollution_episodes ORDER BY id",
    )
    .fetch_all(pool)
    .await?)
}
