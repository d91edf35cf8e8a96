//! Dead-letter records: the original payload, untouched, with headers that say where it
//! came from and why it was refused (`docs/schemas.md`).

use rdkafka::message::{Header, OwnedHeaders};

pub const HEADER_SOURCE_TOPIC: &str = "airq.source.topic";
pub const HEADER_SOURCE_PARTITION: &str = "airq.source.partition";
pub const HEADER_SOURCE_OFFSET: &str = "airq.source.offset";
pub const HEADER_REASON: &str = "airq.reason";
pub const HEADER_DETAIL: &str = "airq.detail";
pub const HEADER_SERVICE: &str = "airq.service";

/// Where a refused message came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provenance<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
}

/// Headers of a dead-letter message.
pub fn headers(source: &Provenance<'_>, service: &str, reason: &str, detail: &str) -> OwnedHeaders {
    let partition = source.partition.to_string();
    let offset = source.offset.to_string();
    OwnedHeaders::new_with_capacity(6)
        .insert(Header {
            key: HEADER_SOURCE_TOPIC,
            value: Some(source.topic),
        })
        .insert(Header {
            key: HEADER_SOURCE_PARTITION,
            value: Some(&partition),
        })
        .insert(Header {
            key: HEADER_SOURCE_OFFSET,
            value: Some(&offset),
        })
        .insert(Header {
            key: HEADER_REASON,
            value: Some(reason),
        })
        .insert(Header {
            key: HEADER_DETAIL,
            value: Some(detail),
        })
        .insert(Header {
            key: HEADER_SERVICE,
            value: Some(service),
        })
}

#[cfg(test)]
mod tests {
    use rdkafka::message::Headers;

    use super::*;

    #[test]
    fn carries_source_and_reason() {
        let h = headers(
            &Provenance {
                topic: "raw_data",
                partition: 2,
                offset: 41,
            },
            "stream-cleaner",
            "missing_field",
            "timestamp",
        );
        let get = |k: &str| {
            h.iter()
                .find(|x| x.key == k)
                .and_then(|x| x.value)
                .map(|v| String::from_utf8_lossy(v).into_owned())
        };
        assert_eq!(get(HEADER_SOURCE_PARTITION).as_deref(), Some("2"));
        assert_eq!(get(HEADER_SOURCE_OFFSET).as_deref(), Some("41"));
        assert_eq!(get(HEADER_REASON).as_deref(), Some("missing_field"));
    }
}
