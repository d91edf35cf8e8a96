"""The Grafana dashboards of airq, written once, here: `python grafana/generate.py` writes
grafana/dashboards/*.json (provisioned by grafana/provisioning/). A test regenerates them and
fails when a committed file differs, and runs every panel's SQL against the real migrated
database with data from the real pipeline (tests/deploy/test_grafana.py).

Each panel names the columns its visualisation reads (`columns`), which that test checks.
Standard library only: no dashboard library in the project's pinned environments fits better
than these few dataclasses, and the JSON is Grafana's own model (schemaVersion 41)."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

DATASOURCE = {"type": "grafana-postgresql-datasource", "uid": "airq-pg"}
OUT = Path(__file__).resolve().parent / "dashboards"
# US AQI category colours (EPA), for the map and the AQI fields.
AQI_STEPS = [
    {"color": "#00e400", "value": None},
    {"color": "#ffff00", "value": 51},
    {"color": "#ff7e00", "value": 101},
    {"color": "#ff0000", "value": 151},
    {"color": "#8f3f97", "value": 201},
    {"color": "#7e0023", "value": 301},
]


@dataclass
class Panel:
    title: str
    kind: str  # Grafana panel type: timeseries, table, geomap, stat, barchart
    sql: str
    columns: list[str]
    fmt: str = "table"  # or time_series
    w: int = 12
    h: int = 8
    description: str = ""
    unit: str = ""
    options: dict = field(default_factory=dict)
    thresholds: list[dict] | None = None


@dataclass
class Dashboard:
    uid: str
    title: str
    description: str
    panels: list[Panel]
    time_from: str = "now-24h"
    variables: list[dict] = field(default_factory=list)
    annotations: list[dict] = field(default_factory=list)


def sensor_variable() -> dict:
    return {
        "name": "sensor",
        "label": "Sensor",
        "type": "query",
        "datasource": DATASOURCE,
        "query": "SELECT sensor_id FROM readings WHERE $__timeFilter(ts) GROUP BY sensor_id ORDER BY sensor_id",
        "definition": "sensors with readings in the time range",
        "refresh": 2,
        "sort": 1,
        "includeAll": False,
        "multi": False,
    }


def anomaly_annotation() -> dict:
    return {
        "name": "Anomalies",
        "enable": True,
        "iconColor": "red",
        "datasource": DATASOURCE,
        "target": {
            "rawQuery": True,
            "editorMode": "code",
            "format": "table",
            "rawSql": (
                "SELECT start_ts AS time, end_ts AS timeend,\n"
                "       kind || coalesce(' ' || pollutant, '') || ' (' || severity || '): ' || explanation AS text,\n"
                "       kind AS tags\n"
                "FROM anomalies\n"
                "WHERE sensor_id = '$sensor' AND $__timeFilter(start_ts)\n"
                "ORDER BY start_ts"
            ),
        },
        "columns": ["time", "timeend", "text", "tags"],
    }


OVERVIEW = Dashboard(
    uid="airq-overview",
    title="airq / Overview",
    description="The fleet now: each sensor's latest reading in the time range, its US AQI and EEA band, and how fresh the data is.",
    panels=[
        Panel(
            "Sensors by current US AQI", "geomap",
            "SELECT DISTINCT ON (sensor_id) sensor_id, lat, lon, aqi, aqi_category, ts AS last_reading\n"
            "FROM readings\nWHERE $__timeFilter(ts) AND aqi IS NOT NULL\nORDER BY sensor_id, ts DESC",
            ["sensor_id", "lat", "lon", "aqi"], w=14, h=12,
            description="Latest reading with an AQI per sensor in the time range, coloured by EPA category.",
            thresholds=AQI_STEPS,
            options={
                "view": {"id": "fit", "lat": 0, "lon": 0, "zoom": 2},
                "controls": {"showZoom": True, "mouseWheelZoom": True},
                "basemap": {"type": "default", "name": "Basemap"},
                "layers": [{
                    "type": "markers", "name": "sensors",
                    "location": {"mode": "coords", "latitude": "lat", "longitude": "lon"},
                    "config": {
                        "size": {"fixed": 8},
                        "color": {"field": "aqi", "fixed": "green"},
                        "text": {"field": "sensor_id", "mode": "field"},
                        "showLegend": True,
                    },
                    "tooltip": True,
                }],
            },
        ),
        Panel(
            "Current AQI and EAQI per sensor", "table",
            "SELECT DISTINCT ON (sensor_id) sensor_id, ts AS last_reading, aqi, aqi_category, aqi_dominant,\n"
            "       eaqi_band, round(nowcast_pm2_5::numeric, 1) AS nowcast_pm2_5, round(pm2_5::numeric, 1) AS pm2_5\n"
            "FROM readings\nWHERE $__timeFilter(ts)\nORDER BY sensor_id, ts DESC",
            ["sensor_id", "last_reading", "aqi", "aqi_category", "eaqi_band"], w=10, h=12,
            thresholds=AQI_STEPS,
        ),
        Panel(
            "Data freshness", "table",
            "SELECT sensor_id, max(ts) AS last_reading, max(ingested_at) AS last_ingested,\n"
            "       round(extract(epoch FROM now() - max(ingested_at)))::bigint AS seconds_since_ingest,\n"
            "       count(*) AS readings_in_range\n"
            "FROM readings\nWHERE $__timeFilter(ts)\nGROUP BY sensor_id\nORDER BY seconds_since_ingest DESC",
            ["sensor_id", "last_reading", "seconds_since_ingest"], w=12,
            description="When each sensor's newest reading was stored; a growing age means a silent sensor or a stalled cleaner.",
        ),
        Panel(
            "Readings stored per minute", "timeseries",
            "SELECT $__timeGroupAlias(ingested_at, 1m), count(*) AS readings\n"
            "FROM readings\nWHERE $__timeFilter(ingested_at)\nGROUP BY 1\nORDER BY 1",
            ["time", "readings"], fmt="time_series", w=12,
            description="Ingest throughput of the stream-cleaner (by time of storage).",
        ),
    ],
)

SENSOR = Dashboard(
    uid="airq-sensor",
    title="airq / Sensor",
    description="One sensor: cleaned and raw values, NowCast and AQI, its quality flags, and its anomalies as annotations.",
    variables=[sensor_variable()],
    annotations=[anomaly_annotation()],
    panels=[
        Panel(
            "Pollutants (cleaned, ug/m3)", "timeseries",
            "SELECT ts AS time, pm2_5, pm10, no2\nFROM readings\n"
            "WHERE sensor_id = '$sensor' AND $__timeFilter(ts)\nORDER BY ts",
            ["time", "pm2_5", "pm10", "no2"], fmt="time_series", w=24, unit="conmgm3",
        ),
        Panel(
            "NowCast and US AQI", "timeseries",
            "SELECT ts AS time, nowcast_pm2_5, nowcast_pm10, aqi\nFROM readings\n"
            "WHERE sensor_id = '$sensor' AND $__timeFilter(ts)\nORDER BY ts",
            ["time", "nowcast_pm2_5", "nowcast_pm10", "aqi"], fmt="time_series",
        ),
        Panel(
            "Quality flags", "timeseries",
            "SELECT $__timeGroupAlias(r.ts, $__interval), q.name AS metric, count(*) AS value\n"
            "FROM readings r JOIN quality_flags q ON r.flags & q.bit <> 0\n"
            "WHERE r.sensor_id = '$sensor' AND $__timeFilter(r.ts)\nGROUP BY 1, 2\nORDER BY 1",
            ["time", "metric", "value"], fmt="time_series",
            description="Readings per quality flag (a reading can carry several).",
            options={"drawStyle": "bars"},
        ),
        Panel(
            "PM2.5 as received vs cleaned", "timeseries",
            "SELECT ts AS time, pm2_5_raw AS received, pm2_5 AS cleaned\nFROM readings\n"
            "WHERE sensor_id = '$sensor' AND $__timeFilter(ts)\nORDER BY ts",
            ["time", "received", "cleaned"], fmt="time_series", w=24,
            description="Where the two differ, the cleaner invalidated the value (its flags say why).",
        ),
    ],
)

ANOMALIES = Dashboard(
    uid="airq-anomalies",
    title="airq / Anomalies",
    description="What the anomaly-detector raised: by kind and severity over time, open vs closed, per sensor, and each event explained.",
    panels=[
        Panel(
            "Anomalies by kind", "timeseries",
            "SELECT $__timeGroupAlias(start_ts, $__interval), kind AS metric, count(*) AS value\n"
            "FROM anomalies\nWHERE $__timeFilter(start_ts)\nGROUP BY 1, 2\nORDER BY 1",
            ["time", "metric", "value"], fmt="time_series", options={"drawStyle": "bars", "stacking": "normal"},
        ),
        Panel(
            "Anomalies by severity", "timeseries",
            "SELECT $__timeGroupAlias(start_ts, $__interval), severity AS metric, count(*) AS value\n"
            "FROM anomalies\nWHERE $__timeFilter(start_ts)\nGROUP BY 1, 2\nORDER BY 1",
            ["time", "metric", "value"], fmt="time_series", options={"drawStyle": "bars", "stacking": "normal"},
        ),
        Panel(
            "Open vs closed", "stat",
            "SELECT count(*) FILTER (WHERE status = 'open') AS open,\n"
            "       count(*) FILTER (WHERE status = 'closed') AS closed\n"
            "FROM anomalies\nWHERE $__timeFilter(start_ts)",
            ["open", "closed"], w=6,
        ),
        Panel(
            "Pollution episodes (not faults)", "stat",
            "SELECT count(*) AS episodes, coalesce(max(peak_aqi), 0) AS peak_aqi,\n"
            "       coalesce(max(cardinality(sensors)), 0) AS most_sensors\n"
            "FROM pollution_episodes\nWHERE $__timeFilter(start_ts)",
            ["episodes", "peak_aqi", "most_sensors"], w=6,
            description="The air was bad and the network saw it (anomaly-detector, table pollution_episodes): never counted as a sensor fault.",
        ),
        Panel(
            "Per sensor", "table",
            "SELECT sensor_id, count(*) AS total,\n"
            "       count(*) FILTER (WHERE severity = 'critical') AS critical,\n"
            "       count(*) FILTER (WHERE status = 'open') AS open,\n"
            "       string_agg(DISTINCT kind, ', ') AS kinds\n"
            "FROM anomalies\nWHERE $__timeFilter(start_ts)\nGROUP BY sensor_id\nORDER BY total DESC",
            ["sensor_id", "total", "critical", "open", "kinds"], w=12,
        ),
        Panel(
            "Events", "table",
            "SELECT start_ts, end_ts, sensor_id, pollutant, kind, severity, status,\n"
            "       round(score::numeric, 2) AS score, round(observed::numeric, 1) AS observed,\n"
            "       round(expected::numeric, 1) AS expected, explanation\n"
            "FROM anomalies\nWHERE $__timeFilter(start_ts)\nORDER BY start_ts DESC\nLIMIT 500",
            ["start_ts", "sensor_id", "kind", "severity", "status", "explanation"], w=24, h=12,
        ),
    ],
)

DAILY = Dashboard(
    uid="airq-daily",
    title="airq / Daily batch",
    description="The daily batch (stream-cleaner daily, the airq_daily DAG): statistics and coverage per sensor and day, and the days below 75 %.",
    time_from="now-30d",
    panels=[
        Panel(
            "Coverage per sensor (hours with data / 24)", "timeseries",
            "SELECT day::timestamptz AS time, sensor_id AS metric, coverage AS value\n"
            "FROM daily_quality\nWHERE day BETWEEN $__timeFrom()::date AND $__timeTo()::date\nORDER BY 1",
            ["time", "metric", "value"], fmt="time_series", w=24, unit="percentunit",
        ),
        Panel(
            "Days below 75 % completeness", "table",
            "SELECT day, sensor_id, round(completeness::numeric, 3) AS completeness, hours_covered, n_readings\n"
            "FROM daily_sensor_stats\n"
            "WHERE completeness < 0.75 AND day BETWEEN $__timeFrom()::date AND $__timeTo()::date\n"
            "ORDER BY day DESC, sensor_id",
            ["day", "sensor_id", "completeness"],
        ),
        Panel(
            "Data quality per day", "table",
            "SELECT day, sensor_id, round(coverage::numeric, 3) AS coverage, n_readings, n_flagged,\n"
            "       flag_counts::text AS flags, n_anomalies, n_critical\n"
            "FROM daily_quality\nWHERE day BETWEEN $__timeFrom()::date AND $__timeTo()::date\n"
            "ORDER BY day DESC, sensor_id",
            ["day", "sensor_id", "coverage", "flags", "n_anomalies"],
        ),
        Panel(
            "Daily statistics", "table",
            "SELECT day, sensor_id, n_readings, n_flagged, round(pm2_5_mean::numeric, 1) AS pm2_5_mean,\n"
            "       round(pm10_mean::numeric, 1) AS pm10_mean, round(no2_mean::numeric, 1) AS no2_mean,\n"
            "       round(pm2_5_max::numeric, 1) AS pm2_5_max, aqi_max\n"
            "FROM daily_sensor_stats\nWHERE day BETWEEN $__timeFrom()::date AND $__timeTo()::date\n"
            "ORDER BY day DESC, sensor_id",
            ["day", "sensor_id", "pm2_5_mean", "aqi_max"], w=24, h=10,
        ),
    ],
)

MODEL = Dashboard(
    uid="airq-model",
    title="airq / Model",
    description="The model predict-api serves, and how its forecasts compared with what happened (forecasts recorded by predict-api; actual: the hour's mean cleaned PM2.5).",
    time_from="now-7d",
    variables=[{
        "name": "sensor",
        "label": "Sensor",
        "type": "query",
        "datasource": DATASOURCE,
        "query": "SELECT sensor_id FROM forecasts WHERE $__timeFilter(forecast_for) GROUP BY sensor_id ORDER BY sensor_id",
        "definition": "sensors with forecasts in the time range",
        "refresh": 2, "sort": 1, "includeAll": False, "multi": False,
    }],
    panels=[
        Panel(
            "Model served", "table",
            "SELECT model_name, model_version, model_kind, max(made_at) AS last_served, count(*) AS forecasts\n"
            "FROM forecasts\nWHERE $__timeFilter(made_at)\nGROUP BY model_name, model_version, model_kind\n"
            "ORDER BY last_served DESC",
            ["model_name", "model_version", "model_kind", "last_served"], w=24, h=5,
            description="The newest row is the production model predict-api serves now (it swaps models when the registry's alias moves).",
        ),
        Panel(
            "Next 24 h: the newest forecasts of $sensor", "table",
            "SELECT DISTINCT ON (hours_ahead) hours_ahead, forecast_for, round(pm2_5::numeric, 1) AS pm2_5,\n"
            "       round(pm2_5_lower::numeric, 1) AS lower, round(pm2_5_upper::numeric, 1) AS upper, model_version\n"
            "FROM forecasts\n"
            "WHERE sensor_id = '$sensor'\n"
            "  AND based_on_hour = (SELECT max(based_on_hour) FROM forecasts WHERE sensor_id = '$sensor')\n"
            "ORDER BY hours_ahead, made_at DESC",
            ["hours_ahead", "forecast_for", "pm2_5", "lower", "upper"], w=24, h=9,
            description="The forecasts made from the sensor's newest hour, one per horizon a client asked "
                        "/predict for (`horizons`), with the prediction interval (90 % by default).",
        ),
        Panel(
            "Forecast vs actual (PM2.5, ug/m3, next hour)", "timeseries",
            "SELECT forecast_for AS time, forecast, pm2_5_lower AS lower, pm2_5_upper AS upper, actual\nFROM forecast_errors\n"
            "WHERE sensor_id = '$sensor' AND hours_ahead = 1 AND $__timeFilter(forecast_for)\nORDER BY 1",
            ["time", "forecast", "actual"], fmt="time_series", w=24, unit="conmgm3",
        ),
        Panel(
            "Error over time (next hour)", "timeseries",
            "SELECT $__timeGroupAlias(forecast_for, $__interval), avg(abs(error)) AS mae, sqrt(avg(error * error)) AS rmse\n"
            "FROM forecast_errors\nWHERE actual IS NOT NULL AND hours_ahead = 1 AND $__timeFilter(forecast_for)\nGROUP BY 1\nORDER BY 1",
            ["time", "mae", "rmse"], fmt="time_series", unit="conmgm3",
            description="All sensors, next-hour forecasts whose hour has readings.",
        ),
        Panel(
            "Error per model version and horizon", "table",
            "SELECT model_version, model_kind, hours_ahead, count(actual) AS scored,\n"
            "       round(avg(abs(error))::numeric, 2) AS mae, round(sqrt(avg(error * error))::numeric, 2) AS rmse,\n"
            "       round(avg(CASE WHEN actual BETWEEN pm2_5_lower AND pm2_5_upper THEN 1.0\n"
            "                      WHEN actual IS NOT NULL AND pm2_5_lower IS NOT NULL THEN 0.0 END)::numeric, 3) AS in_interval\n"
            "FROM forecast_errors\nWHERE $__timeFilter(forecast_for)\nGROUP BY model_version, model_kind, hours_ahead\n"
            "ORDER BY model_version, hours_ahead",
            ["model_version", "hours_ahead", "scored", "mae", "rmse", "in_interval"],
            description="in_interval: the share of scored forecasts whose actual lies inside their interval.",
        ),
    ],
)

DASHBOARDS = [OVERVIEW, SENSOR, ANOMALIES, DAILY, MODEL]


def target(sql: str, fmt: str) -> dict:
    return {"refId": "A", "datasource": DATASOURCE, "editorMode": "code", "rawQuery": True,
            "format": fmt, "rawSql": sql}


def panel_json(p: Panel, pid: int, x: int, y: int) -> dict:
    defaults: dict = {}
    if p.unit:
        defaults["unit"] = p.unit
    if p.thresholds:
        defaults["thresholds"] = {"mode": "absolute", "steps": p.thresholds}
        defaults["color"] = {"mode": "thresholds"}
    custom = {k: v for k, v in p.options.items() if k in ("drawStyle", "stacking")}
    if "stacking" in custom:
        custom["stacking"] = {"mode": custom["stacking"], "group": "A"}
    if custom:
        defaults["custom"] = custom
    options = {k: v for k, v in p.options.items() if k not in ("drawStyle", "stacking")}
    return {
        "id": pid,
        "type": p.kind,
        "title": p.title,
        "description": p.description,
        "datasource": DATASOURCE,
        "gridPos": {"x": x, "y": y, "w": p.w, "h": p.h},
        "targets": [target(p.sql, p.fmt)],
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": options,
        # Read by the SQL test: what the visualisation needs from the query.
        "airqColumns": p.columns,
    }


def dashboard_json(d: Dashboard) -> dict:
    panels, x, y, row_h = [], 0, 0, 0
    for i, p in enumerate(d.panels, start=1):
        if x + p.w > 24:
            x, y, row_h = 0, y + row_h, 0
        panels.append(panel_json(p, i, x, y))
        x, row_h = x + p.w, max(row_h, p.h)
    annotations = [{
        "builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"}, "enable": True,
        "hide": True, "iconColor": "rgba(0, 211, 255, 1)", "name": "Annotations & Alerts", "type": "dashboard",
    }] + [{k: v for k, v in a.items() if k != "columns"} | {"airqColumns": a["columns"]} for a in d.annotations]
    return {
        "uid": d.uid,
        "title": d.title,
        "description": d.description,
        "tags": ["airq"],
        "timezone": "utc",
        "schemaVersion": 41,
        "version": 1,
        "editable": False,
        "refresh": "30s",
        "time": {"from": d.time_from, "to": "now"},
        "templating": {"list": d.variables},
        "annotations": {"list": annotations},
        "panels": panels,
    }


def render() -> dict[str, str]:
    """File name -> JSON text of every dashboard."""
    return {f"{d.uid}.json": json.dumps(dashboard_json(d), indent=2, sort_keys=True) + "\n" for d in DASHBOARDS}


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else OUT
    out.mkdir(parents=True, exist_ok=True)
    for name, text in render().items():
        (out / name).write_text(text)
        print(out / name)


if __name__ == "__main__":
    main()
