#!/usr/bin/env bash
# End-to-end replay benchmark: all Beijing readings -> broker -> stream-cleaner -> PostgreSQL.
#
# Runs a second Tansu on memory storage (it does not cap throughput the way the durable sqlite
# storage does; memory storage is fine for this single pass, see docs/tansu.md) and a fresh
# database on the stack's PostgreSQL. Three measurements:
#   1. produce: sensor-sim replays every reading into raw_data as fast as possible;
#   2. cleaner on a full topic: stream-cleaner from offset 0 until every valid reading is in
#      PostgreSQL (and processed_data);
#   3. end to end: replay and cleaner together on fresh topics, from the first message sent to
#      the last row stored.
# Writes bench/results/replay-<date>.txt. Run it with `make bench`.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=$ROOT/target/release
DATA=${AIRQ_BEIJING_DIR:-$ROOT/../shared/data/beijing_prsa}
PORT=${AIRQ_BENCH_KAFKA_PORT:-19192}
STATE=${AIRQ_STATE_DIR:-$ROOT/.stack}
OUT=$ROOT/bench/results
mkdir -p "$OUT" "$STATE/bench"
eval "$("$ROOT/scripts/stack.sh" env)"
PG_ADMIN=$AIRQ_TEST_PG_URL
DB_BASE=${PG_ADMIN%/*}
export AIRQ__KAFKA__BROKERS=127.0.0.1:$PORT
export RUST_LOG=${RUST_LOG:-warn,airq_kafka::runtime::write=debug}

now() { date +%s.%N; }
calc() { awk "BEGIN { printf \"%.3f\", $1 }"; }

source "$ROOT/bench/lib.sh"
cargo build --release -q -p stream-cleaner -p sensor-sim --bins
cargo build --release -q -p airq-kafka --example consume_rate
beijing_counts "$DATA"
start_memory_tansu "$PORT" "$STATE/bench/tansu-memory.log"
CLEANER_PID=
cleanup() { kill "$TANSU_PID" ${CLEANER_PID:+"$CLEANER_PID"} 2>/dev/null || true; }
trap cleanup EXIT

run_cleaner() { # run_cleaner DB_URL SUFFIX
  AIRQ__DATABASE__URL=$1 AIRQ__KAFKA__TOPICS__RAW=raw_$2 AIRQ__KAFKA__TOPICS__PROCESSED=processed_$2 \
  AIRQ__KAFKA__TOPICS__DEAD_LETTER=dlq_$2 AIRQ__CLEANER__GROUP_ID=bench_$2 \
    "$BIN/stream-cleaner" run >"$STATE/bench/cleaner-$2.log" 2>&1 &
  CLEANER_PID=$!
}
wait_rows() { # wait_rows DB_URL N -> prints the time the count reached N
  while [ "$(rows "$1")" -lt "$2" ]; do sleep 0.25; done # count(*) is not free: poll gently
  now
}
fresh_db() {
  local name=airq_bench_$1
  psql "$PG_ADMIN" -qc "DROP DATABASE IF EXISTS $name" -qc "CREATE DATABASE $name"
  AIRQ__DATABASE__URL=$DB_BASE/$name "$BIN/stream-cleaner" migrate
  echo "$DB_BASE/$name"
}

# 1. produce into a full topic
T0=$(now)
AIRQ__KAFKA__TOPICS__RAW=raw_full "$BIN/sensor-sim" replay --data-dir "$DATA" --quiet
T1=$(now)
PRODUCE_S=$(calc "$T1 - $T0")

# 1b. the broker's own consume rate (librdkafka, no processing)
CONSUME=$("$ROOT/target/release/examples/consume_rate" "127.0.0.1:$PORT" raw_full "$TOTAL")

# 2. the cleaner on the full topic; the clock starts at the first stored row, after the
#    consumer group formed (Tansu answers the first JoinGroup after ~3 s)
DB=$(fresh_db full)
run_cleaner "$DB" full
T0=$(wait_rows "$DB" 1)
ROWS0=$(rows "$DB")
T1=$(wait_rows "$DB" "$EXPECTED")
kill -TERM "$CLEANER_PID"; wait "$CLEANER_PID" || true; CLEANER_PID=
CLEAN_S=$(calc "$T1 - $T0")
CLEAN_N=$(calc "($EXPECTED - $ROWS0) * $TOTAL / $EXPECTED")

# 3. end to end, both at once
DB=$(fresh_db e2e)
run_cleaner "$DB" e2e
sleep 4 # the consumer joins its group (Tansu answers the first JoinGroup after ~3 s)
T0=$(now)
AIRQ__KAFKA__TOPICS__RAW=raw_e2e "$BIN/sensor-sim" replay --data-dir "$DATA" --quiet
T1=$(wait_rows "$DB" "$EXPECTED")
kill -TERM "$CLEANER_PID"; wait "$CLEANER_PID" || true; CLEANER_PID=
E2E_S=$(calc "$T1 - $T0")

# The cleaner's own clock: first to last batch written (its debug log), i.e. without the
# group join and without the script's polling.
log_rate() {
  local f=$STATE/bench/cleaner-$1.log a b
  a=$(sed 's/\x1b\[[0-9;]*m//g' "$f" | grep "batch written" | head -1 | cut -c1-27)
  b=$(sed 's/\x1b\[[0-9;]*m//g' "$f" | grep "batch written" | tail -1 | cut -c1-27)
  calc "$TOTAL / ($(date -d "$b" +%s.%N) - $(date -d "$a" +%s.%N))"
}

REPORT=$OUT/replay-$(date -u +%Y%m%dT%H%M%SZ).txt
{
  echo "airq replay benchmark, $(date -u +%FT%TZ), $(nproc) cores, broker: Tansu 0.6.0 memory storage"
  echo "readings: $TOTAL published, $EXPECTED valid (the rest have no value at all -> dead_letter)"
  printf 'produce (sensor-sim -> raw_data):          %6.2f s  %8.0f msg/s\n' "$PRODUCE_S" "$(calc "$TOTAL / $PRODUCE_S")"
  echo "consume (librdkafka, no processing):     $CONSUME"
  printf 'cleaner on a full topic -> PostgreSQL:     %6.2f s  %8.0f msg/s (from the first stored row; %.0f msg/s by its own log)\n' "$CLEAN_S" "$(calc "$CLEAN_N / $CLEAN_S")" "$(log_rate full)"
  printf 'end to end (replay + cleaner together):   %6.2f s  %8.0f msg/s\n' "$E2E_S" "$(calc "$TOTAL / $E2E_S")"
} | tee "$REPORT"
