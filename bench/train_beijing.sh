#!/usr/bin/env bash
# The forecasting benchmark of docs/benchmarks.md: Beijing PRSA replayed into PostgreSQL
# (by bench/replay.sh: database airq_bench_e2e), the trainer's pipeline on 2013-03-01..2016-02-29
# with the last 12 months as the test set; then, on the features and split the trainer exported,
# the references of bench/forecast_refs.py (scikit-learn's random forest, LightGBM) and the
# trainer's gradient boosting alone (crates/airq-model/examples/fit_features.rs), timed the same
# way; then the gain of each feature group (bench/feature_groups.py: our boosting refitted without
# it). Usage: bench/train_beijing.sh [DATABASE]
# Writes bench/results/train-beijing-<date>.txt.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=$ROOT/target/release
STATE=${AIRQ_STATE_DIR:-$ROOT/.stack}
OUT=$ROOT/bench/results
mkdir -p "$OUT" "$STATE/bench"
"$ROOT/scripts/stack.sh" up >/dev/null
eval "$("$ROOT/scripts/stack.sh" env)"
DB=${1:-${AIRQ_TEST_PG_URL%/*}/airq_bench_e2e}
ROWS=$(psql "$DB" -tAc "select count(*) from readings" 2>/dev/null || echo 0)
[ "$ROWS" -gt 400000 ] || { echo "run bench/replay.sh first: $DB holds $ROWS readings" >&2; exit 1; }
cargo build --release -q -p trainer
cargo build --release -q -p airq-model --example fit_features
BENCH_PYTHON=$("$ROOT/scripts/stack.sh" bench-python)
ID=$(date +%s)
export AIRQ__DATABASE__URL=$DB AIRQ__MLFLOW__EXPERIMENT=beijing-bench-$ID AIRQ__MLFLOW__MODEL=beijing-pm25-1h-$ID
FEATURES=$STATE/bench/features-$ID
LOG=$STATE/bench/train-beijing-$ID.log
"$BIN/trainer" extract --from 2013-03-01 --to 2017-03-01 >"$LOG" 2>&1
"$BIN/trainer" validate >>"$LOG" 2>&1
"$BIN/trainer" train --test-from 2016-03-01 --export-features "$FEATURES" >>"$LOG" 2>&1
"$BIN/trainer" evaluate >>"$LOG" 2>&1
{
  echo "# bench/train_beijing.sh $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(nproc) cores; MLflow experiment beijing-bench-$ID"
  grep -E "candidate trained|horizon trained|data set built|registered as staging|evaluation done" "$LOG" | sed 's/\x1b\[[0-9;]*m//g' | cut -d' ' -f3-
  "$ROOT/target/release/examples/fit_features" "$FEATURES"
  "$BENCH_PYTHON" "$ROOT/bench/forecast_refs.py" "$FEATURES" "$(nproc)"
  # The gain of each feature group: our boosting refitted without it.
  for d in $("$BENCH_PYTHON" "$ROOT/bench/feature_groups.py" "$FEATURES"); do
    echo "without ${d##*-without-}: $("$ROOT/target/release/examples/fit_features" "$d" | sed 's/.*refit=false[^:]*: //')"
    rm -rf "$d"
  done
} | tee -a "$OUT/train-beijing-$(date -u +%Y-%m-%d).txt"
