"""Real servers for the Python-side tests (the DAGs in airflow/tests, the compose stack and
the Grafana dashboards in tests/deploy): the stack's PostgreSQL (a database per test),
Kafka-protocol broker (topics and a consumer group per test), MLflow (an experiment and a model
per test), the platform's binaries (``AIRQ_BIN_DIR``, default target/debug) and Airflow 3
itself. Run through ``make test`` (``scripts/stack.sh env``); each test folder's conftest.py
puts this folder on ``sys.path``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "airflow" / "dags"))
BIN = Path(os.environ.get("AIRQ_BIN_DIR", ROOT / "target" / "debug"))
PG = os.environ.get("AIRQ_TEST_PG_URL", "postgres://postgres@127.0.0.1:55432/postgres")
BROKERS = os.environ.get("AIRQ_TEST_BROKERS", "127.0.0.1:19092")
MLFLOW = os.environ.get("AIRQ_TEST_MLFLOW_URL", "http://127.0.0.1:5500")
FIXTURE = ROOT / "tests" / "fixtures" / "beijing_prsa"


def psql(url: str, sql: str) -> str:
    out = subprocess.run(["psql", url, "-XAtq", "-v", "ON_ERROR_STOP=1", "-c", sql],
                         capture_output=True, text=True, check=True)
    return out.stdout.strip()


class Platform:
    """One test's slice of the platform: its database, topics, consumer group, MLflow
    experiment and model, and a running stream-cleaner on them."""

    def __init__(self) -> None:
        self.id = uuid.uuid4().hex[:12]
        self.db = f"airq_dag_{self.id}"
        psql(PG, f"CREATE DATABASE {self.db}")
        self.url = PG.rsplit("/", 1)[0] + "/" + self.db
        self.group = f"cleaner_{self.id}"
        self.env = {
            "AIRQ_BIN_DIR": str(BIN),
            "AIRQ__DATABASE__URL": self.url,
            "AIRQ__KAFKA__BROKERS": BROKERS,
            "AIRQ__CLEANER__GROUP_ID": self.group,
            "AIRQ__KAFKA__TOPICS__RAW": f"raw_{self.id}",
            "AIRQ__KAFKA__TOPICS__PROCESSED": f"processed_{self.id}",
            "AIRQ__KAFKA__TOPICS__ANOMALIES": f"anomalies_{self.id}",
            "AIRQ__KAFKA__TOPICS__DEAD_LETTER": f"dlq_{self.id}",
            "AIRQ__MLFLOW__URL": MLFLOW,
            "AIRQ__MLFLOW__EXPERIMENT": f"exp-{self.id}",
            "AIRQ__MLFLOW__MODEL": f"model-{self.id}",
            "AIRQ__TRAIN__FOREST__TREES": "10",
            "AIRQ__TRAIN__BOOSTING__ROUNDS": "30",
            "AIRQ__EVALUATE__WINDOW_DAYS": "3",
            "AIRQ_BEIJING_DIR": str(FIXTURE),
            "RUST_LOG": "warn",
        }
        self.binary("stream-cleaner", "migrate")
        self.cleaner_log = Path(os.environ.get("TMPDIR", "/tmp")) / f"airq-cleaner-{self.id}.log"
        with self.cleaner_log.open("wb") as log:
            self.cleaner = subprocess.Popen([str(BIN / "stream-cleaner"), "run"],
                                            env={**os.environ, **self.env, "RUST_LOG": "info", "NO_COLOR": "1"},
                                            stdout=log, stderr=subprocess.STDOUT)
        self.wait_cleaner_started()

    def binary(self, name: str, *args: str) -> str:
        out = subprocess.run([str(BIN / name), *args], env={**os.environ, **self.env},
                             capture_output=True, text=True)
        assert out.returncode == 0, f"{name} {args}: {out.stderr[-2000:]}"
        return out.stdout

    def sql(self, query: str) -> str:
        return psql(self.url, query)

    def wait_rows(self, n: int, timeout: float = 180) -> int:
        deadline = time.time() + timeout
        got = 0
        while time.time() < deadline:
            got = int(self.sql("SELECT count(*) FROM readings"))
            if got >= n:
                return got
            time.sleep(0.5)
        return got

    def wait_cleaner_started(self, timeout: float = 90) -> None:
        """Until the cleaner has its topics and consumer (its "started" line): what a test
        publishes then never races its start."""
        deadline = time.time() + timeout
        while time.time() < deadline and self.cleaner.poll() is None:
            if "stream-cleaner started" in self.cleaner_log.read_text(errors="replace"):
                return
            time.sleep(0.2)
        raise AssertionError(f"the cleaner did not start: {self.cleaner_state()}")

    def cleaner_state(self) -> str:
        """What the running cleaner did, for an assertion's message."""
        status = "running" if self.cleaner.poll() is None else f"exited with {self.cleaner.returncode}"
        tail = self.cleaner_log.read_text(errors="replace").splitlines()[-40:]
        return f"stream-cleaner {status}; its log ends:\n" + "\n".join(tail)

    def tables(self) -> dict[str, str]:
        """Every row of the tables a day's processing writes, without the times of writing."""
        return {
            "readings": self.sql("SELECT md5(string_agg(t::text, '|' ORDER BY sensor_id, ts)) FROM "
                                 "(SELECT sensor_id, ts, pm2_5, pm10, no2, flags, aqi FROM readings) t"),
            "daily_sensor_stats": self.sql(
                "SELECT string_agg(concat_ws(',', sensor_id, day, n_readings, n_flagged, hours_covered, "
                "round(pm2_5_mean::numeric, 6)), '|' ORDER BY day, sensor_id) FROM daily_sensor_stats"),
            "daily_quality": self.sql(
                "SELECT string_agg(concat_ws(',', sensor_id, day, n_readings, hours_covered, n_flagged, "
                "flag_counts::text, n_anomalies), '|' ORDER BY day, sensor_id) FROM daily_quality"),
        }

    def close(self) -> None:
        self.cleaner.send_signal(signal.SIGTERM)
        try:
            self.cleaner.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.cleaner.kill()
        psql(PG, f"DROP DATABASE IF EXISTS {self.db} WITH (FORCE)")
        self.cleaner_log.unlink(missing_ok=True)


def airflow(*args: str, env: dict[str, str] | None = None, timeout: float = 900) -> subprocess.CompletedProcess:
    """The Airflow CLI of the stack's virtualenv."""
    return subprocess.run([os.environ["AIRQ_AIRFLOW"], *args], env={**os.environ, **(env or {})},
                          capture_output=True, text=True, timeout=timeout)


def mlflow_runs(experiment: str) -> list[dict]:
    import requests

    r = requests.get(f"{MLFLOW}/api/2.0/mlflow/experiments/get-by-name",
                     params={"experiment_name": experiment}, timeout=10)
    if r.status_code == 404 or "RESOURCE_DOES_NOT_EXIST" in r.text:
        return []
    exp = r.json()["experiment"]["experiment_id"]
    r = requests.post(f"{MLFLOW}/api/2.0/mlflow/runs/search",
                      json={"experiment_ids": [exp], "max_results": 100}, timeout=10)
    return r.json().get("runs", [])


def tags(run: dict) -> dict[str, str]:
    return {t["key"]: t["value"] for t in run["data"].get("tags", [])}


def params(run: dict) -> dict[str, str]:
    return {p["key"]: p["value"] for p in run["data"].get("params", [])}
