"""Times every Grafana query (grafana/generate.py) on the running platform's database, macros
expanded as Grafana expands them, over a time range: `make bench` runs it after the Beijing
replay (bench/grafana.sh). Prints one line per query: server-side milliseconds (planning + execution, best of 3) and rows."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "grafana"))

import generate  # noqa: E402
from macros import dashboard_queries, expand  # noqa: E402


def run(url: str, sql: str) -> tuple[float, int]:
    """Server-side time (planning + execution, EXPLAIN ANALYZE; best of 3) and rows."""
    best, rows = float("inf"), 0
    for _ in range(3):
        out = subprocess.run(["psql", url, "-XAtq", "-v", "ON_ERROR_STOP=1", "-c",
                              f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}"], capture_output=True, text=True, check=True)
        plan = json.loads(out.stdout)[0]
        best = min(best, plan["Planning Time"] + plan["Execution Time"])
        rows = int(plan["Plan"]["Actual Rows"])
    return best, rows


def main() -> None:
    url, start, end, sensor = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
    t0 = datetime.fromisoformat(start).replace(tzinfo=timezone.utc)
    t1 = datetime.fromisoformat(end).replace(tzinfo=timezone.utc)
    print(f"range {start} .. {end}, sensor {sensor}")
    for dashboard in (generate.dashboard_json(d) for d in generate.DASHBOARDS):
        for what, sql, _ in dashboard_queries(dashboard):
            ms, rows = run(url, expand(sql, t0, t1, {"sensor": sensor}, interval="1h"))
            print(f"{ms:8.1f} ms {rows:8d} rows  {what}")


if __name__ == "__main__":
    main()
