//! Publishing a batch and waiting until the broker has every message.
//!
//! The [`Publisher`] settles delivery reports per batch: each message carries a reference to
//! its batch, the producer's polling thread counts the reports down, and the sender wakes once,
//! when the last one is in. rdkafka's `FutureProducer` allocates a channel and a future per
//! message instead, and wakes the sender per report (issue 12's per-message producer calls).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rdkafka::ClientContext;
use rdkafka::message::OwnedHeaders;
use rdkafka::producer::{BaseRecord, DeliveryResult, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use tokio::sync::Notify;

use crate::KafkaError;

/// The producer of the services' outputs (`client::publisher`). Cheap to clone: clones share
/// one librdkafka producer.
pub type Publisher = ThreadedProducer<Deliveries>;

/// Settles each delivery report against the batch its message belongs to.
pub struct Deliveries;

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = Arc<Batch>;

    fn delivery(&self, result: &DeliveryResult<'_>, batch: Arc<Batch>) {
        if let Err((e, _)) = result {
            batch.fail(e.clone());
        }
        batch.settle();
    }
}

/// A batch in flight: its unsettled messages, plus one for its sender until every message is
/// queued (so that no early report settles the batch before the last message is sent).
pub struct Batch {
    pending: AtomicUsize,
    failed: Mutex<Option<rdkafka::error::KafkaError>>,
    settled: Notify,
}

impl Batch {
    fn new() -> Self {
        Self {
            pending: AtomicUsize::new(1),
            failed: Mutex::new(None),
            settled: Notify::new(),
        }
    }

    fn settle(&self) {
        if self.pending.fetch_sub(1, Ordering::AcqRel) == 1 {
            // A permit is kept if the sender is not waiting yet.
            self.settled.notify_one();
        }
    }

    fn fail(&self, e: rdkafka::error::KafkaError) {
        self.failed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_or_insert(e);
    }

    async fn all_settled(&self) {
        while self.pending.load(Ordering::Acquire) != 0 {
            self.settled.notified().await;
        }
    }
}

/// One message to publish.
pub struct Outgoing<'a> {
    pub topic: &'a str,
    pub key: Option<&'a [u8]>,
    pub payload: &'a [u8],
    pub headers: Option<OwnedHeaders>,
}

impl<'a> Outgoing<'a> {
    pub fn new(topic: &'a str, key: Option<&'a [u8]>, payload: &'a [u8]) -> Self {
        Self {
            topic,
            key,
            payload,
            headers: None,
        }
    }
}

/// Queues every message, waiting while the producer's local queue is full, then waits for
/// every delivery report. `Ok` means the broker acknowledged them all.
pub async fn send_all<'a>(
    producer: &Publisher,
    messages: impl IntoIterator<Item = Outgoing<'a>>,
) -> Result<(), KafkaError> {
    let batch = Arc::new(Batch::new());
    for m in messages {
        let mut record =
            BaseRecord::<[u8], [u8], Arc<Batch>>::with_opaque_to(m.topic, batch.clone())
                .payload(m.payload);
        if let Some(k) = m.key {
            record = record.key(k);
        }
        if let Some(h) = m.headers {
            record = record.headers(h);
        }
        // Counted before the send: its report may come before `send` returns.
        batch.pending.fetch_add(1, Ordering::AcqRel);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((
                    rdkafka::error::KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull),
                    back,
                )) => {
                    record = back;
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                Err((e, _)) => {
                    batch.pending.fetch_sub(1, Ordering::AcqRel);
                    return Err(KafkaError::Transient(e));
                }
            }
        }
    }
    batch.settle();
    batch.all_settled().await;
    match batch
        .failed
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take()
    {
        None => Ok(()),
        Some(e) => Err(KafkaError::Transient(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_batch_settles_once_its_sender_and_every_report_are_in() {
        let batch = Arc::new(Batch::new());
        batch.pending.fetch_add(2, Ordering::AcqRel);
        let reports = {
            let batch = batch.clone();
            std::thread::spawn(move || {
                batch.settle();
                batch.fail(rdkafka::error::KafkaError::Canceled);
                batch.settle();
            })
        };
        reports.join().unwrap();
        assert_eq!(batch.pending.load(Ordering::Acquire), 1, "the sender's own");
        batch.settle();
        tokio::time::timeout(Duration::from_secs(1), batch.all_settled())
            .await
            .expect("settled");
        assert!(batch.failed.lock().unwrap().is_some());
    }

    #[tokio::test]
    async fn an_unreachable_broker_fails_the_batch_after_the_message_timeout() {
        let mut cfg = crate::client::producer_config("127.0.0.1:1", 0);
        cfg.set("message.timeout.ms", "200");
        let producer: Publisher = cfg.create_with_context(Deliveries).unwrap();
        let sent = send_all(&producer, [Outgoing::new("t", None, b"x")]);
        let result = tokio::time::timeout(Duration::from_secs(10), sent)
            .await
            .expect("the report came");
        assert!(
            matches!(result, Err(KafkaError::Transient(_))),
            "{result:?}"
        );
    }
}
