#!/usr/bin/env bash
# /predict under load on loopback: wrk (Debian package, installed if missing) against a
# release predict-api serving the newest Beijing model registered by bench/train_beijing.sh
# (production alias; AIRQ_BENCH_MODEL names another), for the station Aotizhongxin (bj_aotizhongxin)
# of database AIRQ_BENCH_DB (default airq_bench_e2e).
# AIRQ_BENCH_BODY=stored (default): the body names the sensor, the service reads its readings from
#   PostgreSQL (once per AIRQ_SERIES_CACHE_MS, default 1000; 0 reads them per request).
# AIRQ_BENCH_BODY=readings: the body carries the sensor's last 30 stored readings.
# AIRQ_BENCH_BODY=horizons: as stored, with every hour 1 to 24 ahead (`"horizons": [1, ..., 24]`).
# AIRQ_BENCH_BODY=health: GET /health instead, the floor of loopback HTTP on this machine (the
#   other bodies run it too, after /predict, as the same run's reference).
# AIRQ_BENCH_WRK_THREADS: wrk's threads (default 2, one per core).
# Usage: bench/predict_load.sh [SECONDS] [CONNECTIONS]. Writes bench/results/predict-<date>.txt.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DURATION=${1:-30}
CONNECTIONS=${2:-16}
STATE=${AIRQ_STATE_DIR:-$ROOT/.stack}
OUT=$ROOT/bench/results
mkdir -p "$OUT" "$STATE/bench"
command -v wrk >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
eval "$("$ROOT/scripts/stack.sh" env)"
# AIRQ_BENCH_BIN: another build's binaries, for an A/B run in one session.
BIN=${AIRQ_BENCH_BIN:-$ROOT/target/release}
[ -n "${AIRQ_BENCH_BIN:-}" ] || cargo build --release -q -p predict-api
MODEL=${AIRQ_BENCH_MODEL:-$(sed -n 's/.*MLflow experiment beijing-bench-\([0-9]*\).*/beijing-pm25-1h-\1/p' "$OUT"/train-beijing-*.txt | tail -1)}
[ -n "$MODEL" ] || { echo "run bench/train_beijing.sh first" >&2; exit 1; }
PORT=${AIRQ_BENCH_PREDICT_PORT:-18000}
DB=${AIRQ_TEST_PG_URL%/*}/${AIRQ_BENCH_DB:-airq_bench_e2e}
KIND=${AIRQ_BENCH_BODY:-stored}
WRK_THREADS=${AIRQ_BENCH_WRK_THREADS:-2}
case $KIND in
  stored) BODY='{"sensor_id":"bj_aotizhongxin"}' ;;
  horizons) BODY='{"sensor_id":"bj_aotizhongxin","horizons":['"$(seq -s, 1 24)"']}' ;;
  readings) BODY=$(psql -qAt "$DB" -c "SELECT json_build_object('sensor_id', 'bj_aotizhongxin', 'readings',
      json_agg(json_build_object('timestamp', ts, 'pm2_5', pm2_5, 'pm10', pm10, 'no2', no2) ORDER BY ts))
      FROM (SELECT * FROM readings WHERE sensor_id = 'bj_aotizhongxin' ORDER BY ts DESC LIMIT 30) r") ;;
  # The floor of this machine's loopback HTTP: GET /health, no body, no model.
  health) BODY= ;;
  *) echo "AIRQ_BENCH_BODY is stored, readings, horizons or health, not $KIND" >&2; exit 2 ;;
esac
AIRQ__DATABASE__URL=$DB AIRQ__MLFLOW__MODEL=$MODEL \
  AIRQ__SERVER__ADDR=127.0.0.1:$PORT AIRQ__SERVER__SERIES_CACHE_MS=${AIRQ_SERIES_CACHE_MS:-1000} RUST_LOG=warn "$BIN/predict-api" &
PID=$!
trap 'kill $PID 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$PORT/ready" >/dev/null && break; sleep 0.2; done
health() { wrk -t"$WRK_THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --latency "http://127.0.0.1:$PORT/health"; }
# requests/s and p99 of a wrk report, e.g. "35253 req/s, p99 3.79ms".
summary() { awk '/Requests\/sec/ {r = $2} $1 == "99%" {p = $2} END {printf "%.0f req/s, p99 %s", r, p}'; }
FLOOR=
if [ "$KIND" = health ]; then
  RESULT=$(health)
else
  curl -sf -X POST "http://127.0.0.1:$PORT/predict" -H 'content-type: application/json' -d "$BODY"
  echo
  cat >"$STATE/bench/predict.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '$BODY'
LUA
  RESULT=$(wrk -t"$WRK_THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --latency -s "$STATE/bench/predict.lua" "http://127.0.0.1:$PORT/predict")
  # The reference of the same run: GET /health on the same server, the machine's loopback HTTP
  # floor at this hour (its speed varies: /health gave 64k req/s on one day, 125-140k on the next).
  FLOOR=$(health)
fi
{
  echo "# bench/predict_load.sh $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(nproc) cores, $BIN/predict-api, model $MODEL, $CONNECTIONS connections, body $KIND (${#BODY} bytes), series cache ${AIRQ_SERIES_CACHE_MS:-1000} ms"
  echo "$RESULT"
  if [ -n "$FLOOR" ]; then
    R=$(echo "$RESULT" | summary) F=$(echo "$FLOOR" | summary)
    echo "reference, same run: GET /health $F; /predict $R, $(awk -v a="${R%% *}" -v b="${F%% *}" 'BEGIN {printf "%.1f", 100 * a / b}') % of its requests/s"
  fi
} | tee -a "$OUT/predict-$(date -u +%Y-%m-%d).txt"
