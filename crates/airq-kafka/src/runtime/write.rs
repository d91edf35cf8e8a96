//! Writing one batch: the sink's items with retry, bisecting to the items the sink refuses
//! for good; then the dead letters (the processor's rejections and the sink's).

use std::sync::Arc;

use airq_runtime::retry::RetryError;
use rdkafka::Message;
use rdkafka::message::OwnedMessage;
use rdkafka::producer::FutureRecord;

use super::{Outputs, Rejection, RuntimeCounters, Shared, Sink, SinkError};
use crate::dead_letter::{Provenance, headers};

/// Shutdown was requested before the batch was written: it will be redelivered.
#[derive(Debug)]
pub struct Stopped;

/// Reason of a dead letter whose item the sink refused for good.
pub const REJECTED_BY_SINK: &str = "rejected_by_sink";

pub(super) async fn write<S: Sink>(
    shared: Arc<Shared<S>>,
    batch: Vec<OwnedMessage>,
    outputs: Outputs<S::Item>,
) -> Result<(), Stopped> {
    let Outputs {
        items,
        sources,
        mut rejected,
    } = outputs;
    let refused = write_bisecting(&shared, &items, &sources).await?;
    RuntimeCounters::inc(&shared.ctx.counters.sink_rejected, refused.len() as u64);
    rejected.extend(refused);
    if rejected.is_empty() {
        return Ok(());
    }
    rejected.sort_by_key(|r| r.index);
    rejected.dedup_by_key(|r| r.index);
    publish_dead_letters(&shared, &batch, &rejected).await?;
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
        let records: Vec<FutureRecord<'_, [u8], [u8]>> = headers
            .iter()
            .map(|(m, h)| {
                let rec = FutureRecord::<[u8], [u8]>::to(&shared.dead_letter_topic)
                    .payload(m.payload().unwrap_or_default())
                    .headers(h.clone());
                match m.key() {
                    Some(k) => rec.key(k),
                    None => rec,
                }
            })
            .collect();
        crate::publish::send_all(&shared.producer, records)
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

    /// A sink that refuses the items listed in `poison` and records what it wrote.
    struct Picky {
        poison: Vec<u32>,
        written: Mutex<Vec<u32>>,
        calls: Mutex<u32>,
    }

    impl Sink for Picky {
        type Item = u32;
        async fn write(&self, items: &[u32]) -> Result<(), SinkError> {
            *self.calls.lock().unwrap() += 1;
            if items.iter().any(|i| self.poison.contains(i)) {
                return Err(SinkError::Permanent("value rejected".into()));
            }
            self.written.lock().unwrap().extend_from_slice(items);
            Ok(())
        }
    }

    fn shared(poison: Vec<u32>) -> Shared<Picky> {
        let producer = crate::client::producer("127.0.0.1:1", 0).unwrap();
        Shared {
            sink: Picky {
                poison,
                written: Mutex::new(Vec::new()),
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
