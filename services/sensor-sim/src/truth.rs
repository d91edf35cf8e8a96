//! The ground-truth log: one JSON line per injected fault.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::Path;

use anyhow::Context;

use airq_sim::faults::GroundTruth;

pub struct TruthLog {
    out: Option<BufWriter<File>>,
}

impl TruthLog {
    /// Appends to `path` (created with its folder); `None` records nothing.
    pub fn open(path: Option<&Path>) -> anyhow::Result<Self> {
        let out = match path {
            Some(p) => {
                if let Some(dir) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir)
                        .with_context(|| format!("creating {}", dir.display()))?;
                }
                let f = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)
                    .with_context(|| format!("opening {}", p.display()))?;
                Some(BufWriter::new(f))
            }
            None => None,
        };
        Ok(Self { out })
    }

    pub fn record(&mut self, truth: &[GroundTruth]) -> anyhow::Result<()> {
        if let Some(out) = self.out.as_mut() {
            for t in truth {
                serde_json::to_writer(&mut *out, t).context("writing ground truth")?;
                out.write_all(b"\n").context("writing ground truth")?;
            }
        }
        Ok(())
    }

    pub fn flush(&mut self) -> anyhow::Result<()> {
        if let Some(out) = self.out.as_mut() {
            out.flush().context("flushing ground truth")?;
        }
        Ok(())
    }
}
