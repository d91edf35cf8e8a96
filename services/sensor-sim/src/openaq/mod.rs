//! OpenAQ as a source: its live API v3 ([`api`], polled by [`live`]) and its public archive
//! of daily CSV files ([`archive`]). Both come down to [`Observation`]s (one sensor's value of
//! one pollutant at one time), which [`merge`] turns into the platform's readings: one per
//! location and timestamp, pollutants merged, in ug/m3.

pub mod api;
pub mod archive;
pub mod live;
pub mod watermark;

use std::collections::BTreeMap;

use airq_domain::{Location, Measurements, Reading};
use chrono::{DateTime, Utc};

/// The location the project was specified with (OpenAQ location 3847229).
pub const DEFAULT_LOCATION: i64 = 3847229;

/// ug/m3 per ppb of NO2 at 25 C and 1 atm: molar mass 46.0055 g/mol over the molar volume
/// 24.45 L/mol (the US EPA's and the EEA's convention).
pub const NO2_UGM3_PER_PPB: f64 = 46.0055 / 24.45;

/// The pollutants a reading carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Pollutant {
    Pm25,
    Pm10,
    No2,
}

impl Pollutant {
    /// OpenAQ's parameter name (`pm25`, `pm10`, `no2`); `None` for the ones a reading has no
    /// field for (o3, co, temperature, ...).
    pub fn from_openaq(name: &str) -> Option<Self> {
        match name {
            "pm25" => Some(Self::Pm25),
            "pm10" => Some(Self::Pm10),
            "no2" => Some(Self::No2),
            _ => None,
        }
    }
}

/// A value in `units` as ug/m3. Particles are reported in ug/m3; NO2 in ug/m3, ppb or ppm
/// (converted at 25 C). `None` for a unit that cannot be converted.
pub fn to_ugm3(p: Pollutant, value: f64, units: &str) -> Option<f64> {
    let units = units.trim().to_ascii_lowercase();
    let ugm3 = matches!(
        units.as_str(),
        "µg/m³" | "ug/m3" | "μg/m³" | "µg/m3" | "ug/m³"
    );
    match (p, units.as_str()) {
        (_, _) if ugm3 => Some(value),
        (Pollutant::No2, "ppb") => Some(value * NO2_UGM3_PER_PPB),
        (Pollutant::No2, "ppm") => Some(value * 1000.0 * NO2_UGM3_PER_PPB),
        _ => None,
    }
}

/// One sensor's value of one pollutant at one time, already in ug/m3.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    pub location_id: i64,
    pub sensor_id: i64,
    pub timestamp: DateTime<Utc>,
    pub pollutant: Pollutant,
    pub value: f64,
}

/// The platform's sensor id of an OpenAQ location.
pub fn reading_sensor_id(location_id: i64) -> String {
    format!("openaq_{location_id}")
}

/// One reading per (location, timestamp), with the pollutants of all its sensors merged,
/// in time order. If two sensors of a location report the same pollutant at the same time,
/// the first one seen is kept.
pub fn merge(observations: &[Observation], locations: &BTreeMap<i64, Location>) -> Vec<Reading> {
    let mut by_key: BTreeMap<(DateTime<Utc>, i64), Measurements> = BTreeMap::new();
    for o in observations {
        let m = by_key.entry((o.timestamp, o.location_id)).or_default();
        let slot = match o.pollutant {
            Pollutant::Pm25 => &mut m.pm2_5,
            Pollutant::Pm10 => &mut m.pm10,
            Pollutant::No2 => &mut m.no2,
        };
        slot.get_or_insert(o.value);
    }
    by_key
        .into_iter()
        .filter_map(|((timestamp, location_id), measurements)| {
            Some(Reading {
                sensor_id: reading_sensor_id(location_id),
                timestamp,
                location: *locations.get(&location_id)?,
                measurements,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no2_in_ppb_and_ppm_becomes_ugm3_at_25_c() {
        let ppb = to_ugm3(Pollutant::No2, 10.0, "ppb").unwrap();
        assert!((ppb - 18.816).abs() < 1e-3, "{ppb}");
        let ppm = to_ugm3(Pollutant::No2, 0.01, "ppm").unwrap();
        assert!((ppm - ppb).abs() < 1e-9);
        assert_eq!(to_ugm3(Pollutant::Pm25, 12.5, "µg/m³"), Some(12.5));
        assert_eq!(to_ugm3(Pollutant::Pm25, 12.5, "ppm"), None);
    }

    #[test]
    fn one_reading_per_location_and_time_with_pollutants_merged() {
        let t = |h: u32| {
            chrono::NaiveDate::from_ymd_opt(2024, 1, 15)
                .unwrap()
                .and_hms_opt(h, 0, 0)
                .unwrap()
                .and_utc()
        };
        let o = |sensor, h, p, v| Observation {
            location_id: 7,
            sensor_id: sensor,
            timestamp: t(h),
            pollutant: p,
            value: v,
        };
        let obs = [
            o(2, 14, Pollutant::No2, 40.0),
            o(1, 14, Pollutant::Pm25, 12.5),
            o(1, 13, Pollutant::Pm25, 11.0),
            o(3, 14, Pollutant::Pm25, 99.0),
        ];
        let locs = BTreeMap::from([(
            7,
            Location {
                lat: 48.8,
                lon: 2.3,
            },
        )]);
        let r = merge(&obs, &locs);
        assert_eq!(r.len(), 2);
        assert_eq!(
            (r[0].timestamp, r[0].measurements.pm2_5),
            (t(13), Some(11.0))
        );
        assert_eq!(r[1].sensor_id, "openaq_7");
        assert_eq!(r[1].measurements.pm2_5, Some(12.5), "first one seen kept");
        assert_eq!(r[1].measurements.no2, Some(40.0));
        assert_eq!(r[1].measurements.pm10, None);
    }
}
