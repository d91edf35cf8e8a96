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

IMAGE = os.environ.get("AIRQ_TRAINER_IMAGE")
DAYS = int(os.environ.get("AIRQ_TRAIN_DAYS", "30"))
SNAPSHOT = "{{ ti.xcom_pull(task_ids='extract') }}"
# Trigger params are checked against these before any task runs (YYYY-MM-DD, nothing else).
DATE = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
OPTIONAL_DATE = r"^([0-9]{4}-[0-9]{2}-[0-9]{2})?$"
DEFAULTS = {"retries": 1, "retry_delay": timedelta(minutes=2)}
# The native command: every argument reaches the trainer through an environment variable,
# quoted, so no rendered value (a param, an XCom) is ever parsed by the shell; empty ones
# (an optional flag left out) are dropped. The binary and the trainer's AIRQ__ settings come
# from the worker's environment when the task runs (append_env), not from the parse.
NATIVE = (
    'set -euo pipefail; args=(); for i in $(seq 0 $((AIRQ_ARGC - 1))); do v="AIRQ_ARG_$i"; '
    '[ -n "${!v}" ] && args+=("${!v}"); done; exec "${AIRQ_TRAINER_BIN:-trainer}" "${args[@]}"'
)


def trainer_env() -> dict[str, str]:
    """The trainer's configuration for a container (the DockerOperator does not inherit the
    worker's environment): the dag-processor's ``AIRQ__...`` variables."""
    return {k: v for k, v in os.environ.items() if k.startswith("AIRQ__") or k == "RUST_LOG"}


def step(task_id: str, args: list[str]):
    """One trainer subcommand as a task; each item of ``args`` (a Jinja template) renders to
    one argument."""
    if IMAGE:
        from airflow.providers.docker.operators.docker import DockerOperator

        return DockerOperator(
            task_id=task_id,
            image=IMAGE,
            # A list: run without a shell, one argument per item.
            command=["trainer", *args],
            environment=trainer_env(),
            network_mode=os.environ.get("AIRQ_DOCKER_NETWORK", "airq"),
            auto_remove="success",
            do_xcom_push=True,
            retrieve_output=False,
        )
    env = {f"AIRQ_ARG_{i}": a for i, a in enumerate(args)}
    env["AIRQ_ARGC"] = str(len(args))
    return BashOperator(task_id=task_id, bash_command=NATIVE, env=env, append_env=True)


def pipeline(extract_args: list[str], train_args: list[str] | None = None) -> None:
    snapshot = ["--snapshot-run", SNAPSHOT]
    extract = step("extract", ["extract", *extract_args])
    validate = step("validate", ["validate", *snapshot])
    train = step("train", ["train", *snapshot, *(train_args or [])])
    # Exactly the version this run's train registered (its XCom), not whatever holds the
    # staging alias when evaluate starts: a daily and a backfill run cannot race.
    evaluate = step("evaluate", ["evaluate", "--version={{ ti.xcom_pull(task_ids='train') }}"])
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
        [
            "--from={{ macros.ds_add(ds, -%d) }}" % DAYS,
            "--to={{ macros.ds_add(ds, 1) }}",
        ]
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
        "from": Param("2013-03-01", type="string", pattern=DATE, description="first day (UTC)"),
        "to": Param("2017-03-01", type="string", pattern=DATE, description="end day (exclusive)"),
        "test_from": Param(
            "",
            type="string",
            pattern=OPTIONAL_DATE,
            description="start of the test set (empty: the last 20 %)",
        ),
    },
    tags=["airq", "ml", "backfill"],
):
    pipeline(
        ["--from={{ params['from'] }}", "--to={{ params['to'] }}"],
        ["{% if params['test_from'] %}--test-from={{ params['test_from'] }}{% endif %}"],
    )
