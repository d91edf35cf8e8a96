//! The HTTP API: routes, request validation (422 with the field and the reason, as FastAPI
//! does), errors, metrics middleware.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use airq_domain::validate::{ValidationConfig, validate_sensor_id};
use airq_features::{Neighbours, Series};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sqlx::PgPool;
use tokio::sync::Semaphore;

use crate::cache::{Lookup, SeriesCache};
use crate::catalog::CatalogSource;
use crate::config::Server;
use crate::forecast::{Ahead, Forecast, InputReading, forecast, hourly};
use crate::metrics::Metrics;
use crate::record::Recorder;
use crate::registry::{Current, Loaded};

pub struct AppState {
    pub pool: PgPool,
    pub current: Arc<Current>,
    pub metrics: Metrics,
    pub limits: Server,
    /// Permits for prediction requests in flight (`max_concurrent_requests`).
    pub permits: Arc<Semaphore>,
    /// Where served forecasts are recorded (`[forecasts] record`).
    pub recorder: Option<Arc<Recorder>>,
    /// Each sensor's stored series, for `series_cache_ms` after it was read.
    pub series: SeriesCache,
    /// Where `GET /catalog` reads the freshness (none: 404).
    pub catalog: Option<Arc<CatalogSource>>,
}

impl AppState {
    pub fn new(pool: PgPool, current: Arc<Current>, limits: Server) -> Self {
        let permits = Arc::new(Semaphore::new(limits.max_concurrent_requests.max(1)));
        let series = SeriesCache::new(Duration::from_millis(limits.series_cache_ms));
        Self {
            series,
            pool,
            current,
            metrics: Metrics::default(),
            limits,
            permits,
            recorder: None,
            catalog: None,
        }
    }

    pub fn with_catalog(mut self, catalog: Arc<CatalogSource>) -> Self {
        self.catalog = Some(catalog);
        self
    }

    pub fn with_recorder(mut self, recorder: Arc<Recorder>) -> Self {
        self.recorder = Some(recorder);
        self
    }

    fn record(&self, p: &Prediction) {
        if let Some(r) = &self.recorder {
            r.record(p);
        }
    }
}

pub fn router(state: Arc<AppState>) -> Router {
    let limit = state.limits.max_body_bytes;
    let predictions = Router::new()
        .route("/predict", post(predict))
        .route("/predict/batch", post(predict_batch))
        .layer(middleware::from_fn_with_state(state.clone(), shed_load));
    Router::new()
        .merge(predictions)
        .route("/health", get(|| async { Json(json!({ "status": "ok" })) }))
        .route("/ready", get(ready))
        .route("/catalog", get(catalog))
        .route("/metrics", get(metrics))
        .route(
            "/openapi.json",
            get(|| async { Json(crate::openapi::spec()) }),
        )
        .route("/docs", get(|| async { Html(crate::openapi::DOCS_PAGE) }))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

/// The data catalog with its freshness, read now.
async fn catalog(State(state): State<Arc<AppState>>) -> Response {
    match &state.catalog {
        Some(source) => Json(source.read(&state.pool).await).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({ "detail": "this server has no catalog source" })),
        )
            .into_response(),
    }
}

// ---- requests and responses ----

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PredictRequest {
    pub sensor_id: String,
    /// Recent readings; without them the service reads the sensor's from PostgreSQL.
    #[serde(default)]
    pub readings: Option<Vec<InputReading>>,
    /// Hours ahead to forecast besides the next one (each 1 to the model's longest horizon).
    #[serde(default)]
    pub horizons: Option<Vec<u32>>,
}

/// At most this many horizons per request.
pub const MAX_HORIZONS: usize = 48;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    pub requests: Vec<PredictRequest>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ModelInfo {
    pub name: String,
    pub version: String,
    pub kind: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Prediction {
    pub sensor_id: String,
    #[serde(flatten)]
    pub forecast: Forecast,
    pub unit: &'static str,
    pub model: ModelInfo,
    /// One forecast per requested horizon, in the order asked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub horizons: Option<Vec<Ahead>>,
}

/// An error, rendered as FastAPI renders its own: `{"detail": ...}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    detail: Value,
}

