//! sensor-sim: publishes air-quality readings to `raw_data`.
//!
//! - [`signal`]: the synthetic signal model (diurnal, weekly, weather episodes, noise);
//! - [`faults`]: fault kinds, rates, injection and ground-truth records;
//! - [`sim`]: the fleet, one tick at a time (pure);
//! - [`replay`]: loading the Beijing PRSA data set;
//! - [`openaq`]: OpenAQ as a source, live (API v3, per-sensor watermarks) and from its archive;
//! - [`publish`]: the producer side and pacing; [`truth`]: the ground-truth JSONL log;
//! - [`startup`]: the modes wired together; [`cli`], [`config`].

pub mod cli;
pub mod config;
pub mod faults;
pub mod openaq;
pub mod publish;
pub mod replay;
pub mod signal;
pub mod sim;
pub mod startup;
pub mod truth;
