//! Kafka plumbing shared by the airq services. Everything that knows about librdkafka
//! lives here; the services keep only their loop.
//!
//! - [`KafkaConfig`] / [`Topics`]: typed settings, deserialized by each service's config;
//! - [`client`]: the idempotent producer and the at-least-once consumer
//!   (`enable.auto.offset.store=false`: an offset is stored only once its outputs are durable);
//! - [`admin`]: idempotent topic creation;
//! - [`lag`]: a group's committed offsets and watermarks, read without joining it;
//! - [`offsets`]: the highest processed offset per partition of a batch, to store after a flush;
//! - [`dead_letter`]: the headers that tell where a dead-lettered message came from and why;
//! - [`runtime`]: the one consume -> process -> write -> store-offset loop, with the retry,
//!   dead-letter, shutdown, self-healing and eviction policy every consumer shares.

pub mod admin;
pub mod client;
pub mod dead_letter;
pub mod lag;
pub mod offsets;
pub mod publish;
pub mod runtime;

use serde::Deserialize;

/// Names of the platform's topics.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Topics {
    pub raw: String,
    pub processed: String,
    pub anomalies: String,
    pub dead_letter: String,
}

impl Default for Topics {
    fn default() -> Self {
        Self {
            raw: "raw_data".into(),
            processed: "processed_data".into(),
            anomalies: "anomalies".into(),
            dead_letter: "dead_letter".into(),
        }
    }
}

/// Connection settings.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// `host:port[,host:port...]`
    pub brokers: String,
    pub topics: Topics,
    /// Partitions given to topics this platform creates.
    pub partitions: i32,
}

/// Errors of the Kafka layer. Every librdkafka error is retryable from the caller's
/// point of view except a configuration error, which no retry will fix.
#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    #[error("invalid Kafka client configuration: {0}")]
    Config(#[source] rdkafka::error::KafkaError),
    #[error("Kafka operation failed: {0}")]
    Transient(#[source] rdkafka::error::KafkaError),
}

impl KafkaError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, KafkaError::Transient(_))
    }
}

impl airq_runtime::retry::Retryable for KafkaError {
    fn is_retryable(&self) -> bool {
        KafkaError::is_retryable(self)
    }
}