impl ApiError {
    fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        Self {
            status,
            detail: Value::String(detail.into()),
        }
    }

    /// 422 for one field: `loc` is the path in the body.
    fn invalid(loc: Vec<Value>, msg: impl Into<String>, kind: &str) -> Self {
        let mut full = vec![json!("body")];
        full.extend(loc);
        Self {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            detail: json!([{ "loc": full, "msg": msg.into(), "type": kind }]),
        }
    }

    /// 503 for a failure of ours (database, timeout): the cause is logged, the client gets
    /// a plain message and `Retry-After`.
    fn unavailable(what: &str, cause: &dyn std::fmt::Display) -> Self {
        tracing::warn!(error = %cause, what, "request failed: service unavailable");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{what} unavailable; retry later"),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = (self.status, Json(json!({ "detail": self.detail }))).into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        }
        resp
    }
}

/// A JSON body whose errors are 422 with the path of the field at fault; 413 when too large.
pub struct Valid<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Valid<T> {
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            let status = e.status();
            ApiError::new(status, format!("request body refused: {e}")).into_response()
        })?;
        // The plain parse first: tracking the path of every field costs a valid request about
        // as much as the parse itself; only a refused body is parsed again, for its path.
        if let Ok(v) = serde_json::from_slice(&bytes) {
            return Ok(Valid(v));
        }
        let de = &mut serde_json::Deserializer::from_slice(&bytes);
        serde_path_to_error::deserialize(de)
            .map(Valid)
            .map_err(|e| {
                let loc: Vec<Value> = e
                    .path()
                    .iter()
                    .filter_map(|seg| match seg {
                        serde_path_to_error::Segment::Seq { index } => Some(json!(index)),
                        serde_path_to_error::Segment::Map { key } => Some(json!(key)),
                        serde_path_to_error::Segment::Enum { variant } => Some(json!(variant)),
                        serde_path_to_error::Segment::Unknown => None,
                    })
                    .collect();
                let inner = e.into_inner();
                let kind = if inner.is_syntax() || inner.is_eof() {
                    "json_invalid"
                } else {
                    "value_error"
                };
                ApiError::invalid(loc, inner.to_string(), kind).into_response()
            })
    }
}

/// What a valid `sensor_id` is (`airq_domain::validate::validate_sensor_id`).
pub const SENSOR_ID_RULE: &str =
    "sensor_id must be 1 to 64 characters, each a letter, digit or one of _ - . :";

