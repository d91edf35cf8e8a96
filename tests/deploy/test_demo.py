"""scripts/demo.sh (`make demo`) on the platform as `make run` starts it (scripts/services.sh:
cleaner, detector, predict-api and the live fleet), on this test's database, topics and model,
with the Beijing fixture as the data: it loads the data, trains a model (which the gate keeps out of
production on three days: the script stops, saying so), and once the model is promoted by hand it
runs through, forecasting and raising the injected fault's alert."""

from __future__ import annotations

import os
import socket
import subprocess
import time
import uuid
from pathlib import Path

import requests
from airq_platform import BIN, BROKERS, FIXTURE, MLFLOW, PG, ROOT, psql


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_demo(env: dict[str, str], logs: Path, ok_expected: bool = True) -> str:
    """scripts/demo.sh's output; when it does not end as expected (or times out), the
    assertion shows it with the services' logs."""
    try:
        out = subprocess.run([str(ROOT / "scripts" / "demo.sh")], env=env, capture_output=True,
                             text=True, timeout=600)
        ok, text = out.returncode == 0, f"{out.stdout}\n{out.stderr}"
    except subprocess.TimeoutExpired as e:
        ok, text = False, f"timed out: {e.stdout}\n{e.stderr}"
    if ok != ok_expected:
        tails = "\n".join(f"--- {p.name}: {p.read_text(errors='replace')[-2000:]}"
                          for p in sorted(logs.glob("*.log")))
        raise AssertionError(f"{text}\n{tails}")
    return text


def test_the_demo_script_prepares_and_checks_every_step(tmp_path):
    run_id = uuid.uuid4().hex[:12]
    db = f"airq_demo_{run_id}"
    psql(PG, f"CREATE DATABASE {db}")
    port = free_port()
    env = {
        **os.environ,
        "AIRQ_BIN_DIR": str(BIN),
        "AIRQ_STATE_DIR": str(tmp_path),
        "AIRQ__DATABASE__URL": PG.rsplit("/", 1)[0] + "/" + db,
        "AIRQ__KAFKA__BROKERS": BROKERS,
        "AIRQ__KAFKA__TOPICS__RAW": f"raw_{run_id}",
        "AIRQ__KAFKA__TOPICS__PROCESSED": f"processed_{run_id}",
        "AIRQ__KAFKA__TOPICS__ANOMALIES": f"anomalies_{run_id}",
        "AIRQ__KAFKA__TOPICS__DEAD_LETTER": f"dlq_{run_id}",
        "AIRQ__CLEANER__GROUP_ID": f"cleaner_{run_id}",
        "AIRQ__DETECTOR__GROUP_ID": f"detector_{run_id}",
        "AIRQ__MLFLOW__URL": MLFLOW,
        "AIRQ__MLFLOW__MODEL": f"demo-{run_id}",
        "AIRQ__SERVER__ADDR": f"127.0.0.1:{port}",
        "AIRQ_BEIJING_DIR": str(FIXTURE),
        "AIRQ_DEMO_FROM": "2013-02-28",
        "AIRQ_DEMO_TO": "2013-03-04",
        "AIRQ_PREDICT_URL": f"http://127.0.0.1:{port}",
        "AIRQ_DEMO_LANDED_SECS": "240",
        "RUST_LOG": "info",
        "NO_COLOR": "1",
    }
    subprocess.run([str(BIN / "stream-cleaner"), "migrate"], env=env, check=True, timeout=120)
    services = [str(ROOT / "scripts" / "services.sh")]
    subprocess.run([*services, "start"], env={**env, "AIRQ__MLFLOW__POLL_SECS": "1"}, check=True,
                   timeout=60)
    # As on a platform that runs: the cleaner consumes before the demo publishes.
    deadline = time.time() + 90
    log = tmp_path / "logs" / "stream-cleaner.log"
    while time.time() < deadline and "stream-cleaner started" not in (
            log.read_text(errors="replace") if log.exists() else ""):
        time.sleep(0.5)
    # The trainer's own settings (each service refuses keys it does not know), small for CI.
    env.update({
        "AIRQ__MLFLOW__EXPERIMENT": f"demo-{run_id}",
        "AIRQ__TRAIN__FOREST__TREES": "10",
        "AIRQ__TRAIN__BOOSTING__ROUNDS": "30",
        "AIRQ__EVALUATE__WINDOW_DAYS": "1",
    })
    try:
        # Three days of data: the gate keeps the model out of production (persistence wins
        # at 3 h), and the script stops there, saying so and how to show a model anyway.
        out = run_demo(env, tmp_path / "logs", ok_expected=False)
        stored = int(psql(env["AIRQ__DATABASE__URL"],
                          "SELECT count(*) FROM readings WHERE sensor_id LIKE 'bj\\_%'"))
        assert f"stored: {stored} readings" in out and stored >= 200, out
        assert f"trained: demo-{run_id} version 1 (staging)" in out, out
        assert "evaluate kept version 1 out of production" in out, out

        # The presenter promotes it by hand, as the message says; the demo runs through, with
        # the data and the model found in place.
        requests.post(f"{MLFLOW}/api/2.0/mlflow/registered-models/alias", timeout=10,
                      json={"name": f"demo-{run_id}", "alias": "production", "version": "1"}
                      ).raise_for_status()
        out = run_demo(env, tmp_path / "logs")
        assert f"already stored: {stored} readings" in out, out
        assert f"demo-{run_id} version 1 is in production" in out, out
        assert '"pm2_5"' in out and '"horizons"' in out, out
        assert "alert: " in out, out
        for url in (f"http://127.0.0.1:{port}/docs", f"http://127.0.0.1:{port}/catalog",
                    f"{MLFLOW}/#/models/demo-{run_id}", "http://127.0.0.1:8080"):
            assert url in out, url
    finally:
        subprocess.run([*services, "stop"], env=env, timeout=120)
        psql(PG, f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
        storage = os.environ.get("AIRQ_KAFKA_STORAGE", "")
        if storage.startswith("postgres"):
            psql(storage, f"DELETE FROM topic WHERE name LIKE '%{run_id}'")
