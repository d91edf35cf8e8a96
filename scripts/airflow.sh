#!/usr/bin/env bash
# Airflow 3 for the airq DAGs, natively: `airflow standalone` (api-server with the UI,
# scheduler, dag-processor, triggerer) in the foreground, on the stack's Airflow home, with
# the platform's binaries from AIRQ_BIN_DIR (default: target/release). Stop it with Ctrl-C
# (or SIGTERM): standalone stops its components.
#
# Overridable: AIRQ_AIRFLOW_PORT (8080), AIRQ_BIN_DIR, AIRFLOW_HOME, AIRQ_BEIJING_DIR.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# The stack's environment, under whatever the caller set already (a test's database, topics).
caller=$(export -p | grep -E '^declare -x (AIRQ|AIRFLOW|PYTHONPATH)' || true)
eval "$("$ROOT/scripts/stack.sh" env)"
eval "$caller"
home_override=${AIRQ_AIRFLOW_HOME:-}
[ -n "$home_override" ] && export AIRFLOW_HOME=$home_override
export AIRQ_BIN_DIR=${AIRQ_BIN_DIR:-$ROOT/target/release}
export AIRQ_BEIJING_DIR=${AIRQ_BEIJING_DIR:-$(cd "$ROOT/.." && pwd)/shared/data/beijing_prsa}
export AIRFLOW__API__PORT=${AIRQ_AIRFLOW_PORT:-8080}
# Task processes report to the api-server's execution API, on the same port.
export AIRFLOW__CORE__EXECUTION_API_SERVER_URL=http://127.0.0.1:$AIRFLOW__API__PORT/execution/
# standalone spawns its components as `airflow ...` through PATH.
export PATH=$(dirname "$AIRQ_AIRFLOW"):$PATH
exec "$AIRQ_AIRFLOW" standalone
