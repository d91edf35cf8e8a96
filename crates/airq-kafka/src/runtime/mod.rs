//! The one consume -> process -> write -> store-offset loop of the airq consumers.
//!
//! A service plugs in a [`Processor`] (messages in, items and rejections out; it may read,
//! e.g. warm-up history, through [`Context::retry`]) and a [`Sink`] (writes items durably
//! and idempotently). The runtime owns the policy every consumer shares:
//!
//! - **At least once.** A batch's offsets are stored only after its items are written and
//!   its dead letters acknowledged, and only after every older batch's: a crash anywhere
//!   redelivers, never loses. Up to `max_batches_in_flight` batches are written while the
//!   next is consumed and processed. A batch closes when it is full, when it is
//!   `batch_timeout_ms` old, or (`flush_when_caught_up`) once nothing more is queued.
//!   A processor may hold messages to judge with later ones (the detector's event-time
//!   ticks): the offsets stored stop at the oldest held
//!   ([`Processor::holding`]), and a processor whose held messages waited long enough is
//!   called without new ones ([`Processor::due`]).
//! - **Transient errors** (broker or database unreachable, a timeout) back off and retry
//!   without moving offsets ([`airq_runtime::retry`]).
//! - **Permanent errors** never stall a partition: a message the processor refuses, or an
//!   item the sink refuses for good (found by bisecting the batch), goes to the dead-letter
//!   topic with its reason, and the offset moves on.
//! - **Shutdown** ends sleeps and retries at once, drains the batches in flight for at most
//!   `drain_timeout_secs`, and commits.
//! - **Self-healing.** A consumer left without partitions while its group makes no progress
//!   on a topic with data, one whose group leaves partitions with data unconsumed while its
//!   own progress, or whose fetches keep failing, is recreated ([`heal`]).
//! - **Bounded state.** The processor's per-sensor state is evicted after
//!   `state_idle_secs` without a reading ([`Processor::evict_idle`], [`IdleTracker`]).
//!
//! Layout: `mod.rs` the contract, [`run`](Runtime::run) the loop; `write.rs` the sink
//! with retry and bisection; `heal.rs` the watchdog; `counters.rs` what is counted.

mod counters;
mod heal;
mod idle;
mod write;

use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use airq_runtime::retry::{Backoff, RetryError, Retryable};
use rdkafka::Message;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::{BorrowedMessage, OwnedMessage};
use serde::Deserialize;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use counters::RuntimeCounters;
use heal::{Verdict, Watchdog};
pub use idle::IdleTracker;

use crate::offsets::OffsetTracker;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Settings of one consumer (a service's `[cleaner]` or `[detector]` section).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsumerSettings {
    pub group_id: String,
    /// A batch is processed when it holds this many messages or is this old.
    pub batch_size: usize,
    pub batch_timeout_ms: u64,
    /// Also process a batch as soon as the consumer has nothing more queued (it caught up):
    /// a live stream then waits for its work, not for `batch_timeout_ms`, while a backlog
    /// still fills whole batches. Off for a sink that wants large batches more than latency.
    #[serde(default = "ConsumerSettings::default_flush_when_caught_up")]
    pub flush_when_caught_up: bool,
    /// Batches being written at once (their offsets are still stored in order).
    pub max_batches_in_flight: usize,
    /// Producer batching delay: larger batches for throughput, smaller for latency.
    pub producer_linger_ms: u32,
    /// Back-off bounds while a server is unavailable.
    pub retry_initial_ms: u64,
    pub retry_max_ms: u64,
    /// Longest wait for the batches in flight on shutdown.
    pub drain_timeout_secs: u64,
    /// Recreate the consumer after this long without partitions while the group makes no
    /// progress on a topic with data, or after this long of consecutive fetch errors.
    pub heal_after_secs: u64,
    /// Per-sensor state is dropped after this long (processing time) without a reading.
    pub state_idle_secs: u64,
    /// How often a consumer that receives nothing asks its processor whether held work is
    /// due ([`Processor::due`]), ms: the most it adds to a held reading's wait.
    #[serde(default = "ConsumerSettings::default_due_check_ms")]
    pub due_check_ms: u64,
}

impl ConsumerSettings {
    fn default_due_check_ms() -> u64 {
        1000
    }

    fn default_flush_when_caught_up() -> bool {
        true
    }

    pub fn backoff(&self) -> Backoff {
        Backoff::from_millis(self.retry_initial_ms, self.retry_max_ms)
    }
}

