//! The OpenAPI 3.1 description served at `/openapi.json`, and the `/docs` page that renders
//! it and lets one try each operation (self-contained: no CDN).

use serde_json::{Value, json};

pub fn spec() -> Value {
    let error = json!({ "$ref": "#/components/schemas/Error" });
    let errors = |codes: &[(&str, &str)]| -> Value {
        codes
            .iter()
            .map(|(c, d)| ((*c).to_owned(), json!({ "description": d, "content": { "application/json": { "schema": error } } })))
            .collect::<serde_json::Map<_, _>>()
            .into()
    };
    let mut predict_responses = errors(&[
        ("404", "unknown sensor (no readings stored)"),
        ("413", "request body too large"),
        (
            "422",
            "invalid request (detail gives the field and the reason) or not enough recent data",
        ),
        (
            "503",
            "no model loaded yet, the database is unavailable, too many requests in flight or the request timed out (Retry-After says when to retry)",
        ),
    ]);
    predict_responses["200"] = json!({ "description": "the forecast", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Prediction" } } } });
    let mut batch_responses = errors(&[
        ("413", "request body too large"),
        ("422", "invalid request"),
        (
            "503",
            "no model loaded yet, the database is unavailable, too many requests in flight or the request timed out (Retry-After says when to retry)",
        ),
    ]);
    batch_responses["200"] = json!({ "description": "one result per request, each with its own status", "content": { "application/json": { "schema": { "type": "object" } } } });
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "airq predict-api",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "PM2.5 per sensor for the next hour and, on request, up to 24 hours ahead, with prediction intervals, from the production model of the MLflow registry."
        },
        "paths": {
            "/predict": { "post": {
                "summary": "Forecast the next hour's PM2.5 of one sensor",
                "description": "Give `sensor_id` alone to use its readings stored in PostgreSQL, or add `readings` (at least 24 hours, recent first or not). Add `horizons` (e.g. [1, 6, 24]) for forecasts further ahead.",
                "requestBody": { "required": true, "content": { "application/json": { "schema": { "$ref": "#/components/schemas/PredictRequest" },
                    "example": { "sensor_id": "CAP_001", "horizons": [1, 6, 24] } } } },
                "responses": predict_responses
            }},
            "/predict/batch": { "post": {
                "summary": "Forecasts for many sensors",
                "requestBody": { "required": true, "content": { "application/json": { "schema": { "type": "object", "required": ["requests"], "additionalProperties": false,
                    "properties": { "requests": { "type": "array", "items": { "$ref": "#/components/schemas/PredictRequest" } } } },
                    "example": { "requests": [{ "sensor_id": "CAP_001" }, { "sensor_id": "CAP_002" }] } } } },
                "responses": batch_responses
            }},
            "/health": { "get": { "summary": "Liveness", "responses": { "200": { "description": "the process is up" } } } },
            "/ready": { "get": { "summary": "Readiness: a model is loaded", "responses": { "200": { "description": "ready" }, "503": { "description": "no model yet" } } } },
            "/catalog": { "get": { "summary": "The data catalog: every topic (with its JSON Schema), table, model and archive, the lineage, and their freshness and volume read now (docs/catalog.md)", "responses": { "200": { "description": "the catalog; a source that cannot be read has an `error` in its freshness entry" } } } },
            "/metrics": { "get": { "summary": "Prometheus metrics", "responses": { "200": { "description": "text exposition format" } } } }
        },
        "components": { "schemas": {
            "Reading": { "type": "object", "required": ["timestamp"], "additionalProperties": false, "properties": {
                "timestamp": { "type": "string", "format": "date-time" },
                "pm2_5": { "type": ["number", "null"], "minimum": 0 },
                "pm10": { "type": ["number", "null"], "minimum": 0 },
                "no2": { "type": ["number", "null"], "minimum": 0 } } },
            "PredictRequest": { "type": "object", "required": ["sensor_id"], "additionalProperties": false, "properties": {
                "sensor_id": { "type": "string", "minLength": 1, "maxLength": 64, "pattern": "^[A-Za-z0-9_.:-]{1,64}$" },
                "readings": { "type": ["array", "null"], "items": { "$ref": "#/components/schemas/Reading" },
                    "description": "absent or null: the sensor's readings stored in PostgreSQL are used" },
                "horizons": { "type": ["array", "null"], "maxItems": 48, "items": { "type": "integer", "minimum": 1 },
                    "description": "hours ahead to forecast as well (each 1 to the model's longest horizon, 24 for the trainer's defaults); the answer's `horizons` has one forecast per entry, in order" } } },
            "Bounds": { "type": "object", "properties": { "lower": { "type": "number" }, "upper": { "type": "number" }, "coverage": { "type": "number" } },
                "description": "a prediction interval of PM2.5 calibrated to hold the value `coverage` of the time" },
            "Ahead": { "type": "object", "properties": {
                "hours": { "type": "integer" },
                "forecast_for": { "type": "string", "format": "date-time" },
                "based_on_hour": { "type": "string", "format": "date-time" },
                "pm2_5": { "type": "number" },
                "interval": { "$ref": "#/components/schemas/Bounds" },
                "us_aqi": { "type": ["object", "null"], "properties": { "aqi": { "type": "integer" }, "category": { "type": "string" } } },
                "interpolated": { "type": "boolean", "description": "between the two nearest horizons with a model of their own" } } },
            "Prediction": { "type": "object", "properties": {
                "sensor_id": { "type": "string" },
                "forecast_for": { "type": "string", "format": "date-time" },
                "based_on_hour": { "type": "string", "format": "date-time" },
                "pm2_5": { "type": "number" },
                "interval": { "$ref": "#/components/schemas/Bounds" },
                "unit": { "type": "string" },
                "horizons": { "type": "array", "items": { "$ref": "#/components/schemas/Ahead" } },
                "us_aqi": { "type": ["object", "null"], "properties": { "aqi": { "type": "integer" }, "category": { "type": "string" } } },
                "model": { "type": "object", "properties": { "name": { "type": "string" }, "version": { "type": "string" }, "kind": { "type": "string" } } } } },
            "Error": { "type": "object", "properties": { "detail": {} } }
        }}
    })
}

