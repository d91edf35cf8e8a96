"""``airq_backfill``: loads history into the platform, one day at a time, through
``raw_data`` (so the same cleaning applies), waits until each day has been stored, runs its
daily batch, and, if asked, retrains once over the range. Running it twice over the same
range changes nothing in PostgreSQL (readings are first-write-wins, the daily tables are
recomputed).

Params (validated before any task runs): ``start`` and ``end`` (ISO dates, start < end,
at most ``AIRQ_BACKFILL_MAX_DAYS`` = 400 days), ``source`` (``beijing``: the PRSA files in
``AIRQ_BEIJING_DIR``; ``openaq-archive``: OpenAQ archive files in
``AIRQ_OPENAQ_ARCHIVE_DIR``), ``retrain``, and ``test_from`` for the retraining.
"""

from __future__ import annotations

import os
from datetime import date, datetime, timedelta, timezone

from airflow.sdk import DAG, Param, task, task_group

from airq_common import DATE, DEFAULTS, OPTIONAL_DATE, run, training

MAX_DAYS = int(os.environ.get("AIRQ_BACKFILL_MAX_DAYS", "400"))


def days_of(start: str, end: str, max_days: int = MAX_DAYS) -> list[str]:
    """The days of ``[start, end)``, or a ``ValueError`` saying what is wrong."""
    a, b = date.fromisoformat(start), date.fromisoformat(end)
    if a >= b:
        raise ValueError(f"start {a} is not before end {b}")
    if (b - a).days > max_days:
        raise ValueError(f"{(b - a).days} days is more than AIRQ_BACKFILL_MAX_DAYS={max_days}")
    return [(a + timedelta(days=i)).isoformat() for i in range((b - a).days)]


def load_command(source: str, day: str) -> tuple[str, list[str]]:
    """The binary and arguments that publish one day of ``source`` to raw_data."""
    nxt = (date.fromisoformat(day) + timedelta(days=1)).isoformat()
    window = [f"--from={day}", f"--to={nxt}"]
    if source == "beijing":
        data = os.environ.get("AIRQ_BEIJING_DIR", "../shared/data/beijing_prsa")
        return "sensor-sim", ["replay", f"--data-dir={data}", "--speedup=0", "--quiet", *window]
    if source == "openaq-archive":
        return "sensor-sim", ["openaq-archive", f"--dir={os.environ['AIRQ_OPENAQ_ARCHIVE_DIR']}", *window]
    raise ValueError(f"unknown source {source!r}")


with DAG(
    dag_id="airq_backfill",
    description="On demand: load history day by day through raw_data, daily batches, retrain",
    schedule=None,
    start_date=datetime(2026, 1, 1, tzinfo=timezone.utc),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULTS,
    params={
        "start": Param("2013-03-01", type="string", pattern=DATE, description="first day (UTC)"),
        "end": Param("2013-03-08", type="string", pattern=DATE, description="end day (exclusive)"),
        "source": Param("beijing", type="string", enum=["beijing", "openaq-archive"]),
        "retrain": Param(False, type="boolean", description="one Train/Evaluate over the range"),
        "test_from": Param("", type="string", pattern=OPTIONAL_DATE,
                           description="start of the test set (empty: the last 20 %)"),
    },
    tags=["airq", "backfill"],
    doc_md=__doc__,
):

    @task(retries=0, doc_md="The days of the range; fails for good if the range is invalid.")
    def plan(params=None) -> list[str]:
        from airflow.sdk.exceptions import AirflowFailException

        try:
            return days_of(params["start"], params["end"])
        except ValueError as e:
            raise AirflowFailException(str(e)) from e

    @task_group
    def one_day(day: str):
        # One day at a time into raw_data: the cleaner sees each sensor's readings in time
        # order, so a backfill flags exactly what a live stream would.
        @task(max_active_tis_per_dagrun=1, doc_md="Publishes the day to raw_data. XCom: "
              "what was published, per partition.")
        def load(day: str, params=None) -> str:
            binary, args = load_command(params["source"], day)
            return run(binary, args)

        @task(doc_md="Waits until what `load` published is stored in PostgreSQL (every "
              "reading with a measurement; exit 75 on timeout: retried).")
        def landed(summary: str) -> None:
            run("stream-cleaner", ["landed", f"--summary={summary}"])

        @task(max_active_tis_per_dagrun=4, doc_md="The day's statistics and quality summary.")
        def daily_batch(day: str) -> None:
            run("stream-cleaner", ["daily", f"--date={day}"])

        landed(load(day)) >> daily_batch(day)

    @task.short_circuit(doc_md="Skips the retraining unless `retrain` is set.")
    def retrain_asked(params=None) -> bool:
        return bool(params["retrain"])

    days = plan()
    first, _ = training("{{ params['start'] }}", "{{ params['end'] }}", "{{ params['test_from'] }}")
    one_day.expand(day=days) >> retrain_asked() >> first
