//! stream-cleaner: `raw_data` -> validation, cleaning, flags, metrics -> PostgreSQL and
//! `processed_data`; invalid messages -> dead-letter topic.
//!
//! - [`pipeline`]: the pure per-message step (decode, validate, clean);
//! - [`worker`]: the at-least-once consume/write/store-offset loop;
//! - [`startup`]: wiring; [`config`]: settings; [`counters`]: observability.

pub mod config;
pub mod counters;
pub mod pipeline;
pub mod startup;
pub mod worker;
