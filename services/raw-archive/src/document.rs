//! One raw message as an archive document (pure).
//!
//! ```text
//! { _id: "raw_data/3/1842",                      // Kafka coordinates: a redelivery is the same document
//!   kafka: { topic, partition, offset, key, timestamp },
//!   received_at,                                  // when the archiver read it
//!   sensor_id, ts,                                // from the payload when it has them (also when invalid)
//!   valid: true | false, reason, detail,          // the stream-cleaner's validation (airq_domain::validate)
//!   payload: "<the message as received>" }        // a string, or binary when it is not UTF-8
//! ```
//!
//! Indexed by `(sensor_id, ts)` and by `ts`: what `replay` and a person's query select on.

use airq_domain::validate::{self, ValidationConfig};
use chrono::{DateTime, Utc};
use mongodb::bson::spec::BinarySubtype;
use mongodb::bson::{self, Binary, Bson, Document, doc};

/// What the archiver knows of one consumed message.
#[derive(Debug, Clone, PartialEq)]
pub struct RawMessage {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    /// The broker's (or producer's) timestamp, when the message has one.
    pub timestamp: Option<DateTime<Utc>>,
    pub payload: Option<Vec<u8>>,
}

/// The document's `_id`: its Kafka coordinates, so that archiving a message again (a
/// redelivery after a crash) is a duplicate-key no-op.
pub fn document_id(topic: &str, partition: i32, offset: i64) -> String {
    format!("{topic}/{partition}/{offset}")
}

/// The archive document of `m`, read at `received_at`, validated as the cleaner validates.
pub fn to_document(m: &RawMessage, received_at: DateTime<Utc>, cfg: &ValidationConfig) -> Document {
    let payload = m.payload.as_deref().unwrap_or_default();
    let key = m
        .key
        .as_deref()
        .map(|k| String::from_utf8_lossy(k).into_owned());
    let mut d = doc! {
        "_id": document_id(&m.topic, m.partition, m.offset),
        "kafka": {
            "topic": &m.topic,
            "partition": m.partition,
            "offset": m.offset,
            "key": key.clone().map_or(Bson::Null, Bson::String),
            "timestamp": m.timestamp.map_or(Bson::Null, |t| Bson::DateTime(bson_time(t))),
        },
        "received_at": bson_time(received_at),
    };
    let (sensor_id, ts) = match validate::decode(payload, received_at, cfg) {
        Ok(r) => {
            d.insert("valid", true);
            (Some(r.sensor_id), Some(r.timestamp))
        }
        Err(rej) => {
            d.insert("valid", false);
            d.insert("reason", rej.reason.as_str());
            d.insert("detail", rej.detail);
            let (sensor, ts) = salvage(payload);
            (sensor.or(key), ts)
        }
    };
    d.insert("sensor_id", sensor_id.map_or(Bson::Null, Bson::String));
    d.insert(
        "ts",
        ts.map_or(Bson::Null, |t| Bson::DateTime(bson_time(t))),
    );
    d.insert("payload", payload_value(payload));
    d
}

/// A BSON date (milliseconds since the epoch, as MongoDB stores dates).
pub fn bson_time(t: DateTime<Utc>) -> bson::DateTime {
    bson::DateTime::from_millis(t.timestamp_millis())
}

/// The sensor and reading time of an invalid message, where its JSON still has them, so that
/// it is found by sensor and time and replayed with its range after a rule change.
fn salvage(payload: &[u8]) -> (Option<String>, Option<DateTime<Utc>>) {
    let Ok(serde_json::Value::Object(o)) = serde_json::from_slice::<serde_json::Value>(payload)
    else {
        return (None, None);
    };
    let sensor = o
        .get("sensor_id")
        .and_then(|v| v.as_str())
        .map(str::to_owned);
    let ts = o
        .get("timestamp")
        .and_then(|v| v.as_str())
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Utc));
    (sensor, ts)
}

/// The payload as received: text when it is UTF-8 (readable in any MongoDB tool), bytes otherwise.
fn payload_value(payload: &[u8]) -> Bson {
    match std::str::from_utf8(payload) {
        Ok(s) => Bson::String(s.to_owned()),
        Err(_) => Bson::Binary(Binary {
            subtype: BinarySubtype::Generic,
            bytes: payload.to_vec(),
        }),
    }
}

/// The bytes `replay` publishes again: the payload exactly as it was received.
pub fn payload_bytes(d: &Document) -> Option<Vec<u8>> {
    match d.get("payload")? {
        Bson::String(s) => Some(s.as_bytes().to_vec()),
        Bson::Binary(b) => Some(b.bytes.clone()),
        _ => None,
    }
}

/// The key `replay` publishes with: the sensor (the platform's partitioning key), else the
/// original key.
pub fn replay_key(d: &Document) -> Option<Vec<u8>> {
    d.get_str("sensor_id")
        .ok()
        .or_else(|| d.get_document("kafka").ok()?.get_str("key").ok())
        .map(|s| s.as_bytes().to_vec())
}

/// Which archived messages `replay` selects: reading time in `[from, to)`, optionally one
/// sensor, optionally only those that were valid when archived.
pub fn replay_filter(
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    sensor: Option<&str>,
    valid_only: bool,
) -> Document {
    let mut f = doc! { "ts": { "$gte": bson_time(from), "$lt": bson_time(to) } };
    if let Some(s) = sensor {
        f.insert("sensor_id", s);
    }
    if valid_only {
        f.insert("valid", true);
    }
    f
}

/// MongoDB's duplicate-key error code.
pub const DUPLICATE_KEY: i32 = 11000;