/// Checks what serde cannot: the sensor id, lengths, finite non-negative values.
fn validate(r: &PredictRequest, limits: &Server, prefix: &[Value]) -> Result<(), ApiError> {
    let loc = |rest: &[Value]| prefix.iter().chain(rest).cloned().collect::<Vec<_>>();
    // The cleaner's rule: no id outside it can have stored readings.
    if validate_sensor_id(&r.sensor_id, &ValidationConfig::default()).is_err() {
        return Err(ApiError::invalid(
            loc(&[json!("sensor_id")]),
            SENSOR_ID_RULE,
            "value_error",
        ));
    }
    if let Some(readings) = &r.readings {
        if readings.len() > limits.max_readings {
            return Err(ApiError::invalid(
                loc(&[json!("readings")]),
                format!(
                    "at most {} readings per request, got {}",
                    limits.max_readings,
                    readings.len()
                ),
                "value_error",
            ));
        }
        for (i, x) in readings.iter().enumerate() {
            for (name, v) in [("pm2_5", x.pm2_5), ("pm10", x.pm10), ("no2", x.no2)] {
                if v.is_some_and(|v| !v.is_finite() || v < 0.0) {
                    return Err(ApiError::invalid(
                        loc(&[json!("readings"), json!(i), json!(name)]),
                        "must be a non-negative number of ug/m3",
                        "value_error",
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Checks the requested horizons against the model's longest one.
fn validate_horizons(r: &PredictRequest, m: &Loaded, prefix: &[Value]) -> Result<(), ApiError> {
    let Some(hours) = &r.horizons else {
        return Ok(());
    };
    let loc = |rest: &[Value]| prefix.iter().chain(rest).cloned().collect::<Vec<_>>();
    if hours.len() > MAX_HORIZONS {
        return Err(ApiError::invalid(
            loc(&[json!("horizons")]),
            format!(
                "at most {MAX_HORIZONS} horizons per request, got {}",
                hours.len()
            ),
            "value_error",
        ));
    }
    let max = m.anchors.max_hours();
    if let Some(i) = hours.iter().position(|h| !(1..=max).contains(h)) {
        return Err(ApiError::invalid(
            loc(&[json!("horizons"), json!(i)]),
            format!(
                "hours ahead must be 1 to {max} (model version {} forecasts up to {max} h)",
                m.version
            ),
            "value_error",
        ));
    }
    Ok(())
}

// ---- handlers ----

fn model(state: &AppState) -> Result<Arc<Loaded>, ApiError> {
    state.current.get().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no model loaded yet: the registry has no production version",
        )
    })
}

/// The stored recent series of every sensor of `requests` that brings no readings, and of
/// every request's neighbours (the neighbour features): from the cache, and the others in
/// one query.
async fn stored_series(
    state: &AppState,
    m: &Loaded,
    requests: &[&PredictRequest],
) -> Result<BTreeMap<String, Arc<Series>>, ApiError> {
    let mut sensors: Vec<String> = requests
        .iter()
        .filter(|r| r.readings.is_none())
        .map(|r| r.sensor_id.clone())
        .collect();
    for r in requests {
        sensors.extend(
            m.neighbours_of(&r.sensor_id)
                .iter()
                .map(|(id, _)| id.clone()),
        );
    }
    sensors.sort_unstable();
    sensors.dedup();
    let hours = m.artifact.spec.history_hours() as i64;
    let now = Instant::now();
    let Lookup { mut found, missing } = state.series.lookup(&sensors, hours, now);
    if !missing.is_empty() {
        let read: BTreeMap<String, Arc<Series>> =
            airq_store::hourly::recent_series_many(&state.pool, &missing, hours)
                .await
                .map_err(|e| ApiError::unavailable("database", &e))?
                .into_iter()
                .map(|(sensor, series)| (sensor, Arc::new(series)))
                .collect();
        state.series.store(&missing, &read, hours, now);
        found.extend(read);
    }
    Ok(found)
}

/// The forecast of one request, its stored series (if it brings no readings) in `stored`.
fn one(
    m: &Loaded,
    r: &PredictRequest,
    stored: &BTreeMap<String, Arc<Series>>,
) -> Result<Prediction, ApiError> {
    let given;
    let series = match &r.readings {
        Some(readings) => {
            given = hourly(readings);
            &given
        }
        None => stored.get(&r.sensor_id).map(Arc::as_ref).ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                format!("unknown sensor {:?}: no readings stored", r.sensor_id),
            )
        })?,
    };
    let not_enough = |missing: airq_features::Missing| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "not enough recent data for sensor {:?}: missing {}",
                r.sensor_id, missing.what
            ),
        )
    };
    let spec = &m.artifact.spec;
    let nb = Neighbours {
        others: m
            .neighbours_of(&r.sensor_id)
            .iter()
            .filter_map(|(id, w)| stored.get(id).map(|s| (*w, s.as_ref())))
            .collect(),
    };
    let asked = r.horizons.as_deref().unwrap_or_default();
    let (f, ahead) = forecast(spec, &m.anchors, series, &nb, asked).map_err(not_enough)?;
    Ok(Prediction {
        sensor_id: r.sensor_id.clone(),
        forecast: f,
        unit: "ug/m3",
        model: ModelInfo {
            name: m.model_name.clone(),
            version: m.version.clone(),
            kind: m.artifact.name.clone(),
        },
        horizons: r.horizons.is_some().then_some(ahead),
    })
}

