#!/usr/bin/env bash
# serde_json against sonic-rs and simd-json on the cleaner's messages (issue 12: measure before
# switching): the Beijing replay written as JSON lines by `sensor-sim replay --to-file`, decoded
# into the cleaner's wire shape. bench/json_parsers is its own workspace, so CI never builds
# those parsers. Usage: bench/json_parsers.sh [MESSAGES] [ROUNDS].
# Writes bench/results/json-parsers-<date>.txt.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STATE=${AIRQ_STATE_DIR:-$ROOT/.stack}
DATA=${AIRQ_BEIJING_DIR:-$ROOT/../shared/data/beijing_prsa}
OUT=$ROOT/bench/results
mkdir -p "$OUT" "$STATE/bench"
cargo build --release -q -p sensor-sim --manifest-path "$ROOT/Cargo.toml"
LINES=$STATE/bench/beijing.jsonl
[ -s "$LINES" ] || "$ROOT/target/release/sensor-sim" replay --data-dir "$DATA" --quiet --to-file "$LINES" >/dev/null
CARGO_TARGET_DIR=$ROOT/target cargo build --release -q --manifest-path "$ROOT/bench/json_parsers/Cargo.toml"
{
  echo "# bench/json_parsers.sh $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(nproc) cores, nothing else running by this script"
  "$ROOT/target/release/json-parsers" "$LINES" "${1:-200000}" "${2:-5}"
} | tee -a "$OUT/json-parsers-$(date -u +%Y-%m-%d).txt"
