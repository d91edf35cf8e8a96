//! Counters of what the cleaner observed; every increment also has a log line.

use std::sync::atomic::{AtomicU64, Ordering};

use airq_domain::qc::Flag;

#[derive(Debug, Default)]
pub struct Counters {
    pub received: AtomicU64,
    pub readings: AtomicU64,
    pub stored: AtomicU64,
    pub dead_lettered: AtomicU64,
    pub duplicates: AtomicU64,
    pub flagged: AtomicU64,
    pub batches: AtomicU64,
    pub retries: AtomicU64,
    pub flags: [AtomicU64; Flag::ALL.len()],
}

impl Counters {
    pub fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }

    pub fn flag(&self, f: Flag) {
        if let Some(i) = Flag::ALL.iter().position(|x| *x == f) {
            self.flags[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// One summary line with every counter.
    pub fn log_summary(&self) {
        let flags: Vec<String> = Flag::ALL
            .iter()
            .zip(&self.flags)
            .map(|(f, c)| format!("{}={}", f.as_str(), Self::get(c)))
            .collect();
        tracing::info!(
            received = Self::get(&self.received),
            readings = Self::get(&self.readings),
            stored = Self::get(&self.stored),
            dead_lettered = Self::get(&self.dead_lettered),
            duplicates = Self::get(&self.duplicates),
            flagged = Self::get(&self.flagged),
            batches = Self::get(&self.batches),
            retries = Self::get(&self.retries),
            flags = %flags.join(","),
            "cleaner counters"
        );
    }
}
