//! Quality-control flags and their configuration.
//!
//! Practice followed (EPA/EEA data validation): a physically impossible value
//! (negative, above the instrument's range) is *invalidated*: nulled in the cleaned
//! reading and flagged. Suspect values (PM2.5 > PM10, flatline, rate-of-change spike)
//! are *kept* and flagged, so that downstream users and the anomaly detector decide.
//! A duplicate (same sensor and timestamp) is flagged and not stored twice; a late
//! (out-of-order) reading is flagged and stored, but does not move the sensor's state.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::reading::Pollutant;

/// One quality flag. The numeric value is its bit in `flags` (and in the database:
/// `quality_flags`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Flag {
    Negative = 1,
    OutOfRange = 2,
    Pm25AbovePm10 = 4,
    Flatline = 8,
    Spike = 16,
    Duplicate = 32,
    Late = 64,
    Missing = 128,
}

impl Flag {
    pub const ALL: [Flag; 8] = [
        Flag::Negative,
        Flag::OutOfRange,
        Flag::Pm25AbovePm10,
        Flag::Flatline,
        Flag::Spike,
        Flag::Duplicate,
        Flag::Late,
        Flag::Missing,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Flag::Negative => "negative",
            Flag::OutOfRange => "out_of_range",
            Flag::Pm25AbovePm10 => "pm25_above_pm10",
            Flag::Flatline => "flatline",
            Flag::Spike => "spike",
            Flag::Duplicate => "duplicate",
            Flag::Late => "late",
            Flag::Missing => "missing",
        }
    }
}

/// A set of flags, stored as a bitmask.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct Flags(pub u32);

impl Flags {
    pub fn insert(&mut self, f: Flag) {
        self.0 |= f as u32;
    }

    pub fn contains(self, f: Flag) -> bool {
        self.0 & f as u32 != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn iter(self) -> impl Iterator<Item = Flag> {
        Flag::ALL.into_iter().filter(move |f| self.contains(*f))
    }
}

/// A flag raised on one pollutant of a reading (`pollutant` is `None` for reading-level flags).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct FlagEntry {
    pub flag: Flag,
    /// The pollutant it concerns; absent for a reading-level flag.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pollutant: Option<Pollutant>,
}

/// A value per pollutant, for thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PerPollutant {
    pub pm2_5: f64,
    pub pm10: f64,
    pub no2: f64,
}

impl PerPollutant {
    pub fn get(&self, p: Pollutant) -> f64 {
        match p {
            Pollutant::Pm25 => self.pm2_5,
            Pollutant::Pm10 => self.pm10,
            Pollutant::No2 => self.no2,
        }
    }
}

/// Thresholds of the quality-control rules.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct QcConfig {
    /// Upper limit of the instrument range, ug/m3; above it a value is invalid.
    pub max_ugm3: PerPollutant,
    /// A value repeated this many times in a row (or more) is a flatline.
    pub flatline_repeats: u32,
    /// A repeated value is suspicious only if it is at least this many resolution steps
    /// (the value's last decimal place) above zero: a low-cost sensor in
    /// clean air repeats 3 or 4 ug/m3 (a few steps) all the time, while 57.3 repeated three
    /// times is a frozen channel. 0.0 repeated is never a flatline (zeros are judged against
    /// the neighbours by the detector).
    #[serde(default = "default_flatline_min_steps")]
    pub flatline_min_steps: f64,
    /// A change larger than this between consecutive readings is a spike, ug/m3.
    pub spike_delta_ugm3: PerPollutant,
    /// Consecutive readings further apart than this are not compared for spikes, s.
    pub spike_max_gap_secs: i64,
    /// How far back timestamps are remembered to detect duplicates, s.
    pub dedup_window_secs: i64,
}

impl Default for QcConfig {
    fn default() -> Self {
        Self {
            // Typical ranges of optical PM counters and electrochemical NO2 cells.
            max_ugm3: PerPollutant {
                pm2_5: 1000.0,
                pm10: 2000.0,
                no2: 2000.0,
            },
            flatline_repeats: 3,
            flatline_min_steps: default_flatline_min_steps(),
            spike_delta_ugm3: PerPollutant {
                pm2_5: 150.0,
                pm10: 300.0,
                no2: 200.0,
            },
            spike_max_gap_secs: 3 * 3600,
            dedup_window_secs: 48 * 3600,
        }
    }
}

