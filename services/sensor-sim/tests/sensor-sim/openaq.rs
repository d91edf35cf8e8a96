use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, DurationRound, Utc};
use rdkafka::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use sensor_sim::openaq::api::{Client, ClientConfig as ApiConfig};
use sensor_sim::openaq::live::LiveSource;
use sensor_sim::publish::Publisher;
use serde_json::{Value, json};

const LOCATION: i64 = 3847229;
const PM25: i64 = 11001;
const NO2: i64 = 11003;

/// What the fake API serves, and the faults it injects once each.
struct Api {
    latest: Mutex<DateTime<Utc>>,
    malformed: AtomicBool,
    latest_429_left: AtomicU32,
    pm25_500_left: AtomicU32,
    no2_slow_left: AtomicU32,
    requests: AtomicU32,
    keys: Mutex<Vec<String>>,
}

fn t(v: DateTime<Utc>) -> Value {
    json!({"utc": v.to_rfc3339(), "local": v.to_rfc3339()})
}

fn value_at(sensor: i64, at: DateTime<Utc>) -> f64 {
    let h = (at.timestamp() / 3600) % 24;
    if sensor == PM25 {
        10.0 + h as f64
    } else {
        20.0 + h as f64 / 2.0
    }
}

fn parameter(sensor: i64) -> Value {
    if sensor == PM25 {
        json!({"id": 2, "name": "pm25", "units": "µg/m³", "displayName": "PM2.5"})
    } else {
        json!({"id": 7, "name": "no2", "units": "ppb", "displayName": "NO₂"})
    }
}

fn page(results: Vec<Value>) -> Response {
    let found = results.len();
    axum::Json(json!({"meta": {"name": "openaq-api", "page": 1, "limit": 100, "found": found}, "results": results})).into_response()
}

async fn location(
    State(api): State<Arc<Api>>,
    Path(id): Path<i64>,
    headers: axum::http::HeaderMap,
) -> Response {
    api.requests.fetch_add(1, Ordering::SeqCst);
    if let Some(k) = headers.get("x-api-key") {
        api.keys
            .lock()
            .unwrap()
            .push(k.to_str().unwrap().to_owned());
    }
    if id != LOCATION {
        return (StatusCode::NOT_FOUND, "{}").into_response();
    }
    page(vec![json!({
        "id": LOCATION, "name": "Test station", "timezone": "Europe/Paris",
        "coordinates": {"latitude": 48.8566, "longitude": 2.3522},
        "sensors": [
            {"id": PM25, "name": "pm25 µg/m³", "parameter": parameter(PM25)},
            {"id": NO2, "name": "no2 ppb", "parameter": parameter(NO2)},
            {"id": 11009, "name": "o3 ppm", "parameter": {"id": 10, "name": "o3", "units": "ppm"}}
        ]
    })])
}

async fn latest(State(api): State<Arc<Api>>, Path(_id): Path<i64>) -> Response {
    api.requests.fetch_add(1, Ordering::SeqCst);
    if api.malformed.load(Ordering::SeqCst) {
        return (StatusCode::OK, "{\"results\": [{\"datetime\": 12").into_response();
    }
    if api
        .latest_429_left
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
    {
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", "1")],
            "slow down",
        )
            .into_response();
    }
    let at = *api.latest.lock().unwrap();
    page(
        [PM25, NO2, 11009]
            .iter()
            .map(|s| json!({"datetime": t(at), "value": value_at(*s, at), "coordinates": {"latitude": 48.8566, "longitude": 2.3522}, "sensorsId": s, "locationsId": LOCATION}))
            .collect(),
    )
}