/// A message the processor refuses: it goes to the dead-letter topic with its reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// Index of the message in the batch.
    pub index: usize,
    /// A stable, machine-readable reason (`malformed_json`, `rejected_by_sink`, ...).
    pub reason: String,
    /// What exactly was wrong, for a person.
    pub detail: String,
}

/// What a processor made of a batch: items to write, each with the index of the message it
/// came from, and the messages refused. A processor that held messages of earlier batches
/// (see [`Processor::holding`]) carries those its items come from: they follow the batch's
/// own, from index `batch.len()` on.
#[derive(Debug)]
pub struct Outputs<I> {
    pub items: Vec<I>,
    pub sources: Vec<usize>,
    pub rejected: Vec<Rejection>,
    pub carried: Vec<OwnedMessage>,
}

impl<I> Default for Outputs<I> {
    fn default() -> Self {
        Self {
            items: Vec::new(),
            sources: Vec::new(),
            rejected: Vec::new(),
            carried: Vec::new(),
        }
    }
}

impl<I> Outputs<I> {
    pub fn push(&mut self, source: usize, item: I) {
        self.items.push(item);
        self.sources.push(source);
    }

    /// Carries a message of an earlier batch; returns its index (after the `batch_len`
    /// messages of this batch) for [`Outputs::push`].
    pub fn carry(&mut self, batch_len: usize, message: OwnedMessage) -> usize {
        self.carried.push(message);
        batch_len + self.carried.len() - 1
    }

    pub fn reject(&mut self, index: usize, reason: impl Into<String>, detail: impl Into<String>) {
        self.rejected.push(Rejection {
            index,
            reason: reason.into(),
            detail: detail.into(),
        });
    }
}

/// Why processing a batch did not finish.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// Shutdown was requested during a retry: the batch is redelivered.
    #[error("stopped during processing")]
    Stopped,
    /// A failure no retry fixes and no single message explains: the consumer stops.
    #[error("processing failed: {0}")]
    Fatal(BoxError),
}

/// Turns batches of messages into items. Pure apart from reads through [`Context::retry`].
pub trait Processor: Send {
    type Item: Send + Sync + 'static;

    fn process(
        &mut self,
        batch: &[OwnedMessage],
        ctx: &Context,
    ) -> impl Future<Output = Result<Outputs<Self::Item>, ProcessError>> + Send;

    /// The lowest offset per (topic, partition) of the messages this processor holds to
    /// judge later (their items are not written yet): no offset past them is stored.
    fn holding(&self) -> Vec<(String, i32, i64)> {
        Vec::new()
    }

    /// Whether held messages waited long enough: the runtime then calls
    /// [`Processor::process`] with an empty batch, also when no message arrives (checked
    /// every `due_check_ms`).
    fn due(&self, _now: Instant) -> bool {
        false
    }

    /// Drops the state of sensors not seen for `idle` (processing time); returns how many.
    fn evict_idle(&mut self, _now: Instant, _idle: Duration) -> usize {
        0
    }

    /// Logs the processor's own counters (every 10 s and on exit).
    fn log_progress(&self) {}
}

/// Why a sink could not write.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("{0}")]
    Transient(BoxError),
    /// The same items will fail on every attempt (e.g. a value the database rejects).
    #[error("{0}")]
    Permanent(BoxError),
}

impl Retryable for SinkError {
    fn is_retryable(&self) -> bool {
        matches!(self, SinkError::Transient(_))
    }
}

/// Writes items durably. Must be idempotent: a redelivered batch is written again.
pub trait Sink: Send + Sync + 'static {
    type Item: Send + Sync + 'static;

    /// The durable write. Batches in flight are written concurrently.
    fn write(&self, items: &[Self::Item]) -> impl Future<Output = Result<(), SinkError>> + Send;

    /// Runs beside the batch's `write`, one batch at a time in the order the batches were
    /// consumed: for outputs whose order matters downstream (the cleaner's `processed_data`,
    /// which must keep each sensor's readings in order, also when a retry makes an older
    /// batch's `write` finish after a newer one's). It does not wait for the write, so that a
    /// reading's latency is the slower of the two rather than their sum: an item the write
    /// then refuses for good has been published, and is dead-lettered all the same.
    fn publish(&self, _items: &[Self::Item]) -> impl Future<Output = Result<(), SinkError>> + Send {
        async { Ok(()) }
    }
}

