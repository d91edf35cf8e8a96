#!/usr/bin/env bash
# Sensor -> anomaly event latency through the whole path, at a fixed reading rate:
#   latency example (simulated faulty stream, paced) -> raw_data -> stream-cleaner ->
#   processed_data -> anomaly-detector -> anomalies -> latency example.
# Fresh topics and a fresh database on the stack's PostgreSQL. The broker is a second Tansu on
# memory storage (a single pass, no resume: see docs/tansu.md); AIRQ_BENCH_STORAGE=sqlite uses
# the stack's durable Tansu instead. Usage: bench/latency.sh [RATE] [SECONDS]
# Writes bench/results/latency-<date>.txt.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=$ROOT/target/release
RATE=${1:-5000}
SECONDS_=${2:-60}
STATE=${AIRQ_STATE_DIR:-$ROOT/.stack}
OUT=$ROOT/bench/results
mkdir -p "$OUT" "$STATE/bench"
"$ROOT/scripts/stack.sh" up >/dev/null
eval "$("$ROOT/scripts/stack.sh" env)"
cargo build --release -q -p stream-cleaner -p anomaly-detector --bins --examples
source "$ROOT/bench/lib.sh"
STORAGE=${AIRQ_BENCH_STORAGE:-memory}
TANSU_PID=
if [ "$STORAGE" = memory ]; then
  PORT=${AIRQ_BENCH_KAFKA_PORT:-19192}
  start_memory_tansu "$PORT" "$STATE/bench/tansu-latency.log"
  export AIRQ__KAFKA__BROKERS=127.0.0.1:$PORT
fi
BROKERS=${AIRQ__KAFKA__BROKERS:-127.0.0.1:19092}

ID=lat$(date +%s)
DB=${AIRQ_TEST_PG_URL%/*}/airq_$ID
psql "$AIRQ_TEST_PG_URL" -qc "CREATE DATABASE airq_$ID"
export AIRQ__DATABASE__URL=$DB AIRQ__KAFKA__TOPICS__RAW=raw_$ID AIRQ__KAFKA__TOPICS__PROCESSED=processed_$ID \
  AIRQ__KAFKA__TOPICS__ANOMALIES=anomalies_$ID AIRQ__KAFKA__TOPICS__DEAD_LETTER=dlq_$ID \
  AIRQ__CLEANER__GROUP_ID=cleaner_$ID AIRQ__DETECTOR__GROUP_ID=detector_$ID RUST_LOG=${RUST_LOG:-warn}
# Latency over throughput: the cleaner flushes a batch after 5 ms instead of 100 ms and its
# producer lingers 2 ms instead of 20.
AIRQ__CLEANER__BATCH_TIMEOUT_MS=${AIRQ_BENCH_CLEANER_TIMEOUT_MS:-5} \
AIRQ__CLEANER__PRODUCER_LINGER_MS=${AIRQ_BENCH_CLEANER_LINGER_MS:-2} "$BIN/stream-cleaner" run >"$STATE/bench/latency-cleaner.log" 2>&1 &
PIDS=$!
"$BIN/anomaly-detector" run >"$STATE/bench/latency-detector.log" 2>&1 &
PIDS="$PIDS $!"
cleanup() {
  kill $PIDS $TANSU_PID 2>/dev/null || true
  wait 2>/dev/null || true
  psql "$AIRQ_TEST_PG_URL" -qc "DROP DATABASE IF EXISTS airq_$ID WITH (FORCE)" || true
}
trap cleanup EXIT
sleep 5 # both join their groups

RESULT=$("$BIN/examples/latency" --brokers "$BROKERS" --raw-topic "raw_$ID" --anomalies-topic "anomalies_$ID" --processed-topic "processed_$ID" \
  --rate "$RATE" --seconds "$SECONDS_")
{
  echo "# bench/latency.sh $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(nproc) cores, Tansu $STORAGE storage"
  echo "$RESULT"
} | tee -a "$OUT/latency-$(date -u +%Y-%m-%d).txt"
