//! Decoding and validation of `raw_data` messages.
//!
//! Anything that is not a usable reading becomes a [`Rejection`] with a stable,
//! machine-readable [`RejectReason`] that travels to the dead-letter topic. Suspicious
//! but well-formed values (negative, out of range, ...) are *not* rejected here: they
//! are kept and flagged by [`crate::qc`].

use chrono::{DateTime, Duration, TimeZone, Utc};
use serde::Deserialize;

use crate::reading::{Location, Measurements, Reading};

/// Why a message was refused. The string form is the `reason` of the dead-letter message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectReason {
    /// Not UTF-8 JSON, truncated, or not an object.
    MalformedJson,
    /// A required field is absent or null.
    MissingField,
    /// A field has the wrong JSON type.
    InvalidType,
    /// `sensor_id` empty, too long, or with characters outside `[A-Za-z0-9_.:-]`.
    InvalidSensorId,
    /// Latitude or longitude outside the valid range.
    InvalidLocation,
    /// A number that is not finite.
    NonFiniteValue,
    /// `timestamp` is not RFC 3339.
    InvalidTimestamp,
    /// `timestamp` lies further in the future than the allowed clock skew.
    TimestampInFuture,
    /// `timestamp` is before the earliest accepted date.
    TimestampTooOld,
    /// No pollutant has a value.
    NoMeasurements,
}

impl RejectReason {
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::MalformedJson => "malformed_json",
            RejectReason::MissingField => "missing_field",
            RejectReason::InvalidType => "invalid_type",
            RejectReason::InvalidSensorId => "invalid_sensor_id",
            RejectReason::InvalidLocation => "invalid_location",
            RejectReason::NonFiniteValue => "non_finite_value",
            RejectReason::InvalidTimestamp => "invalid_timestamp",
            RejectReason::TimestampInFuture => "timestamp_in_future",
            RejectReason::TimestampTooOld => "timestamp_too_old",
            RejectReason::NoMeasurements => "no_measurements",
        }
    }
}

/// A refused message: the reason code plus a human-readable detail.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {detail}", reason.as_str())]
pub struct Rejection {
    pub reason: RejectReason,
    pub detail: String,
}

fn reject(reason: RejectReason, detail: impl Into<String>) -> Rejection {
    Rejection {
        reason,
        detail: detail.into(),
    }
}

/// Limits of what is accepted as a reading at all.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValidationConfig {
    /// Accepted clock skew into the future, in seconds.
    pub max_future_skew_secs: i64,
    /// Earliest accepted timestamp (RFC 3339).
    pub earliest: DateTime<Utc>,
    /// Longest accepted `sensor_id`.
    pub max_sensor_id_len: usize,
}

impl Default for ValidationConfig {
    fn default() -> Self {
        Self {
            max_future_skew_secs: 300,
            earliest: Utc
                .with_ymd_and_hms(2000, 1, 1, 0, 0, 0)
                .single()
                .unwrap_or_default(),
            max_sensor_id_len: 64,
        }
    }
}

// Wire shape with every field optional, so a missing field gets its own reason
// instead of serde's generic message.
#[derive(Deserialize)]
struct Wire<'a> {
    #[serde(borrow)]
    sensor_id: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow)]
    timestamp: Option<std::borrow::Cow<'a, str>>,
    location: Option<WireLocation>,
    measurements: Option<Measurements>,
}

#[derive(Deserialize)]
struct WireLocation {
    lat: Option<f64>,
    lon: Option<f64>,
}

