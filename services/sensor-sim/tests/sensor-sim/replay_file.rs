//! `sensor-sim replay --to-file`: the replay written as JSON lines (the input of
//! `anomaly-detector backtest`) instead of published.

use airq_domain::Reading;
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn a_replay_to_a_file_writes_every_reading_in_time_order() {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/beijing_prsa");
    let out = std::env::temp_dir().join(format!("replay_{}.jsonl", std::process::id()));
    let args = sensor_sim::cli::ReplayArgs {
        data_dir: dir.clone(),
        speedup: 0.0,
        limit: Some(600),
        quiet: true,
        window: sensor_sim::cli::Window {
            from: Some("2013-03-01T02:00:00Z".parse().unwrap()),
            to: None,
        },
        to_file: Some(out.clone()),
    };
    let settings = sensor_sim::config::Settings::load().unwrap();
    sensor_sim::startup::run_replay(settings, args, CancellationToken::new())
        .await
        .unwrap();
    let written: Vec<Reading> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    std::fs::remove_file(&out).unwrap();
    let from: chrono::DateTime<chrono::Utc> = "2013-03-01T02:00:00Z".parse().unwrap();
    let expected: Vec<Reading> = airq_sim::replay::load(&dir, Some(600))
        .unwrap()
        .into_iter()
        .filter(|r| r.timestamp >= from)
        .collect();
    assert!(expected.len() > 100, "{}", expected.len());
    assert_eq!(written, expected);
}
