//! The watchdog that recreates a stuck consumer.
//!
//! Seen on Tansu: a member that joins while a dead member is still in the group gets no
//! partition, and the group stays stuck (docs/tansu.md); after session time-outs under
//! load, a member may never get its partitions back; and when a member dies, Tansu may drop
//! it from the group without starting a new generation, so the survivors keep their own
//! partitions and nobody consumes the dead member's. A new consumer (a new member id) joins
//! cleanly and makes the group rebalance.
//!
//! The watchdog tells "stuck" from "idle on purpose" (more members than partitions, nothing
//! to read) and from "everybody waits" (a database outage): every `heal_after` it compares
//! the group's committed offsets, on the partitions this consumer does not own, with those
//! of the period before. It recreates the consumer when those partitions hold unread data
//! and did not move while this consumer's own partitions are fine (no lag, moving, or this
//! consumer stored offsets of batches it wrote in the period: Tansu may refuse a survivor's
//! commits after it dropped a dead member); or when every fetch failed for `heal_after`.
//!
//! A recreation must settle before it is judged: the new member joins (Tansu answers a first
//! JoinGroup after ~3 s), and a member that left without a LeaveGroup stays in the group
//! until its session times out (10 s). Judged sooner, the new member looks stuck too and is
//! recreated in turn, and the group never settles (seen in CI with a 6 s period: a dozen
//! recreations in two minutes, each a rebalance). So the first period after a recreation
//! lasts at least [`SETTLE`], and each further recreation without progress in between
//! doubles it (up to 4 times).

use std::time::{Duration, Instant};

use rdkafka::consumer::{Consumer, StreamConsumer};

/// Where a set of partitions stands for the group.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Position {
    /// Sum of the group's committed offsets.
    pub committed: i64,
    /// Messages past the committed offsets; on this consumer's own partitions, past its
    /// position (what it received), since a processor may hold offsets back while it holds
    /// their messages (see `Processor::holding`): it read them, and waits for others.
    pub lag: i64,
}

/// The group's position on the subscribed topics: the partitions this consumer owns, and
/// the others.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    pub mine: Position,
    pub others: Position,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Healthy,
    Recreate(&'static str),
}

/// The shortest period after a recreation: the consumers' session timeout (10 s, see
/// `client::consumer`) plus a first join.
pub const SETTLE: Duration = Duration::from_secs(15);

/// At most this many doublings of the period for recreations in a row.
const MAX_DOUBLINGS: u32 = 3;

#[derive(Debug)]
pub struct Watchdog {
    heal_after: Duration,
    /// Recreations since the group was last seen making progress.
    streak: u32,
    /// Since when the current period runs, and the group's progress at its start.
    period: Option<(Instant, Option<Progress>)>,
    /// Since when every fetch failed.
    failing_since: Option<Instant>,
    /// What this consumer did itself in the current period.
    done: Done,
}

impl Watchdog {
    pub fn new(heal_after: Duration) -> Self {
        Self {
            heal_after,
            streak: 0,
            period: None,
            failing_since: None,
            done: Done::default(),
        }
    }

    /// A batch was written and its offsets stored: this consumer makes progress, whatever
    /// the broker's committed offsets say (Tansu may refuse a survivor's commits).
    pub fn on_batch_stored(&mut self) {
        self.done.stored += 1;
    }

    pub fn on_message(&mut self) {
        self.failing_since = None;
        self.done.received += 1;
    }

    pub fn on_error(&mut self, now: Instant) {
        self.failing_since.get_or_insert(now);
    }

    /// The consumer was recreated: start over, and give the new member time to settle.
    pub fn reset(&mut self) {
        self.streak = (self.streak + 1).min(MAX_DOUBLINGS);
        self.period = None;
        self.failing_since = None;
        self.done = Done::default();
    }

    /// How long the current period lasts: `heal_after`, or after recreations in a row at
    /// least [`SETTLE`] and doubled for each.
    pub fn period_len(&self) -> Duration {
        match self.streak {
            0 => self.heal_after,
            n => self.heal_after.max(SETTLE) * 2u32.pow(n - 1),
        }
    }

