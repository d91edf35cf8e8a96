//! What the platform stores and where: every topic, table and view, registered model and the
//! raw archive, described once here. The topics' schemas come from the Rust types that write
//! and read them; the tables' columns are held equal to the migrations by a test
//! (`tests/catalog`), so neither can drift from the code unnoticed.

use schemars::{JsonSchema, generate::SchemaSettings};
use serde::Serialize;
use serde_json::Value;

/// A Kafka topic of the platform (default name; `[kafka.topics]` renames them).
#[derive(Debug, Clone, Serialize)]
pub struct Topic {
    pub name: &'static str,
    /// The message key, which decides the partition.
    pub key: &'static str,
    pub about: &'static str,
    /// The message value's JSON Schema (draft 2020-12), generated from its Rust type; `null`
    /// when the value is not one type (the dead-letter topic keeps the refused bytes).
    pub schema: Option<Value>,
    /// The Rust type the schema comes from.
    pub rust_type: Option<&'static str>,
    /// Headers every message carries: (name, meaning).
    pub headers: Vec<Field>,
    pub delivery: &'static str,
}

/// A column of a table or view, or a field of a document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Field {
    pub name: &'static str,
    /// PostgreSQL's `format_type` of the column (BSON type for a document field; empty for
    /// a header).
    #[serde(rename = "type")]
    pub ty: &'static str,
    pub meaning: &'static str,
}

/// A PostgreSQL table or view (`migrations/`).
#[derive(Debug, Clone, Serialize)]
pub struct Table {
    pub name: &'static str,
    pub kind: TableKind,
    pub about: &'static str,
    /// The primary key (empty for a view).
    pub key: &'static [&'static str],
    /// The column freshness is read from: the newest value is the newest data.
    pub time_column: Option<&'static str>,
    pub columns: Vec<Field>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TableKind {
    Table,
    View,
}

impl TableKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TableKind::Table => "table",
            TableKind::View => "view",
        }
    }
}

/// A model in the MLflow registry.
#[derive(Debug, Clone, Serialize)]
pub struct Model {
    pub name: &'static str,
    pub about: &'static str,
    /// The aliases the platform uses: (alias, meaning).
    pub aliases: Vec<Field>,
}

/// The MongoDB raw archive.
#[derive(Debug, Clone, Serialize)]
pub struct Archive {
    pub database: &'static str,
    pub collection: &'static str,
    pub about: &'static str,
    pub fields: Vec<Field>,
    pub indexes: &'static [&'static str],
}

const fn f(name: &'static str, ty: &'static str, meaning: &'static str) -> Field {
    Field { name, ty, meaning }
}

/// The JSON Schema of `T`, as the consumers read it.
pub fn schema_of<T: JsonSchema>() -> Value {
    let schema = SchemaSettings::draft2020_12()
        .into_generator()
        .into_root_schema_for::<T>();
    serde_json::to_value(schema).unwrap_or(Value::Null)
}

