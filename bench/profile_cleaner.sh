#!/usr/bin/env bash
# Where the cleaner's CPU goes (issue 12's "profile first"): stream-cleaner on a full raw_data
# topic of the whole Beijing replay (memory-storage Tansu, a fresh database), sampled by
# `perf record` (no call graph: release builds keep no frame pointers), with its CPU time
# read from /proc. Writes bench/results/profile-cleaner-<date>.txt: msg/s, CPU us per
# message against librdkafka's own (the floor, measured on the same topic), and the hottest
# symbols, self time. The time is that of the first to the last stored row by PostgreSQL's
# clock (`ingested_at`), so that the script's polling is not in it.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${AIRQ_BENCH_BIN:-$ROOT/target/release}  # another build for an A/B run
DATA=${AIRQ_BEIJING_DIR:-$ROOT/../shared/data/beijing_prsa}
PORT=${AIRQ_BENCH_KAFKA_PORT:-19192}
STATE=${AIRQ_STATE_DIR:-$ROOT/.stack}
OUT=$ROOT/bench/results
mkdir -p "$OUT" "$STATE/bench"
eval "$("$ROOT/scripts/stack.sh" env)"
DB_BASE=${AIRQ_TEST_PG_URL%/*}
export AIRQ__KAFKA__BROKERS=127.0.0.1:$PORT
command -v perf >/dev/null || { echo "profile_cleaner: perf not found (Debian: linux-perf); no profile taken" >&2; exit 0; }
source "$ROOT/bench/lib.sh"
# The floor's program (the cleaner itself is $BIN's, built by the caller: another build for an A/B).
cargo build --release -q -p airq-kafka --example passthrough
beijing_counts "$DATA"

start_memory_tansu "$PORT" "$STATE/bench/tansu-profile.log"
PID=
cleanup() { kill "$TANSU_PID" ${PID:+"$PID"} 2>/dev/null || true; }
trap cleanup EXIT
AIRQ__KAFKA__TOPICS__RAW=raw_prof "$BIN/sensor-sim" replay --data-dir "$DATA" --quiet >/dev/null

DB=$DB_BASE/airq_bench_profile
psql "$AIRQ_TEST_PG_URL" -qc "DROP DATABASE IF EXISTS airq_bench_profile" -qc "CREATE DATABASE airq_bench_profile"
AIRQ__DATABASE__URL=$DB "$BIN/stream-cleaner" migrate
AIRQ__DATABASE__URL=$DB AIRQ__KAFKA__TOPICS__RAW=raw_prof AIRQ__KAFKA__TOPICS__PROCESSED=processed_prof \
AIRQ__KAFKA__TOPICS__DEAD_LETTER=dlq_prof AIRQ__CLEANER__GROUP_ID=bench_prof RUST_LOG=warn \
  "$BIN/stream-cleaner" run >"$STATE/bench/cleaner-profile.log" 2>&1 &
PID=$!
while [ "$(rows "$DB")" -lt 1 ]; do sleep 0.1; done
T0=$(date +%s.%N); C0=$(cpu_ticks "$PID"); R0=$(rows "$DB")
perf record -F 999 ${AIRQ_PERF_CALLGRAPH:+--call-graph dwarf,16384} -p "$PID" -o "$STATE/bench/cleaner.perf" >/dev/null 2>&1 &
PERF=$!
# Polled once a second: a count(*) of a growing table every 0.25 s took 5 % of the machine.
while [ "$(rows "$DB")" -lt "$EXPECTED" ]; do sleep 1; done
T1=$(date +%s.%N); C1=$(cpu_ticks "$PID")
# First to last stored row by PostgreSQL's own clock (each row's insert statement's start).
SPAN=$(psql "$DB" -tAc "select extract(epoch from max(ingested_at) - min(ingested_at)) from readings")
kill -INT "$PERF"; wait "$PERF" || true
kill -TERM "$PID"; wait "$PID" || true; PID=
# The floor under the cleaner, on the same topic in the same run: librdkafka alone with the
# services' settings, consuming every message, then also republishing each one unchanged
# (crates/airq-kafka/examples/passthrough.rs). No decoding, no database.
PASS=$ROOT/target/release/examples/passthrough
FLOOR_CONSUME=$("$PASS" "127.0.0.1:$PORT" raw_prof - "$TOTAL" 2>/dev/null)
FLOOR_BOTH=$("$PASS" "127.0.0.1:$PORT" raw_prof floor_prof "$TOTAL" 2>/dev/null)
us_per_msg() { sed -n 's/.*CPU \([0-9.]*\) us per message.*/\1/p' <<<"$1"; }
HZ=$(getconf CLK_TCK)
# Messages per stored row: the dead-lettered ones are consumed too.
MSGS=$(awk "BEGIN { print ($EXPECTED - 1) * $TOTAL / $EXPECTED }")
CPU_MSGS=$(awk "BEGIN { print ($EXPECTED - $R0) * $TOTAL / $EXPECTED }")

CLEANER_US=$(awk "BEGIN { print ($C1 - $C0) / $HZ * 1e6 / $CPU_MSGS }")

REPORT=$OUT/profile-cleaner-$(date -u +%Y%m%dT%H%M%SZ).txt
{
  echo "stream-cleaner profile, $(date -u +%FT%TZ), $(nproc) cores, Tansu 0.6.0 memory storage, full raw_data topic"
  awk "BEGIN { s = $SPAN; printf \"%.0f messages in %.2f s: %.0f msg/s; cleaner CPU %.1f us per message (%.2f cores busy)\n\", $MSGS, s, $MSGS / s, $CLEANER_US, ($C1 - $C0) / $HZ / ($T1 - $T0) }"
  echo
  echo "the floor, librdkafka alone on the same topic (examples/passthrough):"
  echo "  consume only:                     $FLOOR_CONSUME"
  echo "  consume + republish each message: $FLOOR_BOTH"
  awk "BEGIN { printf \"  cleaner / floor, CPU per message: %.2f\n\", $CLEANER_US / $(us_per_msg "$FLOOR_BOTH") }"
  echo
  echo "hottest symbols (self time, perf record -F 999, all threads):"
  perf report -i "$STATE/bench/cleaner.perf" --no-children --sort dso,symbol --percent-limit 0.7 --stdio 2>/dev/null \
    | grep -v '^#' | grep -v '^$' | head -45
} | tee "$REPORT"
