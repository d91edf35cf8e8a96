//! Air-quality indices.
//!
//! - US AQI, EPA Technical Assistance Document, May 2024 breakpoints (PM2.5 revised in
//!   February 2024). Concentrations are truncated before the equation as EPA requires:
//!   PM2.5 to 0.1 ug/m3, PM10 to 1 ug/m3, NO2 to 1 ppb (converted from ug/m3 with
//!   1 ppb = 1.88 ug/m3 at 25 degC and 1 atm). Above the top breakpoint the index is 500.
//! - European Air Quality Index, EEA 2024 revision: six bands from Good to Extremely poor.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::reading::{Measurements, Pollutant};

/// ug/m3 per ppb of NO2 at 25 degC, 1 atm (EPA's conversion).
pub const NO2_UGM3_PER_PPB: f64 = 1.88;

/// (concentration low, concentration high, index low, index high)
type Breakpoint = (f64, f64, f64, f64);

const PM25: [Breakpoint; 6] = [
    (0.0, 9.0, 0.0, 50.0),
    (9.1, 35.4, 51.0, 100.0),
    (35.5, 55.4, 101.0, 150.0),
    (55.5, 125.4, 151.0, 200.0),
    (125.5, 225.4, 201.0, 300.0),
    (225.5, 325.4, 301.0, 500.0),
];
const PM10: [Breakpoint; 6] = [
    (0.0, 54.0, 0.0, 50.0),
    (55.0, 154.0, 51.0, 100.0),
    (155.0, 254.0, 101.0, 150.0),
    (255.0, 354.0, 151.0, 200.0),
    (355.0, 424.0, 201.0, 300.0),
    (425.0, 604.0, 301.0, 500.0),
];
/// NO2 1-hour, in ppb.
const NO2_PPB: [Breakpoint; 6] = [
    (0.0, 53.0, 0.0, 50.0),
    (54.0, 100.0, 51.0, 100.0),
    (101.0, 360.0, 101.0, 150.0),
    (361.0, 649.0, 151.0, 200.0),
    (650.0, 1249.0, 201.0, 300.0),
    (1250.0, 2049.0, 301.0, 500.0),
];

/// US AQI category.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum AqiCategory {
    Good,
    Moderate,
    UnhealthyForSensitiveGroups,
    Unhealthy,
    VeryUnhealthy,
    Hazardous,
}

impl AqiCategory {
    pub fn from_aqi(aqi: u16) -> Self {
        match aqi {
            0..=50 => AqiCategory::Good,
            51..=100 => AqiCategory::Moderate,
            101..=150 => AqiCategory::UnhealthyForSensitiveGroups,
            151..=200 => AqiCategory::Unhealthy,
            201..=300 => AqiCategory::VeryUnhealthy,
            _ => AqiCategory::Hazardous,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            AqiCategory::Good => "good",
            AqiCategory::Moderate => "moderate",
            AqiCategory::UnhealthyForSensitiveGroups => "unhealthy_for_sensitive_groups",
            AqiCategory::Unhealthy => "unhealthy",
            AqiCategory::VeryUnhealthy => "very_unhealthy",
            AqiCategory::Hazardous => "hazardous",
        }
    }
}

fn truncate(x: f64, decimals: i32) -> f64 {
    let f = 10f64.powi(decimals);
    (x * f).floor() / f
}

/// US AQI sub-index of one pollutant from a concentration in ug/m3 (`None` if negative or NaN).
pub fn sub_index(p: Pollutant, ugm3: f64) -> Option<u16> {
    if ugm3.is_nan() || ugm3 < 0.0 {
        return None;
    }
    let (table, c) = match p {
        Pollutant::Pm25 => (&PM25, truncate(ugm3, 1)),
        Pollutant::Pm10 => (&PM10, truncate(ugm3, 0)),
        Pollutant::No2 => (&NO2_PPB, truncate(ugm3 / NO2_UGM3_PER_PPB, 0)),
    };
    let bp = table.iter().find(|(_, hi, _, _)| c <= *hi);
    let aqi = match bp {
        Some(&(c_lo, c_hi, i_lo, i_hi)) => {
            ((i_hi - i_lo) / (c_hi - c_lo) * (c - c_lo) + i_lo).round()
        }
        None => 500.0,
    };
    Some(aqi as u16)
}

/// The overall US AQI: the highest sub-index, with its pollutant.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct UsAqi {
    /// The index, 0-500.
    pub aqi: u16,
    pub category: AqiCategory,
    /// The pollutant whose sub-index is the highest.
    pub dominant: Pollutant,
}

/// Combines sub-indices (PM from NowCast, NO2 from its 1-hour mean) into the overall AQI.
pub fn us_aqi(concentrations: &Measurements) -> Option<UsAqi> {
    Pollutant::ALL
        .iter()
        .filter_map(|&p| Some((p, sub_index(p, concentrations.get(p)?)?)))
        // On ties the first pollutant in ALL order (PM2.5) is dominant.
        .fold(None, |best: Option<(Pollutant, u16)>, (p, i)| match best {
            Some((_, b)) if b >= i => best,
            _ => Some((p, i)),
        })
        .map(|(dominant, aqi)| UsAqi {
            aqi,
            category: AqiCategory::from_aqi(aqi),
            dominant,
        })
}

/// European Air Quality Index band (EEA, 2024 revision).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum EaqiBand {
    Good = 1,
    Fair = 2,
    Moderate = 3,
    Poor = 4,
    VeryPoor = 5,
    ExtremelyPoor = 6,
}

