//! Served forecasts into PostgreSQL (`forecasts`), off the request path: a handler only
//! queues a record (`try_send`, never waits); one writer task inserts them in batches. A full
//! queue (the database slow or down) drops records and counts them: a prediction is never
//! delayed or failed for its record.
//!
//! An answer is one row per horizon (the next hour, and each of the request's `horizons`).
//! The table keeps the first answer of a model version for a sensor, hour and horizon, so a
//! busy sensor asked thousands of times an hour yields one row per horizon: the recorder
//! remembers what it queued last per sensor ([`Seen`]) and queues only what is new, instead of
//! sending every answer to PostgreSQL to be discarded there by the primary key.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use airq_store::forecasts::{ServedForecast, insert_forecasts};
use chrono::{DateTime, Utc};
use sqlx::PgPool;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::api::Prediction;
use crate::forecast::Forecast;

/// Largest insert of the writer.
const BATCH: usize = 1000;

/// Sensors remembered by [`Seen`] before it starts afresh (a bound on memory whatever ids
/// clients send; forgetting only costs a row the primary key discards).
const SEEN_MAX: usize = 100_000;

pub struct Recorder {
    /// One message per answer: its rows.
    tx: mpsc::Sender<Vec<ServedForecast>>,
    seen: Mutex<Seen>,
    pub dropped: AtomicU64,
    pub written: Arc<AtomicU64>,
}

/// The last forecasts queued per sensor: the hour they start from, the model that made them,
/// and the horizons queued (bit `h - 1` for `h` hours ahead).
#[derive(Debug, Default)]
pub struct Seen(HashMap<String, (DateTime<Utc>, String, String, u64)>);

/// The horizons of an answer as bits; `None` when one is past 64 hours (never remembered).
fn horizon_bits(p: &Prediction) -> Option<u64> {
    let mut bits = 1;
    for a in p.horizons.iter().flatten() {
        bits |= 1u64.checked_shl(a.hours.checked_sub(1)?)?;
    }
    Some(bits)
}

impl Seen {
    /// Whether every row of `p` was queued already (the last queued forecasts of its sensor
    /// start from the same hour, by the same model version, and cover its horizons).
    pub fn queued(&self, p: &Prediction) -> bool {
        let Some(bits) = horizon_bits(p) else {
            return false;
        };
        self.0
            .get(&p.sensor_id)
            .is_some_and(|(t, name, version, queued)| {
                (*t, name, version) == (p.forecast.based_on_hour, &p.model.name, &p.model.version)
                    && queued & bits == bits
            })
    }

    /// Remembers `p`'s rows as queued.
    pub fn remember(&mut self, p: &Prediction) {
        let Some(bits) = horizon_bits(p) else {
            return;
        };
        if self.0.len() >= SEEN_MAX {
            self.0.clear();
        }
        let key = (p.forecast.based_on_hour, &p.model.name, &p.model.version);
        match self.0.get_mut(&p.sensor_id) {
            Some((t, name, version, queued)) if (*t, &*name, &*version) == key => *queued |= bits,
            _ => {
                let entry = (key.0, key.1.clone(), key.2.clone(), bits);
                self.0.insert(p.sensor_id.clone(), entry);
            }
        }
    }
}

impl Recorder {
    /// The recorder and its writer task, which ends (after writing what is queued) once the
    /// recorder is dropped.
    pub fn spawn(pool: PgPool, queue: usize) -> (Arc<Recorder>, JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(queue.max(1));
        let written = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn(write_loop(pool, rx, written.clone()));
        let recorder = Arc::new(Recorder {
            tx,
            seen: Mutex::default(),
            dropped: AtomicU64::new(0),
            written,
        });
        (recorder, task)
    }

