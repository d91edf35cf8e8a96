"""Grafana's PostgreSQL macros and template variables, expanded as Grafana expands them, and
every query of a generated dashboard: what tests/deploy/test_grafana.py runs on the pipeline's
data and bench/grafana_queries.py times on the Beijing replay."""

from __future__ import annotations

import re
from datetime import datetime


def interval_secs(text: str) -> int:
    n, unit = re.fullmatch(r"(\d+)([smhd])", text.strip()).groups()
    return int(n) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[unit]


def expand(sql: str, start: datetime, end: datetime, variables: dict[str, str], interval: str = "1h") -> str:
    """Grafana's PostgreSQL macros and template variables, as Grafana expands them."""
    lit = lambda t: "'" + t.strftime("%Y-%m-%dT%H:%M:%SZ") + "'"  # noqa: E731
    sql = sql.replace("$__interval", interval)
    sql = re.sub(r"\$__timeFilter\(([^)]+)\)", lambda m: f"{m.group(1)} BETWEEN {lit(start)} AND {lit(end)}", sql)
    sql = re.sub(r"\$__timeGroupAlias\(([^,]+),\s*([^)]+)\)",
                 lambda m: f"floor(extract(epoch from {m.group(1)})/{interval_secs(m.group(2))})"
                           f"*{interval_secs(m.group(2))} AS \"time\"", sql)
    sql = sql.replace("$__timeFrom()", lit(start)).replace("$__timeTo()", lit(end))
    for name, value in variables.items():
        sql = sql.replace("${" + name + "}", value).replace("$" + name, value)
    if "$" in sql:
        raise ValueError(f"an unexpanded macro or variable is left: {sql}")
    return sql


def dashboard_queries(dashboard: dict):
    """(what, sql, columns it must return) of every query of a generated dashboard."""
    for p in dashboard["panels"]:
        yield f"{dashboard['uid']}: {p['title']}", p["targets"][0]["rawSql"], p["airqColumns"]
    for v in dashboard["templating"]["list"]:
        yield f"{dashboard['uid']}: variable {v['name']}", v["query"], []
    for a in dashboard["annotations"]["list"]:
        if "target" in a:
            yield f"{dashboard['uid']}: annotation {a['name']}", a["target"]["rawSql"], a["airqColumns"]
