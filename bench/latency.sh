#!/usr/bin/env bash
# Sensor -> anomaly event latency through the whole path, at a fixed reading rate:
#   latency example (simulated faulty stream, paced) -> raw_data -> stream-cleaner ->
#   processed_data -> anomaly-detector -> anomalies -> latency example.
# Fresh topics and a fresh database on the stack's PostgreSQL. The broker is a second Tansu on
# memory storage (a single pass, no resume: see docs/tansu.md); AIRQ_BENCH_STORAGE=stack uses
# the stack's durable Tansu (PostgreSQL storage) instead.
# The stream is live (readings stamped with the wall clock, AIRQ_BENCH_SENSORS sensors, each
# time step sent at its time); AIRQ_BENCH_LATENCY_MODE=backlog sends 2025's minutes instead.
# AIRQ_BENCH_SPREAD=1: each sensor reports at its own phase of the interval, not the whole fleet
# at the same instant.
# AIRQ_BENCH_DETECTOR_BIN / AIRQ_BENCH_CLEANER_BIN run another build of the detector / the cleaner
# (a before/after pair).
# Usage: bench/latency.sh [RATE] [SECONDS]
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
  AIRQ__CLEANER__GROUP_ID=cleaner_$ID AIRQ__DETECTOR__GROUP_ID=detector_$ID
# The services' counters (their own latency, the ticks' wait) are logged at info.
export RUST_LOG=${RUST_LOG:-warn,airq_kafka::runtime=info,anomaly_detector::processor=info}
# Every consumer's fetch waits 1 ms instead of 100: Tansu sleeps out a fetch's whole wait even
# when it has data, so that wait is each hop's floor (crates/airq-kafka/src/client.rs). It
# costs the broker CPU: idle consumers fetch 1,000 times a second.
export AIRQ_KAFKA_FETCH_WAIT_MS=${AIRQ_BENCH_FETCH_WAIT_MS:-1}
# Latency over throughput: the cleaner flushes a batch after 5 ms instead of 100 ms and its
# producer lingers 2 ms instead of 20.
AIRQ__CLEANER__BATCH_TIMEOUT_MS=${AIRQ_BENCH_CLEANER_TIMEOUT_MS:-5} \
AIRQ__CLEANER__PRODUCER_LINGER_MS=${AIRQ_BENCH_CLEANER_LINGER_MS:-2} "${AIRQ_BENCH_CLEANER_BIN:-$BIN/stream-cleaner}" run >"$STATE/bench/latency-cleaner.log" 2>&1 &
PIDS=$!
"${AIRQ_BENCH_DETECTOR_BIN:-$BIN/anomaly-detector}" run >"$STATE/bench/latency-detector.log" 2>&1 &
PIDS="$PIDS $!"
cleanup() {
  kill $PIDS $TANSU_PID 2>/dev/null || true
  wait 2>/dev/null || true
  psql "$AIRQ_TEST_PG_URL" -qc "DROP DATABASE IF EXISTS airq_$ID WITH (FORCE)" || true
}
trap cleanup EXIT
sleep 5 # both join their groups

MODE=${AIRQ_BENCH_LATENCY_MODE:-live}
SENSORS=${AIRQ_BENCH_SENSORS:-$([ "$MODE" = live ] && echo 1000 || echo 100)}
RESULT=$("$BIN/examples/latency" --brokers "$BROKERS" --raw-topic "raw_$ID" --anomalies-topic "anomalies_$ID" --processed-topic "processed_$ID" \
  --rate "$RATE" --seconds "$SECONDS_" --sensors "$SENSORS" $([ "$MODE" = live ] && echo --live) \
  $([ -n "${AIRQ_BENCH_SPREAD:-}" ] && echo --spread))
# Each service's CPU time over the run (user + system, from /proc), before it stops.
cpu_s() {
  local t
  t=$(cpu_ticks "$1" 2>/dev/null) || { echo "?"; return; }
  awk -v t="$t" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.1f s", t / hz }'
}
read -r CLEANER_PID DETECTOR_PID <<<"$PIDS"
CPU="stream-cleaner $(cpu_s "$CLEANER_PID"), anomaly-detector $(cpu_s "$DETECTOR_PID")${TANSU_PID:+, the broker $(cpu_s "$TANSU_PID")}"
# Stopped, each service logs its counters over the whole run.
kill $PIDS 2>/dev/null || true
wait $PIDS 2>/dev/null || true
last() { grep -h "$1" "$2" | tail -1 | grep -o "$3=[^=]*ms" || true; }
# The p99 of each 10 s log window after the first two (the groups' join, the warm-up).
windows() { grep -h "$1" "$2" | grep -o "$3=[^=]*ms" | sed -n '3,$p' | sed 's/.*p99 \([0-9.]*\) ms.*/\1/' | tr '\n' ' ' || true; }
{
  echo "# bench/latency.sh $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(nproc) cores, Tansu $STORAGE storage, $MODE stream of $SENSORS sensors$([ -n "${AIRQ_BENCH_SPREAD:-}" ] && echo ", each at its own phase")"
  echo "$RESULT"
  echo "CPU time over the run (with the 5 s group join): $CPU"
  echo "raw_data hop, sent -> the cleaner's receipt: $(last 'consumer counters' "$STATE/bench/latency-cleaner.log" hop_latency)"
  echo "processed_data hop, sent -> the detector's receipt: $(last 'consumer counters' "$STATE/bench/latency-detector.log" hop_latency)"
  echo "stream-cleaner, receipt -> batch written: $(last 'consumer counters' "$STATE/bench/latency-cleaner.log" service_latency)"
  echo "  p99 of each 10 s after the first 20 s, ms: $(windows 'consumer counters' "$STATE/bench/latency-cleaner.log" service_latency_recent)"
  echo "  receipt -> processed_data acknowledged (the output the detector reads): $(last 'consumer counters' "$STATE/bench/latency-cleaner.log" published_latency)"
  echo "    p99 of each 10 s after the first 20 s, ms: $(windows 'consumer counters' "$STATE/bench/latency-cleaner.log" published_latency_recent)"
  echo "  of which, per batch, PostgreSQL: $(last 'consumer counters' "$STATE/bench/latency-cleaner.log" sink_write)"
  echo "  and processed_data acknowledged: $(last 'consumer counters' "$STATE/bench/latency-cleaner.log" sink_publish)"
  echo "anomaly-detector, receipt -> batch written: $(last 'consumer counters' "$STATE/bench/latency-detector.log" service_latency)"
  echo "  p99 of each 10 s after the first 20 s, ms: $(windows 'consumer counters' "$STATE/bench/latency-detector.log" service_latency_recent)"
  echo "anomaly-detector, a reading's wait for its tick: $(last 'detector counters' "$STATE/bench/latency-detector.log" tick_wait)"
  echo "  p99 of each 10 s after the first 20 s, ms: $(windows 'detector counters' "$STATE/bench/latency-detector.log" tick_wait_recent)"
} | tee -a "$OUT/latency-$(date -u +%Y-%m-%d).txt"
