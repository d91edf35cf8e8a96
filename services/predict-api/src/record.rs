//! Served forecasts into PostgreSQL (`forecasts`), off the request path: a handler only
//! queues a record (`try_send`, never waits); one writer task inserts them in batches. A full
//! queue (the database slow or down) drops records and counts them: a prediction is never
//! delayed or failed for its record.
//!
//! The table keeps the first answer of a model version for a sensor and hour, so a busy
//! sensor asked thousands of times an hour yields one row: the recorder remembers what it
//! queued last per sensor ([`Seen`]) and queues only what is new, instead of sending every
//! answer to PostgreSQL to be discarded there by the primary key.

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

/// Largest insert of the writer.
const BATCH: usize = 1000;

/// Sensors remembered by [`Seen`] before it starts afresh (a bound on memory whatever ids
/// clients send; forgetting only costs a row the primary key discards).
const SEEN_MAX: usize = 100_000;

pub struct Recorder {
    tx: mpsc::Sender<ServedForecast>,
    seen: Mutex<Seen>,
    pub dropped: AtomicU64,
    pub written: Arc<AtomicU64>,
}

/// The last forecast queued per sensor: the hour forecast and the model that made it.
#[derive(Debug, Default)]
pub struct Seen(HashMap<String, (DateTime<Utc>, String, String)>);

impl Seen {
    /// Whether `p` was queued already (the last queued forecast of its sensor is for the same
    /// hour by the same model version).
    pub fn queued(&self, p: &Prediction) -> bool {
        self.0.get(&p.sensor_id).is_some_and(|(t, name, version)| {
            (*t, name, version) == (p.forecast.forecast_for, &p.model.name, &p.model.version)
        })
    }

    /// Remembers `p` as queued.
    pub fn remember(&mut self, p: &Prediction) {
        if self.0.len() >= SEEN_MAX {
            self.0.clear();
        }
        let entry = (
            p.forecast.forecast_for,
            p.model.name.clone(),
            p.model.version.clone(),
        );
        self.0.insert(p.sensor_id.clone(), entry);
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

/// The record of a prediction (pure).
pub fn served(p: &Prediction) -> ServedForecast {
    ServedForecast {
        sensor_id: p.sensor_id.clone(),
        forecast_for: p.forecast.forecast_for,
        based_on_hour: p.forecast.based_on_hour,
        pm2_5: p.forecast.pm2_5,
        model_name: p.model.name.clone(),
        model_version: p.model.version.clone(),
        model_kind: p.model.kind.clone(),
        made_at: Utc::now(),
    }
}

async fn write_loop(pool: PgPool, mut rx: mpsc::Receiver<ServedForecast>, written: Arc<AtomicU64>) {
    let mut batch = Vec::with_capacity(BATCH);
    while rx.recv_many(&mut batch, BATCH).await > 0 {
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
    use crate::forecast::Forecast;

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
        assert_eq!(rx.recv().await.unwrap().sensor_id, "a");
        r.record(&prediction("b", 0, "1"));
        assert_eq!(rx.recv().await.unwrap().sensor_id, "b");
        assert!(rx.try_recv().is_err(), "a was queued once");
    }
}
