//! Process plumbing shared by every airq binary, so that each `main.rs` stays a few lines:
//! - [`init_tracing`]: structured logs (`RUST_LOG` filter, `AIRQ_LOG_FORMAT=json` for JSON);
//! - [`load_config`]: embedded defaults, then an optional file, then `AIRQ__SECTION__KEY` env vars;
//! - [`shutdown_token`]: a `CancellationToken` cancelled on SIGINT or SIGTERM; a second
//!   signal exits at once;
//! - [`retry`]: the one back-off policy for transient failures ([`retry::Retryable`]).

pub mod latency;
pub mod retry;

pub use config::ConfigError;
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

/// Initialises the global tracing subscriber (once; later calls are no-ops).
pub fn init_tracing(default_filter: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    // Colours only for a person at a terminal: log files and CI output stay plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let _ = if std::env::var("AIRQ_LOG_FORMAT").is_ok_and(|f| f == "json") {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

/// Loads a service's settings, each layer overriding the previous:
/// 1. `defaults`: the service's embedded TOML (every key has a documented default);
/// 2. the TOML file named by `AIRQ_CONFIG`, if set;
/// 3. environment variables `AIRQ__<SECTION>__<KEY>` (e.g. `AIRQ__KAFKA__BROKERS`).
///
/// Sections share names across services (`kafka`, `database`), so one environment
/// configures the whole platform; a service ignores sections it does not have.
pub fn load_config<T: DeserializeOwned>(defaults: &str) -> Result<T, ConfigError> {
    load_config_from(
        defaults,
        std::env::var("AIRQ_CONFIG").ok().as_deref(),
        std::env::vars(),
    )
}

/// [`load_config`] with the file and the environment given explicitly.
pub fn load_config_from<T: DeserializeOwned>(
    defaults: &str,
    file: Option<&str>,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<T, ConfigError> {
    let mut builder = config::Config::builder()
        .add_source(config::File::from_str(defaults, config::FileFormat::Toml));
    if let Some(path) = file {
        builder =
            builder.add_source(config::File::with_name(path).format(config::FileFormat::Toml));
    }
    let env: std::collections::HashMap<String, String> = env.into_iter().collect();
    builder
        .add_source(
            config::Environment::with_prefix("AIRQ")
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true)
                .source(Some(env)),
        )
        .build()?
        .try_deserialize()
}

/// A token cancelled on the first SIGINT or SIGTERM. The service then drains (bounded by
/// its own drain timeout); a second signal exits the process at once with status 130, for
/// an operator who does not want to wait. What was not stored is redelivered.
pub fn shutdown_token() -> CancellationToken {
    let token = CancellationToken::new();
    let child = token.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutdown signal received; draining (a second signal exits at once)");
        child.cancel();
        wait_for_signal().await;
        tracing::warn!("second shutdown signal: exiting without draining");
        std::process::exit(130);
    });
    token
}

#[cfg(unix)]
async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops the service");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() {
    let _ = tokio::signal::ctrl_c().await;
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Deserialize, Debug)]
    struct Settings {
        kafka: Kafka,
    }
    #[derive(Deserialize, Debug)]
    struct Kafka {
        brokers: String,
        partitions: i32,
    }

    const DEFAULTS: &str = "[kafka]\nbrokers = \"a:1\"\npartitions = 3\n";

    #[test]
    fn embedded_defaults_load() {
        let s: Settings = load_config_from(DEFAULTS, None, []).unwrap();
        assert_eq!(s.kafka.brokers, "a:1");
        assert_eq!(s.kafka.partitions, 3);
    }

    #[test]
    fn environment_overrides_defaults() {
        let env = [
            ("AIRQ__KAFKA__BROKERS".to_owned(), "b:2".to_owned()),
            ("AIRQ__KAFKA__PARTITIONS".to_owned(), "12".to_owned()),
            ("OTHER".to_owned(), "x".to_owned()),
        ];
        let s: Settings = load_config_from(DEFAULTS, None, env).unwrap();
        assert_eq!((s.kafka.brokers.as_str(), s.kafka.partitions), ("b:2", 12));
    }
}
