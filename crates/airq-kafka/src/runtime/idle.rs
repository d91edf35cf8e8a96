//! When each key (sensor) was last seen, in processing time, to evict the state of those
//! gone quiet. Processing time, not event time: a historic replay next to a live fleet
//! would otherwise make every replayed sensor look idle.

use std::collections::HashMap;
use std::time::{Duration, Instant};

#[derive(Debug, Default)]
pub struct IdleTracker {
    last: HashMap<String, Instant>,
}

impl IdleTracker {
    pub fn touch(&mut self, key: &str, now: Instant) {
        match self.last.get_mut(key) {
            Some(t) => *t = now,
            None => {
                self.last.insert(key.to_owned(), now);
            }
        }
    }

    /// Forgets and returns the keys not seen for `idle`.
    pub fn take_idle(&mut self, now: Instant, idle: Duration) -> Vec<String> {
        let gone: Vec<String> = self
            .last
            .iter()
            .filter(|(_, t)| now.duration_since(**t) >= idle)
            .map(|(k, _)| k.clone())
            .collect();
        gone.iter().for_each(|k| {
            self.last.remove(k);
        });
        gone
    }

    pub fn len(&self) -> usize {
        self.last.len()
    }

    pub fn is_empty(&self) -> bool {
        self.last.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returns_only_the_keys_idle_for_the_period_and_forgets_them() {
        let mut t = IdleTracker::default();
        let t0 = Instant::now();
        t.touch("a", t0);
        t.touch("b", t0);
        t.touch("a", t0 + Duration::from_secs(50));
        let gone = t.take_idle(t0 + Duration::from_secs(60), Duration::from_secs(30));
        assert_eq!(gone, vec!["b".to_owned()]);
        assert_eq!(t.len(), 1);
        assert!(
            t.take_idle(t0 + Duration::from_secs(60), Duration::from_secs(30))
                .is_empty()
        );
    }

    #[test]
    fn stays_bounded_when_100k_keys_come_and_go() {
        let mut t = IdleTracker::default();
        let t0 = Instant::now();
        let mut peak = 0;
        for i in 0..100_000_u64 {
            let now = t0 + Duration::from_millis(i);
            t.touch(&format!("s{i}"), now);
            if i % 1000 == 999 {
                t.take_idle(now, Duration::from_secs(5));
            }
            peak = peak.max(t.len());
        }
        assert!(peak <= 6000, "peak {peak}");
    }
}