async fn predict(
    State(state): State<Arc<AppState>>,
    Valid(r): Valid<PredictRequest>,
) -> Result<Json<Prediction>, ApiError> {
    validate(&r, &state.limits, &[])?;
    let m = model(&state)?;
    validate_horizons(&r, &m, &[])?;
    let stored = stored_series(&state, &m, &[&r]).await?;
    let p = one(&m, &r, &stored)?;
    state.record(&p);
    Ok(Json(p))
}

async fn predict_batch(
    State(state): State<Arc<AppState>>,
    Valid(b): Valid<BatchRequest>,
) -> Result<Json<Value>, ApiError> {
    if b.requests.len() > state.limits.max_batch {
        return Err(ApiError::invalid(
            vec![json!("requests")],
            format!(
                "at most {} requests per batch, got {}",
                state.limits.max_batch,
                b.requests.len()
            ),
            "value_error",
        ));
    }
    for (i, r) in b.requests.iter().enumerate() {
        validate(r, &state.limits, &[json!("requests"), json!(i)])?;
    }
    // One model for the whole batch, even if it is swapped meanwhile.
    let m = model(&state)?;
    for (i, r) in b.requests.iter().enumerate() {
        validate_horizons(r, &m, &[json!("requests"), json!(i)])?;
    }
    let all: Vec<&PredictRequest> = b.requests.iter().collect();
    let stored = stored_series(&state, &m, &all).await?;
    let mut results = Vec::with_capacity(b.requests.len());
    for r in &b.requests {
        results.push(match one(&m, r, &stored) {
            Ok(p) => {
                state.record(&p);
                json!({ "sensor_id": r.sensor_id, "status": 200, "prediction": p })
            }
            Err(e) => {
                json!({ "sensor_id": r.sensor_id, "status": e.status.as_u16(), "detail": e.detail })
            }
        });
    }
    Ok(Json(
        json!({ "results": results, "model": { "name": m.model_name, "version": m.version, "kind": m.artifact.name } }),
    ))
}

async fn ready(State(state): State<Arc<AppState>>) -> Response {
    match state.current.get() {
        Some(m) => Json(json!({ "status": "ready", "model": m.model_name, "version": m.version }))
            .into_response(),
        None => {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "no model loaded yet").into_response()
        }
    }
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let version = state.current.get().map(|m| m.version.clone());
    let mut text = state.metrics.render(version.as_deref());
    if let Some(r) = &state.recorder {
        use std::sync::atomic::Ordering::Relaxed;
        text.push_str(&format!(
            "# HELP airq_forecast_records_total Served forecasts recorded in PostgreSQL, and dropped (queue full).\n\
             # TYPE airq_forecast_records_total counter\n\
             airq_forecast_records_total{{outcome=\"written\"}} {}\n\
             airq_forecast_records_total{{outcome=\"dropped\"}} {}\n",
            r.written.load(Relaxed),
            r.dropped.load(Relaxed)
        ));
    }
    let (reads, sensors) = state.series.reads();
    text.push_str(&format!(
        "# HELP airq_predict_series_reads_total Queries for stored series (what the series cache did not hold), and the sensors they read.\n\
         # TYPE airq_predict_series_reads_total counter\n\
         airq_predict_series_reads_total {reads}\n\
         # TYPE airq_predict_series_sensors_read_total counter\n\
         airq_predict_series_sensors_read_total {sensors}\n"
    ));
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

/// Load shedding for the prediction routes: past `max_concurrent_requests` in flight, a
/// request is answered 503 with `Retry-After` at once (no unbounded queue); one that runs
/// past `request_timeout_ms` is answered 503 too.
async fn shed_load(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let Ok(_permit) = state.permits.clone().try_acquire_owned() else {
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many requests in flight; retry later",
        )
        .into_response();
    };
    let limit = Duration::from_millis(state.limits.request_timeout_ms);
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(resp) => resp,
        Err(elapsed) => ApiError::unavailable("prediction (timed out)", &elapsed).into_response(),
    }
}

async fn observe(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let started = Instant::now();
    let resp = next.run(req).await;
    state.metrics.observe(
        &route,
        resp.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    resp
}
