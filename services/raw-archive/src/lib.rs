//! raw-archive: every `raw_data` message, valid or not, as a MongoDB document with its ingest
//! metadata (Kafka coordinates, time received, the cleaner's validation outcome), idempotent on
//! its coordinates; and `replay` of an archived range back to `raw_data` (reprocessing after a
//! rule change).
//!
//! - [`document`]: the message <-> document mapping and the replay filter (pure);
//! - [`processor`], [`sink`]: the runtime's `Processor` and `Sink` (`airq_kafka::runtime`
//!   owns the at-least-once loop: offsets are stored only after MongoDB acknowledged);
//! - [`startup`]: wiring; [`replay`]: archive -> `raw_data`; [`config`]: settings.

pub mod config;
pub mod document;
pub mod processor;
pub mod replay;
pub mod sink;
pub mod startup;

/// The service's name in dead-letter headers and logs.
pub const SERVICE: &str = "raw-archive";
