"""What the airq DAGs share: running one of the platform's binaries as a task.

Tasks stay thin: each runs one Rust binary (``trainer``, ``stream-cleaner``, ``sensor-sim``)
with a list of arguments, never a shell string, so no rendered value (a param, an XCom) is
parsed by a shell. The exit code decides what Airflow does next:

- 0: success; the last line of standard output is the task's XCom (a run id, a version);
- 75 (``EX_TEMPFAIL``): a server was unreachable or not ready: the task fails and is retried;
- anything else (a failed validation gate, a missing model, bad data): the task fails for
  good, with no retry (``AirflowFailException``), and its log says why.

Natively the binaries come from ``AIRQ_BIN_DIR`` (default: ``PATH``) and inherit the worker's
``AIRQ__...`` environment, read when the task runs. With ``AIRQ_IMAGE`` set (docker compose)
they run in that image, one container per task, through the Docker API (the socket the
DockerOperator would use), on the network ``AIRQ_DOCKER_NETWORK``, with the same ``AIRQ__...``
variables passed in and the host folders of ``AIRQ_DOCKER_MOUNTS`` mounted
(``/host/beijing:/data/beijing:ro``, comma-separated: what a backfill reads).
"""

from __future__ import annotations

import os
import subprocess
from datetime import timedelta

# Exit code of a failure a retry can fix (sysexits.h EX_TEMPFAIL), as the binaries use it.
TRANSIENT = 75
DEFAULTS = {"retries": 2, "retry_delay": timedelta(minutes=1)}
# Trigger params are checked against these before any task runs.
DATE = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
OPTIONAL_DATE = r"^([0-9]{4}-[0-9]{2}-[0-9]{2})?$"


def binary_env() -> dict[str, str]:
    """The configuration a binary gets: the worker's ``AIRQ__...`` variables (and
    ``RUST_LOG``), read now, when the task runs."""
    return {k: v for k, v in os.environ.items() if k.startswith("AIRQ") or k == "RUST_LOG"}


def _fail(binary: str, args: list[str], code: int, tail: str):
    from airflow.sdk.exceptions import AirflowException, AirflowFailException

    what = f"{binary} {' '.join(args[:1])} exited with {code}"
    reason = tail.strip().splitlines()[-1] if tail.strip() else "(no output)"
    if code == TRANSIENT:
        raise AirflowException(f"{what} (transient, will be retried): {reason}")
    raise AirflowFailException(f"{what} (final, not retried): {reason}")


def _run_native(binary: str, args: list[str]) -> tuple[int, str, str]:
    directory = os.environ.get("AIRQ_BIN_DIR")
    exe = os.path.join(directory, binary) if directory else binary
    proc = subprocess.run([exe, *args], capture_output=True, text=True, env={**os.environ})
    return proc.returncode, proc.stdout, proc.stderr


def docker_mounts(spec: str) -> list[str]:
    """``AIRQ_DOCKER_MOUNTS`` as the Docker SDK's volume list: ``host:container[:ro|rw]``
    items separated by commas; a host path must be absolute (the daemon resolves it)."""
    mounts = []
    for item in filter(None, (part.strip() for part in spec.split(","))):
        parts = item.split(":")
        if len(parts) not in (2, 3) or not parts[0].startswith("/") or not parts[1].startswith("/") \
                or (len(parts) == 3 and parts[2] not in ("ro", "rw")):
            raise ValueError(f"AIRQ_DOCKER_MOUNTS item {item!r} is not /host/path:/container/path[:ro|rw]")
        mounts.append(item)
    return mounts


def _run_container(image: str, binary: str, args: list[str]) -> tuple[int, str, str]:
    import docker  # in the compose Airflow image (docker/airflow/Dockerfile)

    client = docker.from_env()
    container = client.containers.run(
        image,
        [binary, *args],
        environment=binary_env(),
        network=os.environ.get("AIRQ_DOCKER_NETWORK", "airq"),
        volumes=docker_mounts(os.environ.get("AIRQ_DOCKER_MOUNTS", "")),
        detach=True,
    )
    try:
        code = container.wait()["StatusCode"]
        out = container.logs(stdout=True, stderr=False).decode()
        err = container.logs(stdout=False, stderr=True).decode()
    finally:
        container.remove(force=True)
    return code, out, err


def run(binary: str, args: list[str]) -> str:
    """Runs ``binary args...``; returns the last line of its standard output (the XCom).
    Its output goes to the task log."""
    image = os.environ.get("AIRQ_IMAGE")
    code, out, err = _run_container(image, binary, args) if image else _run_native(binary, args)
    print(out, end="")
    print(err, end="")
    if code != 0:
        _fail(binary, args, code, err or out)
    lines = [line for line in out.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def training(window_from: str, window_to: str, test_from: str = ""):
    """Extract -> Validate -> Train -> Evaluate (promote) on ``[window_from, window_to)``
    (Jinja templates or XComArgs), as four tasks; returns (first, last). ``evaluate`` judges
    exactly the version this run's ``train`` registered (its XCom), on data it never trained
    on, so two DAG runs cannot race on the ``staging`` alias."""
    from airflow.sdk import task

    @task(doc_md="Hourly means of the window from PostgreSQL into a snapshot (an MLflow "
          "artifact). XCom: the snapshot's run id.")
    def extract(window_from: str, window_to: str) -> str:
        return run("trainer", ["extract", f"--from={window_from}", f"--to={window_to}"])

    @task(doc_md="The data-quality gate on that snapshot: fails for good with the reasons.")
    def validate(snapshot: str) -> str:
        run("trainer", ["validate", f"--snapshot-run={snapshot}"])
        return snapshot

    @task(doc_md="Every candidate on the snapshot; the best registered as `staging`. "
          "XCom: its version.")
    def train(snapshot: str, test_from: str) -> str:
        extra = [f"--test-from={test_from}"] if test_from else []
        return run("trainer", ["train", f"--snapshot-run={snapshot}", *extra])

    @task(doc_md="That version against production and persistence on held-out data; "
          "promotes it only if it beats both. XCom: the decision and its reason.")
    def evaluate(version: str) -> str:
        return run("trainer", ["evaluate", f"--version={version}"])

    first = extract(window_from, window_to)
    last = evaluate(train(validate(first), test_from))
    return first, last