pub fn topics() -> Vec<Topic> {
    vec![
        Topic {
            name: "raw_data",
            key: "sensor_id",
            about: "Every reading a sensor (or a replay) sends, as sent. A message that does not \
                    match this schema, or has no measurement at all, goes to `dead_letter` with \
                    its reason; readers accept unknown fields.",
            schema: Some(schema_of::<airq_domain::Reading>()),
            rust_type: Some("airq_domain::Reading"),
            headers: vec![],
            delivery: "at least once (idempotent producer)",
        },
        Topic {
            name: "processed_data",
            key: "the reading's region: `all`, or a `lat:lon` cell of `[processed] region_cell_deg`",
            about: "Each valid reading cleaned (invalid values null), flagged and enriched with \
                    1-hour means, NowCast and AQI.",
            schema: Some(schema_of::<airq_domain::ProcessedReading>()),
            rust_type: Some("airq_domain::ProcessedReading"),
            headers: vec![],
            delivery: "at least once: key on (sensor_id, timestamp)",
        },
        Topic {
            name: "anomalies",
            key: "sensor_id",
            about: "Each anomaly episode, published when it opens and when it closes, with its \
                    explanation.",
            schema: Some(schema_of::<airq_detect::AnomalyEvent>()),
            rust_type: Some("airq_detect::AnomalyEvent"),
            headers: vec![],
            delivery: "at least once: key on (id, status)",
        },
        Topic {
            name: "dead_letter",
            key: "the refused message's key",
            about: "Every message a service refused, byte for byte, with the reason in its \
                    headers.",
            schema: None,
            rust_type: None,
            headers: vec![
                f("airq.source.topic", "", "the topic the message came from"),
                f("airq.source.partition", "", "its partition (decimal)"),
                f("airq.source.offset", "", "its offset (decimal)"),
                f(
                    "airq.reason",
                    "",
                    "machine-readable reason (`malformed_json`, `missing_field`, \
                     `invalid_type`, `invalid_sensor_id`, `invalid_location`, \
                     `non_finite_value`, `invalid_timestamp`, `timestamp_in_future`, \
                     `timestamp_too_old`, `no_measurements`, `malformed_processed`)",
                ),
                f("airq.detail", "", "what exactly was wrong, for a person"),
                f("airq.service", "", "the service that refused it"),
            ],
            delivery: "at least once",
        },
    ]
}

const TS: &str = "timestamp with time zone";
const F8: &str = "double precision";
const I2: &str = "smallint";
const I4: &str = "integer";

fn readings_columns() -> Vec<Field> {
    vec![
        f("sensor_id", "text", "the sensor"),
        f("ts", TS, "when the reading was taken"),
        f("lat", F8, "latitude, degrees"),
        f("lon", F8, "longitude, degrees"),
        f(
            "pm2_5",
            F8,
            "cleaned PM2.5, ug/m3; NULL if missing or invalid",
        ),
        f("pm10", F8, "cleaned PM10, ug/m3"),
        f("no2", F8, "cleaned NO2, ug/m3"),
        f("pm2_5_raw", F8, "PM2.5 as received"),
        f("pm10_raw", F8, "PM10 as received"),
        f("no2_raw", F8, "NO2 as received"),
        f("flags", I4, "quality flags, bitmask of quality_flags.bit"),
        f("pm2_5_1h", F8, "PM2.5 mean over the hour ending here"),
        f("pm10_1h", F8, "PM10 mean over the hour ending here"),
        f("no2_1h", F8, "NO2 mean over the hour ending here"),
        f("nowcast_pm2_5", F8, "PM2.5 NowCast"),
        f("nowcast_pm10", F8, "PM10 NowCast"),
        f("aqi", I2, "US AQI (EPA 2024)"),
        f("aqi_category", "text", "its category (good ... hazardous)"),
        f("aqi_dominant", "text", "the pollutant that sets it"),
        f(
            "eaqi_band",
            "text",
            "European AQI band (good ... extremely_poor)",
        ),
        f(
            "schema_version",
            I2,
            "schema of the processed_data message the row came from",
        ),
        f("ingested_at", TS, "when the cleaner stored it"),
    ]
}

fn forecast_columns() -> Vec<Field> {
    vec![
        f("sensor_id", "text", "the sensor"),
        f("forecast_for", TS, "the hour forecast"),
        f(
            "based_on_hour",
            TS,
            "the last hour of readings the forecast used",
        ),
        f("pm2_5", F8, "forecast hourly mean PM2.5, ug/m3"),
        f("model_name", "text", "registered model"),
        f("model_version", "text", "its version"),
        f("model_kind", "text", "boosting, forest, linear..."),
        f("made_at", TS, "when it was served"),
        f("hours_ahead", I2, "forecast_for - based_on_hour, hours"),
        f(
            "pm2_5_lower",
            F8,
            "lower bound of the prediction interval (NULL: none)",
        ),
        f("pm2_5_upper", F8, "upper bound of the prediction interval"),
    ]
}

