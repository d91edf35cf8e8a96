//! Which failures a retry can fix. The trainer's exit code tells its caller (Airflow):
//! [`EXIT_TRANSIENT`] (75, `EX_TEMPFAIL`) when a server could not be reached or was
//! overloaded, so the same command may pass later; 1 for everything else (a failed
//! validation gate, a missing model, bad data), which fails the same way every time.

use airq_store::StoreError;
use mlflow_client::MlflowError;

/// Exit code of a failure that a retry may fix (sysexits.h `EX_TEMPFAIL`).
pub const EXIT_TRANSIENT: u8 = 75;
/// Exit code of any other failure.
pub const EXIT_PERMANENT: u8 = 1;

/// A failure the same inputs meet again (e.g. a snapshot that fails its gate).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Permanent(pub String);

/// Whether any cause of `e` is a retryable I/O failure: an unreachable or overloaded
/// PostgreSQL or MLflow, a refused or timed-out connection.
pub fn is_transient(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        if let Some(s) = c.downcast_ref::<StoreError>() {
            return s.is_retryable();
        }
        if let Some(m) = c.downcast_ref::<MlflowError>() {
            return m.is_retryable();
        }
        if let Some(s) = c.downcast_ref::<sqlx::Error>() {
            return matches!(
                s,
                sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed
            );
        }
        c.downcast_ref::<std::io::Error>().is_some_and(|io| {
            use std::io::ErrorKind::*;
            matches!(
                io.kind(),
                ConnectionRefused | ConnectionReset | ConnectionAborted | TimedOut | NotConnected
            )
        })
    })
}

/// The process exit code for `e`.
pub fn exit_code(e: &anyhow::Error) -> u8 {
    if e.chain().any(|c| c.is::<Permanent>()) || !is_transient(e) {
        EXIT_PERMANENT
    } else {
        EXIT_TRANSIENT
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn a_refused_connection_is_transient_and_a_failed_gate_is_not() {
        let refused: anyhow::Result<()> =
            Err(std::io::Error::from(std::io::ErrorKind::ConnectionRefused))
                .context("reading readings");
        assert_eq!(exit_code(&refused.unwrap_err()), EXIT_TRANSIENT);
        let gate = anyhow::Error::from(Permanent("min_rows: 3 < 100".into()));
        assert_eq!(exit_code(&gate), EXIT_PERMANENT);
        assert_eq!(exit_code(&anyhow::anyhow!("no model")), EXIT_PERMANENT);
        let api = MlflowError::Api {
            status: 503,
            code: "TEMPORARILY_UNAVAILABLE".into(),
            message: String::new(),
        };
        assert_eq!(exit_code(&anyhow::Error::from(api)), EXIT_TRANSIENT);
    }
}