async fn hours(
    State(api): State<Arc<Api>>,
    Path(sensor): Path<i64>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    api.requests.fetch_add(1, Ordering::SeqCst);
    if sensor == PM25
        && api
            .pm25_500_left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    {
        return (StatusCode::INTERNAL_SERVER_ERROR, "boom").into_response();
    }
    if sensor == NO2
        && api
            .no2_slow_left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    {
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    let from: DateTime<Utc> = q["datetime_from"].parse().unwrap();
    let to: DateTime<Utc> = q["datetime_to"].parse().unwrap();
    let limit: usize = q["limit"].parse().unwrap();
    let pg: usize = q["page"].parse().unwrap();
    // Hours ending in (from, to]: datetimeTo is the end of each hour.
    let mut all = Vec::new();
    let mut end = from + chrono::Duration::hours(1);
    while end <= to {
        all.push(json!({
            "value": value_at(sensor, end), "flagInfo": {"hasFlags": false},
            "parameter": parameter(sensor),
            "period": {"label": "1hour", "interval": "01:00:00", "datetimeFrom": t(end - chrono::Duration::hours(1)), "datetimeTo": t(end)}
        }));
        end += chrono::Duration::hours(1);
    }
    page(all.into_iter().skip((pg - 1) * limit).take(limit).collect())
}

async fn serve(api: Arc<Api>) -> String {
    let app = Router::new()
        .route("/v3/locations/{id}", get(location))
        .route("/v3/locations/{id}/latest", get(latest))
        .route("/v3/sensors/{id}/hours", get(hours))
        .with_state(api);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

pub fn brokers() -> String {
    std::env::var("AIRQ_TEST_BROKERS").unwrap_or_else(|_| "127.0.0.1:19092".into())
}

async fn read_all(topic: &str, at_least: usize) -> Vec<Value> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set(
            "group.id",
            format!("reader_{}", uuid::Uuid::new_v4().simple()),
        )
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    let mut out = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut quiet_since = std::time::Instant::now();
    while std::time::Instant::now() < deadline {
        if out.len() >= at_least && quiet_since.elapsed() > Duration::from_secs(3) {
            break;
        }
        if let Ok(Ok(m)) = tokio::time::timeout(Duration::from_millis(300), consumer.recv()).await {
            out.push(serde_json::from_slice(m.payload().unwrap()).unwrap());
            quiet_since = std::time::Instant::now();
        }
    }
    out
}

fn source(base: &str, state: &std::path::Path) -> LiveSource {
    let cfg = ApiConfig {
        base_url: base.into(),
        api_key: Some("test-key-123".to_owned().into()),
        timeout: Duration::from_millis(1000),
        attempts: 4,
        backoff: Duration::from_millis(50),
        max_wait: Duration::from_secs(2),
        page_size: 2,
    };
    LiveSource::new(
        Client::new(cfg).unwrap(),
        LOCATION,
        chrono::Duration::hours(6),
        state.into(),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_client_fills_the_gap_survives_faults_and_never_publishes_twice() {
    let now = Utc::now()
        .duration_trunc(chrono::Duration::hours(1))
        .unwrap();
    let api = Arc::new(Api {
        latest: Mutex::new(now),
        malformed: AtomicBool::new(false),
        latest_429_left: AtomicU32::new(1),
        pm25_500_left: AtomicU32::new(1),
        no2_slow_left: AtomicU32::new(1),
        requests: AtomicU32::new(0),
        keys: Mutex::new(Vec::new()),
    });
    let base = serve(api.clone()).await;
    let topic = format!("raw_openaq_{}", uuid::Uuid::new_v4().simple());
    airq_kafka::admin::ensure_topics(&brokers(), &[&topic], 3)
        .await
        .unwrap();
    let producer = airq_kafka::client::producer(&brokers(), 5).unwrap();
    let mut out = Publisher::new(producer, topic.clone());
    let state = std::env::temp_dir().join(format!("airq-openaq-{}", uuid::Uuid::new_v4().simple()));
    let state_file = state.join("openaq.json");

    // First start: 6 hours of history (3 pages of 2 per sensor) through a 429 on latest,
    // a 500 on the pm25 hours and a timeout on the no2 hours, then the latest value.
    let mut src = source(&base, &state_file);
    let c = src
        .cycle(&mut out, now)
        .await
        .expect("the faults are retried");
    assert_eq!(c.published, 6, "{c:?}");
    assert_eq!(
        c.observations, 12,
        "pm25 + no2 merged per hour; o3 has no field"
    );

    // A malformed body: a clear error, nothing published, the watermarks unmoved.
    api.malformed.store(true, Ordering::SeqCst);
    let e = src.cycle(&mut out, now).await.unwrap_err();
    assert!(format!("{e:#}").contains("malformed response"), "{e:#}");
    api.malformed.store(false, Ordering::SeqCst);

    // Nothing new: nothing published; a restart (watermarks from the file) neither.
    assert_eq!(src.cycle(&mut out, now).await.unwrap().published, 0);
    let mut restarted = source(&base, &state_file);
    assert_eq!(restarted.watermarks(), src.watermarks());
    assert_eq!(restarted.cycle(&mut out, now).await.unwrap().published, 0);

    // The next hour: exactly one reading.
    *api.latest.lock().unwrap() = now + chrono::Duration::hours(1);
    let next = restarted
        .cycle(&mut out, now + chrono::Duration::hours(1))
        .await
        .unwrap();
    assert_eq!(next.published, 1);

    let got = read_all(&topic, 7).await;
    assert_eq!(got.len(), 7, "6 + 1 readings, none twice");
    let mut keys: Vec<String> = got
        .iter()
        .map(|v| v["timestamp"].as_str().unwrap().to_owned())
        .collect();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), 7);
    for v in &got {
        assert_eq!(v["sensor_id"], "openaq_3847229");
        let ts: DateTime<Utc> = v["timestamp"].as_str().unwrap().parse().unwrap();
        assert_eq!(
            v["measurements"]["pm2_5"].as_f64(),
            Some(value_at(PM25, ts))
        );
        let no2 = v["measurements"]["no2"].as_f64().unwrap();
        assert!(
            (no2 - value_at(NO2, ts) * 46.0055 / 24.45).abs() < 1e-9,
            "ppb -> ug/m3: {no2}"
        );
        assert!(ts > now - chrono::Duration::hours(6) && ts <= now + chrono::Duration::hours(1));
    }
    assert!(
        api.keys.lock().unwrap().iter().all(|k| k == "test-key-123"),
        "X-API-Key sent"
    );
    std::fs::remove_dir_all(&state).ok();
}
