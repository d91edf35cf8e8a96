//! Labelled air-quality data for airq, pure but for reading files: what the simulator
//! publishes and what the detector's evaluation scores against.
//!
//! - [`signal`]: the synthetic signal model (diurnal, weekly, weather episodes, noise);
//! - [`faults`]: fault kinds, rates, injection and ground-truth records;
//! - [`sim`]: the fleet, one tick at a time;
//! - [`replay`]: loading the Beijing PRSA data set (real hourly data, 12 stations);
//! - [`inject`]: faults written into real series, with their ground truth.

pub mod faults;
pub mod inject;
pub mod replay;
pub mod signal;
pub mod sim;
