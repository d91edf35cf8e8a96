//! Batch insert of cleaned readings.

use airq_domain::ProcessedReading;
use chrono::{DateTime, Utc};
use sqlx::PgPool;

use crate::StoreError;

/// Column-wise buffers for one `INSERT ... SELECT FROM UNNEST(...)`: one round trip
/// and one statement for the whole batch.
#[derive(Default)]
struct Columns<'a> {
    sensor_id: Vec<&'a str>,
    ts: Vec<DateTime<Utc>>,
    lat: Vec<f64>,
    lon: Vec<f64>,
    clean: [Vec<Option<f64>>; 3],
    raw: [Vec<Option<f64>>; 3],
    flags: Vec<i32>,
    mean_1h: [Vec<Option<f64>>; 3],
    nowcast: [Vec<Option<f64>>; 2],
    aqi: Vec<Option<i16>>,
    aqi_category: Vec<Option<&'static str>>,
    aqi_dominant: Vec<Option<&'static str>>,
    eaqi_band: Vec<Option<&'static str>>,
    schema_version: Vec<i16>,
}

impl<'a> Columns<'a> {
    fn push(&mut self, r: &'a ProcessedReading) {
        use airq_domain::Pollutant;
        self.sensor_id.push(&r.sensor_id);
        self.ts.push(r.timestamp);
        self.lat.push(r.location.lat);
        self.lon.push(r.location.lon);
        for p in Pollutant::ALL {
            self.clean[p.index()].push(r.clean.get(p));
            self.raw[p.index()].push(r.raw.get(p));
            self.mean_1h[p.index()].push(r.metrics.mean_1h.get(p));
        }
        // The bitmask uses 8 bits: it always fits.
        self.flags
            .push(i32::try_from(r.flags.0).unwrap_or(i32::MAX));
        self.nowcast[0].push(r.metrics.nowcast.pm2_5);
        self.nowcast[1].push(r.metrics.nowcast.pm10);
        let aqi = r.metrics.us_aqi;
        self.aqi.push(aqi.map(|a| a.aqi as i16));
        self.aqi_category.push(aqi.map(|a| a.category.as_str()));
        self.aqi_dominant.push(aqi.map(|a| a.dominant.as_str()));
        self.eaqi_band.push(r.metrics.eaqi.map(|b| b.as_str()));
        self.schema_version.push(r.schema_version as i16);
    }

    /// `sql` (one of the statements below) with the columns bound, in their order.
    fn bind<'q>(
        &'q self,
        sql: &'q str,
    ) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
        let [clean_pm25, clean_pm10, clean_no2] = &self.clean;
        let [raw_pm25, raw_pm10, raw_no2] = &self.raw;
        let [mean_pm25, mean_pm10, mean_no2] = &self.mean_1h;
        let [nc_pm25, nc_pm10] = &self.nowcast;
        sqlx::query(sql)
            .bind(&self.sensor_id)
            .bind(&self.ts)
            .bind(&self.lat)
            .bind(&self.lon)
            .bind(clean_pm25)
            .bind(clean_pm10)
            .bind(clean_no2)
            .bind(raw_pm25)
            .bind(raw_pm10)
            .bind(raw_no2)
            .bind(&self.flags)
            .bind(mean_pm25)
            .bind(mean_pm10)
            .bind(mean_no2)
            .bind(nc_pm25)
            .bind(nc_pm10)
            .bind(&self.aqi)
            .bind(&self.aqi_category)
            .bind(&self.aqi_dominant)
            .bind(&self.eaqi_band)
            .bind(&self.schema_version)
    }
}

/// The insert of a batch's columns, shared by the two statements below.
macro_rules! insert_batch {
    () => {
        r#"
INSERT INTO readings (sensor_id, ts, lat, lon, pm2_5, pm10, no2, pm2_5_raw, pm10_raw, no2_raw,
                      flags, pm2_5_1h, pm10_1h, no2_1h, nowcast_pm2_5, nowcast_pm10,
                      aqi, aqi_category, aqi_dominant, eaqi_band, schema_version)
SELECT * FROM UNNEST($1::text[], $2::timestamptz[], $3::float8[], $4::float8[],
                     $5::float8[], $6::float8[], $7::float8[], $8::float8[], $9::float8[], $10::float8[],
                     $11::int4[], $12::float8[], $13::float8[], $14::float8[], $15::float8[], $16::float8[],
                     $17::int2[], $18::text[], $19::text[], $20::text[], $21::int2[])
"#
    };
}

