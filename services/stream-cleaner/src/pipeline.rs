//! The pure part of the cleaner: one message in, one outcome out.

use airq_domain::ProcessedReading;
use airq_domain::qc::Flag;
use airq_domain::sensor::Cleaner;
use airq_domain::validate::{Rejection, ValidationConfig, decode};
use chrono::{DateTime, Utc};

/// Whether a reading goes to PostgreSQL (a duplicate is already there). Every reading is
/// published to `processed_data`.
pub fn stored(r: &ProcessedReading) -> bool {
    !r.flags.contains(Flag::Duplicate)
}

/// Decodes, validates and cleans one payload as seen at `now`: a reading, or why the message
/// is not one (it goes to the dead-letter topic with the reason).
pub fn handle(
    payload: Option<&[u8]>,
    now: DateTime<Utc>,
    validation: &ValidationConfig,
    cleaner: &mut Cleaner,
) -> Result<ProcessedReading, Rejection> {
    decode(payload.unwrap_or_default(), now, validation).map(|reading| cleaner.process(reading))
}

#[cfg(test)]
mod tests {
    use airq_domain::validate::RejectReason;

    use super::*;

    #[test]
    fn an_empty_message_is_rejected_as_malformed() {
        let mut c = Cleaner::default();
        match handle(None, Utc::now(), &ValidationConfig::default(), &mut c) {
            Err(r) => assert_eq!(r.reason, RejectReason::MalformedJson),
            Ok(_) => panic!("an empty message is not a reading"),
        }
    }

    #[test]
    fn a_duplicate_is_published_but_not_stored() {
        let mut c = Cleaner::default();
        let json = br#"{"sensor_id":"a","timestamp":"2024-01-15T14:30:00Z","location":{"lat":1,"lon":2},"measurements":{"pm2_5":1,"pm10":2,"no2":3}}"#;
        let now: DateTime<Utc> = "2024-01-15T15:00:00Z".parse().unwrap();
        let v = ValidationConfig::default();
        let (Ok(first), Ok(second)) = (
            handle(Some(json), now, &v, &mut c),
            handle(Some(json), now, &v, &mut c),
        ) else {
            panic!("both are readings")
        };
        assert!(stored(&first));
        assert!(!stored(&second));
    }
}
