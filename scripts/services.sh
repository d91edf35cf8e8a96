#!/usr/bin/env bash
# Starts and stops the airq services natively, in the background, with pid files and
# logs under the stack's state folder. Used by `make run` / `make stop`.
#
#   scripts/services.sh start|stop|status
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STATE=${AIRQ_STATE_DIR:-$ROOT/.stack}
BIN=${AIRQ_BIN_DIR:-$ROOT/target/release}
mkdir -p "$STATE/run" "$STATE/logs"
eval "$("$ROOT/scripts/stack.sh" env)"

# name and arguments of each service, in start order
SERVICES=(
  "stream-cleaner run"
  "anomaly-detector run"
  "predict-api"
  "sensor-sim synthetic --truth-file $STATE/ground_truth.jsonl"
)

pid_of() { cat "$STATE/run/$1.pid" 2>/dev/null || true; }
running() { local p; p=$(pid_of "$1"); [ -n "$p" ] && kill -0 "$p" 2>/dev/null; }

start() {
  for spec in "${SERVICES[@]}"; do
    read -r name args <<<"$spec"
    if running "$name"; then echo "$name already running (pid $(pid_of "$name"))"; continue; fi
    # shellcheck disable=SC2086
    nohup "$BIN/$name" $args >>"$STATE/logs/$name.log" 2>&1 &
    echo $! >"$STATE/run/$name.pid"
  done
}

stop() {
  for ((i=${#SERVICES[@]}-1; i>=0; i--)); do
    read -r name _ <<<"${SERVICES[$i]}"
    if running "$name"; then
      kill -TERM "$(pid_of "$name")"
      for _ in $(seq 1 100); do running "$name" || break; sleep 0.1; done
      echo "$name stopped"
    fi
    rm -f "$STATE/run/$name.pid"
  done
}

status() {
  for spec in "${SERVICES[@]}"; do
    read -r name _ <<<"$spec"
    if running "$name"; then echo "$(printf '%-17s' "$name") up    pid $(pid_of "$name")  log $STATE/logs/$name.log"; else echo "$(printf '%-17s' "$name") down"; fi
  done
}

case "${1:-status}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
