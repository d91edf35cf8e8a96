//! sensor-sim: publishes air-quality readings to `raw_data`.
//!
//! - [`signal`]: the synthetic signal model (diurnal, weekly, weather episodes, noise);
//! - [`faults`]: fault kinds, rates, injection and ground-truth records;
//! - [`sim`]: the fleet, one tick at a time (pure);
//! - [`replay`]: loading the Beijing PRSA data set;
//! - [`publish`]: the producer side and pacing; [`truth`]: the ground-truth JSONL log;
//! - [`startup`]: the two modes wired together; [`cli`], [`config`].

pub mod cli;
pub mod config;
pub mod faults;
pub mod publish;
pub mod replay;
pub mod signal;
pub mod sim;
pub mod startup;
pub mod truth;