    /// Queues `p` unless it was queued already; a record the full queue refused is counted
    /// as dropped and tried again with the sensor's next answer.
    pub fn record(&self, p: &Prediction) {
        let mut seen = self
            .seen
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if seen.queued(p) {
            return;
        }
        match self.tx.try_send(served(p)) {
            Ok(()) => seen.remember(p),
            Err(_) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// The rows of an answer (pure): the next hour, then each other requested horizon once.
pub fn served(p: &Prediction) -> Vec<ServedForecast> {
    let made_at = Utc::now();
    let row = |hours: u32, f: &Forecast| ServedForecast {
        sensor_id: p.sensor_id.clone(),
        forecast_for: f.forecast_for,
        based_on_hour: f.based_on_hour,
        pm2_5: f.pm2_5,
        hours_ahead: i16::try_from(hours).unwrap_or(i16::MAX),
        pm2_5_lower: f.interval.map(|b| b.lower),
        pm2_5_upper: f.interval.map(|b| b.upper),
        model_name: p.model.name.clone(),
        model_version: p.model.version.clone(),
        model_kind: p.model.kind.clone(),
        made_at,
    };
    let mut rows = vec![row(1, &p.forecast)];
    for a in p.horizons.iter().flatten() {
        if rows
            .iter()
            .all(|r| u32::try_from(r.hours_ahead) != Ok(a.hours))
        {
            rows.push(row(a.hours, &a.forecast));
        }
    }
    rows
}

async fn write_loop(
    pool: PgPool,
    mut rx: mpsc::Receiver<Vec<ServedForecast>>,
    written: Arc<AtomicU64>,
) {
    let mut answers = Vec::with_capacity(BATCH);
    let mut batch = Vec::with_capacity(BATCH);
    while rx.recv_many(&mut answers, BATCH).await > 0 {
        batch.extend(answers.drain(..).flatten());
        // A failed insert is retried a few times, then the batch is dropped (and logged):
        // records are an observation of the service, not data it owes anyone.
        for attempt in 0..3u32 {
            match insert_forecasts(&pool, &batch).await {
                Ok(n) => {
                    written.fetch_add(n, Ordering::Relaxed);
                    break;
                }
                Err(e) if attempt < 2 && e.is_retryable() => {
                    tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
                }
                Err(e) => {
                    tracing::warn!(error = %e, records = batch.len(), "forecast records not written");
                    break;
                }
            }
        }
        batch.clear();
    }
}

#[cfg(test)]
mod tests {
    use chrono::Duration as Hours;

    use super::*;
    use crate::api::ModelInfo;
    use crate::forecast::{Ahead, Bounds};

    fn prediction(sensor: &str, hour: i64, version: &str) -> Prediction {
        let t0: DateTime<Utc> = "2024-01-15T00:00:00Z".parse().unwrap();
        Prediction {
            sensor_id: sensor.into(),
            forecast: Forecast {
                forecast_for: t0 + Hours::hours(hour + 1),
                based_on_hour: t0 + Hours::hours(hour),
                pm2_5: 12.0,
                interval: None,
                us_aqi: None,
            },
            unit: "ug/m3",
            model: ModelInfo {
                name: "m".into(),
                version: version.into(),
                kind: "boosting".into(),
            },
            horizons: None,
        }
    }

    #[test]
    fn a_forecast_is_queued_once_per_sensor_hour_and_model_version() {
        let mut seen = Seen::default();
        let p = prediction("a", 0, "1");
        assert!(!seen.queued(&p));
        seen.remember(&p);
        assert!(seen.queued(&p), "the same answer again");
        assert!(!seen.queued(&prediction("b", 0, "1")), "another sensor");
        assert!(!seen.queued(&prediction("a", 1, "1")), "the next hour");
        assert!(
            !seen.queued(&prediction("a", 0, "2")),
            "a new model version"
        );
    }

    fn with_horizons(mut p: Prediction, hours: &[u32]) -> Prediction {
        let ahead = |h: u32| Ahead {
            hours: h,
            forecast: Forecast {
                forecast_for: p.forecast.based_on_hour + Hours::hours(i64::from(h)),
                pm2_5: f64::from(h),
                interval: Some(Bounds {
                    lower: 0.0,
                    upper: 2.0 * f64::from(h),
                    coverage: 0.9,
                }),
                ..p.forecast.clone()
            },
            interpolated: false,
        };
        p.horizons = Some(hours.iter().map(|h| ahead(*h)).collect());
        p
    }

    #[test]
    fn an_answer_is_a_row_per_horizon_queued_once() {
        let p = with_horizons(prediction("a", 0, "1"), &[1, 6, 24]);
        let rows = served(&p);
        let hours: Vec<i16> = rows.iter().map(|r| r.hours_ahead).collect();
        assert_eq!(hours, [1, 6, 24], "the next hour once");
        assert_eq!(
            rows[2].forecast_for,
            p.forecast.based_on_hour + Hours::hours(24)
        );
        assert_eq!((rows[2].pm2_5, rows[2].pm2_5_upper), (24.0, Some(48.0)));
        assert_eq!(rows[0].pm2_5_lower, None, "the next hour had no interval");
        let mut seen = Seen::default();
        seen.remember(&p);
        assert!(seen.queued(&with_horizons(prediction("a", 0, "1"), &[24, 6])));
        assert!(seen.queued(&prediction("a", 0, "1")));
        assert!(
            !seen.queued(&with_horizons(prediction("a", 0, "1"), &[12])),
            "a new horizon"
        );
        seen.remember(&with_horizons(prediction("a", 0, "1"), &[12]));
        assert!(seen.queued(&with_horizons(prediction("a", 0, "1"), &[6, 12])));
        assert!(
            !seen.queued(&with_horizons(prediction("a", 0, "1"), &[70])),
            "past 64 h: never remembered"
        );
    }

    #[tokio::test]
    async fn a_record_the_full_queue_dropped_is_queued_with_the_next_answer() {
        let (tx, mut rx) = mpsc::channel(1);
        let r = Recorder {
            tx,
            seen: Mutex::default(),
            dropped: AtomicU64::new(0),
            written: Arc::default(),
        };
        r.record(&prediction("a", 0, "1"));
        r.record(&prediction("a", 0, "1"));
        r.record(&prediction("b", 0, "1"));
        assert_eq!(
            r.dropped.load(Ordering::Relaxed),
            1,
            "b found the queue full"
        );
        assert_eq!(rx.recv().await.unwrap()[0].sensor_id, "a");
        r.record(&prediction("b", 0, "1"));
        assert_eq!(rx.recv().await.unwrap()[0].sensor_id, "b");
        assert!(rx.try_recv().is_err(), "a was queued once");
    }
}
