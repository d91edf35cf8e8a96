//! Who reads and writes what: each service command and each Airflow task with the datasets
//! it reads and writes. Datasets are named `topic:<name>`, `table:<name>`, `model:<name>`,
//! `mongo:<db>.<collection>`, `mlflow:<what>` and `file:<what>`.

use serde::Serialize;

/// A service command or an Airflow task.
#[derive(Debug, Clone, Serialize)]
pub struct Process {
    /// `sensor-sim simulate`, or `airq_daily.daily_batch` for a DAG task.
    pub name: &'static str,
    pub kind: ProcessKind,
    /// For a DAG task: the command it runs.
    pub runs: Option<&'static str>,
    pub reads: &'static [&'static str],
    pub writes: &'static [&'static str],
}

/// What runs: a long-running service, a command that runs and exits, or an Airflow task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProcessKind {
    Service,
    Command,
    DagTask,
}

const fn process(
    kind: ProcessKind,
    name: &'static str,
    runs: Option<&'static str>,
    reads: &'static [&'static str],
    writes: &'static [&'static str],
) -> Process {
    Process {
        name,
        kind,
        runs,
        reads,
        writes,
    }
}

const fn service(
    name: &'static str,
    reads: &'static [&'static str],
    writes: &'static [&'static str],
) -> Process {
    process(ProcessKind::Service, name, None, reads, writes)
}

const fn command(
    name: &'static str,
    reads: &'static [&'static str],
    writes: &'static [&'static str],
) -> Process {
    process(ProcessKind::Command, name, None, reads, writes)
}

const fn task(
    name: &'static str,
    runs: &'static str,
    reads: &'static [&'static str],
    writes: &'static [&'static str],
) -> Process {
    process(ProcessKind::DagTask, name, Some(runs), reads, writes)
}

const MODEL: &str = "model:airq-pm25-1h";
const SNAPSHOT: &str = "mlflow:snapshot";
const BEIJING: &str = "file:beijing_prsa";
const OPENAQ: &str = "file:openaq_archive";

pub fn processes() -> Vec<Process> {
    vec![
        service("sensor-sim simulate", &[], &["topic:raw_data"]),
        command("sensor-sim replay", &[BEIJING], &["topic:raw_data"]),
        command("sensor-sim openaq-archive", &[OPENAQ], &["topic:raw_data"]),
        command("sensor-sim send", &[], &["topic:raw_data"]),
        service(
            "stream-cleaner run",
            &["topic:raw_data"],
            &[
                "topic:processed_data",
                "topic:dead_letter",
                "table:readings",
            ],
        ),
        command(
            "stream-cleaner daily",
            &["table:readings", "table:anomalies"],
            &["table:daily_sensor_stats", "table:daily_quality"],
        ),
        service(
            "anomaly-detector run",
            &["topic:processed_data", "table:readings"],
            &[
                "topic:anomalies",
                "topic:dead_letter",
                "table:anomalies",
                "table:pollution_episodes",
            ],
        ),
        service(
            "raw-archive run",
            &["topic:raw_data"],
            &["mongo:airq.raw_messages"],
        ),
        command(
            "raw-archive replay",
            &["mongo:airq.raw_messages"],
            &["topic:raw_data"],
        ),
        command("trainer extract", &["table:readings"], &[SNAPSHOT]),
        command("trainer validate", &[SNAPSHOT], &[SNAPSHOT]),
        command("trainer train", &[SNAPSHOT], &[MODEL]),
        command("trainer evaluate", &[MODEL, "table:readings"], &[MODEL]),
        service(
            "predict-api",
            &[MODEL, "table:readings"],
            &["table:forecasts"],
        ),
        task(
            "airq_daily.wait_for_day",
            "stream-cleaner day-complete",
            &["table:readings"],
            &[],
        ),
        task(
            "airq_daily.daily_batch",
            "stream-cleaner daily",
            &["table:readings", "table:anomalies"],
            &["table:daily_sensor_stats", "table:daily_quality"],
        ),
        task(
            "airq_daily.extract",
            "trainer extract",
            &["table:readings"],
            &[SNAPSHOT],
        ),
        task(
            "airq_daily.validate",
            "trainer validate",
            &[SNAPSHOT],
            &[SNAPSHOT],
        ),
        task("airq_daily.train", "trainer train", &[SNAPSHOT], &[MODEL]),
        task(
            "airq_daily.evaluate",
            "trainer evaluate",
            &[MODEL, "table:readings"],
            &[MODEL],
        ),
        task(
            "airq_backfill.one_day.load",
            "sensor-sim replay or openaq-archive",
            &[BEIJING, OPENAQ],
            &["topic:raw_data"],
        ),
        task(
            "airq_backfill.one_day.landed",
            "stream-cleaner landed",
            &["table:readings"],
            &[],
        ),
        task(
            "airq_backfill.one_day.daily_batch",
            "stream-cleaner daily",
            &["table:readings", "table:anomalies"],
            &["table:daily_sensor_stats", "table:daily_quality"],
        ),
        task(
            "airq_backfill.extract",
            "trainer extract",
            &["table:readings"],
            &[SNAPSHOT],
        ),
        task(
            "airq_backfill.validate",
            "trainer validate",
            &[SNAPSHOT],
            &[SNAPSHOT],
        ),
        task(
            "airq_backfill.train",
            "trainer train",
            &[SNAPSHOT],
            &[MODEL],
        ),
        task(
            "airq_backfill.evaluate",
            "trainer evaluate",
            &[MODEL, "table:readings"],
            &[MODEL],
        ),
    ]
}

/// The lineage as a Mermaid flowchart: datasets (rounded) between the long-running services
/// and commands (boxes). DAG tasks are listed apart (they run these commands), so the
/// diagram stays readable.
pub fn mermaid(processes: &[Process]) -> String {
    let mut out = String::from("flowchart LR\n");
    let mut datasets: Vec<&str> = processes
        .iter()
        .filter(|p| p.kind != ProcessKind::DagTask)
        .flat_map(|p| p.reads.iter().chain(p.writes))
        .copied()
        .collect();
    datasets.sort_unstable();
    datasets.dedup();
    for d in &datasets {
        out.push_str(&format!("  {}([\"{d}\"])\n", node_id(d)));
    }
    for p in processes.iter().filter(|p| p.kind != ProcessKind::DagTask) {
        let id = node_id(p.name);
        out.push_str(&format!("  {id}[\"{}\"]\n", p.name));
        for r in p.reads {
            // What a command reads and writes back (validate's snapshot) is one double arrow.
            let arrow = if p.writes.contains(r) { "<-->" } else { "-->" };
            out.push_str(&format!("  {} {arrow} {id}\n", node_id(r)));
        }
        for w in p.writes.iter().filter(|w| !p.reads.contains(w)) {
            out.push_str(&format!("  {id} --> {}\n", node_id(w)));
        }
    }
    out
}

/// A Mermaid node id: the name with everything but letters and digits as `_`.
fn node_id(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}