    /// Called about once a second. `probe` reads the group's progress (broker round trips):
    /// called only at the start and the end of each `heal_after` period.
    pub fn check(
        &mut self,
        now: Instant,
        assigned: bool,
        probe: impl FnOnce() -> Option<Progress>,
    ) -> Verdict {
        let len = self.period_len();
        if self
            .failing_since
            .is_some_and(|t| now.duration_since(t) >= len)
        {
            return Verdict::Recreate("fetches failing");
        }
        let Some((since, before)) = self.period else {
            self.period = Some((now, probe()));
            return Verdict::Healthy;
        };
        if now.duration_since(since) < len {
            return Verdict::Healthy;
        }
        let after = probe();
        self.period = Some((now, after));
        let done = std::mem::take(&mut self.done);
        match (before, after) {
            (Some(b), Some(a)) => {
                if made_progress(b, a, done) {
                    self.streak = 0;
                }
                judge(assigned, b, a, done)
            }
            // The broker does not answer the probe: a consumer with partitions has its fetch
            // errors counted; one without tries a fresh client.
            _ if assigned => Verdict::Healthy,
            _ => Verdict::Recreate(NO_PARTITIONS),
        }
    }
}

const NO_PARTITIONS: &str = "no partitions while the group makes no progress";

/// What this consumer did itself during a period.
#[derive(Debug, Clone, Copy, Default)]
struct Done {
    /// Batches written whose offsets were stored.
    stored: u64,
    /// Messages received.
    received: u64,
}

/// Whether anything moved in the group during a period (or this consumer stored a batch).
fn made_progress(before: Progress, after: Progress, done: Done) -> bool {
    done.stored > 0
        || after.mine.committed != before.mine.committed
        || after.others.committed != before.others.committed
}

/// The verdict on one period, from the group's progress at its start and end.
fn judge(assigned: bool, before: Progress, after: Progress, done: Done) -> Verdict {
    let mine_moved = after.mine.committed != before.mine.committed || done.stored > 0;
    // Own partitions with unread data that delivered nothing for a whole period while the
    // loop was free to receive: a stuck fetch (a loop blocked on a database outage does not
    // get here).
    if assigned && after.mine.lag > 0 && !mine_moved && done.received == 0 {
        return Verdict::Recreate("assigned partitions with unread data deliver nothing");
    }
    let others_stuck = after.others.lag > 0 && after.others.committed == before.others.committed;
    let mine_fine = after.mine.lag == 0 || mine_moved;
    match (others_stuck && mine_fine, assigned) {
        (false, _) => Verdict::Healthy,
        (true, false) => Verdict::Recreate(NO_PARTITIONS),
        (true, true) => Verdict::Recreate(
            "partitions outside this member's assignment make no progress: rejoining",
        ),
    }
}