pub fn tables() -> Vec<Table> {
    let mut flagged = readings_columns();
    flagged.push(f("flag_names", "text[]", "the names of the flags set"));
    let mut errors: Vec<Field> = forecast_columns()
        .into_iter()
        .filter(|c| !matches!(c.name, "based_on_hour" | "pm2_5"))
        .collect();
    // The view's own columns sit between the forecast's and the interval's.
    let tail = errors.split_off(6);
    errors.extend([
        f("forecast", F8, "forecasts.pm2_5"),
        f(
            "actual",
            F8,
            "mean cleaned PM2.5 of the readings in forecast_for's hour (NULL until it has readings)",
        ),
        f("error", F8, "forecast - actual"),
    ]);
    errors.extend(tail);
    vec![
        Table {
            name: "readings",
            kind: TableKind::Table,
            about: "One row per reading, cleaned and enriched; first write wins, so a \
                    redelivery changes nothing.",
            key: &["sensor_id", "ts"],
            time_column: Some("ts"),
            columns: readings_columns(),
        },
        Table {
            name: "readings_flagged",
            kind: TableKind::View,
            about: "readings with the names of their flags.",
            key: &[],
            time_column: None,
            columns: flagged,
        },
        Table {
            name: "quality_flags",
            kind: TableKind::Table,
            about: "The quality flags' bits and names.",
            key: &["bit"],
            time_column: None,
            columns: vec![
                f("bit", I4, "the flag's bit in readings.flags"),
                f("name", "text", "its name (negative, out_of_range...)"),
            ],
        },
        Table {
            name: "daily_sensor_stats",
            kind: TableKind::Table,
            about: "Per sensor and UTC day: coverage, means and maxima. Recomputed \
                    idempotently by `stream-cleaner daily`.",
            key: &["sensor_id", "day"],
            time_column: Some("day"),
            columns: vec![
                f("sensor_id", "text", "the sensor"),
                f("day", "date", "UTC day"),
                f("n_readings", I4, "readings that day"),
                f("n_flagged", I4, "readings with a flag other than missing"),
                f("hours_covered", I4, "hours with at least one reading"),
                f("completeness", F8, "hours_covered / 24"),
                f("pm2_5_mean", F8, "mean cleaned PM2.5"),
                f("pm10_mean", F8, "mean cleaned PM10"),
                f("no2_mean", F8, "mean cleaned NO2"),
                f("pm2_5_max", F8, "highest cleaned PM2.5"),
                f("pm10_max", F8, "highest cleaned PM10"),
                f("no2_max", F8, "highest cleaned NO2"),
                f("aqi_max", I2, "highest US AQI"),
                f("computed_at", TS, "when it was computed"),
            ],
        },
        Table {
            name: "daily_quality",
            kind: TableKind::Table,
            about: "Per sensor of the fleet (seen in the 7 days up to the day's end, so a \
                    silent sensor shows with coverage 0) and UTC day: the data-quality \
                    summary. Recomputed idempotently by `stream-cleaner daily`.",
            key: &["sensor_id", "day"],
            time_column: Some("day"),
            columns: vec![
                f("sensor_id", "text", "the sensor"),
                f("day", "date", "UTC day"),
                f("n_readings", I4, "readings that day"),
                f("hours_covered", I4, "hours with at least one reading"),
                f("coverage", F8, "hours_covered / 24"),
                f("n_flagged", I4, "readings with a flag other than missing"),
                f(
                    "flag_counts",
                    "jsonb",
                    "readings per flag name seen that day",
                ),
                f("n_anomalies", I4, "anomaly episodes that started that day"),
                f("n_critical", I4, "those of severity critical"),
                f("computed_at", TS, "when it was computed"),
            ],
        },
        Table {
            name: "anomalies",
            kind: TableKind::Table,
            about: "One row per anomaly episode (the `anomalies` message), upserted: an open \
                    row follows its later events, a closed row is final.",
            key: &["id"],
            time_column: Some("start_ts"),
            columns: vec![
                f(
                    "id",
                    "text",
                    "stable id of (sensor, pollutant, kind, start)",
                ),
                f("sensor_id", "text", "the sensor"),
                f("pollutant", "text", "pm2_5, pm10, no2, NULL for silence"),
                f("kind", "text", "outlier, shift, drift, spike, silence..."),
                f("detector", "text", "the detector that raised it"),
                f("status", "text", "open or closed"),
                f("start_ts", TS, "first point"),
                f("end_ts", TS, "last point so far"),
                f("points", I4, "firing points"),
                f("score", F8, "how far from normal, in the detector's unit"),
                f("severity", "text", "info, warning, critical"),
                f("observed", F8, "value at the worst point"),
                f("expected", F8, "what was expected there"),
                f("explanation", "text", "one sentence a person can act on"),
                f("schema_version", I2, "of the anomalies message"),
                f("detected_at", TS, "when the row was first written"),
                f("updated_at", TS, "when it was last updated"),
            ],
        },
        Table {
            name: "pollution_episodes",
            kind: TableKind::Table,
            about: "Bad air the network saw (never a sensor fault): one row per episode, \
                    inserted when it opens, final when it closes.",
            key: &["id"],
            time_column: Some("start_ts"),
            columns: vec![
                f("id", "text", "stable id of the episode"),
                f("status", "text", "open or closed"),
                f("start_ts", TS, "first hour"),
                f("end_ts", TS, "last hour so far"),
                f("peak_aqi", I2, "highest US AQI"),
                f("peak_category", "text", "its category"),
                f(
                    "peak_share",
                    F8,
                    "largest share of the reporting sensors at or above the threshold",
                ),
                f("sensors", "text[]", "the sensors that saw it"),
                f("centroid_lat", F8, "centre of those sensors"),
                f("centroid_lon", F8, "centre of those sensors"),
                f("radius_km", F8, "their spread around it"),
                f("explanation", "text", "one sentence"),
                f("detected_at", TS, "when the row was first written"),
                f("updated_at", TS, "when it was last updated"),
            ],
        },
        Table {
            name: "forecasts",
            kind: TableKind::Table,
            about: "Every forecast predict-api served, one row per horizon (first answer \
                    kept), written off the request path.",
            key: &[
                "sensor_id",
                "forecast_for",
                "hours_ahead",
                "model_name",
                "model_version",
            ],
            time_column: Some("made_at"),
            columns: forecast_columns(),
        },
        Table {
            name: "forecast_errors",
            kind: TableKind::View,
            about: "Each forecast against what was then measured: the Model dashboard.",
            key: &[],
            time_column: None,
            columns: errors,
        },
    ]
}

