//! Which offsets to store once a batch is durable.

use rdkafka::{Offset, TopicPartitionList};

/// The highest offset seen per (topic, partition) in a batch, and the lowest offset the
/// processor still holds (a message it will judge later: the stored offset stays at it, so a
/// crash redelivers it). A batch spans a few partitions, so each is a short list searched in
/// place: observing a message allocates nothing.
#[derive(Debug, Default, Clone)]
pub struct OffsetTracker {
    highest: Vec<(String, i32, i64)>,
    held: Vec<(String, i32, i64)>,
}

/// The entry of (topic, partition), added with `offset` if absent.
fn entry<'a>(
    list: &'a mut Vec<(String, i32, i64)>,
    topic: &str,
    partition: i32,
    offset: i64,
) -> &'a mut i64 {
    let i = match list
        .iter()
        .position(|(t, p, _)| *p == partition && t == topic)
    {
        Some(i) => i,
        None => {
            list.push((topic.to_owned(), partition, offset));
            list.len() - 1
        }
    };
    &mut list[i].2
}

impl OffsetTracker {
    pub fn observe(&mut self, topic: &str, partition: i32, offset: i64) {
        let highest = entry(&mut self.highest, topic, partition, offset);
        *highest = (*highest).max(offset);
    }

    /// A message at `offset` is still held: no offset past it is stored for its partition.
    pub fn hold_back(&mut self, topic: &str, partition: i32, offset: i64) {
        let held = entry(&mut self.held, topic, partition, offset);
        *held = (*held).min(offset);
    }

    /// The list to store: Kafka's committed offset is the *next* offset to read (or the
    /// oldest message held).
    pub fn to_store(&self) -> TopicPartitionList {
        let mut tpl = TopicPartitionList::new();
        for (topic, partition, offset) in &self.highest {
            let held = self
                .held
                .iter()
                .find(|(t, p, _)| p == partition && t == topic)
                .map(|h| h.2);
            let next = held.map_or(offset + 1, |h| h.min(offset + 1));
            // Cannot fail for a partition that is not yet in the list.
            let _ = tpl.add_partition_offset(topic, *partition, Offset::Offset(next));
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

    #[test]
    fn a_held_message_keeps_its_partitions_offset_at_it() {
        let mut t = OffsetTracker::default();
        t.observe("p", 0, 9);
        t.observe("p", 1, 9);
        t.hold_back("p", 0, 4);
        t.hold_back("p", 0, 6);
        t.hold_back("p", 2, 1);
        let tpl = t.to_store();
        assert_eq!(
            tpl.find_partition("p", 0).unwrap().offset(),
            Offset::Offset(4)
        );
        assert_eq!(
            tpl.find_partition("p", 1).unwrap().offset(),
            Offset::Offset(10)
        );
        assert!(
            tpl.find_partition("p", 2).is_none(),
            "a partition not in the batch is not stored"
        );
    }
}
