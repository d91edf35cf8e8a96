//! OpenAQ's public archive (the `openaq-data-archive` bucket): one CSV per location and
//! day, optionally gzipped, with the columns
//! `location_id,sensors_id,location,datetime,lat,lon,parameter,units,value` and local times
//! with their offset. A folder of such files (searched recursively, as the bucket lays them
//! out under `records/csv.gz/locationid=.../year=.../month=...`) is read into observations.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use airq_domain::{Location, Reading};
use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::{Observation, Pollutant, merge, to_ugm3};

#[derive(Debug, Deserialize)]
struct Row {
    location_id: i64,
    sensors_id: i64,
    datetime: String,
    lat: f64,
    lon: f64,
    parameter: String,
    units: String,
    value: String,
}

/// Parses one archive file's text. Rows of a pollutant a reading has no field for, or with
/// an empty value, are skipped; a malformed row is an error naming its line.
pub fn parse(
    text: &str,
    origin: &str,
    locations: &mut BTreeMap<i64, Location>,
) -> anyhow::Result<Vec<Observation>> {
    let mut rdr = csv::Reader::from_reader(text.as_bytes());
    let mut out = Vec::new();
    for (i, row) in rdr.deserialize::<Row>().enumerate() {
        let line = i + 2;
        let r = row.with_context(|| format!("{origin} line {line}"))?;
        let Some(pollutant) = Pollutant::from_openaq(&r.parameter) else {
            continue;
        };
        if r.value.trim().is_empty() {
            continue;
        }
        let value: f64 = r
            .value
            .trim()
            .parse()
            .with_context(|| format!("{origin} line {line}: value {:?}", r.value))?;
        let timestamp = DateTime::parse_from_rfc3339(r.datetime.trim())
            .with_context(|| format!("{origin} line {line}: datetime {:?}", r.datetime))?
            .with_timezone(&Utc);
        let Some(value) = to_ugm3(pollutant, value, &r.units) else {
            tracing::warn!(origin, line, units = %r.units, parameter = %r.parameter, "unit not convertible to ug/m3: row skipped");
            continue;
        };
        locations.entry(r.location_id).or_insert(Location {
            lat: r.lat,
            lon: r.lon,
        });
        out.push(Observation {
            location_id: r.location_id,
            sensor_id: r.sensors_id,
            timestamp,
            pollutant,
            value,
        });
    }
    Ok(out)
}

fn files(dir: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    for e in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let p = e?.path();
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if p.is_dir() {
            files(&p, out)?;
        } else if name.ends_with(".csv") || name.ends_with(".csv.gz") {
            out.push(p);
        }
    }
    Ok(())
}

fn read_text(path: &Path) -> anyhow::Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    if path.extension().is_some_and(|e| e == "gz") {
        let mut text = String::new();
        flate2::read::GzDecoder::new(bytes.as_slice())
            .read_to_string(&mut text)
            .with_context(|| format!("decompressing {}", path.display()))?;
        Ok(text)
    } else {
        String::from_utf8(bytes).with_context(|| format!("{} is not UTF-8", path.display()))
    }
}

/// Every archive file under `dir`, merged into readings with a timestamp in
/// `[from, to)`, in time order.
pub fn load(
    dir: &Path,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
) -> anyhow::Result<Vec<Reading>> {
    let mut paths = Vec::new();
    files(dir, &mut paths)?;
    paths.sort();
    if paths.is_empty() {
        bail!("no .csv or .csv.gz file under {}", dir.display());
    }
    let mut locations = BTreeMap::new();
    let mut obs = Vec::new();
    for p in &paths {
        let text = read_text(p)?;
        obs.extend(parse(&text, &p.display().to_string(), &mut locations)?);
    }
    obs.retain(|o| from.is_none_or(|f| o.timestamp >= f) && to.is_none_or(|t| o.timestamp < t));
    Ok(merge(&obs, &locations))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/openaq/archive")
    }

    #[test]
    fn reads_plain_and_gzipped_files_into_merged_readings_in_utc() {
        let r = load(&fixture(), None, None).unwrap();
        // 2 days x 24 hours at one location; pm25 (ug/m3), pm10, no2 (ppm) merged.
        assert_eq!(r.len(), 48);
        assert!(r.windows(2).all(|w| w[0].timestamp < w[1].timestamp));
        assert_eq!(r[0].sensor_id, "openaq_3847229");
        assert_eq!(r[0].timestamp.to_rfc3339(), "2024-01-14T23:00:00+00:00");
        let m = r[0].measurements;
        assert!(m.pm2_5.is_some() && m.pm10.is_some());
        let no2 = m.no2.unwrap();
        assert!(no2 > 10.0, "ppm converted to ug/m3: {no2}");
    }

    #[test]
    fn a_window_keeps_only_its_hours() {
        let from = "2024-01-15T00:00:00Z".parse().ok();
        let to = "2024-01-15T06:00:00Z".parse().ok();
        assert_eq!(load(&fixture(), from, to).unwrap().len(), 6);
    }

    #[test]
    fn a_malformed_row_is_an_error_that_names_its_line() {
        let text = "location_id,sensors_id,location,datetime,lat,lon,parameter,units,value\n\
                    1,2,x,2024-01-15T00:00:00+01:00,1,2,pm25,µg/m³,3\n\
                    1,2,x,not-a-time,1,2,pm25,µg/m³,3\n";
        let e = parse(text, "f.csv", &mut BTreeMap::new()).unwrap_err();
        assert!(format!("{e:#}").contains("f.csv line 3"), "{e:#}");
    }
}