/// The group's committed offsets and lag on the consumer's subscribed topics, split into
/// the partitions assigned to this consumer and the others, or `None` if the broker does
/// not answer within a few seconds.
pub fn progress(consumer: &StreamConsumer) -> Option<Progress> {
    let timeout = Duration::from_secs(3);
    let topics = consumer.subscription().ok()?;
    let assigned = consumer.assignment().ok()?;
    let position = consumer.position().ok()?;
    let mut out = Progress::default();
    for t in topics.elements() {
        for p in crate::lag::partition_offsets(consumer, t.topic(), timeout).ok()? {
            let (side, lag) = if assigned.find_partition(t.topic(), p.partition).is_some() {
                let read = position
                    .find_partition(t.topic(), p.partition)
                    .and_then(|e| e.offset().to_raw())
                    .filter(|o| *o >= 0)
                    .map_or(p.committed, |o| o.max(p.committed));
                (&mut out.mine, (p.high - read).max(0))
            } else {
                (&mut out.others, p.lag())
            };
            side.committed += p.committed;
            side.lag += lag;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const AFTER: Duration = Duration::from_secs(30);

    /// Progress with nothing assigned to this consumer.
    fn p(committed: i64, lag: i64) -> Option<Progress> {
        split((0, 0), (committed, lag))
    }

    fn split(mine: (i64, i64), others: (i64, i64)) -> Option<Progress> {
        Some(Progress {
            mine: Position {
                committed: mine.0,
                lag: mine.1,
            },
            others: Position {
                committed: others.0,
                lag: others.1,
            },
        })
    }

    #[test]
    fn a_consumer_whose_group_progresses_is_healthy() {
        let mut w = Watchdog::new(AFTER);
        let t = Instant::now();
        assert_eq!(w.check(t, true, || split((0, 9), (0, 9))), Verdict::Healthy);
        assert_eq!(
            w.check(t + AFTER / 2, true, || unreachable!()),
            Verdict::Healthy
        );
        assert_eq!(
            w.check(t + AFTER, true, || split((5, 4), (5, 4))),
            Verdict::Healthy
        );
        assert_eq!(
            w.check(t + AFTER * 2, true, || split((9, 0), (9, 0))),
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
    fn partitions_nobody_consumes_while_this_member_works_make_it_rejoin() {
        // A dead member's partitions, left to nobody by the broker.
        let mut w = Watchdog::new(AFTER);
        let t = Instant::now();
        w.check(t, true, || split((100, 20), (300, 50)));
        assert!(matches!(
            w.check(t + AFTER, true, || split((180, 5), (300, 90))),
            Verdict::Recreate(_)
        ));
    }

    #[test]
    fn assigned_partitions_that_deliver_nothing_while_holding_data_recreate() {
        let mut w = Watchdog::new(AFTER);
        let t = Instant::now();
        w.check(t, true, || split((100, 20), (0, 0)));
        assert!(matches!(
            w.check(t + AFTER, true, || split((100, 20), (0, 0))),
            Verdict::Recreate(_)
        ));
        // The same with messages flowing is a slow writer, not a stuck fetch.
        w.on_message();
        assert_eq!(
            w.check(t + AFTER * 2, true, || split((100, 20), (0, 0))),
            Verdict::Healthy
        );
    }

    #[test]
    fn a_member_that_works_but_whose_commits_do_not_move_still_rejoins_next_to_orphans() {
        let mut w = Watchdog::new(AFTER);
        let t = Instant::now();
        w.check(t, true, || split((100, 20), (300, 50)));
        w.on_batch_stored();
        assert!(matches!(
            w.check(t + AFTER, true, || split((100, 20), (300, 90))),
            Verdict::Recreate(_)
        ));
    }

    #[test]
    fn everybody_waiting_together_is_not_a_stuck_group() {
        // A database outage: no partition moves, this member's neither; it still receives
        // what the broker buffered (its writes are what wait).
        let mut w = Watchdog::new(AFTER);
        let t = Instant::now();
        w.check(t, true, || split((100, 20), (300, 50)));
        w.on_message();
        assert_eq!(
            w.check(t + AFTER, true, || split((100, 40), (300, 90))),
            Verdict::Healthy
        );
        // A broker that does not answer: the fetch errors are the signal for an owner.
        assert_eq!(w.check(t + AFTER * 2, true, || None), Verdict::Healthy);
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
            w.check(t + AFTER / 2, true, || split((0, 0), (0, 0))),
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
            w.check(t + AFTER * 3, true, || split((0, 0), (0, 0))),
            Verdict::Healthy
        );
    }

    /// A consumer whose assigned partitions hold data and deliver nothing, every period.
    fn stuck(w: &mut Watchdog, at: Instant) -> Verdict {
        w.check(at, true, || split((100, 20), (0, 0)))
    }

    #[test]
    fn a_recreated_consumer_settles_before_it_is_judged_and_recreations_in_a_row_back_off() {
        let short = Duration::from_secs(6);
        let mut w = Watchdog::new(short);
        let mut t = Instant::now();
        stuck(&mut w, t);
        assert!(matches!(stuck(&mut w, t + short), Verdict::Recreate(_)));
        let mut expected = vec![];
        for _ in 0..5 {
            w.reset();
            t += short;
            stuck(&mut w, t);
            let len = w.period_len();
            expected.push(len);
            assert_eq!(
                stuck(&mut w, t + len - Duration::from_secs(1)),
                Verdict::Healthy,
                "not judged before {len:?}"
            );
            assert!(matches!(stuck(&mut w, t + len), Verdict::Recreate(_)));
            t += len;
        }
        let secs: Vec<_> = expected.iter().map(Duration::as_secs).collect();
        assert_eq!(
            secs,
            [15, 30, 60, 60, 60],
            "at least SETTLE, doubled, capped"
        );
    }

    #[test]
    fn progress_after_a_recreation_restores_the_short_period() {
        let short = Duration::from_secs(6);
        let mut w = Watchdog::new(short);
        let t = Instant::now();
        w.reset();
        w.reset();
        assert_eq!(w.period_len(), Duration::from_secs(30));
        w.check(t, true, || split((100, 20), (0, 0)));
        w.on_batch_stored();
        assert_eq!(
            w.check(t + Duration::from_secs(30), true, || split(
                (120, 0),
                (0, 0)
            )),
            Verdict::Healthy
        );
        assert_eq!(w.period_len(), short);
    }
}