pub const DOCS_PAGE: &str = r#"<!doctype html>
<html><head><meta charset="utf-8"><title>airq predict-api</title>
<style>body{font-family:sans-serif;max-width:60rem;margin:2rem auto}section{border:1px solid #ccc;border-radius:6px;padding:1rem;margin:1rem 0}
code,textarea,pre{font-family:monospace}textarea{width:100%;height:6rem}pre{background:#f4f4f4;padding:.5rem;white-space:pre-wrap}</style></head>
<body><h1>airq predict-api</h1><p>The OpenAPI description is at <a href="/openapi.json">/openapi.json</a>. Try an operation:</p><div id="ops"></div>
<script>
fetch('/openapi.json').then(r => r.json()).then(spec => {
  const ops = document.getElementById('ops');
  for (const [path, methods] of Object.entries(spec.paths)) for (const [method, op] of Object.entries(methods)) {
    const s = document.createElement('section');
    const ex = op.requestBody ? JSON.stringify(Object.values(op.requestBody.content)[0].example || {}, null, 1) : null;
    s.innerHTML = `<h3><code>${method.toUpperCase()} ${path}</code></h3><p>${op.summary}</p>` +
      (ex !== null ? `<textarea>${ex}</textarea>` : '') + `<button>Send</button><pre></pre>`;
    s.querySelector('button').onclick = async () => {
      const body = s.querySelector('textarea');
      const r = await fetch(path, { method: method.toUpperCase(), headers: { 'content-type': 'application/json' }, body: body ? body.value : undefined });
      s.querySelector('pre').textContent = r.status + '\n' + await r.text();
    };
    ops.appendChild(s);
  }
});
</script></body></html>"#;