pub fn models() -> Vec<Model> {
    vec![Model {
        name: "airq-pm25-1h",
        about: "Hourly mean PM2.5 of a sensor 1 to 24 hours ahead, with 90 % prediction \
                intervals (artifact `model.json`: the features, the one-hour model, the \
                direct models per horizon, the sensors' locations).",
        aliases: vec![
            f(
                "staging",
                "",
                "the best candidate of the last `trainer train`",
            ),
            f(
                "production",
                "",
                "what predict-api serves: moved by `trainer evaluate` when staging beats it \
                 and persistence at every horizon",
            ),
        ],
    }]
}

pub fn archive() -> Archive {
    Archive {
        database: "airq",
        collection: "raw_messages",
        about: "Every raw_data message, valid or not, exactly as received (compose only): \
                what `raw-archive replay` publishes again after a rule change.",
        fields: vec![
            f(
                "_id",
                "string",
                "topic/partition/offset: archiving a redelivery again is a no-op",
            ),
            f(
                "kafka",
                "object",
                "topic, partition, offset, key, timestamp of the message",
            ),
            f("received_at", "date", "when the archiver read it"),
            f(
                "valid",
                "bool",
                "the cleaner's validation at archiving time",
            ),
            f(
                "reason",
                "string",
                "why it was invalid (dead-letter reason); absent when valid",
            ),
            f(
                "detail",
                "string",
                "what exactly was wrong; absent when valid",
            ),
            f(
                "sensor_id",
                "string",
                "from the payload when it has one, else the key",
            ),
            f("ts", "date", "the reading's timestamp, when parseable"),
            f(
                "payload",
                "string or binary",
                "the message body as received",
            ),
        ],
        indexes: &["{sensor_id: 1, ts: 1}", "{ts: 1}"],
    }
}