/// Checks that make sense on a single value: negative and out of range.
/// Returns the flag if the value must be invalidated.
pub fn value_check(p: Pollutant, v: f64, cfg: &QcConfig) -> Option<Flag> {
    if v < 0.0 {
        Some(Flag::Negative)
    } else if v > cfg.max_ugm3.get(p) {
        Some(Flag::OutOfRange)
    } else {
        None
    }
}

fn default_flatline_min_steps() -> f64 {
    20.0
}

/// The resolution of a reported value: the largest power of ten (1 down to 0.0001) it is
/// a whole multiple of.
pub fn decimal_step(v: f64) -> f64 {
    for k in 0..4 {
        let step = 10f64.powi(-k);
        if ((v / step).round() * step - v).abs() <= 1e-9 * v.abs().max(1.0) {
            return step;
        }
    }
    1e-4
}

/// Whether `v` repeated `repeats` times is a suspicious flatline for a sensor of resolution
/// `step`.
pub fn is_flatline(v: f64, repeats: u32, step: f64, cfg: &QcConfig) -> bool {
    repeats >= cfg.flatline_repeats && v > 0.0 && v >= cfg.flatline_min_steps * step
}

/// Tolerance of the PM2.5 <= PM10 check, ug/m3: the two channels' independent noise.
const PM_RATIO_TOLERANCE_UGM3: f64 = 1.0;

/// PM2.5 is a fraction of PM10, so PM2.5 > PM10 is physically impossible.
pub fn pm25_above_pm10(pm2_5: f64, pm10: f64) -> bool {
    pm2_5 > pm10 + PM_RATIO_TOLERANCE_UGM3
}

/// A rate-of-change spike between two consecutive valid values.
pub fn is_spike(p: Pollutant, previous: f64, current: f64, gap_secs: i64, cfg: &QcConfig) -> bool {
    gap_secs <= cfg.spike_max_gap_secs && (current - previous).abs() > cfg.spike_delta_ugm3.get(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeat_is_a_flatline_only_well_above_the_resolution() {
        let cfg = QcConfig::default();
        assert_eq!(decimal_step(57.0), 1.0);
        assert_eq!(decimal_step(57.3), 0.1);
        assert_eq!(decimal_step(4.25), 0.01);
        assert!(is_flatline(57.3, 3, 0.1, &cfg));
        assert!(!is_flatline(57.3, 2, 0.1, &cfg), "two are not a run");
        assert!(
            !is_flatline(4.0, 12, 1.0, &cfg),
            "clean air, integer sensor"
        );
        assert!(
            is_flatline(4.0, 3, 0.01, &cfg),
            "a precise sensor stuck at 4"
        );
        assert!(
            !is_flatline(0.0, 50, 0.01, &cfg),
            "zeros are for the neighbours"
        );
    }

    #[test]
    fn negative_values_are_invalid() {
        assert_eq!(
            value_check(Pollutant::Pm10, -0.1, &QcConfig::default()),
            Some(Flag::Negative)
        );
    }

    #[test]
    fn values_above_the_instrument_range_are_invalid() {
        let cfg = QcConfig::default();
        assert_eq!(
            value_check(Pollutant::Pm25, 1000.1, &cfg),
            Some(Flag::OutOfRange)
        );
        assert_eq!(value_check(Pollutant::Pm25, 1000.0, &cfg), None);
        assert_eq!(value_check(Pollutant::No2, 0.0, &cfg), None);
    }

    #[test]
    fn pm25_above_pm10_is_flagged_beyond_noise() {
        assert!(pm25_above_pm10(30.0, 20.0));
        assert!(!pm25_above_pm10(20.5, 20.0));
        assert!(!pm25_above_pm10(10.0, 20.0));
    }

    #[test]
    fn spikes_need_a_large_jump_within_the_gap() {
        let cfg = QcConfig::default();
        assert!(is_spike(Pollutant::Pm25, 10.0, 200.0, 60, &cfg));
        assert!(!is_spike(Pollutant::Pm25, 10.0, 100.0, 60, &cfg));
        assert!(!is_spike(Pollutant::Pm25, 10.0, 200.0, 24 * 3600, &cfg));
    }

    #[test]
    fn flags_round_trip_through_the_bitmask() {
        let mut f = Flags::default();
        f.insert(Flag::Spike);
        f.insert(Flag::Late);
        assert_eq!(f.0, 80);
        assert_eq!(f.iter().collect::<Vec<_>>(), vec![Flag::Spike, Flag::Late]);
    }
}
