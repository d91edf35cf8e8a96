//! A latency histogram that any task records into without a lock (only the log line's
//! [`Histogram::recent_summary`] takes one): log-spaced buckets (5 % apart, from 1 us to about
//! an hour), so its quantiles are within 5 % of the exact ones in constant memory, however
//! long a service runs.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

const GROWTH: f64 = 1.05;
const BUCKETS: usize = 460;

#[derive(Debug)]
pub struct Histogram {
    counts: Box<[AtomicU64]>,
    max_us: AtomicU64,
    /// The counts at the last [`Histogram::recent_summary`].
    last: Mutex<Vec<u64>>,
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            counts: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            max_us: AtomicU64::new(0),
            last: Mutex::new(vec![0; BUCKETS]),
        }
    }
}

/// The bucket of a latency in microseconds: bucket `i` holds `[GROWTH^i, GROWTH^(i+1))`.
fn bucket(us: u64) -> usize {
    if us <= 1 {
        return 0;
    }
    ((us as f64).ln() / GROWTH.ln()) as usize
}

impl Histogram {
    pub fn record(&self, latency: Duration) {
        self.record_n(latency, 1);
    }

    /// `n` latencies of the same length.
    pub fn record_n(&self, latency: Duration, n: u64) {
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.counts[bucket(us).min(BUCKETS - 1)].fetch_add(n, Ordering::Relaxed);
        self.max_us.fetch_max(us, Ordering::Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.counts().iter().sum()
    }

    fn counts(&self) -> Vec<u64> {
        self.counts
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect()
    }

    fn max_us(&self) -> u64 {
        self.max_us.load(Ordering::Relaxed)
    }

    /// The `q` quantile (0..=1), as its bucket's upper bound; `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        quantile(&self.counts(), q, self.max_us())
    }

    /// "n 1234, p50 1.2 ms, p90 .., p99 .., max ..", or "none".
    pub fn summary(&self) -> String {
        summary(&self.counts(), self.max_us())
    }

    /// [`Histogram::summary`] of what was recorded since the previous call (since the start
    /// for the first): a service's recent latency, apart from its start. Its max is the
    /// upper bound of the highest bucket used.
    pub fn recent_summary(&self) -> String {
        let now = self.counts();
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let recent: Vec<u64> = now.iter().zip(last.iter()).map(|(n, l)| n - l).collect();
        *last = now;
        let top = recent.iter().rposition(|&c| c > 0).unwrap_or(0);
        summary(&recent, upper_us(top, self.max_us()))
    }
}

/// The upper bound of bucket `i`, capped at the largest latency recorded.
fn upper_us(i: usize, max_us: u64) -> u64 {
    GROWTH.powi(i as i32 + 1).min(max_us as f64).max(1.0) as u64
}

fn quantile(counts: &[u64], q: f64, max_us: u64) -> Option<Duration> {
    let n: u64 = counts.iter().sum();
    if n == 0 {
        return None;
    }
    let rank = ((n as f64 * q).ceil() as u64).clamp(1, n);
    let mut seen = 0;
    let i = counts
        .iter()
        .position(|&c| {
            seen += c;
            seen >= rank
        })
        .unwrap_or(BUCKETS - 1);
    Some(Duration::from_micros(upper_us(i, max_us)))
}

fn summary(counts: &[u64], max_us: u64) -> String {
    let ms = |d: Option<Duration>| d.map_or(0.0, |d| d.as_secs_f64() * 1e3);
    match counts.iter().sum::<u64>() {
        0 => "none".into(),
        n => format!(
            "n {n}, p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            ms(quantile(counts, 0.5, max_us)),
            ms(quantile(counts, 0.9, max_us)),
            ms(quantile(counts, 0.99, max_us)),
            max_us as f64 / 1e3
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_within_five_percent_of_the_exact_ones() {
        let h = Histogram::default();
        assert_eq!(h.quantile(0.5), None);
        assert_eq!(h.summary(), "none");
        // 1..=10_000 us, each once: the exact p50 is 5 ms, p99 9.9 ms.
        (1..=10_000u64).for_each(|us| h.record(Duration::from_micros(us)));
        assert_eq!(h.count(), 10_000);
        for (q, exact) in [(0.5, 5_000.0), (0.9, 9_000.0), (0.99, 9_900.0)] {
            let got = h.quantile(q).unwrap().as_micros() as f64;
            assert!(
                (got - exact).abs() / exact <= 0.05,
                "q {q}: {got} vs {exact}"
            );
        }
        assert_eq!(
            h.quantile(1.0),
            Some(Duration::from_micros(10_000)),
            "capped at the max"
        );
        // An hour and more lands in the last bucket, the max stays exact.
        h.record(Duration::from_secs(7200));
        assert!(h.summary().ends_with("max 7200000.0 ms"), "{}", h.summary());
    }

    #[test]
    fn a_recent_summary_covers_only_what_came_since_the_previous_one() {
        let h = Histogram::default();
        (0..1000).for_each(|_| h.record(Duration::from_millis(500)));
        assert!(h.recent_summary().starts_with("n 1000, p50 5"), "the start");
        assert_eq!(h.recent_summary(), "none", "nothing since");
        (0..100).for_each(|_| h.record(Duration::from_millis(2)));
        let recent = h.recent_summary();
        assert!(recent.starts_with("n 100, p50 2.0 ms"), "{recent}");
        assert!(
            recent.ends_with("max 2.0 ms"),
            "not the start's 500 ms: {recent}"
        );
        assert!(h.summary().starts_with("n 1100, p50 5"), "{}", h.summary());
    }
}
