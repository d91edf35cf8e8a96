#!/usr/bin/env bash
# Starts and stops the airq services natively, in the background, with pid files and
# logs under the stack's state folder. Used by `make run` / `make stop`.
#
#   scripts/services.sh start|stop|status
#
# Scale-out: AIRQ_CLEANER_INSTANCES and AIRQ_DETECTOR_INSTANCES (default 1) start that many
# stream-cleaners / anomaly-detectors in the same consumer group; Kafka's group protocol
# shares the topics' partitions among them (at most one instance per partition does work,
# so the partition count, 6 by default, bounds the useful number).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STATE=${AIRQ_STATE_DIR:-$ROOT/.stack}
BIN=${AIRQ_BIN_DIR:-$ROOT/target/release}
mkdir -p "$STATE/run" "$STATE/logs"
# The stack's environment, under whatever the caller set already (another database, topics).
caller=$(export -p | grep -E '^declare -x AIRQ' || true)
eval "$("$ROOT/scripts/stack.sh" env)"
eval "$caller"

# instance name, binary and arguments of each service, in start order
instances() {
  local i
  for ((i = 1; i <= ${AIRQ_CLEANER_INSTANCES:-1}; i++)); do
    echo "stream-cleaner$([ "$i" -gt 1 ] && echo "-$i") stream-cleaner run"
  done
  for ((i = 1; i <= ${AIRQ_DETECTOR_INSTANCES:-1}; i++)); do
    echo "anomaly-detector$([ "$i" -gt 1 ] && echo "-$i") anomaly-detector run"
  done
  echo "predict-api predict-api"
  echo "sensor-sim sensor-sim synthetic --truth-file $STATE/ground_truth.jsonl"
}
mapfile -t SERVICES < <(instances)
# Instances started earlier with higher counts are stopped and listed too.
for f in "$STATE"/run/*.pid; do
  [ -e "$f" ] || continue
  name=$(basename "$f" .pid)
  printf '%s\n' "${SERVICES[@]}" | grep -q "^$name " || SERVICES+=("$name -")
done

pid_of() { cat "$STATE/run/$1.pid" 2>/dev/null || true; }
running() { local p; p=$(pid_of "$1"); [ -n "$p" ] && kill -0 "$p" 2>/dev/null; }

start() {
  for spec in "${SERVICES[@]}"; do
    read -r name bin args <<<"$spec"
    if running "$name"; then echo "$name already running (pid $(pid_of "$name"))"; continue; fi
    [ "$bin" != - ] || continue # a left-over instance beyond today's count
    # shellcheck disable=SC2086
    nohup "$BIN/$bin" $args >>"$STATE/logs/$name.log" 2>&1 &
    echo $! >"$STATE/run/$name.pid"
  done
}

stop() {
  for ((i = ${#SERVICES[@]} - 1; i >= 0; i--)); do
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
    if running "$name"; then echo "$(printf '%-19s' "$name") up    pid $(pid_of "$name")  log $STATE/logs/$name.log"; else echo "$(printf '%-19s' "$name") down"; fi
  done
}

case "${1:-status}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
