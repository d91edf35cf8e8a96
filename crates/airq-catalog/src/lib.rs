//! The data catalog of airq: what each topic, table and view, registered model and archive
//! holds, who reads and writes it (lineage), and, read live, how fresh and how large it is.
//!
//! [`Catalog::platform`] is the static part, generated from the code: the topics' JSON
//! Schemas come from the Rust types (schemars). [`markdown::render`] turns it into
//! `docs/catalog.md` (`make catalog`; a test fails when the page is stale) and predict-api
//! serves it with the live part ([`live`]) at `GET /catalog`.

pub mod datasets;
pub mod lineage;
pub mod live;
pub mod markdown;

use serde::Serialize;

pub use datasets::{Archive, Field, Model, Table, TableKind, Topic};
pub use lineage::{Process, ProcessKind};

/// Everything the platform stores, and who reads and writes it.
#[derive(Debug, Clone, Serialize)]
pub struct Catalog {
    pub topics: Vec<Topic>,
    pub tables: Vec<Table>,
    pub models: Vec<Model>,
    pub archive: Archive,
    pub lineage: Vec<Process>,
}

impl Catalog {
    pub fn platform() -> Self {
        Self {
            topics: datasets::topics(),
            tables: datasets::tables(),
            models: datasets::models(),
            archive: datasets::archive(),
            lineage: lineage::processes(),
        }
    }

    pub fn topic(&self, name: &str) -> Option<&Topic> {
        self.topics.iter().find(|t| t.name == name)
    }

    /// Every dataset the catalog describes, as lineage names them (`topic:raw_data`...).
    pub fn dataset_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .topics
            .iter()
            .map(|t| format!("topic:{}", t.name))
            .chain(self.tables.iter().map(|t| format!("table:{}", t.name)))
            .chain(self.models.iter().map(|m| format!("model:{}", m.name)))
            .collect();
        ids.push(format!(
            "mongo:{}.{}",
            self.archive.database, self.archive.collection
        ));
        ids
    }
}

/// The catalog with what was read live.
#[derive(Debug, Clone, Serialize)]
pub struct LiveCatalog {
    #[serde(flatten)]
    pub catalog: Catalog,
    pub freshness: Freshness,
}

/// Freshness and volume, read at `read_at`.
#[derive(Debug, Clone, Serialize)]
pub struct Freshness {
    pub read_at: chrono::DateTime<chrono::Utc>,
    pub topics: Vec<live::TopicState>,
    pub tables: Vec<live::TableState>,
    pub models: Vec<live::ModelState>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lineage_names_only_datasets_the_catalog_describes() {
        let c = Catalog::platform();
        let known = c.dataset_ids();
        for p in &c.lineage {
            for d in p.reads.iter().chain(p.writes) {
                assert!(
                    known.iter().any(|k| k == d)
                        || d.starts_with("mlflow:")
                        || d.starts_with("file:"),
                    "{} names {d}, which the catalog does not describe",
                    p.name
                );
            }
        }
        // Every table and topic is written by someone.
        for id in known
            .iter()
            .filter(|k| !k.starts_with("table:quality_flags"))
        {
            let view = c
                .tables
                .iter()
                .any(|t| t.kind == TableKind::View && id == &format!("table:{}", t.name));
            assert!(
                view || c.lineage.iter().any(|p| p.writes.contains(&id.as_str())),
                "nothing writes {id}"
            );
        }
    }

    #[test]
    fn every_topic_but_the_dead_letter_has_a_schema_from_its_type() {
        let c = Catalog::platform();
        for t in &c.topics {
            match t.name {
                "dead_letter" => assert!(t.schema.is_none() && !t.headers.is_empty()),
                _ => {
                    let s = t.schema.as_ref().expect("a schema");
                    assert_eq!(s["$schema"], "https://json-schema.org/draft/2020-12/schema");
                    assert_eq!(s["type"], "object", "{}", t.name);
                    assert!(s["required"].as_array().is_some_and(|r| !r.is_empty()));
                }
            }
        }
        // The constraints validation enforces are in the schema.
        let raw = c.topic("raw_data").and_then(|t| t.schema.as_ref()).unwrap();
        assert_eq!(raw["properties"]["sensor_id"]["maxLength"], 64);
        assert_eq!(raw["properties"]["timestamp"]["format"], "date-time");
    }

    #[test]
    fn the_generated_page_is_current() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/catalog.md");
        let committed = std::fs::read_to_string(path).unwrap_or_default();
        let generated = markdown::render(&Catalog::platform());
        assert!(
            committed == generated,
            "docs/catalog.md is stale: run `make catalog` and commit it"
        );
    }
}
