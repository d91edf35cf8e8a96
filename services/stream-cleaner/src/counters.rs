//! What the cleaner counts beyond the runtime's counters (messages, dead letters, retries).

use std::sync::atomic::{AtomicU64, Ordering};

use airq_domain::ProcessedReading;
use airq_domain::qc::Flag;

use crate::pipeline::stored;

#[derive(Debug, Default)]
pub struct Counters {
    pub readings: AtomicU64,
    pub stored: AtomicU64,
    pub duplicates: AtomicU64,
    pub flagged: AtomicU64,
    pub flags: [AtomicU64; Flag::ALL.len()],
}

impl Counters {
    pub fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }

    /// Counts one cleaned reading and its flags.
    pub fn count(&self, r: &ProcessedReading) {
        Self::add(&self.readings, 1);
        if !stored(r) {
            Self::add(&self.duplicates, 1);
        }
        if !r.flags.is_empty() {
            Self::add(&self.flagged, 1);
            for f in r.flags.iter() {
                if let Some(i) = Flag::ALL.iter().position(|x| *x == f) {
                    self.flags[i].fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    /// One summary line with every counter.
    pub fn log_summary(&self, sensors: usize) {
        let flags: Vec<String> = Flag::ALL
            .iter()
            .zip(&self.flags)
            .map(|(f, c)| format!("{}={}", f.as_str(), Self::get(c)))
            .collect();
        tracing::info!(
            readings = Self::get(&self.readings),
            stored = Self::get(&self.stored),
            duplicates = Self::get(&self.duplicates),
            flagged = Self::get(&self.flagged),
            sensors,
            flags = %flags.join(","),
            "cleaner counters"
        );
    }
}
