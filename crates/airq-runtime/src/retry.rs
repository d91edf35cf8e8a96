//! One retry policy for every transient failure: exponential back-off between `initial` and
//! `max`, retried until the operation succeeds, fails permanently, or shutdown is requested
//! (a sleep in progress ends at once then).

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// Whether an error may go away by itself (a server down, a timeout) or not (bad input,
/// a bug): only the first kind is retried.
pub trait Retryable {
    fn is_retryable(&self) -> bool;
}

/// Back-off bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
}

impl Backoff {
    pub fn from_millis(initial: u64, max: u64) -> Self {
        Self {
            initial: Duration::from_millis(initial),
            max: Duration::from_millis(max.max(initial)),
        }
    }

    /// The delay after `delay`: doubled, capped at `max`.
    pub fn next(&self, delay: Duration) -> Duration {
        (delay * 2).min(self.max)
    }
}

/// Why [`retry`] gave up.
#[derive(Debug, thiserror::Error)]
pub enum RetryError<E> {
    /// The error is not retryable.
    #[error("{0}")]
    Permanent(E),
    /// Shutdown was requested while the operation was failing; the last error is kept.
    #[error("stopped while retrying: {0}")]
    Stopped(E),
}

impl<E> RetryError<E> {
    pub fn into_inner(self) -> E {
        match self {
            RetryError::Permanent(e) | RetryError::Stopped(e) => e,
        }
    }
}

/// Runs `op` until it succeeds, retrying retryable errors with back-off; `on_retry` sees
/// each retried error (for a log line and a counter).
pub async fn retry<T, E, F, Fut>(
    what: &str,
    backoff: Backoff,
    shutdown: &CancellationToken,
    mut on_retry: impl FnMut(&E),
    mut op: F,
) -> Result<T, RetryError<E>>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: Retryable + std::fmt::Display,
{
    let mut delay = backoff.initial;
    loop {
        match op().await {
            Ok(v) => return Ok(v),
            Err(e) if !e.is_retryable() => return Err(RetryError::Permanent(e)),
            Err(e) => {
                tracing::warn!(error = %e, what, backoff_ms = delay.as_millis() as u64, "transient failure; retrying");
                on_retry(&e);
                if shutdown.is_cancelled() {
                    return Err(RetryError::Stopped(e));
                }
                tokio::select! {
                    _ = shutdown.cancelled() => return Err(RetryError::Stopped(e)),
                    _ = tokio::time::sleep(delay) => {}
                }
                delay = backoff.next(delay);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("{0}")]
    struct E(bool);
    impl Retryable for E {
        fn is_retryable(&self) -> bool {
            self.0
        }
    }

    fn fast() -> Backoff {
        Backoff::from_millis(1, 4)
    }

    #[test]
    fn back_off_doubles_up_to_the_cap() {
        let b = Backoff::from_millis(100, 300);
        assert_eq!(
            b.next(Duration::from_millis(100)),
            Duration::from_millis(200)
        );
        assert_eq!(
            b.next(Duration::from_millis(200)),
            Duration::from_millis(300)
        );
    }

    #[tokio::test]
    async fn retries_transient_errors_until_success() {
        let calls = AtomicU32::new(0);
        let mut retried = 0;
        let got = retry(
            "t",
            fast(),
            &CancellationToken::new(),
            |_| retried += 1,
            || async {
                match calls.fetch_add(1, Ordering::SeqCst) {
                    0..=2 => Err(E(true)),
                    n => Ok(n),
                }
            },
        )
        .await;
        assert_eq!(got.ok(), Some(3));
        assert_eq!(retried, 3);
    }

    #[tokio::test]
    async fn gives_up_at_once_on_a_permanent_error() {
        let calls = AtomicU32::new(0);
        let got: Result<(), _> = retry(
            "t",
            fast(),
            &CancellationToken::new(),
            |_| {},
            || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err(E(false))
            },
        )
        .await;
        assert!(matches!(got, Err(RetryError::Permanent(_))));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_sleep_ends_at_once_on_shutdown() {
        let token = CancellationToken::new();
        let slow = Backoff::from_millis(3_600_000, 3_600_000);
        let stopper = token.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            stopper.cancel();
        });
        let started = std::time::Instant::now();
        let got: Result<(), _> = retry("t", slow, &token, |_| {}, || async { Err(E(true)) }).await;
        assert!(matches!(got, Err(RetryError::Stopped(_))));
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "did not sleep the hour"
        );
    }
}
