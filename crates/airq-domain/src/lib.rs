//! Pure domain logic of airq, shared by every service. No I/O, no async, no clock:
//! time is always passed in, so everything here is deterministic and unit-tested.
//!
//! Layout:
//! - [`reading`]: the reading a sensor sends (`raw_data` schema v1) and its measurements;
//! - [`validate`]: decoding raw bytes into a [`reading::Reading`], or a machine-readable
//!   [`validate::Rejection`] for the dead-letter topic;
//! - [`qc`]: quality-control rules and flags (negative, out of range, PM2.5 > PM10,
//!   flatline, spike, duplicate, late);
//! - [`aqi`]: US EPA AQI (May 2024 breakpoints) and the European Air Quality Index bands;
//! - [`nowcast`]: EPA NowCast for PM;
//! - [`sensor`]: per-sensor streaming state (rolling means, hourly buckets) and
//!   [`sensor::SensorState::process`], which turns a reading into a [`processed::ProcessedReading`];
//! - [`processed`]: the enriched `processed_data` message (schema v1);
//! - [`time`]: RFC 3339 parsing and writing with a fast path for the common shape.

pub mod aqi;
pub mod nowcast;
pub mod processed;
pub mod qc;
pub mod reading;
pub mod sensor;
pub mod time;
pub mod validate;

pub use processed::ProcessedReading;
pub use reading::{Location, Measurements, Pollutant, Reading};