/// Decodes and validates one `raw_data` payload, as seen at `now`.
pub fn decode(
    payload: &[u8],
    now: DateTime<Utc>,
    cfg: &ValidationConfig,
) -> Result<Reading, Rejection> {
    let wire: Wire<'_> = serde_json::from_slice(payload).map_err(|e| {
        use serde_json::error::Category;
        let reason = match e.classify() {
            Category::Data => RejectReason::InvalidType,
            Category::Io | Category::Syntax | Category::Eof => RejectReason::MalformedJson,
        };
        reject(reason, e.to_string())
    })?;

    let sensor_id = wire
        .sensor_id
        .ok_or_else(|| reject(RejectReason::MissingField, "sensor_id"))?;
    validate_sensor_id(&sensor_id, cfg)?;
    let ts_text = wire
        .timestamp
        .ok_or_else(|| reject(RejectReason::MissingField, "timestamp"))?;
    let timestamp = parse_timestamp(&ts_text, now, cfg)?;
    let location = wire
        .location
        .ok_or_else(|| reject(RejectReason::MissingField, "location"))?;
    let location = validate_location(location)?;
    let measurements = wire
        .measurements
        .ok_or_else(|| reject(RejectReason::MissingField, "measurements"))?;
    validate_measurements(&measurements)?;

    Ok(Reading {
        sensor_id: sensor_id.into_owned(),
        timestamp,
        location,
        measurements,
    })
}

pub fn validate_sensor_id(id: &str, cfg: &ValidationConfig) -> Result<(), Rejection> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':');
    if id.is_empty() || id.len() > cfg.max_sensor_id_len || !id.chars().all(ok_char) {
        return Err(reject(
            RejectReason::InvalidSensorId,
            format!("sensor_id {id:?}"),
        ));
    }
    Ok(())
}

fn parse_timestamp(
    text: &str,
    now: DateTime<Utc>,
    cfg: &ValidationConfig,
) -> Result<DateTime<Utc>, Rejection> {
    let ts = crate::time::parse_rfc3339(text)
        .map_err(|e| reject(RejectReason::InvalidTimestamp, format!("{text:?}: {e}")))?;
    if ts > now + Duration::seconds(cfg.max_future_skew_secs) {
        return Err(reject(
            RejectReason::TimestampInFuture,
            format!("{text} is after {now}"),
        ));
    }
    if ts < cfg.earliest {
        return Err(reject(
            RejectReason::TimestampTooOld,
            format!("{text} is before {}", cfg.earliest),
        ));
    }
    Ok(ts)
}

fn validate_location(loc: WireLocation) -> Result<Location, Rejection> {
    let lat = loc
        .lat
        .ok_or_else(|| reject(RejectReason::MissingField, "location.lat"))?;
    let lon = loc
        .lon
        .ok_or_else(|| reject(RejectReason::MissingField, "location.lon"))?;
    if !lat.is_finite() || !lon.is_finite() {
        return Err(reject(RejectReason::NonFiniteValue, "location"));
    }
    if !(-90.0..=90.0).contains(&lat) || !(-180.0..=180.0).contains(&lon) {
        return Err(reject(
            RejectReason::InvalidLocation,
            format!("lat {lat}, lon {lon}"),
        ));
    }
    Ok(Location { lat, lon })
}

