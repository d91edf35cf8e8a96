//! Per-sensor watermarks of the live OpenAQ source: the newest timestamp already published
//! for each OpenAQ sensor, kept in a JSON file so a restart publishes nothing twice. The file
//! is replaced atomically (write, fsync, rename) after the broker acknowledged the readings.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use chrono::{DateTime, Utc};

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Watermarks {
    pub by_sensor: BTreeMap<i64, DateTime<Utc>>,
}

impl Watermarks {
    /// The file of a location's watermarks in `dir`.
    pub fn path(dir: &Path, location_id: i64) -> PathBuf {
        dir.join(format!("openaq-{location_id}.json"))
    }

    /// Reads the file; an absent file is an empty set.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        match std::fs::read(path) {
            Ok(bytes) => Ok(Self {
                by_sensor: serde_json::from_slice(&bytes)
                    .with_context(|| format!("parsing {}", path.display()))?,
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let tmp = path.with_extension("json.tmp");
        let mut f =
            std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        f.write_all(&serde_json::to_vec_pretty(&self.by_sensor)?)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path).with_context(|| format!("replacing {}", path.display()))
    }

    /// Whether an observation of `sensor` at `t` is new.
    pub fn is_new(&self, sensor: i64, t: DateTime<Utc>) -> bool {
        self.by_sensor.get(&sensor).is_none_or(|w| t > *w)
    }

    /// Moves a sensor's watermark forward (never back).
    pub fn advance(&mut self, sensor: i64, t: DateTime<Utc>) {
        let w = self.by_sensor.entry(sensor).or_insert(t);
        *w = (*w).max(t);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn survives_a_restart_and_only_moves_forward() {
        let dir = std::env::temp_dir().join(format!("airq-wm-{}", std::process::id()));
        let path = Watermarks::path(&dir, 7);
        let t: DateTime<Utc> = "2024-01-15T14:00:00Z".parse().unwrap();
        let mut w = Watermarks::load(&path).unwrap();
        assert!(w.is_new(1, t));
        w.advance(1, t);
        w.advance(1, t - chrono::Duration::hours(1));
        w.save(&path).unwrap();
        let back = Watermarks::load(&path).unwrap();
        assert_eq!(back, w);
        assert!(!back.is_new(1, t) && back.is_new(1, t + chrono::Duration::hours(1)));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