/// What a processor may use: the retry policy, bound to shutdown and counted.
#[derive(Clone)]
pub struct Context {
    pub backoff: Backoff,
    pub shutdown: CancellationToken,
    pub counters: Arc<RuntimeCounters>,
}

impl Context {
    /// [`airq_runtime::retry::retry`] with the consumer's back-off, counting each retry.
    pub async fn retry<T, E, F, Fut>(&self, what: &str, op: F) -> Result<T, RetryError<E>>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: Retryable + std::fmt::Display,
    {
        airq_runtime::retry::retry(
            what,
            self.backoff,
            &self.shutdown,
            |_| RuntimeCounters::inc(&self.counters.retries, 1),
            op,
        )
        .await
    }
}

/// Builds the consumer, again when it must be recreated.
pub type ConsumerFactory = Box<dyn Fn() -> Result<StreamConsumer, crate::KafkaError> + Send>;

/// The factory of a consumer of `topic` in `group` (what every airq consumer subscribes to).
pub fn consumer_factory(brokers: &str, group: &str, topic: &str) -> ConsumerFactory {
    let (brokers, group, topic) = (brokers.to_owned(), group.to_owned(), topic.to_owned());
    Box::new(move || crate::client::consumer(&brokers, &group, &[&topic]))
}

/// Everything the write tasks share.
struct Shared<S> {
    sink: S,
    producer: crate::publish::Publisher,
    dead_letter_topic: String,
    service: &'static str,
    ctx: Context,
}

/// When a batch's messages were received: (µs since the epoch, how many), one entry per clock
/// read. Once the batch is written, each message's own latency is counted from it.
type Receipts = Vec<(u64, u64)>;

type InFlight = VecDeque<(JoinHandle<Result<(), write::Stopped>>, OffsetTracker)>;

/// The consumer loop of one service.
pub struct Runtime<P: Processor, S: Sink<Item = P::Item>> {
    settings: ConsumerSettings,
    factory: ConsumerFactory,
    consumer: StreamConsumer,
    processor: P,
    shared: Arc<Shared<S>>,
    counters: Arc<RuntimeCounters>,
    /// Set once a batch was abandoned on shutdown: no later offset may be stored then.
    abandoned: bool,
    /// Resolved when the newest batch in flight has published: the next one waits for it.
    published: write::Turn,
}

