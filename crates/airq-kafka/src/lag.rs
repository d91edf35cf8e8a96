//! Where a consumer group stands on a topic: per partition its committed offset and the
//! high watermark. Read without joining the group, so a caller can watch a service's
//! progress (the watchdog, benchmarks) without disturbing it.
//! Blocking calls: run them off the async workers.

use std::time::Duration;

use rdkafka::consumer::Consumer;
use rdkafka::error::KafkaError;
use rdkafka::{Offset, TopicPartitionList};

/// One partition of a topic as a group sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionOffsets {
    pub partition: i32,
    /// The group's committed offset (the next message it will read); the low watermark
    /// when it has committed nothing.
    pub committed: i64,
    /// The offset the next message published will get.
    pub high: i64,
}

impl PartitionOffsets {
    /// Messages the group has not committed yet.
    pub fn lag(&self) -> i64 {
        (self.high - self.committed).max(0)
    }
}

/// The committed offsets of `consumer`'s group and the watermarks of every partition of
/// `topic`.
pub fn partition_offsets<C: Consumer>(
    consumer: &C,
    topic: &str,
    timeout: Duration,
) -> Result<Vec<PartitionOffsets>, KafkaError> {
    let meta = consumer.fetch_metadata(Some(topic), timeout)?;
    let mut tpl = TopicPartitionList::new();
    for t in meta.topics() {
        for p in t.partitions() {
            tpl.add_partition(t.name(), p.id());
        }
    }
    let committed = consumer.committed_offsets(tpl, timeout)?;
    let mut out = Vec::new();
    for e in committed.elements() {
        let (low, high) = consumer.fetch_watermarks(e.topic(), e.partition(), timeout)?;
        let committed = match e.offset() {
            Offset::Offset(o) => o,
            _ => low,
        };
        out.push(PartitionOffsets {
            partition: e.partition(),
            committed,
            high,
        });
    }
    out.sort_by_key(|p| p.partition);
    Ok(out)
}

/// [`partition_offsets`] of `group` on `topic`, through a client of its own that does not
/// join the group ([`crate::client::observer`]).
pub fn group_offsets(
    brokers: &str,
    group: &str,
    topic: &str,
    timeout: Duration,
) -> Result<Vec<PartitionOffsets>, crate::KafkaError> {
    let consumer = crate::client::observer(brokers, group)?;
    partition_offsets(&consumer, topic, timeout).map_err(crate::KafkaError::Transient)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_is_what_the_group_has_not_committed() {
        let p = PartitionOffsets {
            partition: 0,
            committed: 9,
            high: 12,
        };
        assert_eq!(p.lag(), 3);
        let ahead = PartitionOffsets { high: 5, ..p };
        assert_eq!(ahead.lag(), 0);
    }
}
