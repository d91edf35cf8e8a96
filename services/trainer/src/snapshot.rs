//! The dataset snapshot: hourly means per sensor as CSV (`sensor_id,hour,pm2_5,pm10,no2`),
//! with its row count, time span and content hash. Extract writes it as an MLflow artifact;
//! the later steps read it back from there, so each step can run in its own container.

use std::collections::BTreeMap;

use airq_features::{Hourly, Series};
use anyhow::Context;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Name of the snapshot artifact in the extract run.
pub const ARTIFACT: &str = "dataset/hourly.csv";

/// The sensors' mean locations over the snapshot's span (`{"sensor": [lat, lon]}`): the
/// neighbour features' distances. Snapshots extracted before it have none.
pub const LOCATIONS: &str = "dataset/locations.json";

/// What describes a snapshot (logged with it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub rows: usize,
    pub sensors: usize,
    pub first_hour: Option<DateTime<Utc>>,
    pub last_hour: Option<DateTime<Utc>>,
    pub sha256: String,
}

pub fn to_csv(data: &BTreeMap<String, Series>) -> anyhow::Result<Vec<u8>> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(["sensor_id", "hour", "pm2_5", "pm10", "no2"])?;
    let cell = |v: Option<f64>| v.map(|v| format!("{v:.4}")).unwrap_or_default();
    for (sensor, series) in data {
        for (hour, h) in series {
            w.write_record([
                sensor.clone(),
                hour.to_rfc3339(),
                cell(h.pm2_5),
                cell(h.pm10),
                cell(h.no2),
            ])?;
        }
    }
    w.into_inner().context("writing the snapshot")
}

pub fn from_csv(bytes: &[u8]) -> anyhow::Result<BTreeMap<String, Series>> {
    let mut r = csv::Reader::from_reader(bytes);
    let mut out: BTreeMap<String, Series> = BTreeMap::new();
    for (i, rec) in r.records().enumerate() {
        let rec = rec.with_context(|| format!("snapshot row {}", i + 2))?;
        let num = |j: usize| -> anyhow::Result<Option<f64>> {
            let s = rec.get(j).unwrap_or_default();
            if s.is_empty() {
                Ok(None)
            } else {
                Ok(Some(s.parse().with_context(|| {
                    format!("snapshot row {}: {s:?} is not a number", i + 2)
                })?))
            }
        };
        let hour: DateTime<Utc> = rec
            .get(1)
            .unwrap_or_default()
            .parse()
            .with_context(|| format!("snapshot row {}: bad hour", i + 2))?;
        out.entry(rec.get(0).unwrap_or_default().to_owned())
            .or_default()
            .insert(
                hour,
                Hourly {
                    pm2_5: num(2)?,
                    pm10: num(3)?,
                    no2: num(4)?,
                },
            );
    }
    Ok(out)
}

pub fn summarize(data: &BTreeMap<String, Series>, csv: &[u8]) -> Summary {
    let hours = data.values().flat_map(|s| s.keys().copied());
    let (first, last) = hours.fold(
        (None, None),
        |(lo, hi): (Option<DateTime<Utc>>, Option<DateTime<Utc>>), h| {
            (
                Some(lo.map_or(h, |l| l.min(h))),
                Some(hi.map_or(h, |x| x.max(h))),
            )
        },
    );
    Summary {
        rows: data.values().map(BTreeMap::len).sum(),
        sensors: data.len(),
        first_hour: first,
        last_hour: last,
        sha256: format!("{:x}", Sha256::digest(csv)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_hashes_the_content() {
        let t: DateTime<Utc> = "2024-01-15T00:00:00Z".parse().unwrap();
        let mut s = Series::new();
        s.insert(
            t,
            Hourly {
                pm2_5: Some(1.5),
                pm10: None,
                no2: Some(3.0),
            },
        );
        s.insert(
            t + chrono::Duration::hours(1),
            Hourly {
                pm2_5: Some(2.0),
                pm10: Some(4.0),
                no2: None,
            },
        );
        let data: BTreeMap<String, Series> = [("a".to_owned(), s)].into();
        let bytes = to_csv(&data).unwrap();
        assert_eq!(from_csv(&bytes).unwrap(), data);
        let sum = summarize(&data, &bytes);
        assert_eq!((sum.rows, sum.sensors, sum.first_hour), (2, 1, Some(t)));
        assert_eq!(sum.sha256.len(), 64);
        assert_ne!(sum.sha256, summarize(&data, b"other").sha256);
    }
}
