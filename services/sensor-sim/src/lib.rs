//! sensor-sim: publishes air-quality readings to `raw_data`.
//!
//! The fleet, its faults and the Beijing loader are `airq_sim`'s (the detector's evaluation
//! uses them too); this crate makes them a service:
//! - [`openaq`]: OpenAQ as a source, live (API v3, per-sensor watermarks) and from its archive;
//! - [`publish`]: the producer side and pacing; [`truth`]: the ground-truth JSONL log;
//! - [`startup`]: the modes wired together; [`cli`], [`config`].

pub mod cli;
pub mod config;
pub mod openaq;
pub mod publish;
pub mod startup;
pub mod truth;
