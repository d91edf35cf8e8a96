//! A client of the OpenAQ API v3: a location with its sensors, their latest values, and a
//! sensor's hourly means over a window (paged). Every request has a timeout; HTTP 429 waits
//! as `Retry-After` (or the rate-limit reset) says, 5xx and transport failures back off
//! exponentially, both a bounded number of times; a body that is not what the API documents
//! is an error at once (retrying would get the same). The `X-API-Key` is never logged.

use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde::de::DeserializeOwned;

/// Errors of the client.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("OpenAQ {path}: {source}")]
    Transport {
        path: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("OpenAQ {path}: HTTP {status}: {body}")]
    Status {
        path: String,
        status: u16,
        body: String,
    },
    #[error("OpenAQ {path}: malformed response: {source}")]
    Malformed {
        path: String,
        #[source]
        source: serde_json::Error,
    },
}

/// How the client waits and retries.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub base_url: String,
    pub api_key: Option<SecretString>,
    pub timeout: Duration,
    /// Attempts per request, the first included.
    pub attempts: u32,
    /// First back-off after a 5xx or a transport failure; doubles each time.
    pub backoff: Duration,
    /// Longest single wait, whatever a server asks.
    pub max_wait: Duration,
    /// Results per page.
    pub page_size: u32,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            base_url: "https://api.openaq.org".into(),
            api_key: None,
            timeout: Duration::from_secs(15),
            attempts: 5,
            backoff: Duration::from_millis(500),
            max_wait: Duration::from_secs(120),
            page_size: 1000,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct Page<T> {
    pub results: Vec<T>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Parameter {
    pub name: String,
    pub units: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Coordinates {
    pub latitude: f64,
    pub longitude: f64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SensorInfo {
    pub id: i64,
    pub parameter: Parameter,
}

#[derive(Debug, Clone, Deserialize)]
pub struct LocationInfo {
    pub id: i64,
    pub coordinates: Coordinates,
    pub sensors: Vec<SensorInfo>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Instant {
    pub utc: DateTime<Utc>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Latest {
    pub datetime: Instant,
    pub value: Option<f64>,
    #[serde(rename = "sensorsId")]
    pub sensors_id: i64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Period {
    #[serde(rename = "datetimeTo")]
    pub datetime_to: Instant,
}

/// One hourly mean; its time is the end of its hour (`period.datetimeTo`), as the latest
/// value of an hourly instrument is stamped.
#[derive(Debug, Clone, Deserialize)]
pub struct Hour {
    pub value: Option<f64>,
    pub parameter: Parameter,
    pub period: Period,
}

/// How long a server asked to wait: `Retry-After` in seconds, else the rate-limit reset
/// (`x-ratelimit-reset`, seconds) when the answer is a 429 or no request is left.
pub fn wait_hint(status: StatusCode, headers: &HeaderMap) -> Option<Duration> {
    let secs = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(Duration::from_secs_f64)
    };
    let exhausted = headers
        .get("x-ratelimit-remaining")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim() == "0");
    if status == StatusCode::TOO_MANY_REQUESTS {
        return secs("retry-after").or_else(|| secs("x-ratelimit-reset"));
    }
    if exhausted {
        return secs("x-ratelimit-reset");
    }
    None
}

pub struct Client {
    http: reqwest::Client,
    cfg: ClientConfig,
}

fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

impl Client {
    pub fn new(cfg: ClientConfig) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder().timeout(cfg.timeout).build()?;
        Ok(Self { http, cfg })
    }

    async fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<T, ApiError> {
        let url = format!("{}{path}", self.cfg.base_url.trim_end_matches('/'));
        let mut backoff = self.cfg.backoff;
        let mut attempt = 1;
        loop {
            let mut req = self.http.get(&url).query(query);
            if let Some(key) = &self.cfg.api_key {
                req = req.header("X-API-Key", key.expose_secret());
            }
            let last = attempt >= self.cfg.attempts;
            let wait = match req.send().await {
                Err(source) if last => {
                    return Err(ApiError::Transport {
                        path: path.into(),
                        source,
                    });
                }
                Err(e) => {
                    tracing::warn!(path, attempt, error = %e, "OpenAQ request failed: backing off");
                    backoff
                }
                Ok(resp) => {
                    let status = resp.status();
                    let hint = wait_hint(status, resp.headers());
                    if status.is_success() {
                        let body = resp.bytes().await.map_err(|source| ApiError::Transport {
                            path: path.into(),
                            source,
                        })?;
                        if let Some(w) = hint {
                            tracing::info!(
                                path,
                                wait_secs = w.as_secs_f64(),
                                "OpenAQ rate limit reached: pausing"
                            );
                            tokio::time::sleep(w.min(self.cfg.max_wait)).await;
                        }
                        return serde_json::from_slice(&body).map_err(|source| {
                            ApiError::Malformed {
                                path: path.into(),
                                source,
                            }
                        });
                    }
                    let retryable =
                        status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error();
                    if !retryable || last {
                        let body = resp.text().await.unwrap_or_default();
                        return Err(ApiError::Status {
                            path: path.into(),
                            status: status.as_u16(),
                            body: body.chars().take(300).collect(),
                        });
                    }
                    tracing::warn!(
                        path,
                        attempt,
                        status = status.as_u16(),
                        "OpenAQ answered an error: retrying"
                    );
                    hint.unwrap_or(backoff)
                }
            };
            tokio::time::sleep(wait.min(self.cfg.max_wait)).await;
            backoff = (backoff * 2).min(self.cfg.max_wait);
            attempt += 1;
        }
    }

    /// `/v3/locations/{id}`: the location, its coordinates and sensors.
    pub async fn location(&self, id: i64) -> Result<Option<LocationInfo>, ApiError> {
        let page: Page<LocationInfo> = self.get(&format!("/v3/locations/{id}"), &[]).await?;
        Ok(page.results.into_iter().next())
    }

    /// `/v3/locations/{id}/latest`: each sensor's newest value.
    pub async fn latest(&self, id: i64) -> Result<Vec<Latest>, ApiError> {
        let page: Page<Latest> = self.get(&format!("/v3/locations/{id}/latest"), &[]).await?;
        Ok(page.results)
    }

    /// `/v3/sensors/{id}/hours` over `[from, to]`, every page.
    pub async fn hours(
        &self,
        sensor: i64,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<Hour>, ApiError> {
        let path = format!("/v3/sensors/{sensor}/hours");
        let limit = self.cfg.page_size.max(1);
        let mut out = Vec::new();
        for page in 1.. {
            let query = [
                ("datetime_from", time(from)),
                ("datetime_to", time(to)),
                ("limit", limit.to_string()),
                ("page", page.to_string()),
            ];
            let p: Page<Hour> = self.get(&path, &query).await?;
            let n = p.results.len();
            out.extend(p.results);
            if n < limit as usize || page >= 10_000 {
                break;
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn a_429_waits_as_retry_after_says_and_an_exhausted_quota_until_its_reset() {
        let mut h = HeaderMap::new();
        h.insert("retry-after", HeaderValue::from_static("3"));
        h.insert("x-ratelimit-reset", HeaderValue::from_static("40"));
        assert_eq!(
            wait_hint(StatusCode::TOO_MANY_REQUESTS, &h),
            Some(Duration::from_secs(3))
        );
        assert_eq!(wait_hint(StatusCode::OK, &h), None, "quota left");
        h.remove("retry-after");
        assert_eq!(
            wait_hint(StatusCode::TOO_MANY_REQUESTS, &h),
            Some(Duration::from_secs(40))
        );
        h.insert("x-ratelimit-remaining", HeaderValue::from_static("0"));
        assert_eq!(wait_hint(StatusCode::OK, &h), Some(Duration::from_secs(40)));
    }
}
