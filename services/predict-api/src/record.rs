//! Served forecasts into PostgreSQL (`forecasts`), off the request path: a handler only
//! queues a record (`try_send`, never waits); one writer task inserts them in batches. A full
//! queue (the database slow or down) drops records and counts them: a prediction is never
//! delayed or failed for its record.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use airq_store::forecasts::{ServedForecast, insert_forecasts};
use chrono::Utc;
use sqlx::PgPool;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::api::Prediction;

/// Largest insert of the writer.
const BATCH: usize = 1000;

pub struct Recorder {
    tx: mpsc::Sender<ServedForecast>,
    pub dropped: AtomicU64,
    pub written: Arc<AtomicU64>,
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
            dropped: AtomicU64::new(0),
            written,
        });
        (recorder, task)
    }

    pub fn record(&self, p: &Prediction) {
        if self.tx.try_send(served(p)).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
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
