#!/usr/bin/env bash
# Each running service's resident memory over a live run (issue 12: "no growth over a
# 30-minute live run"): VmRSS of every service `scripts/services.sh` started, read from /proc
# every INTERVAL seconds for MINUTES minutes, then the first, peak and last sample and the
# growth per hour of a least-squares line through the second half (the first half settles:
# allocator arenas, caches, the detector's baselines filling).
# Start the platform first (`make run`; `make replay` before it for "after a full replay").
# Usage: bench/memory.sh [MINUTES] [INTERVAL]. Writes bench/results/memory-<date>.txt.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MINUTES=${1:-30}
INTERVAL=${2:-10}
STATE=${AIRQ_STATE_DIR:-$ROOT/.stack}
OUT=$ROOT/bench/results
mkdir -p "$OUT"
SAMPLES=$STATE/bench/memory-samples.tsv
mkdir -p "$STATE/bench"
: >"$SAMPLES"
names=()
for f in "$STATE"/run/*.pid; do
  [ -e "$f" ] && kill -0 "$(cat "$f")" 2>/dev/null && names+=("$(basename "$f" .pid)")
done
[ ${#names[@]} -gt 0 ] || { echo "no service running: make run first" >&2; exit 1; }
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
END=$(($(date +%s) + MINUTES * 60))
while [ "$(date +%s)" -lt "$END" ]; do
  t=$(date +%s)
  for n in "${names[@]}"; do printf '%s\t%s\t%s\n' "$t" "$n" "$(rss_kb "$(cat "$STATE/run/$n.pid")")" >>"$SAMPLES"; done
  sleep "$INTERVAL"
done
REPORT=$OUT/memory-$(date -u +%Y%m%dT%H%M%SZ).txt
{
  echo "# bench/memory.sh $(date -u +%FT%TZ): $MINUTES min, a sample every $INTERVAL s, $(nproc) cores"
  echo "# readings stored meanwhile: see the services' logs; RSS in MB"
  printf '%-20s %8s %8s %8s %14s\n' service first peak last "MB/h (2nd half)"
  for n in "${names[@]}"; do
    awk -F'\t' -v n="$n" '
      $2 == n { t[++k] = $1; r[k] = $3 / 1024 }
      END {
        peak = 0; for (i = 1; i <= k; i++) if (r[i] > peak) peak = r[i]
        h = int(k / 2) + 1; m = k - h + 1; st = sr = stt = str = 0
        for (i = h; i <= k; i++) { st += t[i]; sr += r[i]; stt += t[i] * t[i]; str += t[i] * r[i] }
        d = m * stt - st * st; slope = d > 0 ? (m * str - st * sr) / d * 3600 : 0
        printf "%-20s %8.1f %8.1f %8.1f %14.2f\n", n, r[1], peak, r[k], slope
      }' "$SAMPLES"
  done
} | tee "$REPORT"
