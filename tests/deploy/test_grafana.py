"""Every Grafana query (panels, the sensor variables, the anomaly annotations), with Grafana's
macros expanded as its PostgreSQL data source expands them, runs on the real migrated database
after readings went through the real pipeline: sensor-sim -> raw_data -> stream-cleaner ->
processed_data -> anomaly-detector, then the daily batch, then a model trained by the trainer
(MLflow) and served by predict-api, whose answers it records. Each query must return the
columns its visualisation reads, and rows."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "grafana"))

import generate  # noqa: E402
from macros import dashboard_queries, expand  # noqa: E402
import requests  # noqa: E402
from airq_platform import BIN  # noqa: E402

START = datetime(2025, 3, 1, 12, tzinfo=timezone.utc)  # the first and last days are half covered
DAYS = 4
TICKS = DAYS * 144  # 3 sensors every 10 minutes


def columns_and_rows(url: str, sql: str) -> tuple[list[str], int]:
    """The result's column names (psql's \\gdesc) and its row count."""
    desc = subprocess.run(["psql", url, "-XAtq", "-v", "ON_ERROR_STOP=1", "-F", "\t"],
                          input=sql + "\n\\gdesc\n", capture_output=True, text=True)
    assert desc.returncode == 0, f"{desc.stderr}\n{sql}"
    names = [line.split("\t")[0] for line in desc.stdout.splitlines() if line]
    rows = subprocess.run(["psql", url, "-XAtq", "-v", "ON_ERROR_STOP=1", "-c",
                           f"SELECT count(*) FROM ({sql}) q"], capture_output=True, text=True)
    assert rows.returncode == 0, f"{rows.stderr}\n{sql}"
    return names, int(rows.stdout.strip())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_forecasts(platform) -> None:
    """A model trained on the pipeline's data, made production, served by predict-api, asked
    for forecasts of hours that then have readings: the forecasts table and its actuals."""
    end = START + timedelta(days=DAYS)
    snapshot = platform.binary("trainer", "extract", f"--from={START.isoformat()}",
                               f"--to={end.isoformat()}").strip().splitlines()[-1]
    platform.binary("trainer", "validate", f"--snapshot-run={snapshot}")
    version = platform.binary("trainer", "train", f"--snapshot-run={snapshot}").strip().splitlines()[-1]
    mlflow = platform.env["AIRQ__MLFLOW__URL"]
    r = requests.post(f"{mlflow}/api/2.0/mlflow/registered-models/alias", timeout=10,
                      json={"name": platform.env["AIRQ__MLFLOW__MODEL"], "alias": "production", "version": version})
    assert r.status_code == 200, r.text
    port = free_port()
    # predict-api reads [mlflow] url, model, alias, poll_secs: not the trainer's experiment.
    env = {k: v for k, v in {**os.environ, **platform.env}.items() if k != "AIRQ__MLFLOW__EXPERIMENT"}
    env.update({"AIRQ__SERVER__ADDR": f"127.0.0.1:{port}", "AIRQ__MLFLOW__POLL_SECS": "1"})
    api = subprocess.Popen([str(BIN / "predict-api")], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                           text=True)
    try:
        deadline, ready = time.time() + 60, False
        while time.time() < deadline and api.poll() is None and not ready:
            try:
                ready = requests.get(f"http://127.0.0.1:{port}/ready", timeout=2).status_code == 200
            except requests.ConnectionError:
                pass
            time.sleep(0.3)
        assert ready, f"predict-api not ready: {api.poll() is None and 'running' or api.stderr.read()[-2000:]}"
        sensors = platform.sql("SELECT string_agg(DISTINCT sensor_id, ',') FROM readings").split(",")
        served = 0
        for hour in (START + timedelta(days=2, hours=h) for h in range(6)):
            for sensor in sensors:
                rows = platform.sql(
                    "SELECT coalesce(json_agg(json_build_object('timestamp', ts, 'pm2_5', pm2_5, 'pm10', pm10, "
                    f"'no2', no2) ORDER BY ts), '[]') FROM readings WHERE sensor_id = '{sensor}' "
                    f"AND ts >= '{(hour - timedelta(hours=30)).isoformat()}' AND ts < '{(hour + timedelta(hours=1)).isoformat()}'")
                r = requests.post(f"http://127.0.0.1:{port}/predict", timeout=10,
                                  json={"sensor_id": sensor, "readings": json.loads(rows), "horizons": [1, 6, 24]})
                # The injected faults leave some hours without a valid PM2.5: those are a 422.
                assert r.status_code == 200 or "not enough recent data" in r.text, r.text
                served += r.status_code == 200
        assert served >= 9, f"{served} of 18 forecasts served"
        deadline = time.time() + 30
        # A row per answer and horizon (the next hour, 6 h, 24 h), each with its interval.
        while time.time() < deadline and int(platform.sql("SELECT count(*) FROM forecasts")) < 3 * served:
            time.sleep(0.3)
        assert platform.sql("SELECT count(*) FROM forecasts") == str(3 * served), "every served forecast is recorded"
        assert platform.sql("SELECT count(*) FROM forecasts WHERE pm2_5_lower <= pm2_5 AND pm2_5 <= pm2_5_upper") \
            == str(3 * served), "with its interval"
        assert platform.sql("SELECT string_agg(DISTINCT hours_ahead::text, ',') FROM forecasts") == "1,24,6"
        assert int(platform.sql("SELECT count(actual) FROM forecast_errors WHERE hours_ahead = 1")) == served, \
            "their hours have readings"
    finally:
        api.send_signal(signal.SIGTERM)
        api.wait(timeout=30)


def test_every_dashboard_query_runs_on_the_pipeline_s_data(platform):
    detector_env = {**os.environ, **platform.env, "AIRQ__DETECTOR__GROUP_ID": f"detector_{platform.id}"}
    detector = subprocess.Popen([str(BIN / "anomaly-detector"), "run"], env=detector_env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        # Faults often enough that two days raise anomalies of several kinds.
        faults = {"AIRQ__FAULTS__SPIKE": "0.03", "AIRQ__FAULTS__STUCK": "0.01", "AIRQ__FAULTS__DROPOUT": "0.005"}
        platform.env.update(faults)
        platform.binary("sensor-sim", "synthetic", "--sensors=3", f"--start={START.isoformat()}",
                        "--interval-secs=600", f"--ticks={TICKS}", "--seed=7")
        assert platform.wait_rows(3 * TICKS * 9 // 10) > 0, platform.cleaner_state()
        deadline = time.time() + 120
        while time.time() < deadline and int(platform.sql("SELECT count(*) FROM anomalies")) < 3:
            time.sleep(1)
        assert int(platform.sql("SELECT count(*) FROM anomalies")) >= 3, "the detector stored anomalies"
    finally:
        detector.send_signal(signal.SIGTERM)
        detector.wait(timeout=30)
    for d in range(DAYS + 1):
        platform.binary("stream-cleaner", "daily", f"--date={(START + timedelta(days=d)).date()}")
    serve_forecasts(platform)

    # The sensor dashboards' variable: a sensor with anomalies (the annotation) and forecasts.
    sensor = platform.sql("SELECT a.sensor_id FROM anomalies a JOIN forecasts f USING (sensor_id) "
                          "GROUP BY 1 ORDER BY count(DISTINCT a.id) DESC, 1 LIMIT 1")
    assert sensor, "no sensor has both anomalies and served forecasts"
    start, end = START - timedelta(days=1), datetime.now(timezone.utc) + timedelta(hours=1)
    checked = []
    for dashboard in (generate.dashboard_json(d) for d in generate.DASHBOARDS):
        for what, sql, wanted in dashboard_queries(dashboard):
            names, rows = columns_and_rows(platform.url, expand(sql, start, end, {"sensor": sensor}))
            assert set(wanted) <= set(names), f"{what}: returns {names}, its panel reads {wanted}"
            assert rows > 0, f"{what}: no rows on the pipeline's data"
            checked.append(what)
    assert len(checked) >= 24, checked
