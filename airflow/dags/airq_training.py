"""airq's training pipeline for Airflow 3: thin DAGs that run the trainer's steps.

- ``airq_daily_training``: every day, the last ``AIRQ_TRAIN_DAYS`` (30) days of readings:
  extract -> validate -> train -> evaluate (promote).
- ``airq_backfill_training``: on demand, any window (params ``from`` and ``to``, e.g. the Beijing
  history 2013-03-01..2017-03-01), with an optional ``test_from``.

Each step is one ``trainer`` subcommand and one MLflow run. ``extract`` prints the snapshot's run
id (its XCom); the later steps are given it, so a run trains on exactly what it validated.
With ``AIRQ_TRAINER_IMAGE`` set (docker compose) the steps run in that image with the
DockerOperator; otherwise the native ``trainer`` binary (``AIRQ_TRAINER_BIN``) runs with the
BashOperator. Configuration reaches the trainer through its ``AIRQ__...`` environment.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta

from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import DAG, Param

TRAINER = os.environ.get("AIRQ_TRAINER_BIN", "trainer")
IMAGE = os.environ.get("AIRQ_TRAINER_IMAGE")
DAYS = int(os.environ.get("AIRQ_TRAIN_DAYS", "30"))
SNAPSHOT = "{{ ti.xcom_pull(task_ids='extract') }}"
DEFAULTS = {"retries": 1, "retry_delay": timedelta(minutes=2)}


def trainer_env() -> dict[str, str]:
    """The trainer's configuration, passed through from the scheduler's environment."""
    return {k: v for k, v in os.environ.items() if k.startswith("AIRQ__") or k == "RUST_LOG"}


def step(task_id: str, args: str):
    """One trainer subcommand as a task."""
    if IMAGE:
        from airflow.providers.docker.operators.docker import DockerOperator

        return DockerOperator(
            task_id=task_id,
            image=IMAGE,
            command=f"trainer {args}",
            environment=trainer_env(),
            network_mode=os.environ.get("AIRQ_DOCKER_NETWORK", "airq"),
            auto_remove="success",
            do_xcom_push=True,
            retrieve_output=False,
        )
    return BashOperator(
        task_id=task_id,
        bash_command=f"{TRAINER} {args}",
        env=trainer_env(),
        append_env=True,
    )


def pipeline(extract_args: str, train_args: str = "") -> None:
    extract = step("extract", f"extract {extract_args}")
    validate = step("validate", f"validate --snapshot-run {SNAPSHOT}")
    train = step("train", f"train --snapshot-run {SNAPSHOT} {train_args}".strip())
    evaluate = step("evaluate", "evaluate")
    extract >> validate >> train >> evaluate


with DAG(
    dag_id="airq_daily_training",
    description="Daily: extract the last days of readings, validate, train, evaluate and promote",
    schedule="@daily",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULTS,
    tags=["airq", "ml"],
):
    pipeline(
        "--from {{ macros.ds_add(ds, -%d) }} --to {{ macros.ds_add(ds, 1) }}" % DAYS,
    )

with DAG(
    dag_id="airq_backfill_training",
    description="On demand: the same pipeline on any window of history",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULTS,
    params={
        "from": Param("2013-03-01", type="string", description="first day (UTC)"),
        "to": Param("2017-03-01", type="string", description="end day (exclusive)"),
        "test_from": Param("", type="string", description="start of the test set (empty: the last 20 %)"),
    },
    tags=["airq", "ml", "backfill"],
):
    pipeline(
        "--from {{ params['from'] }} --to {{ params['to'] }}",
        "{% if params['test_from'] %}--test-from {{ params['test_from'] }}{% endif %}",
    )
