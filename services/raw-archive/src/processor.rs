//! Every consumed message becomes an archive document: none is refused.

use airq_domain::validate::ValidationConfig;
use airq_kafka::runtime::{Context, Outputs, ProcessError, Processor};
use chrono::{DateTime, Utc};
use mongodb::bson::Document;
use rdkafka::Message;
use rdkafka::message::OwnedMessage;

use crate::document::{RawMessage, to_document};

pub struct ArchiveProcessor {
    pub validation: ValidationConfig,
}

impl ArchiveProcessor {
    pub fn documents(&self, batch: &[OwnedMessage], now: DateTime<Utc>) -> Outputs<Document> {
        let mut out = Outputs::default();
        for (i, m) in batch.iter().enumerate() {
            let raw = RawMessage {
                topic: m.topic().to_owned(),
                partition: m.partition(),
                offset: m.offset(),
                key: m.key().map(<[u8]>::to_vec),
                timestamp: m
                    .timestamp()
                    .to_millis()
                    .and_then(DateTime::<Utc>::from_timestamp_millis),
                payload: m.payload().map(<[u8]>::to_vec),
            };
            out.push(i, to_document(&raw, now, &self.validation));
        }
        out
    }
}

impl Processor for ArchiveProcessor {
    type Item = Document;

    async fn process(
        &mut self,
        batch: &[OwnedMessage],
        _ctx: &Context,
    ) -> Result<Outputs<Document>, ProcessError> {
        Ok(self.documents(batch, Utc::now()))
    }
}
