//! The enriched message published to `processed_data` (schema v1, `docs/schemas.md`).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::aqi::{EaqiBand, UsAqi};
use crate::qc::{FlagEntry, Flags};
use crate::reading::{Location, Measurements};

/// Version of the `processed_data` schema this crate writes.
pub const PROCESSED_SCHEMA_VERSION: u32 = 1;

/// NowCast concentrations, ug/m3.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct NowCast {
    pub pm2_5: Option<f64>,
    pub pm10: Option<f64>,
}

/// Metrics computed from the sensor's recent history, up to and including this reading.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// Mean of valid values over the hour ending at this reading.
    pub mean_1h: Measurements,
    pub nowcast: NowCast,
    /// US AQI from the PM NowCasts and the NO2 1-hour mean.
    pub us_aqi: Option<UsAqi>,
    /// European AQI band from the 1-hour means.
    pub eaqi: Option<EaqiBand>,
}

/// A cleaned, flagged and enriched reading.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProcessedReading {
    pub schema_version: u32,
    pub sensor_id: String,
    #[serde(with = "crate::reading::rfc3339")]
    pub timestamp: DateTime<Utc>,
    pub location: Location,
    /// Values as received.
    pub raw: Measurements,
    /// Values after cleaning: invalid values are `null`.
    pub clean: Measurements,
    /// Bitmask of every flag raised (see [`crate::qc::Flag`]).
    pub flags: Flags,
    /// The flags with the pollutant they concern.
    pub flag_details: Vec<FlagEntry>,
    pub metrics: Metrics,
}

impl ProcessedReading {
    pub fn to_json(&self) -> Vec<u8> {
        // Plain data with finite floats: serialization cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }
}
