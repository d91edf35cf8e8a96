#!/usr/bin/env bash
# The platform under a user's load, as the README runs it: `make run` (cleaner, detector,
# predict-api, the live 20-sensor simulator) and `make replay` (all 420,768 Beijing readings, as
# fast as possible) at once, on the native stack's durable broker (Tansu on PostgreSQL).
# Measures the replay's publish time, the time until every valid Beijing reading is stored,
# the time until the cleaner's and the detector's groups have caught up, and whether the live
# readings kept landing meanwhile. Writes bench/results/platform-<date>.txt.
#
# For a first-run figure start from empty state (`scripts/stack.sh reset`); on a platform
# that stored the replay before, the replay is idempotent and the figure is that of a re-run.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=$ROOT/target/release
DATA=${AIRQ_BEIJING_DIR:-$ROOT/../shared/data/beijing_prsa}
OUT=$ROOT/bench/results
TIMEOUT=${AIRQ_BENCH_TIMEOUT_SECS:-1800}
mkdir -p "$OUT"
eval "$("$ROOT/scripts/stack.sh" env)"
DB=$AIRQ__DATABASE__URL
LAG="$BIN/examples/group_lag $AIRQ__KAFKA__BROKERS"
# Its one program of its own (the services are `make run`'s): run alone, without `make bench`'s
# build of the examples, it polled a missing binary until its timeout.
cargo build --release -q -p airq-kafka --example group_lag

now() { date +%s.%N; }
calc() { awk "BEGIN { printf \"%.1f\", $1 }"; }
q() { psql "$DB" -tAc "$1"; }
beijing_rows() { q "select count(*) from readings where sensor_id like 'bj\_%'"; }
live_rows() { q "select count(*) from readings where sensor_id not like 'bj\_%'"; }
wait_until() { # wait_until CMD... : polls until the command succeeds or TIMEOUT passes
  local start; start=$(date +%s)
  until "$@"; do
    (($(date +%s) - start < TIMEOUT)) || { echo "timed out waiting for: $*" >&2; return 1; }
    sleep 1
  done
}
beijing_done() { [ "$(beijing_rows)" -ge "$EXPECTED" ]; }
# Caught up: the live fleet keeps producing, so a group's lag is a few messages, not 0.
SLACK=${AIRQ_BENCH_LAG_SLACK:-100}
caught_up() { [ "$($LAG "$1" "$2")" -le "$SLACK" ]; }

"$BIN/stream-cleaner" migrate
"$ROOT/scripts/services.sh" start >/dev/null
# Readings the cleaner must store: rows with at least one of PM2.5, PM10, NO2.
EXPECTED=$(awk -F, 'FNR>1 && !($6=="NA" && $7=="NA" && $9=="NA") {n++} END {print n}' "$DATA"/raw/*.csv)
BJ0=$(beijing_rows)
LIVE0=$(live_rows)
sleep 10 # the live fleet is flowing before the replay starts

T0=$(now)
"$BIN/sensor-sim" replay --data-dir "$DATA" --speedup 0 --quiet
T1=$(now)
wait_until beijing_done
T2=$(now)
wait_until caught_up stream-cleaner raw_data
T3=$(now)
wait_until caught_up anomaly-detector processed_data
T4=$(now)
LIVE1=$(live_rows)
sleep 15
LIVE2=$(live_rows)
NEWEST=$(q "select round(extract(epoch from now() - max(ts))) from readings where sensor_id not like 'bj\_%'")

REPORT=$OUT/platform-$(date -u +%Y%m%dT%H%M%SZ).txt
{
  echo "platform benchmark $(date -u +%FT%TZ), $(nproc) cores, broker storage: Tansu on PostgreSQL"
  echo "Beijing readings stored before: $BJ0 (of $EXPECTED valid)"
  echo "replay publish (sensor-sim replay --speedup 0): $(calc "$T1 - $T0") s"
  echo "every valid Beijing reading stored ($(beijing_rows)/$EXPECTED): $(calc "$T2 - $T0") s after the replay started"
  echo "cleaner caught up (group lag <= $SLACK on raw_data): $(calc "$T3 - $T0") s"
  echo "detector caught up (group lag <= $SLACK on processed_data): $(calc "$T4 - $T0") s"
  echo "live readings stored during the run: $((LIVE1 - LIVE0)) in $(calc "$T4 - $T0") s (+10 s before)"
  echo "live readings stored in the 15 s after: $((LIVE2 - LIVE1)); newest live reading $NEWEST s old"
  echo "anomalies on Beijing sensors: $(q "select count(*) from anomalies where sensor_id like 'bj\_%'")"
  # How unevenly the cleaner drained raw_data's partitions: a station first stored more than
  # the detector's backlog wait (60 s) after the others is judged without its neighbours.
  echo "Beijing stations' first / last stored reading, spread (from empty state): $(q "select round(extract(epoch from max(f) - min(f))::numeric, 1) || ' s / ' || round(extract(epoch from max(l) - min(l))::numeric, 1) || ' s' from (select min(ingested_at) f, max(ingested_at) l from readings where sensor_id like 'bj\_%' group by sensor_id) s")"
  echo "tansu database: $(q "select pg_size_pretty(pg_database_size('tansu'))")"
} | tee "$REPORT"
