"""The DAGs run for real: Airflow 3 runs their tasks, which run the platform's binaries on
the stack's PostgreSQL, broker and MLflow, with readings sent through raw_data and a running
stream-cleaner. ``airflow dags test`` for the daily DAG (one real DAG run in-process), and the
backfill triggered through Airflow's REST API and run by the scheduler of ``airflow
standalone`` started the way the README does (``scripts/airflow.sh``)."""

from __future__ import annotations

import csv
import json
import os
import signal
import socket
import subprocess
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import requests
from airq_platform import FIXTURE, ROOT, airflow, mlflow_runs, params, tags


def log_of(out: subprocess.CompletedProcess) -> str:
    return out.stdout + out.stderr


def test_a_param_with_shell_metacharacters_is_rejected_before_any_task_runs(tmp_path):
    marker = tmp_path / "pwned"
    experiment = f"exp-{uuid.uuid4().hex}"
    conf = {"start": f"2013-03-01; touch {marker}", "end": "2013-03-03", "source": "beijing"}
    out = airflow("dags", "test", "airq_backfill", "-c", json.dumps(conf),
                  env={"AIRQ__MLFLOW__EXPERIMENT": experiment})
    assert out.returncode != 0, log_of(out)[-3000:]
    assert "Invalid input for param start" in log_of(out), log_of(out)[-3000:]
    assert not marker.exists()
    assert mlflow_runs(experiment) == []


def test_the_daily_dag_waits_for_the_day_batches_it_and_retrains_on_held_out_data(platform):
    # 14 days of 3 sensors every 10 minutes through raw_data and the running cleaner.
    platform.binary("sensor-sim", "synthetic", "--sensors=3", "--start=2025-03-01T00:00:00Z",
                    "--interval-secs=600", "--ticks=2016", "--no-faults")
    assert platform.wait_rows(3 * 2016) == 3 * 2016, platform.cleaner_state()
    env = {**platform.env, "AIRQ_TRAIN_DAYS": "13"}

    out = airflow("dags", "test", "airq_daily", "2025-03-14", env=env)  # logical date 03-14: its interval is 03-13
    assert out.returncode == 0, log_of(out)[-4000:]
    log = log_of(out)
    assert "2025-03-13 is complete" in log
    assert "data quality 2025-03-13: 3 sensors" in log, "the quality summary is in the task log"
    assert platform.sql("SELECT count(*) FROM daily_sensor_stats WHERE day = '2025-03-13'") == "3"
    assert platform.sql("SELECT sum(n_readings) FROM daily_quality WHERE day = '2025-03-13'") == str(3 * 144)

    runs = mlflow_runs(platform.env["AIRQ__MLFLOW__EXPERIMENT"])
    by_step = {}
    for r in runs:
        by_step.setdefault(tags(r).get("airq.step"), []).append(r)
    # train: one run per candidate; search: the boosting candidate's 3 trials, its child runs.
    assert {k: len(v) for k, v in by_step.items()} == {
        "extract": 1, "validate": 1, "train": 4, "search": 3, "evaluate": 1}
    boosting = next(r for r in by_step["train"] if r["info"]["run_name"] == "gradient_boosting")
    assert all(tags(t)["mlflow.parentRunId"] == boosting["info"]["run_id"] for t in by_step["search"])
    assert all(r["info"]["status"] == "FINISHED" for r in runs)
    extract = params(by_step["extract"][0])
    assert (extract["from"], extract["to"]) == ("2025-03-01T00:00:00+00:00", "2025-03-14T00:00:00+00:00")
    ev = by_step["evaluate"][0]
    p = params(ev)
    assert p["train_window_start"] < p["candidate_test_from"] <= p["window_start"] < p["window_end"], p
    assert tags(ev)["airq.decision"] in ("promote", "keep") and p["reason"]
    version = tags(ev)["airq.staging_version"]
    alias = requests.get(f"{platform.env['AIRQ__MLFLOW__URL']}/api/2.0/mlflow/registered-models/alias",
                         params={"name": platform.env["AIRQ__MLFLOW__MODEL"], "alias": "production"},
                         timeout=10)
    if tags(ev)["airq.decision"] == "promote":
        assert alias.json()["model_version"]["version"] == version, p["reason"]

    # Rerunning the day rewrites the same rows.
    before = platform.tables()
    again = airflow("dags", "test", "airq_daily", "2025-03-14", env=env)  # logical date 03-14: its interval is 03-13
    assert again.returncode == 0, log_of(again)[-4000:]
    assert platform.tables() == before

    # The last day has no data past its end: the sensor fails at once (its grace period is
    # long over) and names the late sensors; nothing downstream runs.
    runs_before = len(mlflow_runs(platform.env["AIRQ__MLFLOW__EXPERIMENT"]))
    late = airflow("dags", "test", "airq_daily", "2025-03-15", env=env)
    text = log_of(late)
    assert "2025-03-14 is incomplete after the grace period: 3 of 3 sensors" in text, text[-4000:]
    sensors = platform.sql("SELECT string_agg(DISTINCT sensor_id, ',') FROM readings").split(",")
    assert all(s in text for s in sensors)
    assert len(mlflow_runs(platform.env["AIRQ__MLFLOW__EXPERIMENT"])) == runs_before


