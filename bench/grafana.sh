#!/usr/bin/env bash
# Every Grafana panel's query (grafana/generate.py) timed on the native stack's airq database
# after the Beijing replay (bench/platform.sh, or `make replay`): server-side time (EXPLAIN
# ANALYZE, best of 3) over the replay's last month and over its four years, for one station.
# Writes bench/results/grafana-<date>.txt.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=$ROOT/bench/results
mkdir -p "$OUT"
eval "$("$ROOT/scripts/stack.sh" env)"
PY=$(dirname "$AIRQ_AIRFLOW")/python
FILE=$OUT/grafana-$(date -u +%Y%m%dT%H%M%SZ).txt
{
  echo "readings: $(psql "$AIRQ__DATABASE__URL" -tAc 'select count(*) from readings'), anomalies: $(psql "$AIRQ__DATABASE__URL" -tAc 'select count(*) from anomalies')"
  "$PY" "$ROOT/bench/grafana_queries.py" "$AIRQ__DATABASE__URL" 2017-02-01 2017-03-01 bj_dongsi
  "$PY" "$ROOT/bench/grafana_queries.py" "$AIRQ__DATABASE__URL" 2013-03-01 2017-03-01 bj_dongsi
} | tee "$FILE"
