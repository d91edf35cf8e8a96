//! The watchdog that recreates a stuck consumer.
//!
//! Seen on Tansu: a member that joins while a dead member is still in the group gets no
//! partition, and the group stays stuck (docs/tansu.md); after session time-outs under
//! load, a member may never get its partitions back. A new consumer (a new member id)
//! joins cleanly. The watchdog tells "stuck" from "idle on purpose" (more members than
//! partitions, or nothing to read): it recreates the consumer only when it has had no
//! partition for `heal_after` while the group's committed offsets did not move and its
//! topics hold unread data; or when every fetch failed for `heal_after`.

use std::time::{Duration, Instant};

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::{Offset, TopicPartitionList};

/// The group's position on the subscribed topics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Sum of the group's committed offsets.
    pub committed: i64,
    /// Messages past the committed offsets.
    pub lag: i64,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Healthy,
    Recreate(&'static str),
}

#[derive(Debug)]
pub struct Watchdog {
    heal_after: Duration,
    /// Since when the consumer has had no partition, and the group's progress then.
    unassigned: Option<(Instant, Option<Progress>)>,
    /// Since when every fetch failed.
    failing_since: Option<Instant>,
}

impl Watchdog {
    pub fn new(heal_after: Duration) -> Self {
        Self {
            heal_after,
            unassigned: None,
            failing_since: None,
        }
    }

    pub fn on_message(&mut self) {
        self.failing_since = None;
        self.unassigned = None;
    }

    pub fn on_error(&mut self, now: Instant) {
        self.failing_since.get_or_insert(now);
    }

    pub fn reset(&mut self) {
        self.unassigned = None;
        self.failing_since = None;
    }

    /// Called about once a second while no message arrives. `probe` reads the group's
    /// progress (a broker round trip): called when the consumer is first seen without
    /// partitions and when `heal_after` has passed since.
    pub fn check(
        &mut self,
        now: Instant,
        assigned: bool,
        probe: impl FnOnce() -> Option<Progress>,
    ) -> Verdict {
        if self
            .failing_since
            .is_some_and(|t| now.duration_since(t) >= self.heal_after)
        {
            return Verdict::Recreate("fetches failing");
        }
        if assigned {
            self.unassigned = None;
            return Verdict::Healthy;
        }
        let Some((since, before)) = self.unassigned else {
            self.unassigned = Some((now, probe()));
            return Verdict::Healthy;
        };
        if now.duration_since(since) < self.heal_after {
            return Verdict::Healthy;
        }
        let after = probe();
        let stuck = match (before, after) {
            (Some(b), Some(a)) => a.lag > 0 && a.committed == b.committed,
            // The broker does not answer the probe either: try a fresh client.
            _ => true,
        };
        if stuck {
            Verdict::Recreate("no partitions while the group makes no progress")
        } else {
            // Idle on purpose; look again after another period.
            self.unassigned = Some((now, after));
            Verdict::Healthy
        }
    }
}

/// The group's committed offsets and lag on the consumer's subscribed topics, or `None`
/// if the broker does not answer within a few seconds.
pub fn progress(consumer: &StreamConsumer) -> Option<Progress> {
    let timeout = Duration::from_secs(3);
    let topics = consumer.subscription().ok()?;
    let mut tpl = TopicPartitionList::new();
    for t in topics.elements() {
        let meta = consumer.fetch_metadata(Some(t.topic()), timeout).ok()?;
        for mt in meta.topics() {
            for p in mt.partitions() {
                tpl.add_partition(mt.name(), p.id());
            }
        }
    }
    let committed = consumer.committed_offsets(tpl, timeout).ok()?;
    let mut out = Progress {
        committed: 0,
        lag: 0,
    };
    for e in committed.elements() {
        let (low, high) = consumer
            .fetch_watermarks(e.topic(), e.partition(), timeout)
            .ok()?;
        let at = match e.offset() {
            Offset::Offset(o) => o,
            _ => low,
        };
        out.committed += at;
        out.lag += (high - at).max(0);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const AFTER: Duration = Duration::from_secs(30);

    fn p(committed: i64, lag: i64) -> Option<Progress> {
        Some(Progress { committed, lag })
    }

    #[test]
    fn an_assigned_consumer_is_healthy() {
        let mut w = Watchdog::new(AFTER);
        let t = Instant::now();
        assert_eq!(w.check(t, true, || unreachable!()), Verdict::Healthy);
        assert_eq!(
            w.check(t + AFTER * 3, true, || unreachable!()),
            Verdict::Healthy
        );
    }

    #[test]
    fn unassigned_while_the_group_is_stuck_on_unread_data_recreates() {
        let mut w = Watchdog::new(AFTER);
        let t = Instant::now();
        assert_eq!(w.check(t, false, || p(100, 50)), Verdict::Healthy);
        assert_eq!(
            w.check(t + AFTER / 2, false, || unreachable!()),
            Verdict::Healthy
        );
        assert!(matches!(
            w.check(t + AFTER, false, || p(100, 50)),
            Verdict::Recreate(_)
        ));
    }

    #[test]
    fn an_idle_member_of_a_group_that_progresses_is_left_alone() {
        let mut w = Watchdog::new(AFTER);
        let t = Instant::now();
        w.check(t, false, || p(100, 50));
        assert_eq!(
            w.check(t + AFTER, false, || p(140, 10)),
            Verdict::Healthy,
            "others consume"
        );
        assert_eq!(
            w.check(t + AFTER * 2, false, || p(150, 0)),
            Verdict::Healthy
        );
        assert_eq!(
            w.check(t + AFTER * 3, false, || p(150, 0)),
            Verdict::Healthy,
            "nothing to read"
        );
    }

    #[test]
    fn fetches_failing_for_the_whole_period_recreate() {
        let mut w = Watchdog::new(AFTER);
        let t = Instant::now();
        w.on_error(t);
        w.on_error(t + AFTER / 2);
        assert_eq!(
            w.check(t + AFTER / 2, true, || unreachable!()),
            Verdict::Healthy
        );
        assert!(matches!(
            w.check(t + AFTER, true, || unreachable!()),
            Verdict::Recreate(_)
        ));
        w.reset();
        w.on_error(t + AFTER);
        w.on_message();
        assert_eq!(
            w.check(t + AFTER * 3, true, || unreachable!()),
            Verdict::Healthy
        );
    }
}
