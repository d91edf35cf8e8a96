//! `airq-catalog markdown` prints docs/catalog.md (`make catalog` writes it); `airq-catalog
//! json` prints the static catalog as JSON (the Airflow test checks the lineage's tasks
//! against the DAGs with it). The live catalog is `GET /catalog` on predict-api.

use std::io::Write;

fn main() -> std::process::ExitCode {
    let catalog = airq_catalog::Catalog::platform();
    let text = match std::env::args().nth(1).as_deref() {
        Some("markdown") => airq_catalog::markdown::render(&catalog),
        Some("json") => serde_json::to_string_pretty(&catalog).unwrap_or_default() + "\n",
        _ => {
            eprintln!("usage: airq-catalog markdown | json");
            return std::process::ExitCode::from(2);
        }
    };
    match std::io::stdout().write_all(text.as_bytes()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("airq-catalog: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
