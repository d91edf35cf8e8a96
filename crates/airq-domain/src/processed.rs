//! The enriched message published to `processed_data` (schema v1, `docs/schemas.md`).

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::aqi::{EaqiBand, UsAqi};
use crate::qc::{FlagEntry, Flags};
use crate::reading::{Location, Measurements};

/// Version of the `processed_data` schema this crate writes.
pub const PROCESSED_SCHEMA_VERSION: u32 = 1;

/// NowCast concentrations, ug/m3.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct NowCast {
    /// PM2.5 NowCast, ug/m3.
    pub pm2_5: Option<f64>,
    /// PM10 NowCast, ug/m3.
    pub pm10: Option<f64>,
}

/// Metrics computed from the sensor's recent history, up to and including this reading.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ProcessedReading {
    /// Version of this message's schema (1).
    pub schema_version: u32,
    /// The sensor's id.
    pub sensor_id: String,
    /// When the reading was taken, UTC.
    #[serde(with = "crate::reading::rfc3339")]
    #[schemars(with = "DateTime<Utc>")]
    pub timestamp: DateTime<Utc>,
    pub location: Location,
    /// Values as received.
    pub raw: Measurements,
    /// Values after cleaning: invalid values are `null`.
    pub clean: Measurements,
    /// Bitmask of every flag raised: 1 `negative`, 2 `out_of_range`, 4 `pm25_above_pm10`,
    /// 8 `flatline`, 16 `spike`, 32 `duplicate`, 64 `late`, 128 `missing`.
    pub flags: Flags,
    /// The flags with the pollutant they concern.
    pub flag_details: Vec<FlagEntry>,
    pub metrics: Metrics,
}

impl ProcessedReading {
    /// Bytes to reserve for one message: a typical one is 500-600.
    pub const JSON_CAPACITY: usize = 640;

    /// The `processed_data` message: byte for byte what `serde_json::to_vec` makes of it (a
    /// test holds them equal on random readings), written by hand because it is the cleaner's
    /// largest cost per message (docs/benchmarks.md): the keys are constants that need no
    /// escaping, the timestamp no `String`, the buffer one allocation.
    pub fn to_json(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(Self::JSON_CAPACITY);
        self.write_json(&mut out);
        out
    }

    /// Appends [`ProcessedReading::to_json`]'s bytes to `out`.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"schema_version\":");
        out.extend_from_slice(itoa::Buffer::new().format(self.schema_version).as_bytes());
        out.extend_from_slice(b",\"sensor_id\":");
        json::string(out, &self.sensor_id);
        out.extend_from_slice(b",\"timestamp\":\"");
        crate::time::write_rfc3339(out, &self.timestamp);
        out.extend_from_slice(b"\",\"location\":{\"lat\":");
        json::number(out, self.location.lat);
        out.extend_from_slice(b",\"lon\":");
        json::number(out, self.location.lon);
        out.extend_from_slice(b"},\"raw\":");
        json::measurements(out, &self.raw);
        out.extend_from_slice(b",\"clean\":");
        json::measurements(out, &self.clean);
        out.extend_from_slice(b",\"flags\":");
        out.extend_from_slice(itoa::Buffer::new().format(self.flags.0).as_bytes());
        out.extend_from_slice(b",\"flag_details\":[");
        for (i, f) in self.flag_details.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(b"{\"flag\":\"");
            out.extend_from_slice(f.flag.as_str().as_bytes());
            out.push(b'"');
            if let Some(p) = f.pollutant {
                out.extend_from_slice(b",\"pollutant\":\"");
                out.extend_from_slice(p.as_str().as_bytes());
                out.push(b'"');
            }
            out.push(b'}');
        }
        let m = &self.metrics;
        out.extend_from_slice(b"],\"metrics\":{\"mean_1h\":");
        json::measurements(out, &m.mean_1h);
        out.extend_from_slice(b",\"nowcast\":{\"pm2_5\":");
        json::option(out, m.nowcast.pm2_5);
        out.extend_from_slice(b",\"pm10\":");
        json::option(out, m.nowcast.pm10);
        out.extend_from_slice(b"},\"us_aqi\":");
        match m.us_aqi {
            Some(a) => {
                out.extend_from_slice(b"{\"aqi\":");
                out.extend_from_slice(itoa::Buffer::new().format(a.aqi).as_bytes());
                out.extend_from_slice(b",\"category\":\"");
                out.extend_from_slice(a.category.as_str().as_bytes());
                out.extend_from_slice(b"\",\"dominant\":\"");
                out.extend_from_slice(a.dominant.as_str().as_bytes());
                out.extend_from_slice(b"\"}");
            }
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"eaqi\":");
        match m.eaqi {
            Some(b) => {
                out.push(b'"');
                out.extend_from_slice(b.as_str().as_bytes());
                out.push(b'"');
            }
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b"}}");
    }
}

/// JSON values as serde_json writes them.
mod json {
    use crate::reading::Measurements;

