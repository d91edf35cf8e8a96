//! Writing one batch, three things at once: the sink's items with retry, bisecting to the
//! items the sink refuses for good; the processor's rejections to the dead-letter topic; and,
//! in consumption order, the sink's publish. Then the dead letters of the items the sink
//! refused.

use std::sync::Arc;

use airq_runtime::retry::RetryError;
use rdkafka::Message;
use rdkafka::message::OwnedMessage;
use tokio::sync::oneshot;

use super::{Outputs, Rejection, RuntimeCounters, Shared, Sink, SinkError};
use crate::dead_letter::{Provenance, headers};

/// Shutdown was requested before the batch was written: it will be redelivered.
#[derive(Debug)]
pub struct Stopped;

/// Reason of a dead letter whose item the sink refused for good.
pub const REJECTED_BY_SINK: &str = "rejected_by_sink";

/// A batch's place in the publish order: it resolves once the batch before it published
/// (or gave up on shutdown, after which no later offset is stored anyway).
#[derive(Default)]
pub(super) struct Turn(Option<oneshot::Receiver<()>>);

/// Held by a batch's writer: dropping it (published, or stopped) lets the next batch publish.
pub(super) struct Done(#[allow(dead_code)] oneshot::Sender<()>);

impl Turn {
    /// A new batch's place after `previous`: the turn it waits for, the `Done` it drops, and
    /// the turn of the batch after it.
    pub(super) fn after(previous: Turn) -> (Turn, Done, Turn) {
        let (tx, rx) = oneshot::channel();
        (previous, Done(tx), Turn(Some(rx)))
    }

    async fn wait(self) {
        if let Some(rx) = self.0 {
            // An error means the previous writer ended without publishing: go on.
            let _ = rx.await;
        }
    }
}

/// Writes one batch. Returns the wall clock (µs since the epoch) at which its publish was
/// acknowledged: the stream's output, which the next service reads, often before the write.
pub(super) async fn write<S: Sink>(
    shared: Arc<Shared<S>>,
    batch: Vec<OwnedMessage>,
    outputs: Outputs<S::Item>,
    after: Turn,
    done: Done,
) -> Result<u64, Stopped> {
    let Outputs {
        items,
        sources,
        rejected,
        carried: _,
    } = outputs;
    let counters = &shared.ctx.counters;
    // Three things at once: the sink's write, the processor's dead letters (no order needed)
    // and, in consumption order, the sink's publish. The publish does not wait for the write:
    // a live reading's latency is the slower of the two, not their sum.
    let (written, dead, unpublished) = tokio::join!(
        async {
            let started = std::time::Instant::now();
            let written = write_bisecting(&shared, &items, &sources).await;
            counters.sink_write.record(started.elapsed());
            written
        },
        dead_letter(&shared, &batch, rejected),
        async {
            let unpublished = publish_in_turn(&shared, &items, &sources, after, done).await;
            (unpublished, super::wall_clock_us())
        },
    );
    let (unpublished, published_us) = unpublished;
    let mut refused = written?;
    dead?;
    RuntimeCounters::inc(&counters.sink_rejected, refused.len() as u64);
    refused.extend(unpublished?);
    // bench/replay.sh times the cleaner from the first to the last of these.
    tracing::debug!(messages = batch.len(), "batch written");
    dead_letter(&shared, &batch, refused).await?;
    Ok(published_us)
}

/// Waits for the batch before this one to publish, publishes `items`, then lets the next
/// batch go. Returns a rejection for each item's message if the sink refuses to publish.
async fn publish_in_turn<S: Sink>(
    shared: &Shared<S>,
    items: &[S::Item],
    sources: &[usize],
    after: Turn,
    done: Done,
) -> Result<Vec<Rejection>, Stopped> {
    after.wait().await;
    let started = std::time::Instant::now();
    let result = shared
        .ctx
        .retry("publishing the sink's outputs", || {
            shared.sink.publish(items)
        })
        .await;
    shared.ctx.counters.sink_publish.record(started.elapsed());
    drop(done);
    match result {
        Ok(()) => Ok(Vec::new()),
        Err(RetryError::Stopped(_)) => Err(Stopped),
        Err(RetryError::Permanent(e)) => {
            tracing::error!(error = %e, items = items.len(), "the sink refuses to publish a batch; dead-lettering its messages");
            Ok(sources
                .iter()
                .map(|&index| Rejection {
                    index,
                    reason: REJECTED_BY_SINK.into(),
                    detail: e.to_string(),
                })
                .collect())
        }
    }
}

/// Publishes the dead letters of `rejected` (one per message) and counts them.
async fn dead_letter<S: Sink>(
    shared: &Shared<S>,
    batch: &[OwnedMessage],
    mut rejected: Vec<Rejection>,
) -> Result<(), Stopped> {
    if rejected.is_empty() {
        return Ok(());
    }
    rejected.sort_by_key(|r| r.index);
    rejected.dedup_by_key(|r| r.index);
    publish_dead_letters(shared, batch, &rejected).await?;
    RuntimeCounters::inc(&shared.ctx.counters.dead_lettered, rejected.len() as u64);
    Ok(())
}

/// Writes `items`; a permanent failure splits the range in halves until the items that
/// fail alone are found. Returns a rejection for the source message of each of those.
async fn write_bisecting<S: Sink>(
    shared: &Shared<S>,
    items: &[S::Item],
    sources: &[usize],
) -> Result<Vec<Rejection>, Stopped> {
    let mut refused = Vec::new();
    let mut ranges = vec![(0, items.len())];
    while let Some((lo, hi)) = ranges.pop() {
        if lo == hi {
            continue;
        }
        let part = &items[lo..hi];
        match shared
            .ctx
            .retry("writing to the sink", || shared.sink.write(part))
            .await
        {
            Ok(()) => {}
            Err(RetryError::Stopped(_)) => return Err(Stopped),
            Err(RetryError::Permanent(e)) if hi - lo == 1 => {
                tracing::warn!(error = %e, source = sources[lo], "the sink refuses an item; dead-lettering its message");
                refused.push(Rejection {
                    index: sources[lo],
                    reason: REJECTED_BY_SINK.into(),
                    detail: e.to_string(),
                });
            }
            Err(RetryError::Permanent(e)) => {
                tracing::debug!(error = %e, items = hi - lo, "permanent sink error; bisecting");
                let mid = lo + (hi - lo) / 2;
                // Lower half first (a stack: pushed last).
                ranges.push((mid, hi));
                ranges.push((lo, mid));
            }
        }
    }
    Ok(refused)
}

/// Publishes each rejected message, untouched, with headers saying where it came from and why.
async fn publish_dead_letters<S: Sink>(
    shared: &Shared<S>,
    batch: &[OwnedMessage],
    rejected: &[Rejection],
) -> Result<(), Stopped> {
    let headers: Vec<_> = rejected
        .iter()
        .filter_map(|r| batch.get(r.index).map(|m| (m, r)))
        .map(|(m, r)| {
            for_log(m, r);
            let source = Provenance {
                topic: m.topic(),
                partition: m.partition(),
                offset: m.offset(),
            };
            (m, headers(&source, shared.service, &r.reason, &r.detail))
        })
        .collect();
    let send = || {
        let messages: Vec<_> = headers
            .iter()
            .map(|(m, h)| crate::publish::Outgoing {
                headers: Some(h.clone()),
                ..crate::publish::Outgoing::new(
                    &shared.dead_letter_topic,
                    m.key(),
                    m.payload().unwrap_or_default(),
                )
            })
            .collect();
        crate::publish::send_all(&shared.producer, messages)
    };
    shared
        .ctx
        .retry("publishing dead letters", send)
        .await
        .map_err(|_| Stopped)
}

fn for_log(m: &OwnedMessage, r: &Rejection) {
    tracing::debug!(reason = %r.reason, detail = %r.detail, partition = m.partition(), offset = m.offset(), "dead-lettered");
}

impl From<crate::KafkaError> for SinkError {
    fn from(e: crate::KafkaError) -> Self {
        SinkError::Transient(Box::new(e))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::runtime::{Context, Outputs};

    /// A sink that refuses the items listed in `poison`, takes long to write item 0 and to
    /// publish item 1, and records what it wrote and published.
    struct Picky {
        poison: Vec<u32>,
        written: Mutex<Vec<u32>>,
        published: Mutex<Vec<u32>>,
        calls: Mutex<u32>,
    }

    impl Sink for Picky {
        type Item = u32;
        async fn write(&self, items: &[u32]) -> Result<(), SinkError> {
            *self.calls.lock().unwrap() += 1;
            if items.contains(&0) {
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
            if items.iter().any(|i| self.poison.contains(i)) {
                return Err(SinkError::Permanent("value rejected".into()));
            }
            self.written.lock().unwrap().extend_from_slice(items);
            Ok(())
        }

        async fn publish(&self, items: &[u32]) -> Result<(), SinkError> {
            if items.contains(&1) {
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
            self.published.lock().unwrap().extend_from_slice(items);
            Ok(())
        }
    }

    fn outputs(items: Vec<u32>) -> Outputs<u32> {
        let mut out = Outputs::default();
        items
            .into_iter()
            .enumerate()
            .for_each(|(i, x)| out.push(i, x));
        out
    }

    #[tokio::test]
    async fn a_batch_publishes_while_its_write_is_still_running() {
        let s = Arc::new(shared(vec![]));
        let (after, done, _) = Turn::after(Turn::default());
        // Item 0 takes 200 ms to write.
        let task = tokio::spawn(write(s.clone(), Vec::new(), outputs(vec![0]), after, done));
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert_eq!(*s.sink.published.lock().unwrap(), vec![0], "published");
        assert!(s.sink.written.lock().unwrap().is_empty(), "still writing");
        task.await.unwrap().unwrap();
        assert_eq!(*s.sink.written.lock().unwrap(), vec![0]);
    }

    #[tokio::test]
    async fn batches_publish_in_consumption_order_even_when_an_older_batch_is_slower() {
        let s = Arc::new(shared(vec![]));
        let (first_after, first_done, next) = Turn::after(Turn::default());
        let (second_after, second_done, _) = Turn::after(next);
        let slow = tokio::spawn(write(
            s.clone(),
            Vec::new(),
            outputs(vec![0, 1, 2]),
            first_after,
            first_done,
        ));
        let fast = tokio::spawn(write(
            s.clone(),
            Vec::new(),
            outputs(vec![3, 4]),
            second_after,
            second_done,
        ));
        fast.await.unwrap().unwrap();
        slow.await.unwrap().unwrap();
        assert_eq!(
            *s.sink.written.lock().unwrap(),
            vec![3, 4, 0, 1, 2],
            "written concurrently"
        );
        assert_eq!(
            *s.sink.published.lock().unwrap(),
            vec![0, 1, 2, 3, 4],
            "published in order"
        );
    }

    fn shared(poison: Vec<u32>) -> Shared<Picky> {
        let producer = crate::client::publisher("127.0.0.1:1", 0).unwrap();
        Shared {
            sink: Picky {
                poison,
                written: Mutex::new(Vec::new()),
                published: Mutex::new(Vec::new()),
                calls: Mutex::new(0),
            },
            producer,
            dead_letter_topic: "dl".into(),
            service: "test",
            ctx: Context {
                backoff: airq_runtime::retry::Backoff::from_millis(1, 1),
                shutdown: Default::default(),
                counters: Default::default(),
            },
        }
    }

    #[tokio::test]
    async fn bisection_dead_letters_exactly_the_items_the_sink_refuses() {
        let s = shared(vec![13, 77]);
        let mut out = Outputs::default();
        // Item i comes from message i / 2 (two items per message).
        (0..100).for_each(|i| out.push(i as usize / 2, i));
        let refused = write_bisecting(&s, &out.items, &out.sources).await.unwrap();
        assert_eq!(refused.len(), 2);
        let mut idx: Vec<usize> = refused.iter().map(|r| r.index).collect();
        idx.sort();
        assert_eq!(idx, vec![6, 38]);
        assert!(
            refused
                .iter()
                .all(|r| r.reason == REJECTED_BY_SINK && r.detail == "value rejected")
        );
        let mut written = s.sink.written.lock().unwrap().clone();
        written.sort();
        let expected: Vec<u32> = (0..100).filter(|i| ![13, 77].contains(i)).collect();
        assert_eq!(written, expected, "every other item written exactly once");
        assert!(
            *s.sink.calls.lock().unwrap() < 40,
            "bisection, not one write per item"
        );
    }

    #[tokio::test]
    async fn a_clean_batch_is_one_write() {
        let s = shared(vec![]);
        let items: Vec<u32> = (0..1000).collect();
        let sources: Vec<usize> = (0..1000).collect();
        assert!(
            write_bisecting(&s, &items, &sources)
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(*s.sink.calls.lock().unwrap(), 1);
    }
}