/// Whether an unordered insert that reported these write errors (and no write-concern error)
/// archived everything: every error is a duplicate `_id`, i.e. a document already there.
pub fn only_duplicates(write_error_codes: &[i32], write_concern_error: bool) -> bool {
    !write_concern_error && write_error_codes.iter().all(|&c| c == DUPLICATE_KEY)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn chrono(t: &bson::DateTime) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(t.timestamp_millis()).unwrap()
    }

    fn at(h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 1, 15, h, 0, 0).unwrap()
    }

    fn message(offset: i64, payload: &[u8]) -> RawMessage {
        RawMessage {
            topic: "raw_data".into(),
            partition: 3,
            offset,
            key: Some(b"CAP_001".to_vec()),
            timestamp: Some(at(14)),
            payload: Some(payload.to_vec()),
        }
    }

    const GOOD: &[u8] = br#"{"sensor_id":"CAP_001","timestamp":"2024-01-15T14:30:00Z","location":{"lat":48.8566,"lon":2.3522},"measurements":{"pm2_5":12.5,"pm10":25.3,"no2":40.2}}"#;

    #[test]
    fn a_valid_reading_keeps_its_coordinates_sensor_time_and_exact_payload() {
        let d = to_document(&message(1842, GOOD), at(15), &ValidationConfig::default());
        assert_eq!(d.get_str("_id").unwrap(), "raw_data/3/1842");
        let k = d.get_document("kafka").unwrap();
        assert_eq!(k.get_i32("partition").unwrap(), 3);
        assert_eq!(k.get_i64("offset").unwrap(), 1842);
        assert_eq!(k.get_str("key").unwrap(), "CAP_001");
        assert!(d.get_bool("valid").unwrap());
        assert!(d.get("reason").is_none());
        assert_eq!(d.get_str("sensor_id").unwrap(), "CAP_001");
        let ts = chrono(d.get_datetime("ts").unwrap());
        assert_eq!(ts, Utc.with_ymd_and_hms(2024, 1, 15, 14, 30, 0).unwrap());
        assert_eq!(chrono(d.get_datetime("received_at").unwrap()), at(15));
        assert_eq!(payload_bytes(&d).unwrap(), GOOD);
        assert_eq!(replay_key(&d).unwrap(), b"CAP_001");
    }

    #[test]
    fn an_invalid_message_is_archived_with_its_reason_and_what_can_be_salvaged() {
        let future = br#"{"sensor_id":"CAP_002","timestamp":"2024-01-16T00:00:00Z","location":{"lat":1,"lon":2},"measurements":{"pm2_5":1}}"#;
        let d = to_document(&message(7, future), at(15), &ValidationConfig::default());
        assert!(!d.get_bool("valid").unwrap());
        assert_eq!(d.get_str("reason").unwrap(), "timestamp_in_future");
        assert_eq!(d.get_str("sensor_id").unwrap(), "CAP_002");
        assert!(
            d.get_datetime("ts").is_ok(),
            "found by time, replayed with its range"
        );

        let d = to_document(
            &message(8, b"{\"sensor_id\":"),
            at(15),
            &ValidationConfig::default(),
        );
        assert_eq!(d.get_str("reason").unwrap(), "malformed_json");
        assert_eq!(
            d.get_str("sensor_id").unwrap(),
            "CAP_001",
            "the key names the sensor"
        );
        assert_eq!(d.get("ts"), Some(&Bson::Null));
        assert_eq!(payload_bytes(&d).unwrap(), b"{\"sensor_id\":");
    }

    #[test]
    fn a_payload_that_is_not_utf8_is_kept_byte_for_byte() {
        let bytes = [0xff, 0xfe, b'{', 0x00];
        let mut m = message(9, &bytes);
        m.key = None;
        let d = to_document(&m, at(15), &ValidationConfig::default());
        assert!(matches!(d.get("payload"), Some(Bson::Binary(_))));
        assert_eq!(payload_bytes(&d).unwrap(), bytes);
        assert_eq!(d.get("sensor_id"), Some(&Bson::Null));
        assert_eq!(replay_key(&d), None);
        assert_eq!(d.get_str("reason").unwrap(), "malformed_json");
    }

    #[test]
    fn a_redelivered_message_is_the_same_document() {
        let cfg = ValidationConfig::default();
        let (a, b) = (
            to_document(&message(5, GOOD), at(15), &cfg),
            to_document(&message(5, GOOD), at(16), &cfg),
        );
        assert_eq!(
            a.get("_id"),
            b.get("_id"),
            "same coordinates, same _id: the second insert is a no-op"
        );
        assert_ne!(
            a.get("_id"),
            to_document(&message(6, GOOD), at(15), &cfg).get("_id")
        );
    }

    #[test]
    fn duplicates_alone_mean_archived_anything_else_is_an_error() {
        assert!(only_duplicates(&[], false));
        assert!(only_duplicates(&[DUPLICATE_KEY, DUPLICATE_KEY], false));
        assert!(
            !only_duplicates(&[DUPLICATE_KEY, 121], false),
            "121: document validation failed"
        );
        assert!(!only_duplicates(&[DUPLICATE_KEY], true));
    }

    #[test]
    fn the_replay_filter_selects_a_time_range_and_optionally_a_sensor() {
        let f = replay_filter(at(0), at(12), None, false);
        let ts = f.get_document("ts").unwrap();
        assert_eq!(chrono(ts.get_datetime("$gte").unwrap()), at(0));
        assert_eq!(chrono(ts.get_datetime("$lt").unwrap()), at(12));
        assert_eq!(f.len(), 1);
        let f = replay_filter(at(0), at(12), Some("CAP_001"), true);
        assert_eq!(f.get_str("sensor_id").unwrap(), "CAP_001");
        assert!(f.get_bool("valid").unwrap());
    }
}