def fixture_readings(before: datetime) -> int:
    """Rows of the Beijing fixture before ``before`` (UTC) with at least one pollutant: what
    the platform stores (a row without any is dead-lettered)."""
    n = 0
    for f in (FIXTURE / "raw").glob("*.csv"):
        for r in csv.DictReader(f.open()):
            local = datetime(int(r["year"]), int(r["month"]), int(r["day"]), int(r["hour"]),
                             tzinfo=timezone(timedelta(hours=8)))
            if local < before and any(r[k] != "NA" for k in ("PM2.5", "PM10", "NO2")):
                n += 1
    return n


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Standalone:
    """``scripts/airflow.sh`` in its own Airflow home, with the test's platform env."""

    def __init__(self, home: Path, env: dict[str, str]):
        self.port = free_port()
        self.home = home
        self.url = f"http://127.0.0.1:{self.port}"
        home.mkdir(parents=True, exist_ok=True)
        self.log = (home / "standalone.log").open("w")
        self.proc = subprocess.Popen(
            [str(ROOT / "scripts" / "airflow.sh")],
            env={**os.environ, **env, "AIRQ_AIRFLOW_HOME": str(home), "AIRQ_AIRFLOW_PORT": str(self.port)},
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        self.token = None

    def wait_healthy(self, timeout: float = 300) -> dict:
        deadline = time.time() + timeout
        last = None
        while time.time() < deadline:
            assert self.proc.poll() is None, self.tail()
            try:
                r = requests.get(f"{self.url}/api/v2/monitor/health", timeout=5)
                last = r.json()
                if all(last.get(c, {}).get("status") == "healthy" for c in ("metadatabase", "scheduler")):
                    return last
            except (requests.RequestException, ValueError):
                pass
            time.sleep(2)
        raise AssertionError(f"not healthy: {last}\n{self.tail()}")

    def login(self) -> None:
        passwords = self.home / "simple_auth_manager_passwords.json.generated"
        deadline = time.time() + 60
        while not passwords.exists() and time.time() < deadline:
            time.sleep(1)
        user, password = next(iter(json.loads(passwords.read_text()).items()))
        r = requests.post(f"{self.url}/auth/token", json={"username": user, "password": password}, timeout=10)
        assert r.status_code in (200, 201), r.text
        self.token = r.json()["access_token"]

    def api(self, method: str, path: str, **kw) -> requests.Response:
        return requests.request(method, f"{self.url}/api/v2{path}",
                                headers={"Authorization": f"Bearer {self.token}"}, timeout=30, **kw)

    def trigger_and_wait(self, dag: str, conf: dict, timeout: float = 600,
                         diagnose=lambda: "") -> dict:
        r = self.api("POST", f"/dags/{dag}/dagRuns", json={"logical_date": None, "conf": conf})
        assert r.status_code in (200, 201), r.text
        run_id = r.json()["dag_run_id"]
        deadline = time.time() + timeout
        while time.time() < deadline:
            state = self.api("GET", f"/dags/{dag}/dagRuns/{run_id}").json()
            if state["state"] in ("success", "failed"):
                return state
            time.sleep(3)
        raise AssertionError(f"{dag} run {run_id} did not finish\n{self.tail()}\n{diagnose()}")

    def tail(self) -> str:
        self.log.flush()
        return (self.home / "standalone.log").read_text()[-4000:]

    def stop(self) -> None:
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)


def test_the_backfill_runs_through_the_scheduler_and_a_second_run_changes_nothing(platform, tmp_path):
    airflow_ui = Standalone(tmp_path / "airflow", platform.env)
    try:
        health = airflow_ui.wait_healthy()
        assert health["metadatabase"]["status"] == "healthy"
        airflow_ui.login()
        deadline = time.time() + 180
        dags = set()
        while time.time() < deadline and not {"airq_daily", "airq_backfill"} <= dags:
            dags = {d["dag_id"] for d in airflow_ui.api("GET", "/dags").json().get("dags", [])}
            time.sleep(2)
        assert {"airq_daily", "airq_backfill"} <= dags, airflow_ui.tail()
        assert airflow_ui.api("PATCH", "/dags/airq_backfill", json={"is_paused": False}).status_code == 200

        conf = {"start": "2013-02-28", "end": "2013-03-03", "source": "beijing", "retrain": False}
        run = airflow_ui.trigger_and_wait("airq_backfill", conf, diagnose=platform.cleaner_state)
        assert run["state"] == "success", airflow_ui.tail()
        expected = fixture_readings(datetime(2013, 3, 3, tzinfo=timezone.utc))
        assert platform.sql("SELECT count(*) FROM readings") == str(expected)
        days = platform.sql("SELECT string_agg(DISTINCT day::text, ',') FROM daily_sensor_stats")
        assert days == "2013-02-28,2013-03-01,2013-03-02"
        assert platform.sql("SELECT count(*) FROM daily_quality") == "9", "3 stations x 3 days"
        first = platform.tables()

        again = airflow_ui.trigger_and_wait("airq_backfill", conf, diagnose=platform.cleaner_state)
        assert again["state"] == "success", airflow_ui.tail()
        assert platform.tables() == first
    finally:
        airflow_ui.stop()