fn validate_measurements(m: &Measurements) -> Result<(), Rejection> {
    let values = [m.pm2_5, m.pm10, m.no2];
    if values.iter().flatten().any(|v| !v.is_finite()) {
        return Err(reject(RejectReason::NonFiniteValue, "measurements"));
    }
    if values.iter().all(Option::is_none) {
        return Err(reject(
            RejectReason::NoMeasurements,
            "pm2_5, pm10 and no2 are all missing",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{"sensor_id":"CAP_001","timestamp":"2024-01-15T14:30:00Z","location":{"lat":48.8566,"lon":2.3522},"measurements":{"pm2_5":12.5,"pm10":25.3,"no2":40.2}}"#;

    fn now() -> DateTime<Utc> {
        "2024-01-15T15:00:00Z".parse().unwrap()
    }

    fn reason(json: &str) -> RejectReason {
        decode(json.as_bytes(), now(), &ValidationConfig::default())
            .unwrap_err()
            .reason
    }

    #[test]
    fn accepts_the_documented_example() {
        let r = decode(GOOD.as_bytes(), now(), &ValidationConfig::default()).unwrap();
        assert_eq!(r.sensor_id, "CAP_001");
        assert_eq!(r.measurements.pm10, Some(25.3));
    }

    #[test]
    fn accepts_null_pollutants_and_other_offsets() {
        let json = GOOD
            .replace("\"no2\":40.2", "\"no2\":null")
            .replace("14:30:00Z", "22:30:00+08:00");
        let r = decode(json.as_bytes(), now(), &ValidationConfig::default()).unwrap();
        assert_eq!(r.measurements.no2, None);
        assert_eq!(
            r.timestamp,
            "2024-01-15T14:30:00Z".parse::<DateTime<Utc>>().unwrap()
        );
    }

    #[test]
    fn rejects_truncated_json() {
        assert_eq!(reason(&GOOD[..40]), RejectReason::MalformedJson);
        assert_eq!(reason("not json"), RejectReason::MalformedJson);
        assert_eq!(reason(""), RejectReason::MalformedJson);
    }

    #[test]
    fn rejects_a_json_value_that_is_not_an_object() {
        assert_eq!(reason("[1,2]"), RejectReason::InvalidType);
    }

    #[test]
    fn rejects_missing_fields() {
        assert_eq!(
            reason(&GOOD.replace("\"sensor_id\":\"CAP_001\",", "")),
            RejectReason::MissingField
        );
        assert_eq!(
            reason(&GOOD.replace("\"timestamp\":\"2024-01-15T14:30:00Z\",", "")),
            RejectReason::MissingField
        );
        assert_eq!(
            reason(&GOOD.replace("\"lat\":48.8566,", "")),
            RejectReason::MissingField
        );
        let no_meas =
            r#"{"sensor_id":"a","timestamp":"2024-01-15T14:30:00Z","location":{"lat":1,"lon":2}}"#;
        assert_eq!(reason(no_meas), RejectReason::MissingField);
    }

    #[test]
    fn rejects_wrong_types() {
        assert_eq!(
            reason(&GOOD.replace("12.5", "\"12.5\"")),
            RejectReason::InvalidType
        );
        assert_eq!(
            reason(&GOOD.replace("\"CAP_001\"", "42")),
            RejectReason::InvalidType
        );
    }

    #[test]
    fn rejects_bad_sensor_ids() {
        assert_eq!(
            reason(&GOOD.replace("CAP_001", "")),
            RejectReason::InvalidSensorId
        );
        assert_eq!(
            reason(&GOOD.replace("CAP_001", "bad id")),
            RejectReason::InvalidSensorId
        );
    }

    #[test]
    fn rejects_out_of_range_coordinates() {
        assert_eq!(
            reason(&GOOD.replace("48.8566", "91.0")),
            RejectReason::InvalidLocation
        );
    }

    #[test]
    fn rejects_non_finite_numbers() {
        // JSON has no NaN or infinity: serde_json refuses an overflowing literal while parsing.
        assert_eq!(
            reason(&GOOD.replace("12.5", "1e999")),
            RejectReason::MalformedJson
        );
        assert_eq!(
            reason(&GOOD.replace("12.5", "NaN")),
            RejectReason::MalformedJson
        );
    }

    #[test]
    fn rejects_insane_timestamps() {
        assert_eq!(
            reason(&GOOD.replace("2024-01-15T14:30:00Z", "yesterday")),
            RejectReason::InvalidTimestamp
        );
        assert_eq!(
            reason(&GOOD.replace("2024-01-15T14:30:00Z", "2024-01-15T16:00:00Z")),
            RejectReason::TimestampInFuture
        );
        assert_eq!(
            reason(&GOOD.replace("2024-01-15T14:30:00Z", "1999-12-31T23:00:00Z")),
            RejectReason::TimestampTooOld
        );
    }

    #[test]
    fn rejects_a_reading_without_any_value() {
        let json = GOOD
            .replace("12.5", "null")
            .replace("25.3", "null")
            .replace("40.2", "null");
        assert_eq!(reason(&json), RejectReason::NoMeasurements);
    }
}
