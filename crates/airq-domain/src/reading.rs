//! The reading a sensor publishes to `raw_data` (schema v1, see `docs/schemas.md`).

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The pollutants airq measures, in ug/m3.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Pollutant {
    #[serde(rename = "pm2_5")]
    Pm25,
    Pm10,
    No2,
}

impl Pollutant {
    /// Every pollutant, in a fixed order used for arrays indexed by pollutant.
    pub const ALL: [Pollutant; 3] = [Pollutant::Pm25, Pollutant::Pm10, Pollutant::No2];

    /// The field name used on the wire and in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Pollutant::Pm25 => "pm2_5",
            Pollutant::Pm10 => "pm10",
            Pollutant::No2 => "no2",
        }
    }

    /// Position in [`Pollutant::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// Geographic position in WGS84 degrees.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Location {
    /// Latitude, degrees north.
    #[schemars(range(min = -90.0, max = 90.0))]
    pub lat: f64,
    /// Longitude, degrees east.
    #[schemars(range(min = -180.0, max = 180.0))]
    pub lon: f64,
}

impl Location {
    /// The key of this location's region: the cell of a `cell_deg` grid of latitude and
    /// longitude (`"39:116"` for Beijing at 1 degree), or `"all"`, one region for the whole
    /// fleet, when `cell_deg` is 0 or less. `processed_data` is keyed by it, so one
    /// detector instance sees every sensor of a region.
    pub fn region_key(&self, cell_deg: f64) -> std::borrow::Cow<'static, str> {
        if cell_deg.is_nan() || cell_deg <= 0.0 {
            return "all".into();
        }
        let cell = |x: f64| (x / cell_deg).floor() as i64;
        format!("{}:{}", cell(self.lat), cell(self.lon)).into()
    }
}

/// Concentrations in ug/m3; a value absent or null means the sensor sent none (e.g. `NA` in
/// replay). A reading needs at least one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Measurements {
    /// PM2.5, ug/m3.
    pub pm2_5: Option<f64>,
    /// PM10, ug/m3.
    pub pm10: Option<f64>,
    /// NO2, ug/m3.
    pub no2: Option<f64>,
}

impl Measurements {
    pub fn get(&self, p: Pollutant) -> Option<f64> {
        match p {
            Pollutant::Pm25 => self.pm2_5,
            Pollutant::Pm10 => self.pm10,
            Pollutant::No2 => self.no2,
        }
    }

    pub fn set(&mut self, p: Pollutant, v: Option<f64>) {
        match p {
            Pollutant::Pm25 => self.pm2_5 = v,
            Pollutant::Pm10 => self.pm10 = v,
            Pollutant::No2 => self.no2 = v,
        }
    }
}

/// A decoded and validated sensor reading (the `raw_data` message).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Reading {
    /// The sensor's id; also the message key.
    #[schemars(length(min = 1, max = 64), regex(pattern = r"^[A-Za-z0-9_.:-]+$"))]
    pub sensor_id: String,
    /// When the reading was taken, RFC 3339 (any offset; normalised to UTC).
    #[serde(with = "rfc3339")]
    #[schemars(with = "DateTime<Utc>")]
    pub timestamp: DateTime<Utc>,
    pub location: Location,
    pub measurements: Measurements,
}

impl Reading {
    /// The JSON bytes of this reading as published to `raw_data`.
    pub fn to_json(&self) -> Vec<u8> {
        // Serializing plain structs of strings and finite floats cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// RFC 3339 with a `Z` suffix and second precision (sub-seconds kept when present).
pub mod rfc3339 {
    use chrono::{DateTime, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(ts: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        let mut text = Vec::with_capacity(32);
        crate::time::write_rfc3339(&mut text, ts);
        s.serialize_str(std::str::from_utf8(&text).map_err(serde::ser::Error::custom)?)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let s = <&str>::deserialize(d)?;
        crate::time::parse_rfc3339(s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serializes_in_the_documented_shape() {
        let r = Reading {
            sensor_id: "CAP_001".into(),
            timestamp: "2024-01-15T14:30:00Z".parse().unwrap(),
            location: Location {
                lat: 48.8566,
                lon: 2.3522,
            },
            measurements: Measurements {
                pm2_5: Some(12.5),
                pm10: Some(25.3),
                no2: Some(40.2),
            },
        };
        let json = String::from_utf8(r.to_json()).unwrap();
        assert_eq!(
            json,
            r#"{"sensor_id":"CAP_001","timestamp":"2024-01-15T14:30:00Z","location":{"lat":48.8566,"lon":2.3522},"measurements":{"pm2_5":12.5,"pm10":25.3,"no2":40.2}}"#
        );
    }

    #[test]
    fn region_key_is_a_grid_cell_or_the_whole_fleet() {
        let at = |lat, lon| Location { lat, lon };
        assert_eq!(at(39.93, 116.42).region_key(1.0), "39:116");
        assert_eq!(at(39.93, 116.42).region_key(0.5), "79:232");
        assert_eq!(at(-33.9, -0.2).region_key(1.0), "-34:-1");
        assert_eq!(at(39.93, 116.42).region_key(0.0), "all");
        assert_eq!(at(39.93, 116.42).region_key(f64::NAN), "all");
    }
}
