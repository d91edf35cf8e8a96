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
from datetime import datetime, timedelta, timezone

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


TASK_DOCS = {
    "extract": "Hourly means of the window from PostgreSQL into a snapshot (MLflow artifact); XCom: its run id.",
    "validate": "The data-quality gate on that snapshot: fails with the reasons.",
    "train": "Every candidate on the snapshot; the best registered as `staging`; XCom: its version.",
    "evaluate": "That version against production and persistence on held-out data; promotes or keeps.",
}


def step(task_id: str, args: list[str]):
    """One trainer subcommand as a task; each item of ``args`` (a Jinja template) renders to
    one argument."""
    doc = {"doc_md": TASK_DOCS.get(task_id, "")}
    if IMAGE:
        from airflow.providers.docker.operators.docker import DockerOperator

        return DockerOperator(
            task_id=task_id,
            image=IMAGE,
            **doc,
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
    return BashOperator(task_id=task_id, bash_command=NATIVE, env=env, append_env=True, **doc)


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
    start_date=datetime(2026, 1, 1, tzinfo=timezone.utc),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULTS,
    tags=["airq", "ml"],
    doc_md="""Every day: the last `AIRQ_TRAIN_DAYS` (30) days of readings up to the end of the
run's data interval go through extract -> validate -> train -> evaluate. `evaluate` judges
the version this run's `train` registered, on data it never trained on, and promotes it to
`production` only if it beats production and persistence.""",
):
    # The trailing window ends where the run's data interval ends (UTC midnight).
    pipeline(
        [
            "--from={{ (data_interval_end - macros.timedelta(days=%d)).strftime('%%Y-%%m-%%d') }}"
            % DAYS,
            "--to={{ data_interval_end.strftime('%Y-%m-%d') }}",
        ]
    )

with DAG(
    dag_id="airq_backfill_training",
    description="On demand: the same pipeline on any window of history",
    schedule=None,
    start_date=datetime(2026, 1, 1, tzinfo=timezone.utc),
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
    doc_md="""On demand: the same pipeline on any window of history, e.g. the Beijing replay
2013-03-01..2017-03-01. Params are validated (dates only) before any task runs.""",
):
    pipeline(
        ["--from={{ params['from'] }}", "--to={{ params['to'] }}"],
        ["{% if params['test_from'] %}--test-from={{ params['test_from'] }}{% endif %}"],
    )