    /// A finite number as serde_json writes it (zmij's shortest form); `null` otherwise.
    pub fn number(out: &mut Vec<u8>, v: f64) {
        if v.is_finite() {
            out.extend_from_slice(zmij::Buffer::new().format_finite(v).as_bytes());
        } else {
            out.extend_from_slice(b"null");
        }
    }

    pub fn option(out: &mut Vec<u8>, v: Option<f64>) {
        match v {
            Some(v) => number(out, v),
            None => out.extend_from_slice(b"null"),
        }
    }

    pub fn measurements(out: &mut Vec<u8>, m: &Measurements) {
        out.extend_from_slice(b"{\"pm2_5\":");
        option(out, m.pm2_5);
        out.extend_from_slice(b",\"pm10\":");
        option(out, m.pm10);
        out.extend_from_slice(b",\"no2\":");
        option(out, m.no2);
        out.push(b'}');
    }

    /// A string: as is when nothing in it needs escaping (a valid sensor id never does),
    /// else through serde_json.
    pub fn string(out: &mut Vec<u8>, s: &str) {
        if s.bytes()
            .all(|b| b >= 0x20 && b != b'"' && b != b'\\' && b < 0x7f)
        {
            out.push(b'"');
            out.extend_from_slice(s.as_bytes());
            out.push(b'"');
        } else if serde_json::to_writer(&mut *out, s).is_err() {
            // Writing into a Vec cannot fail; keep the message valid JSON regardless.
            out.extend_from_slice(b"\"\"");
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng};

    use super::*;
    use crate::Pollutant;
    use crate::aqi::{AqiCategory, UsAqi};
    use crate::qc::Flag;

    fn value(rng: &mut impl Rng) -> Option<f64> {
        match rng.random_range(0..8) {
            0 => None,
            1 => Some(0.0),
            2 => Some(-0.0),
            3 => Some(rng.random_range(0..2000) as f64),
            4 => Some(rng.random_range(-1e-9..1e-9)),
            5 => Some(rng.random_range(-1e25..1e25)),
            6 => Some(f64::from_bits(rng.random())).filter(|v| v.is_finite()),
            _ => Some(rng.random_range(0.0..500.0)),
        }
    }

    fn measurements(rng: &mut impl Rng) -> Measurements {
        Measurements {
            pm2_5: value(rng),
            pm10: value(rng),
            no2: value(rng),
        }
    }

    fn random_reading(rng: &mut impl Rng) -> ProcessedReading {
        let ids = [
            "CAP_001",
            "bj_aotizhongxin",
            "a.b:c-d",
            "quo\"te",
            "back\\slash",
            "tab\there",
            "été",
        ];
        let flags: Vec<FlagEntry> = (0..rng.random_range(0..4))
            .map(|_| FlagEntry {
                flag: Flag::ALL[rng.random_range(0..Flag::ALL.len())],
                pollutant: [
                    None,
                    Some(Pollutant::Pm25),
                    Some(Pollutant::Pm10),
                    Some(Pollutant::No2),
                ][rng.random_range(0..4)],
            })
            .collect();
        let categories = [
            AqiCategory::Good,
            AqiCategory::Moderate,
            AqiCategory::UnhealthyForSensitiveGroups,
            AqiCategory::Unhealthy,
            AqiCategory::VeryUnhealthy,
            AqiCategory::Hazardous,
        ];
        ProcessedReading {
            schema_version: rng.random_range(0..3),
            sensor_id: ids[rng.random_range(0..ids.len())].to_owned(),
            timestamp: DateTime::from_timestamp(
                rng.random_range(0..4_000_000_000),
                [0, 500_000_000, 123_456_789][rng.random_range(0..3)],
            )
            .unwrap(),
            location: Location {
                lat: rng.random_range(-90.0..90.0),
                lon: rng.random_range(-180.0..180.0),
            },
            raw: measurements(rng),
            clean: measurements(rng),
            flags: Flags(rng.random_range(0..256)),
            flag_details: flags,
            metrics: Metrics {
                mean_1h: measurements(rng),
                nowcast: NowCast {
                    pm2_5: value(rng),
                    pm10: value(rng),
                },
                us_aqi: rng.random_bool(0.7).then(|| UsAqi {
                    aqi: rng.random_range(0..600),
                    category: categories[rng.random_range(0..6)],
                    dominant: Pollutant::ALL[rng.random_range(0..3)],
                }),
                eaqi: rng
                    .random_bool(0.7)
                    .then(|| EaqiBand::ORDER[rng.random_range(0..6)]),
            },
        }
    }

    #[test]
    fn to_json_writes_what_serde_json_writes() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        for _ in 0..50_000 {
            let r = random_reading(&mut rng);
            let ours = r.to_json();
            assert_eq!(
                String::from_utf8(ours.clone()).unwrap(),
                serde_json::to_string(&r).unwrap()
            );
            let back: ProcessedReading = serde_json::from_slice(&ours).unwrap();
            assert_eq!(back.sensor_id, r.sensor_id);
        }
    }
}
