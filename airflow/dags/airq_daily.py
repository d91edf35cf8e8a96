"""``airq_daily``: one run per UTC day (its data interval). Waits until the day is complete,
runs the daily batch (per-sensor statistics and the data-quality summary), then retrains on
the trailing window ending at the interval's end and promotes only what beats production and
persistence on data it never saw. Every step is idempotent for its interval: clearing a run
and running it again, or ``airflow backfill create`` over past days, rewrites the same rows.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta, timezone

from airflow.sdk import DAG, task
from airflow.timetables.interval import CronDataIntervalTimetable

from airq_common import DEFAULTS, run, training

DAYS = int(os.environ.get("AIRQ_TRAIN_DAYS", "30"))
# How long after a day's end its late sensors are waited for before the run fails.
GRACE = timedelta(hours=float(os.environ.get("AIRQ_DAY_GRACE_HOURS", "6")))


def day_of(t) -> str:
    return t.strftime("%Y-%m-%d")


def late_report(answer: dict) -> str:
    """The late sensors of a completeness answer, as a person reads them."""
    late = answer.get("late", [])
    names = ", ".join(f"{s['sensor_id']} (newest {s['last'] or 'none'})" for s in late[:20])
    more = f" and {len(late) - 20} more" if len(late) > 20 else ""
    return f"{len(late)} of {answer.get('active')} sensors have no data past the day's end: {names}{more}"


with DAG(
    dag_id="airq_daily",
    description="Daily: wait for the day, daily batch + quality summary, retrain, promote",
    # A data interval of one whole UTC day (Airflow 3's "@daily" alone is a zero-length
    # interval at the trigger time).
    schedule=CronDataIntervalTimetable("@daily", timezone="UTC"),
    # Early enough that any past day (the Beijing years included) can be run or backfilled
    # (`airflow backfill create`): a run before a DAG's start_date gets no tasks.
    start_date=datetime(2013, 1, 1, tzinfo=timezone.utc),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULTS,
    tags=["airq", "daily", "ml"],
    doc_md=__doc__,
):

    @task.sensor(
        poke_interval=300,
        timeout=GRACE.total_seconds() + 3600,
        mode="reschedule",
        doc_md="Passes when every sensor active in the 3 days before the interval has data "
        "past its end (the fleet's low watermark has passed it). After `AIRQ_DAY_GRACE_HOURS` "
        "(6) past the end the run fails, naming the late sensors.",
    )
    def wait_for_day(data_interval_start=None, data_interval_end=None):
        from airflow.sdk import PokeReturnValue
        from airflow.sdk.exceptions import AirflowFailException

        # The day is the data interval (in Airflow 3 `ds` is the logical date, which a
        # manual run or `dags test` may set to the interval's end).
        ds = day_of(data_interval_start)
        answer = json.loads(run("stream-cleaner", ["day-complete", f"--date={ds}"]))
        if answer["complete"]:
            print(f"{ds} is complete: {answer['active']} active sensors reported past its end")
            return PokeReturnValue(is_done=True)
        report = late_report(answer)
        if datetime.now(timezone.utc) >= data_interval_end + GRACE:
            raise AirflowFailException(f"{ds} is incomplete after the grace period: {report}")
        print(f"waiting for {ds}: {report}")
        return PokeReturnValue(is_done=False)

    @task(doc_md="`stream-cleaner daily`: per-sensor statistics and the quality summary "
          "(coverage, flags, anomalies per sensor) of the day, shown in this log.")
    def daily_batch(data_interval_start=None):
        run("stream-cleaner", ["daily", f"--date={day_of(data_interval_start)}"])

    first, _ = training(
        "{{ (data_interval_end - macros.timedelta(days=%d)).strftime('%%Y-%%m-%%d') }}" % DAYS,
        "{{ data_interval_end.strftime('%Y-%m-%d') }}",
    )
    wait_for_day() >> daily_batch() >> first