impl<P: Processor, S: Sink<Item = P::Item>> Runtime<P, S> {
    /// `service` names the dead-letter records' origin.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        service: &'static str,
        settings: ConsumerSettings,
        factory: ConsumerFactory,
        producer: crate::publish::Publisher,
        dead_letter_topic: String,
        processor: P,
        sink: S,
        shutdown: CancellationToken,
    ) -> Result<Self, crate::KafkaError> {
        let consumer = factory()?;
        let counters = Arc::new(RuntimeCounters::default());
        let ctx = Context {
            backoff: settings.backoff(),
            shutdown,
            counters: counters.clone(),
        };
        Ok(Self {
            settings,
            factory,
            consumer,
            processor,
            shared: Arc::new(Shared {
                sink,
                producer,
                dead_letter_topic,
                service,
                ctx,
            }),
            counters,
            abandoned: false,
            published: write::Turn::default(),
        })
    }

    /// The runtime's counters (shared: they keep counting while it runs).
    pub fn counters(&self) -> Arc<RuntimeCounters> {
        self.counters.clone()
    }

    /// Runs until shutdown; the batches in flight are written and their offsets committed.
    pub async fn run(mut self) -> Result<(), ProcessError> {
        let shutdown = self.shared.ctx.shutdown.clone();
        let mut in_flight: InFlight = VecDeque::new();
        let depth = self.settings.max_batches_in_flight.max(1);
        let mut watchdog = Watchdog::new(Duration::from_secs(self.settings.heal_after_secs));
        let second = Duration::from_secs(1);
        let mut check = tokio::time::interval_at(tokio::time::Instant::now() + second, second);
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let every = Duration::from_millis(self.settings.due_check_ms.max(1));
        let mut due_check = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        due_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_log = Instant::now();
        loop {
            let (batch, receipts) = self
                .collect(&shutdown, &mut watchdog, &mut check, &mut due_check)
                .await;
            while in_flight.len() >= depth
                || in_flight.front().is_some_and(|(t, _)| t.is_finished())
            {
                let Some((task, offsets)) = in_flight.pop_front() else {
                    break;
                };
                self.finish(task, offsets, &mut watchdog).await?;
            }
            if !batch.is_empty() || self.processor.due(Instant::now()) {
                let mut offsets = OffsetTracker::default();
                batch
                    .iter()
                    .for_each(|m| offsets.observe(m.topic(), m.partition(), m.offset()));
                RuntimeCounters::inc(&self.counters.received, batch.len() as u64);
                match self.processor.process(&batch, &self.shared.ctx).await {
                    Ok(mut outputs) => {
                        for (topic, partition, offset) in self.processor.holding() {
                            offsets.hold_back(&topic, partition, offset);
                        }
                        let mut batch = batch;
                        batch.append(&mut outputs.carried);
                        let (after, done, next) =
                            write::Turn::after(std::mem::take(&mut self.published));
                        self.published = next;
                        let written =
                            write::write(self.shared.clone(), batch, outputs, after, done);
                        let counters = self.counters.clone();
                        let task = tokio::spawn(async move {
                            let published = written.await?;
                            let now = wall_clock_us();
                            for (t, n) in receipts {
                                let since = |at: u64| Duration::from_micros(at.saturating_sub(t));
                                counters.service_latency.record_n(since(now), n);
                                counters.published_latency.record_n(since(published), n);
                            }
                            Ok(())
                        });
                        in_flight.push_back((task, offsets));
                    }
                    Err(ProcessError::Stopped) => {
                        tracing::info!("batch abandoned on shutdown; it will be redelivered");
                        self.abandoned = true;
                    }
                    Err(e) => return Err(e),
                }
            }
            if last_log.elapsed() >= Duration::from_secs(10) {
                let idle = Duration::from_secs(self.settings.state_idle_secs);
                let evicted = self.processor.evict_idle(Instant::now(), idle);
                RuntimeCounters::inc(&self.counters.evicted, evicted as u64);
                self.log_progress();
                last_log = Instant::now();
            }
            if shutdown.is_cancelled() {
                break;
            }
        }
        self.drain(in_flight, &mut watchdog).await?;
        if let Err(e) = self.consumer.commit_consumer_state(CommitMode::Sync) {
            // Nothing stored since the last auto-commit is not an error worth failing on.
            tracing::debug!(error = %e, "final commit");
        }
        self.log_progress();
        Ok(())
    }

    fn log_progress(&self) {
        self.counters.log(self.shared.service);
        self.processor.log_progress();
    }

    async fn drain(
        &mut self,
        mut in_flight: InFlight,
        watchdog: &mut Watchdog,
    ) -> Result<(), ProcessError> {
        let limit = Duration::from_secs(self.settings.drain_timeout_secs);
        let drained = tokio::time::timeout(limit, async {
            while let Some((task, offsets)) = in_flight.pop_front() {
                self.finish(task, offsets, watchdog).await?;
            }
            Ok::<_, ProcessError>(())
        })
        .await;
        match drained {
            Ok(r) => r,
            Err(_) => {
                tracing::warn!("drain timed out: the last batches will be redelivered");
                Ok(())
            }
        }
    }

    /// Waits for a batch's writer; stores its offsets if it completed. Once a batch is
    /// abandoned (shutdown mid-retry), no later batch stores its offsets, or the abandoned
    /// one would be skipped instead of redelivered.
    async fn finish(
        &mut self,
        task: JoinHandle<Result<(), write::Stopped>>,
        offsets: OffsetTracker,
        watchdog: &mut Watchdog,
    ) -> Result<(), ProcessError> {
        match task.await {
            Ok(Ok(())) if self.abandoned => {}
            Ok(Ok(())) => {
                // Fails for partitions revoked meanwhile: their new owner gets them again.
                match self.consumer.store_offsets(&offsets.to_store()) {
                    Ok(()) => watchdog.on_batch_stored(),
                    Err(e) => {
                        tracing::warn!(error = %e, "offsets not stored (partition revoked?); they will be redelivered");
                    }
                }
                RuntimeCounters::inc(&self.counters.batches, 1);
            }
            Ok(Err(write::Stopped)) => {
                tracing::info!("batch abandoned on shutdown; it will be redelivered");
                self.abandoned = true;
            }
            Err(e) => return Err(ProcessError::Fatal(Box::new(e))),
        }
        Ok(())
    }

    /// Gathers up to `batch_size` messages, or what arrived within `batch_timeout_ms` of the
    /// first, or (`flush_when_caught_up`) what was queued when the first arrived, or none
    /// once the processor's held work is due (asked every `due_check_ms`); once a second,
    /// the watchdog checks the consumer's health.
    async fn collect(
        &mut self,
        shutdown: &CancellationToken,
        watchdog: &mut Watchdog,
        check: &mut tokio::time::Interval,
        due_check: &mut tokio::time::Interval,
    ) -> (Vec<OwnedMessage>, Receipts) {
        let (size, timeout) = (
            self.settings.batch_size,
            Duration::from_millis(self.settings.batch_timeout_ms),
        );
        let mut out = Vec::new();
        let mut receipts = Vec::new();
        // One timer per batch, armed by the first message (a timer per message costs ~10 %).
        let deadline = tokio::time::sleep(Duration::from_secs(3600));
        tokio::pin!(deadline);
        while out.len() < size {
            let msg = tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                _ = &mut deadline, if !out.is_empty() => break,
                // Before `recv`: a consumer that always has messages is checked up too.
                _ = check.tick() => {
                    if self.checkup(watchdog) || self.processor.due(Instant::now()) {
                        break;
                    }
                    continue;
                }
                _ = due_check.tick(), if out.is_empty() => {
                    if self.processor.due(Instant::now()) {
                        break;
                    }
                    continue;
                }
                m = self.consumer.recv() => m,
            };
            match msg {
                Ok(m) => {
                    if out.is_empty() {
                        deadline
                            .as_mut()
                            .reset(tokio::time::Instant::now() + timeout);
                    }
                    // One clock read for this message and those queued behind it.
                    let (now, first) = (wall_clock_us(), out.len());
                    received(&self.counters, watchdog, &m, now);
                    out.push(m.detach());
                    let flush = self.settings.flush_when_caught_up;
                    // Take what is queued already, without waiting, and process it.
                    while flush && out.len() < size {
                        match try_recv(&self.consumer) {
                            Some(Ok(m)) => {
                                received(&self.counters, watchdog, &m, now);
                                out.push(m.detach());
                            }
                            Some(Err(e)) => {
                                consumer_error(&self.counters, watchdog, &e);
                                break;
                            }
                            None => break,
                        }
                    }
                    receipts.push((now, (out.len() - first) as u64));
                    if flush {
                        break;
                    }
                }
                Err(e) => {
                    consumer_error(&self.counters, watchdog, &e);
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(self.settings.backoff().initial) => {}
                    }
                }
            }
        }
        (out, receipts)
    }

    /// Asks the watchdog whether the consumer is stuck; recreates it if so. Returns whether
    /// it was recreated.
    fn checkup(&mut self, watchdog: &mut Watchdog) -> bool {
        let assigned = self
            .consumer
            .assignment()
            .map(|a| a.count() > 0)
            .unwrap_or(false);
        let consumer = &self.consumer;
        let verdict = watchdog.check(Instant::now(), assigned, || heal::progress(consumer));
        let Verdict::Recreate(why) = verdict else {
            return false;
        };
        tracing::warn!(reason = why, group = %self.settings.group_id, "recreating the consumer");
        match (self.factory)() {
            Ok(fresh) => {
                // The old consumer leaves the group as it is dropped.
                self.consumer = fresh;
                RuntimeCounters::inc(&self.counters.consumer_recreated, 1);
                watchdog.reset();
                true
            }
            Err(e) => {
                tracing::error!(error = %e, "could not recreate the consumer; keeping the old one");
                false
            }
        }
    }
}

/// The next message if one is queued already, without waiting for one.
fn try_recv(consumer: &StreamConsumer) -> Option<KafkaResult<BorrowedMessage<'_>>> {
    let mut next = std::pin::pin!(consumer.recv());
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match next.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(m) => Some(m),
        std::task::Poll::Pending => None,
    }
}

/// Counts a message received at `now` (µs since the epoch) and the hop before it.
fn received(counters: &RuntimeCounters, watchdog: &mut Watchdog, m: &BorrowedMessage, now: u64) {
    watchdog.on_message();
    if let Some(sent_ms) = m.timestamp().to_millis() {
        let sent = u64::try_from(sent_ms).unwrap_or(0).saturating_mul(1000);
        counters
            .hop_latency
            .record(Duration::from_micros(now.saturating_sub(sent)));
    }
}

fn consumer_error(counters: &RuntimeCounters, watchdog: &mut Watchdog, e: &KafkaError) {
    tracing::warn!(error = %e, "consumer error");
    watchdog.on_error(Instant::now());
    RuntimeCounters::inc(&counters.consumer_errors, 1);
}

/// The wall clock in microseconds since the epoch (message timestamps are wall-clock too).
fn wall_clock_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}