impl EaqiBand {
    /// Every band, best first.
    pub(crate) const ORDER: [EaqiBand; 6] = [
        EaqiBand::Good,
        EaqiBand::Fair,
        EaqiBand::Moderate,
        EaqiBand::Poor,
        EaqiBand::VeryPoor,
        EaqiBand::ExtremelyPoor,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EaqiBand::Good => "good",
            EaqiBand::Fair => "fair",
            EaqiBand::Moderate => "moderate",
            EaqiBand::Poor => "poor",
            EaqiBand::VeryPoor => "very_poor",
            EaqiBand::ExtremelyPoor => "extremely_poor",
        }
    }
}

/// Upper bounds (inclusive, ug/m3) of the first five bands; above the last is Extremely poor.
fn eaqi_upper_bounds(p: Pollutant) -> [f64; 5] {
    match p {
        Pollutant::Pm25 => [5.0, 15.0, 50.0, 90.0, 140.0],
        Pollutant::Pm10 => [15.0, 45.0, 120.0, 195.0, 270.0],
        Pollutant::No2 => [10.0, 25.0, 60.0, 100.0, 150.0],
    }
}

/// EAQI band of one pollutant (`None` if negative or NaN).
pub fn eaqi_band_of(p: Pollutant, ugm3: f64) -> Option<EaqiBand> {
    if ugm3.is_nan() || ugm3 < 0.0 {
        return None;
    }
    let idx = eaqi_upper_bounds(p)
        .iter()
        .position(|&hi| ugm3 <= hi)
        .unwrap_or(5);
    Some(EaqiBand::ORDER[idx])
}

/// The EAQI band of a set of concentrations: the worst band of any pollutant.
pub fn eaqi_band(concentrations: &Measurements) -> Option<EaqiBand> {
    Pollutant::ALL
        .iter()
        .filter_map(|&p| eaqi_band_of(p, concentrations.get(p)?))
        .max()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pm25_matches_epa_worked_example() {
        // EPA TAD: 35.9 ug/m3 -> (150-101)/(55.4-35.5) * (35.9-35.5) + 101 = 101.98 -> 102.
        assert_eq!(sub_index(Pollutant::Pm25, 35.9), Some(102));
    }

    #[test]
    fn pm25_uses_the_2024_breakpoints() {
        assert_eq!(sub_index(Pollutant::Pm25, 9.0), Some(50));
        assert_eq!(sub_index(Pollutant::Pm25, 9.1), Some(51));
        // 49 / 26.3 * (12.0 - 9.1) + 51 = 56.4 -> 56
        assert_eq!(sub_index(Pollutant::Pm25, 12.0), Some(56));
    }

    #[test]
    fn pm25_truncates_before_the_equation() {
        // 9.09 truncates to 9.0: still Good.
        assert_eq!(sub_index(Pollutant::Pm25, 9.09), Some(50));
        assert_eq!(sub_index(Pollutant::Pm25, 225.5), Some(301));
        assert_eq!(sub_index(Pollutant::Pm25, 325.4), Some(500));
        assert_eq!(sub_index(Pollutant::Pm25, 900.0), Some(500));
    }

    #[test]
    fn pm10_matches_breakpoint_edges() {
        assert_eq!(sub_index(Pollutant::Pm10, 54.9), Some(50));
        assert_eq!(sub_index(Pollutant::Pm10, 55.0), Some(51));
        assert_eq!(sub_index(Pollutant::Pm10, 154.0), Some(100));
        assert_eq!(sub_index(Pollutant::Pm10, 155.0), Some(101));
    }

    #[test]
    fn no2_is_converted_to_ppb() {
        // 100 ppb = 188 ug/m3 -> AQI 100; 101 ppb -> 101.
        assert_eq!(sub_index(Pollutant::No2, 188.0), Some(100));
        assert_eq!(sub_index(Pollutant::No2, 101.0 * 1.88), Some(101));
        assert_eq!(sub_index(Pollutant::No2, 0.0), Some(0));
    }

    #[test]
    fn negative_concentrations_have_no_index() {
        assert_eq!(sub_index(Pollutant::Pm25, -1.0), None);
        assert_eq!(eaqi_band_of(Pollutant::No2, f64::NAN), None);
    }

    #[test]
    fn overall_aqi_is_the_worst_pollutant() {
        let m = Measurements {
            pm2_5: Some(35.9),
            pm10: Some(20.0),
            no2: Some(40.0),
        };
        let a = us_aqi(&m).unwrap();
        assert_eq!(
            (a.aqi, a.dominant, a.category),
            (
                102,
                Pollutant::Pm25,
                AqiCategory::UnhealthyForSensitiveGroups
            )
        );
        let m = Measurements {
            pm2_5: Some(5.0),
            pm10: Some(160.0),
            no2: None,
        };
        assert_eq!(us_aqi(&m).unwrap().dominant, Pollutant::Pm10);
        assert_eq!(us_aqi(&Measurements::default()), None);
    }

    #[test]
    fn eaqi_bands_follow_the_2024_thresholds() {
        assert_eq!(eaqi_band_of(Pollutant::Pm25, 5.0), Some(EaqiBand::Good));
        assert_eq!(eaqi_band_of(Pollutant::Pm25, 5.1), Some(EaqiBand::Fair));
        assert_eq!(
            eaqi_band_of(Pollutant::Pm10, 100.0),
            Some(EaqiBand::Moderate)
        );
        assert_eq!(
            eaqi_band_of(Pollutant::No2, 151.0),
            Some(EaqiBand::ExtremelyPoor)
        );
        let m = Measurements {
            pm2_5: Some(3.0),
            pm10: Some(10.0),
            no2: Some(70.0),
        };
        assert_eq!(eaqi_band(&m), Some(EaqiBand::Poor));
    }
}
