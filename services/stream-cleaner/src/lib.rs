//! stream-cleaner: `raw_data` -> validation, cleaning, flags, metrics -> PostgreSQL and
//! `processed_data`; invalid messages -> dead-letter topic.
//!
//! - [`pipeline`]: the pure per-message step (decode, validate, clean);
//! - [`processor`]: a batch of messages through the pipeline (the runtime's `Processor`);
//! - [`sink`]: readings into PostgreSQL, then `processed_data` (the runtime's `Sink`);
//! - [`startup`]: wiring onto `airq_kafka::runtime`, which owns the at-least-once loop;
//! - [`report`]: the daily batch's quality table and completeness answer (pure);
//! - [`config`]: settings; [`counters`]: observability.

pub mod config;
pub mod counters;
pub mod pipeline;
pub mod processor;
pub mod report;
pub mod sink;
pub mod startup;

/// The service's name in dead-letter headers and logs.
pub const SERVICE: &str = "stream-cleaner";