/// A plain insert: the whole batch, or nothing if one of its rows is stored already.
const INSERT_NEW: &str = insert_batch!();

/// Insert-if-absent: a row whose `(sensor_id, ts)` is stored already is skipped. PostgreSQL's
/// speculative insertion makes it cost about 1.5 times the plain insert per row
/// (docs/benchmarks.md), so it is the fallback, not the rule.
const INSERT_IF_ABSENT: &str = concat!(insert_batch!(), "ON CONFLICT (sensor_id, ts) DO NOTHING");

/// Stored readings with a timestamp in `[from, to)`.
pub async fn count_between(
    pool: &PgPool,
    from: chrono::DateTime<chrono::Utc>,
    to: chrono::DateTime<chrono::Utc>,
) -> Result<i64, StoreError> {
    Ok(
        sqlx::query_scalar("SELECT count(*) FROM readings WHERE ts >= $1 AND ts < $2")
            .bind(from)
            .bind(to)
            .fetch_one(pool)
            .await?,
    )
}

/// Inserts a batch of readings; a reading whose `(sensor_id, ts)` is already stored is
/// left as it is (first write wins), so a redelivered batch changes nothing.
/// Returns the number of rows actually inserted. Takes readings or references to them (the
/// cleaner's shards borrow its batch).
///
/// A batch is first inserted as it is; only when one of its rows is stored already (a
/// redelivery, a replay of stored data, or a concurrent writer of the same rows) is it
/// inserted again, skipping those. New readings, the common case, pay for the plain insert.
pub async fn insert_readings<R: std::borrow::Borrow<ProcessedReading>>(
    pool: &PgPool,
    batch: &[R],
) -> Result<u64, StoreError> {
    if batch.is_empty() {
        return Ok(0);
    }
    let mut c = Columns::default();
    batch.iter().for_each(|r| c.push(r.borrow()));
    match c.bind(INSERT_NEW).execute(pool).await {
        Ok(done) => Ok(done.rows_affected()),
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Ok(c
            .bind(INSERT_IF_ABSENT)
            .execute(pool)
            .await?
            .rows_affected()),
        Err(e) => Err(e.into()),
    }
}

/// A stored reading as received (raw values) with the flags the cleaner gave it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredRaw {
    pub reading: airq_domain::Reading,
    pub flags: airq_domain::qc::Flags,
}

const HISTORY: &str = r#"
SELECT r.sensor_id, r.ts, r.lat, r.lon, r.pm2_5_raw, r.pm10_raw, r.no2_raw, r.flags
FROM UNNEST($1::text[], $2::timestamptz[]) AS w(sensor_id, before)
JOIN readings r ON r.sensor_id = w.sensor_id AND r.ts >= w.before - $3::interval AND r.ts < w.before
ORDER BY r.sensor_id, r.ts
"#;

/// The readings of each `(sensor, before)` pair in `[before - window, before)`, by sensor
/// then time: the history a stateful consumer replays to warm up.
pub async fn history(
    pool: &PgPool,
    sensors: &[(String, DateTime<Utc>)],
    window: chrono::Duration,
) -> Result<Vec<StoredRaw>, StoreError> {
    use sqlx::Row;
    if sensors.is_empty() {
        return Ok(Vec::new());
    }
    let (ids, before): (Vec<String>, Vec<DateTime<Utc>>) = sensors.iter().cloned().unzip();
    let window = crate::interval(window)?;
    let rows = sqlx::query(HISTORY)
        .bind(ids)
        .bind(before)
        .bind(window)
        .fetch_all(pool)
        .await?;
    rows.iter()
        .map(|row| {
            Ok(StoredRaw {
                reading: airq_domain::Reading {
                    sensor_id: row.try_get(0)?,
                    timestamp: row.try_get(1)?,
                    location: airq_domain::Location {
                        lat: row.try_get(2)?,
                        lon: row.try_get(3)?,
                    },
                    measurements: airq_domain::Measurements {
                        pm2_5: row.try_get(4)?,
                        pm10: row.try_get(5)?,
                        no2: row.try_get(6)?,
                    },
                },
                flags: airq_domain::qc::Flags(row.try_get::<i32, _>(7)? as u32),
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(StoreError::from)
}
