"""The DAG files themselves: they import, have the expected task graph, and their few pure
helpers (the backfill's range, the load command, the late-sensor report) say the right thing."""

from __future__ import annotations

import pytest
from airq_platform import ROOT


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(ROOT / "airflow" / "dags"))


def edges(dag) -> set[tuple[str, str]]:
    return {(t.task_id, d) for t in dag.tasks for d in t.downstream_task_ids}


def test_every_dag_imports_without_error(dagbag):
    assert dagbag.import_errors == {}
    assert set(dagbag.dag_ids) == {"airq_daily", "airq_backfill"}
    for dag in dagbag.dags.values():
        assert dag.doc_md and all(t.doc_md for t in dag.tasks), dag.dag_id
        assert dag.start_date.tzinfo is not None and dag.catchup is False


def test_the_daily_dag_waits_then_batches_then_trains(dagbag):
    dag = dagbag.get_dag("airq_daily")
    assert edges(dag) == {
        ("wait_for_day", "daily_batch"), ("daily_batch", "extract"), ("extract", "validate"),
        ("validate", "train"), ("train", "evaluate"),
    }
    assert dag.get_task("wait_for_day").mode == "reschedule"
    # The data interval of a run is one whole UTC day: a run during 03-13 processes 03-12.
    from datetime import datetime, timezone

    info = dag.timetable.infer_manual_data_interval(run_after=datetime(2025, 3, 13, 12, tzinfo=timezone.utc))
    assert (info.start, info.end) == (datetime(2025, 3, 12, tzinfo=timezone.utc),
                                      datetime(2025, 3, 13, tzinfo=timezone.utc))


def test_the_backfill_dag_maps_one_group_per_day_then_maybe_retrains(dagbag):
    dag = dagbag.get_dag("airq_backfill")
    assert edges(dag) == {
        ("plan", "one_day.load"), ("plan", "one_day.daily_batch"),
        ("one_day.load", "one_day.landed"), ("one_day.landed", "one_day.daily_batch"),
        ("one_day.daily_batch", "retrain_asked"), ("retrain_asked", "extract"),
        ("extract", "validate"), ("validate", "train"), ("train", "evaluate"),
    }
    assert dag.get_task("one_day.load").max_active_tis_per_dagrun == 1
    assert dag.get_task("plan").retries == 0


def test_the_backfill_range_is_checked():
    from airq_backfill import days_of

    assert days_of("2013-02-28", "2013-03-03") == ["2013-02-28", "2013-03-01", "2013-03-02"]
    with pytest.raises(ValueError, match="not before"):
        days_of("2013-03-03", "2013-03-01")
    with pytest.raises(ValueError, match="AIRQ_BACKFILL_MAX_DAYS"):
        days_of("2013-01-01", "2015-01-01", max_days=400)


def test_a_day_is_loaded_as_an_argument_list_never_a_shell_string():
    from airq_backfill import load_command

    binary, args = load_command("beijing", "2013-03-01")
    assert binary == "sensor-sim" and args[0] == "replay"
    assert "--from=2013-03-01" in args and "--to=2013-03-02" in args


def test_the_late_report_names_the_sensors():
    from airq_daily import late_report

    text = late_report({"active": 3, "late": [{"sensor_id": "bj_a", "last": "2025-03-14T23:50:00+00:00"},
                                              {"sensor_id": "bj_b", "last": None}]})
    assert text.startswith("2 of 3 sensors") and "bj_a" in text and "bj_b (newest none)" in text


def test_a_transient_exit_is_retried_and_any_other_is_final():
    from airflow.sdk.exceptions import AirflowException, AirflowFailException
    from airq_common import _fail

    with pytest.raises(AirflowFailException, match="final"):
        _fail("trainer", ["validate"], 1, "error: snapshot failed validation: min_rows")
    with pytest.raises(AirflowException, match="transient") as e:
        _fail("trainer", ["extract"], 75, "error: database unavailable")
    assert not isinstance(e.value, AirflowFailException)


def test_docker_mounts_are_checked_before_a_container_starts():
    from airq_common import docker_mounts

    assert docker_mounts("") == []
    assert docker_mounts("/srv/beijing:/data/beijing:ro, /srv/oaq:/data/openaq") == [
        "/srv/beijing:/data/beijing:ro", "/srv/oaq:/data/openaq"]
    for bad in ("../shared/data:/data/beijing", "/srv/x:/data/x:rx", "/srv/x"):
        with pytest.raises(ValueError, match="AIRQ_DOCKER_MOUNTS"):
            docker_mounts(bad)


def test_the_catalog_lineage_names_every_task_that_moves_data(dagbag):
    """The data catalog (``airq-catalog json``, docs/catalog.md) lists exactly the DAGs' tasks
    that read or write a dataset: a task added, renamed or removed fails here until the
    catalog says what it reads and writes."""
    import json
    import subprocess

    from airq_platform import BIN

    out = subprocess.run([str(BIN / "airq-catalog"), "json"], check=True, capture_output=True,
                         text=True, timeout=60).stdout
    lineage = {p["name"] for p in json.loads(out)["lineage"] if p["kind"] == "dag_task"}
    tasks = {f"{d.dag_id}.{t.task_id}" for d in dagbag.dags.values() for t in d.tasks}
    control = {"airq_backfill.plan", "airq_backfill.retrain_asked"}
    assert lineage == tasks - control
