//! What the runtime counts; every counter also has a log line where it is incremented.

use std::sync::atomic::{AtomicU64, Ordering};

use airq_runtime::latency::Histogram;

#[derive(Debug, Default)]
pub struct RuntimeCounters {
    /// Messages consumed.
    pub received: AtomicU64,
    /// Batches written whose offsets were stored.
    pub batches: AtomicU64,
    /// Messages sent to the dead-letter topic (processor rejections and sink refusals).
    pub dead_lettered: AtomicU64,
    /// Of those, messages whose item the sink refused for good.
    pub sink_rejected: AtomicU64,
    /// Transient failures retried.
    pub retries: AtomicU64,
    /// Errors returned by the consumer.
    pub consumer_errors: AtomicU64,
    /// Times the consumer was recreated by the watchdog.
    pub consumer_recreated: AtomicU64,
    /// Sensors whose state was evicted after being idle.
    pub evicted: AtomicU64,
    /// The service's own latency per message: from the consumer handing it over to its
    /// batch written (the sink's outputs acknowledged, its dead letter sent). A message a
    /// processor holds past its batch (the detector's ticks) counts with that batch.
    pub service_latency: Histogram,
    /// The same message to its batch's publish acknowledged (e.g. `processed_data`): the
    /// output the next service reads. The sink's write may finish later; `service_latency`
    /// waits for both. For a sink that publishes nothing: until its batch's turn came.
    pub published_latency: Histogram,
    /// The broker hop before it: from a message's timestamp (its producer's clock when it
    /// was sent) to the consumer handing it over, wall clock.
    pub hop_latency: Histogram,
    /// Per batch: the sink's write (e.g. PostgreSQL), and its publish once its turn came
    /// (e.g. `processed_data` acknowledged).
    pub sink_write: Histogram,
    pub sink_publish: Histogram,
}

impl RuntimeCounters {
    pub fn inc(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }

    /// One line with every counter.
    pub fn log(&self, service: &str) {
        tracing::info!(
            service,
            received = Self::get(&self.received),
            batches = Self::get(&self.batches),
            dead_lettered = Self::get(&self.dead_lettered),
            sink_rejected = Self::get(&self.sink_rejected),
            retries = Self::get(&self.retries),
            consumer_errors = Self::get(&self.consumer_errors),
            consumer_recreated = Self::get(&self.consumer_recreated),
            evicted = Self::get(&self.evicted),
            hop_latency = %self.hop_latency.summary(),
            service_latency = %self.service_latency.summary(),
            // Since the previous line (10 s): the steady state, apart from a start's backlog.
            service_latency_recent = %self.service_latency.recent_summary(),
            published_latency = %self.published_latency.summary(),
            published_latency_recent = %self.published_latency.recent_summary(),
            sink_write = %self.sink_write.summary(),
            sink_publish = %self.sink_publish.summary(),
            "consumer counters"
        );
    }
}
