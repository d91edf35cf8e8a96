//! Which offsets to store once a batch is durable.

use std::collections::HashMap;

use rdkafka::{Offset, TopicPartitionList};

/// The highest offset seen per (topic, partition) in a batch.
#[derive(Debug, Default, Clone)]
pub struct OffsetTracker {
    highest: HashMap<(String, i32), i64>,
}

impl OffsetTracker {
    pub fn observe(&mut self, topic: &str, partition: i32, offset: i64) {
        let entry = self
            .highest
            .entry((topic.to_owned(), partition))
            .or_insert(offset);
        *entry = (*entry).max(offset);
    }

    /// The list to store: Kafka's committed offset is the *next* offset to read.
    pub fn to_store(&self) -> TopicPartitionList {
        let mut tpl = TopicPartitionList::new();
        for ((topic, partition), offset) in &self.highest {
            // Cannot fail for a partition that is not yet in the list.
            let _ = tpl.add_partition_offset(topic, *partition, Offset::Offset(offset + 1));
        }
        tpl
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stores_the_offset_after_the_highest_seen_per_partition() {
        let mut t = OffsetTracker::default();
        t.observe("raw", 0, 5);
        t.observe("raw", 0, 3);
        t.observe("raw", 1, 7);
        let tpl = t.to_store();
        assert_eq!(
            tpl.find_partition("raw", 0).unwrap().offset(),
            Offset::Offset(6)
        );
        assert_eq!(
            tpl.find_partition("raw", 1).unwrap().offset(),
            Offset::Offset(8)
        );
    }
}
