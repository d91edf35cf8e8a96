//! Publishing a batch and waiting until the broker has every message.

use std::time::Duration;

use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;

use crate::KafkaError;

/// Queues every record, waiting while the producer's local queue is full, then waits for
/// every delivery report. `Ok` means the broker acknowledged them all.
pub async fn send_all<'a>(
    producer: &FutureProducer,
    records: impl IntoIterator<Item = FutureRecord<'a, [u8], [u8]>>,
) -> Result<(), KafkaError> {
    let mut deliveries = Vec::new();
    for mut rec in records {
        loop {
            match producer.send_result(rec) {
                Ok(f) => {
                    deliveries.push(f);
                    break;
                }
                Err((
                    rdkafka::error::KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull),
                    back,
                )) => {
                    rec = back;
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                Err((e, _)) => return Err(KafkaError::Transient(e)),
            }
        }
    }
    for d in deliveries {
        match d.await {
            Ok(Ok(_)) => {}
            Ok(Err((e, _))) => return Err(KafkaError::Transient(e)),
            Err(_) => {
                return Err(KafkaError::Transient(rdkafka::error::KafkaError::Canceled));
            }
        }
    }
    Ok(())
}
