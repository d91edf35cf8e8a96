//! Archive documents into MongoDB: unordered inserts keyed by Kafka coordinates, so a
//! redelivered batch writes nothing new (its duplicate `_id`s are what "already archived" means).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use airq_kafka::runtime::{Sink, SinkError};
use mongodb::bson::{Document, doc};
use mongodb::error::{Error, ErrorKind};
use mongodb::{Collection, IndexModel};

use crate::document::only_duplicates;

/// What the archive counted since start.
#[derive(Debug, Default)]
pub struct Counters {
    pub archived: AtomicU64,
    pub already_archived: AtomicU64,
}

pub struct ArchiveSink {
    pub collection: Collection<Document>,
    pub counters: Arc<Counters>,
}

/// The indexes `replay` and people query with (idempotent: an existing index is kept).
pub async fn ensure_indexes(c: &Collection<Document>) -> Result<(), Error> {
    c.create_indexes([
        IndexModel::builder()
            .keys(doc! { "sensor_id": 1, "ts": 1 })
            .build(),
        IndexModel::builder().keys(doc! { "ts": 1 }).build(),
    ])
    .await?;
    Ok(())
}

impl Sink for ArchiveSink {
    type Item = Document;

    async fn write(&self, docs: &[Document]) -> Result<(), SinkError> {
        if docs.is_empty() {
            return Ok(());
        }
        let n = docs.len() as u64;
        let new = match self.collection.insert_many(docs).ordered(false).await {
            Ok(r) => r.inserted_ids.len() as u64,
            Err(e) => n - duplicates_only(&e)? as u64,
        };
        self.counters.archived.fetch_add(new, Ordering::Relaxed);
        self.counters
            .already_archived
            .fetch_add(n - new, Ordering::Relaxed);
        Ok(())
    }
}

/// How many documents an insert error says were already there, when that is all it says;
/// otherwise the error, transient (retried) unless the server refused documents for good.
fn duplicates_only(e: &Error) -> Result<usize, SinkError> {
    if let ErrorKind::InsertMany(m) = e.kind.as_ref() {
        let codes: Vec<i32> = m.write_errors.iter().flatten().map(|w| w.code).collect();
        if only_duplicates(&codes, m.write_concern_error.is_some()) {
            return Ok(codes.len());
        }
        if m.write_concern_error.is_none() {
            return Err(SinkError::Permanent(Box::new(e.clone())));
        }
    }
    Err(SinkError::Transient(Box::new(e.clone())))
}
