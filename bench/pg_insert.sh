#!/usr/bin/env bash
# PostgreSQL alone: what one reading costs to insert into `readings`, by statement form, on the
# stack's PostgreSQL (durable: fsync and synchronous_commit on). 400 statements of 1,000 rows,
# each its own transaction as the cleaner's are, from a table of synthetic readings (1,000
# sensors, hourly), into a fresh database with the project's migrations:
#   - plain INSERT into an empty table (the cleaner's first attempt for a batch);
#   - INSERT ... ON CONFLICT (sensor_id, ts) DO NOTHING into an empty table (its fallback);
#   - the same rows again, every one stored: the fallback alone, and the plain attempt that
#     fails on the first row followed by the fallback (a redelivery or a replay of stored data).
# Usage: bench/pg_insert.sh [ROUNDS]. Writes bench/results/pg-insert-<date>.txt.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ROUNDS=${1:-3}
OUT=$ROOT/bench/results
mkdir -p "$OUT"
"$ROOT/scripts/stack.sh" up >/dev/null
eval "$("$ROOT/scripts/stack.sh" env)"
DB=${AIRQ_TEST_PG_URL%/*}/airq_bench_pg_insert
psql "$AIRQ_TEST_PG_URL" -qc "DROP DATABASE IF EXISTS airq_bench_pg_insert" -qc "CREATE DATABASE airq_bench_pg_insert"
trap 'psql "$AIRQ_TEST_PG_URL" -qc "DROP DATABASE IF EXISTS airq_bench_pg_insert" || true' EXIT
for m in "$ROOT"/migrations/*.sql; do psql "$DB" -q -v ON_ERROR_STOP=1 -f "$m" >/dev/null; done
psql "$DB" -q -v ON_ERROR_STOP=1 <<'SQL'
CREATE TABLE src AS
SELECT i, 'S' || (i % 1000) AS sensor_id,
       timestamptz '2024-01-01' + (i / 1000) * interval '1 hour' AS ts,
       40.0 + random() AS lat, 116.0 + random() AS lon,
       random() * 100 AS a, random() * 100 AS b, random() * 100 AS c
FROM generate_series(0, 399999) i;
CREATE INDEX ON src (i);
ANALYZE src;
SQL
IF_ABSENT="ON CONFLICT (sensor_id, ts) DO NOTHING"
# insert K [CLAUSE]: the K-th statement, rows K*1000 to K*1000+999.
insert() {
  echo "INSERT INTO readings (sensor_id, ts, lat, lon, pm2_5, pm10, no2, pm2_5_raw, pm10_raw, no2_raw,
    flags, pm2_5_1h, pm10_1h, no2_1h, nowcast_pm2_5, nowcast_pm10, aqi, aqi_category, aqi_dominant,
    eaqi_band, schema_version)
  SELECT sensor_id, ts, lat, lon, a, b, c, a, b, c, 0, a, b, c, a, b, 50, 'moderate', 'pm2_5',
    'fair', 1 FROM src WHERE i >= $(($1 * 1000)) AND i < $(($1 * 1000 + 1000)) ${2:-};"
}
for k in $(seq 0 399); do insert "$k"; done >"$ROOT/.stack/bench-plain.sql"
for k in $(seq 0 399); do insert "$k" "$IF_ABSENT"; done >"$ROOT/.stack/bench-if-absent.sql"
# The plain attempt, then the fallback, statement by statement.
for k in $(seq 0 399); do insert "$k"; insert "$k" "$IF_ABSENT"; done >"$ROOT/.stack/bench-both.sql"
# timed FILE: seconds to run it (errors, the failed plain attempts, are expected and dropped).
timed() {
  local s e
  s=$(date +%s.%N)
  psql "$DB" -q -f "$1" >/dev/null 2>&1
  e=$(date +%s.%N)
  awk "BEGIN { printf \"%.2f\", $e - $s }"
}
fresh() { psql "$DB" -qc "TRUNCATE readings" -qc "CHECKPOINT"; }
rate() { awk "BEGIN { printf \"%.0f\", 400000 / $1 }"; }

REPORT=$OUT/pg-insert-$(date -u +%Y%m%dT%H%M%SZ).txt
{
  echo "PostgreSQL insert alone, $(date -u +%FT%TZ), $(nproc) cores, the stack otherwise idle"
  echo "400,000 readings as 400 statements of 1,000 rows, one transaction each; seconds (rows/s)"
  echo
  for r in $(seq 1 "$ROUNDS"); do
    fresh; p=$(timed "$ROOT/.stack/bench-plain.sql")
    fresh; c=$(timed "$ROOT/.stack/bench-if-absent.sql")
    d=$(timed "$ROOT/.stack/bench-if-absent.sql")
    b=$(timed "$ROOT/.stack/bench-both.sql")
    echo "round $r: new rows: plain $p s ($(rate "$p")), if-absent $c s ($(rate "$c")), plain/if-absent $(awk "BEGIN { printf \"%.2f\", $p / $c }");" \
      "all stored: if-absent $d s, plain attempt + if-absent $b s"
  done
} | tee "$REPORT"
rm -f "$ROOT"/.stack/bench-{plain,if-absent,both}.sql
