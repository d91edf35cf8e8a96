#!/usr/bin/env bash
# Tansu on PostgreSQL: its per-record header query after the header table was analysed empty
# (docs/tansu.md). Tansu runs one prepared query per fetched record for its headers. With
# PostgreSQL's defaults that query is, in some states, re-planned on every call
# (`plan_cache_mode`), or keeps a plan made while `header_default` was empty, a sequential
# scan, until autovacuum analyses the table again (`autovacuum_naptime`, 60 s). Compares the
# defaults with what the stack applies to Tansu's database, scripts/tansu/planner.sql (one
# generic plan per query and connection, sequential scans priced out where an index serves).
# An earlier candidate, `force_generic_plan` alone with a 5 s naptime, did not fix it
# (docs/benchmarks.md).
#
# A private Tansu on a new database of the stack's PostgreSQL (nothing else keeps rows in its
# header table: the platform's dead letters would). For each setting, N times: vacuum and
# analyse Tansu's record and header tables (empty: each test deletes its topics), then run the
# detector's poison-message test against that broker (10,000 dead letters with 6 headers each,
# 5,849 readings), and report its time, its phases, the CPU that Tansu and PostgreSQL spent, and
# how many header queries took over 3 ms with a sequential scan (auto_explain). Needs the
# native stack (`scripts/stack.sh up`).
# Usage: bench/tansu_stale_plan.sh [N]. Writes bench/results/tansu-stale-plan-<date>.txt.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
N=${1:-3}
OUT=$ROOT/bench/results/tansu-stale-plan-$(date -u +%Y%m%dT%H%M%SZ).txt
. "$ROOT/bench/lib.sh"
eval "$("$ROOT/scripts/stack.sh" env)"
PG_PORT=${AIRQ_PG_PORT:-55432}
PORT=19292
DB=tansu_plan_bench
STORAGE=postgres://postgres@127.0.0.1:$PG_PORT/$DB
PGLOG=$ROOT/.stack/pg/postgres.log
LOG=$ROOT/.stack/logs/tansu-plan-bench.log
pg() { PGOPTIONS='-c client_min_messages=warning' psql -X -q -h 127.0.0.1 -p "$PG_PORT" -U postgres "$@"; }
TEST='test(=resilience::malformed_processed_messages_are_dead_lettered_and_detection_goes_on)'
cargo nextest run --workspace --no-run >/dev/null 2>&1

pg -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB"
pg -d "$DB" -v ON_ERROR_STOP=1 -f "$ROOT/scripts/tansu/schema.sql" >/dev/null
pg -c "ALTER DATABASE $DB SET session_preload_libraries = 'auto_explain'" \
  -c "ALTER DATABASE $DB SET auto_explain.log_min_duration = '3ms'"
TANSU_PID=
stop_tansu() { [ -z "$TANSU_PID" ] || { kill "$TANSU_PID" 2>/dev/null || true; wait "$TANSU_PID" 2>/dev/null || true; }; }
# A database setting reaches only new connections: a new broker for each.
restart_tansu() { stop_tansu; start_tansu "$PORT" "$LOG" "$STORAGE"; }
finish() {
  stop_tansu
  pg -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null || true
}
trap finish EXIT
: >"$LOG"
export AIRQ_TEST_BROKERS=127.0.0.1:$PORT AIRQ_KAFKA_STORAGE=$STORAGE

# All of PostgreSQL's processes (Tansu's connections are long-lived) and Tansu's, in ticks.
pg_ticks() { local n=0 p; for p in $(pgrep -u postgres); do n=$((n + $(cpu_ticks "$p" 2>/dev/null || echo 0))); done; echo $n; }
secs() { awk "BEGIN { printf \"%.1f\", $1 / $(getconf CLK_TCK) }"; }

{
  echo "# Tansu's header query after an empty analyse, $(date -u +%FT%TZ)"
  echo "# machine: $(nproc) cores; a private Tansu on database $DB; test: the detector's poison-message test"
  echo "# phases: produced, dead letters read, processed_data read, anomalies stored (s from start)"
  for setting in defaults candidate; do
    if [ $setting = defaults ]; then
      pg -c "ALTER DATABASE $DB RESET plan_cache_mode" -c "ALTER DATABASE $DB RESET enable_seqscan"
    else
      pg -d "$DB" -v ON_ERROR_STOP=1 -f "$ROOT/scripts/tansu/planner.sql"
    fi
    mode=$(pg -d "$DB" -tAc "SELECT current_setting('plan_cache_mode') || ', enable_seqscan ' || current_setting('enable_seqscan')")
    restart_tansu
    for i in $(seq 1 "$N"); do
      pg -d "$DB" -c "VACUUM ANALYZE header_default" -c "VACUUM ANALYZE record_default"
      from=$(wc -l <"$PGLOG")
      t0=$(cpu_ticks "$TANSU_PID"); p0=$(pg_ticks); s=$(date +%s.%N)
      cargo nextest run --workspace -E "$TEST" >/tmp/tansu-stale-plan.log 2>&1 || { cat /tmp/tansu-stale-plan.log >&2; exit 1; }
      e=$(date +%s.%N); t1=$(cpu_ticks "$TANSU_PID"); p1=$(pg_ticks)
      phases=$(grep -E '^ +[0-9.]+ s ' /tmp/tansu-stale-plan.log | awk '{print $1}' | paste -sd' ')
      scans=$(tail -n +"$from" "$PGLOG" | grep -c 'Seq Scan on header_default' || true)
      printf '%-8s (%s) run %s: %5.1f s, Tansu %s s CPU, PostgreSQL %s s CPU, phases %s, slow header scans %s\n' \
        "$setting" "$mode" "$i" "$(awk "BEGIN { print $e - $s }")" "$(secs $((t1 - t0)))" "$(secs $((p1 - p0)))" "$phases" "$scans"
    done
  done
} | tee "$OUT"
echo "written: $OUT"
