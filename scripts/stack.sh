#!/usr/bin/env bash
# The native airq stack: PostgreSQL 15, a Kafka-protocol broker (Tansu), an MLflow tracking
# server with its model registry, and Airflow 3 (installed, database initialised; `make airflow`
# starts its UI), installed when missing and started idempotently. State and logs live in one git-ignored folder.
#
#   scripts/stack.sh up       install what is missing, start, create database and topics
#   scripts/stack.sh down     stop everything this script started
#   scripts/stack.sh status   what runs, where
#   scripts/stack.sh env      the environment the services and tests use (eval-able)
#   scripts/stack.sh reset    stop, then delete all state (databases, topics, logs)
#
# Overridable: AIRQ_STATE_DIR, AIRQ_CACHE_DIR, AIRQ_PG_PORT, AIRQ_KAFKA_PORT,
# AIRQ_KAFKA_STORAGE (default: the `tansu` database of the stack's PostgreSQL, durable;
# memory://tansu/ for single-pass throughput benches), AIRQ_KAFKA_PARTITIONS,
# AIRQ_KAFKA_RETENTION_HOURS (data topics, default 24; dead_letter and anomalies keep 7 days),
# AIRQ_PG_BIN, AIRQ_MLFLOW_PORT.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STATE=${AIRQ_STATE_DIR:-$ROOT/.stack}
CACHE=${AIRQ_CACHE_DIR:-$HOME/.cache/airq}
PG_PORT=${AIRQ_PG_PORT:-55432}
KAFKA_PORT=${AIRQ_KAFKA_PORT:-19092}
PARTITIONS=${AIRQ_KAFKA_PARTITIONS:-6}
PG_BIN=${AIRQ_PG_BIN:-/usr/lib/postgresql/15/bin}
TANSU_VERSION=0.6.0
TANSU=$CACHE/tansu-$TANSU_VERSION/bin/tansu
TOPICS=(raw_data processed_data anomalies dead_letter)
MLFLOW_PORT=${AIRQ_MLFLOW_PORT:-5500}
MLFLOW_VERSION=3.17.2
# Every Python package pinned (pip freeze of a working install).
MLFLOW_REQUIREMENTS=$ROOT/python/requirements-mlflow.txt
MLFLOW_VENV=$CACHE/mlflow-$MLFLOW_VERSION-$(md5sum "$MLFLOW_REQUIREMENTS" | cut -c1-8)
AIRFLOW_VERSION=3.3.2
AIRFLOW_REQUIREMENTS=$ROOT/python/requirements-airflow.txt
AIRFLOW_VENV=$CACHE/airflow-$AIRFLOW_VERSION-$(md5sum "$AIRFLOW_REQUIREMENTS" | cut -c1-8)
# schemathesis: the predict-api contract test generates requests from /openapi.json.
SCHEMATHESIS_REQUIREMENTS=$ROOT/python/requirements-schemathesis.txt
SCHEMATHESIS_VENV=$CACHE/schemathesis-$(md5sum "$SCHEMATHESIS_REQUIREMENTS" | cut -c1-8)
# The forecasting references (scikit-learn, LightGBM) of bench/forecast_refs.py: `bench-python`.
BENCH_REQUIREMENTS=$ROOT/python/requirements-bench.txt
BENCH_VENV=$CACHE/bench-$(md5sum "$BENCH_REQUIREMENTS" | cut -c1-8)
LOGS=$STATE/logs
mkdir -p "$STATE" "$LOGS"
STATE=$(cd "$STATE" && pwd)
# The broker keeps its log in its own database of the stack's PostgreSQL: sqlite storage
# collapsed under the Beijing replay (docs/tansu.md). A sqlite URL would resolve against
# Tansu's working directory ($STATE/tansu).
KAFKA_STORAGE=${AIRQ_KAFKA_STORAGE:-postgres://postgres@127.0.0.1:$PG_PORT/tansu}
TANSU_SCHEMA=$ROOT/scripts/tansu/schema.sql
# How PostgreSQL plans Tansu's queries (ours, not upstream): one generic plan per query.
TANSU_PLANNER=$ROOT/scripts/tansu/planner.sql
RETENTION_HOURS=${AIRQ_KAFKA_RETENTION_HOURS:-24}

log() { printf '[stack] %s\n' "$*" >&2; }

# PostgreSQL runs as the postgres user, which must reach its data dir: if the checkout
# is not traversable by it (e.g. under /root), keep the cluster under /var/lib/postgresql.
pg_dir() {
  if runuser -u postgres -- test -x "$STATE" 2>/dev/null && runuser -u postgres -- test -x "$ROOT" 2>/dev/null; then
    echo "$STATE/pg"
  else
    echo "/var/lib/postgresql/airq-$(printf '%s' "$STATE" | md5sum | cut -c1-8)"
  fi
}

install_postgres() {
  [ -x "$PG_BIN/pg_ctl" ] && return 0
  log "installing PostgreSQL 15 (Debian packages)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq postgresql-15 postgresql-client-15 >/dev/null
}

# Debian's docker-compose validates docker-compose.yml without a Docker engine (tests/deploy);
# it also ships the Compose Specification's JSON schema. Never the engine (no recommends).
install_compose_checker() {
  [ -x /usr/bin/docker-compose ] && return 0
  log "installing docker-compose (Debian package, to validate docker-compose.yml)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends docker-compose >/dev/null
}

install_tansu() {
  [ -x "$TANSU" ] && return 0
  log "building Tansu $TANSU_VERSION into $CACHE (about 15 minutes on 2 cores, once)"
  mkdir -p "$CACHE"
  cargo install tansu --locked --version "$TANSU_VERSION" --features dynostore,postgres,libsql \
    --root "$CACHE/tansu-$TANSU_VERSION" >"$LOGS/tansu-build.log" 2>&1 \
    || { tail -30 "$LOGS/tansu-build.log" >&2; exit 1; }
}

# install_venv NAME VENV REQUIREMENTS: a virtualenv with every package pinned (pip freeze of a
# working install), cached by the requirements' hash.
install_venv() {
  local name=$1 venv=$2 req=$3
  [ -x "$venv/bin/python" ] && [ -f "$venv/.complete" ] && return 0
  log "installing $name into $venv (pinned: $req; a few minutes, once)"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check -r "$req" >"$LOGS/$name-install.log" 2>&1 \
    || { tail -30 "$LOGS/$name-install.log" >&2; rm -rf "$venv"; exit 1; }
  touch "$venv/.complete"
}

install_mlflow() { install_venv mlflow "$MLFLOW_VENV" "$MLFLOW_REQUIREMENTS"; }
install_airflow() { install_venv airflow "$AIRFLOW_VENV" "$AIRFLOW_REQUIREMENTS"; }
install_schemathesis() { install_venv schemathesis "$SCHEMATHESIS_VENV" "$SCHEMATHESIS_REQUIREMENTS"; }
install_bench() { install_venv bench "$BENCH_VENV" "$BENCH_REQUIREMENTS"; }

# Airflow's metadata database (sqlite) and configuration, under the state folder.
airflow_env() {
  echo "export AIRFLOW_HOME=$STATE/airflow"
  echo "export AIRFLOW__CORE__DAGS_FOLDER=$ROOT/airflow/dags"
  echo "export AIRFLOW__CORE__LOAD_EXAMPLES=false"
  # The DAG files import their shared module (airq_common) from the DAG folder.
  echo "export PYTHONPATH=$ROOT/airflow/dags"
  echo "export AIRQ_AIRFLOW=$AIRFLOW_VENV/bin/airflow"
}

init_airflow() {
  [ -f "$STATE/airflow/airflow.db" ] && return 0
  log "initialising Airflow's database in $STATE/airflow"
  mkdir -p "$STATE/airflow"
  (eval "$(airflow_env)" && "$AIRQ_AIRFLOW" db migrate >"$LOGS/airflow-migrate.log" 2>&1) \
    || { tail -20 "$LOGS/airflow-migrate.log" >&2; exit 1; }
}

pg_running() { [ -f "$(pg_dir)/data/postmaster.pid" ] && runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$(pg_dir)/data" status >/dev/null 2>&1; }

start_postgres() {
  local dir; dir=$(pg_dir)
  if [ ! -f "$dir/data/PG_VERSION" ]; then
    log "initialising PostgreSQL cluster in $dir/data"
    mkdir -p "$dir"
    chown postgres:postgres "$dir"
    runuser -u postgres -- "$PG_BIN/initdb" -D "$dir/data" -A trust -U postgres -E UTF8 >"$LOGS/initdb.log" 2>&1
    cat >>"$dir/data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
unix_socket_directories = '$dir'
max_connections = 200
shared_buffers = 256MB
synchronous_commit = on
fsync = on
CONF
  fi
  if pg_running; then
    log "PostgreSQL already running on port $PG_PORT"
  else
    log "starting PostgreSQL on 127.0.0.1:$PG_PORT"
    runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -o "-p $PG_PORT" -w -t 60 start >/dev/null
  fi
  # Ingest-heavy: fewer checkpoints (each one rewrites full pages into the WAL). Durable as ever.
  psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -qc "ALTER SYSTEM SET max_wal_size = '4GB'" \
    -c "ALTER SYSTEM SET checkpoint_timeout = '15min'" -c "SELECT pg_reload_conf()" >/dev/null
  ensure_database airq
  if [[ $KAFKA_STORAGE == postgres://* ]]; then
    ensure_database tansu
    # Idempotent (if not exists / create or replace): also brings an older schema up to date.
    # Warnings only: each "already exists, skipping" notice is expected on every start.
    PGOPTIONS='-c client_min_messages=warning' \
      psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -d tansu -q -v ON_ERROR_STOP=1 -f "$TANSU_SCHEMA" \
      -f "$TANSU_PLANNER" >/dev/null
  fi
}

ensure_database() {
  psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname='$1'" | grep -q 1 \
    || psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -qc "CREATE DATABASE $1"
}

# Retention of a platform topic, in ms: Tansu's maintenance (every 10 min) deletes records
# older than this from topics whose cleanup.policy is delete, so the log does not grow
# without bound. The rare, small topics keep a week, as Kafka's default.
retention_ms() {
  case $1 in
    dead_letter|anomalies) echo $((7 * 24 * 3600 * 1000)) ;;
    *) echo $((RETENTION_HOURS * 3600 * 1000)) ;;
  esac
}

tansu_pid() { cat "$STATE/tansu.pid" 2>/dev/null || true; }
tansu_running() { local p; p=$(tansu_pid); [ -n "$p" ] && kill -0 "$p" 2>/dev/null; }

wait_port() {
  for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.2
  done
  return 1
}

start_tansu() {
  if tansu_running; then
    log "Tansu already running on port $KAFKA_PORT"
    return 0
  fi
  mkdir -p "$STATE/tansu"
  log "starting Tansu on 127.0.0.1:$KAFKA_PORT ($KAFKA_STORAGE)"
  (cd "$STATE/tansu" && exec nohup "$TANSU" broker \
    --listener-url "tcp://127.0.0.1:$KAFKA_PORT" \
    --advertised-listener-url "tcp://127.0.0.1:$KAFKA_PORT" \
    --storage-engine "$KAFKA_STORAGE" >>"$LOGS/tansu.log" 2>&1) &
  echo $! >"$STATE/tansu.pid"
  wait_port "$KAFKA_PORT" || { tail -20 "$LOGS/tansu.log" >&2; log "Tansu did not start"; exit 1; }
  local existing; existing=$("$TANSU" topic list --broker "tcp://127.0.0.1:$KAFKA_PORT" 2>/dev/null || true)
  for t in "${TOPICS[@]}"; do
    if ! grep -qw "$t" <<<"$existing"; then
      "$TANSU" topic create "$t" --partitions "$PARTITIONS" --broker "tcp://127.0.0.1:$KAFKA_PORT" \
        --config cleanup.policy=delete --config "retention.ms=$(retention_ms "$t")" >/dev/null 2>&1 \
        || log "topic $t: create failed (it may exist already)"
    fi
  done
}

mlflow_pid() { cat "$STATE/mlflow.pid" 2>/dev/null || true; }
mlflow_running() { local p; p=$(mlflow_pid); [ -n "$p" ] && kill -0 "$p" 2>/dev/null; }

start_mlflow() {
  if mlflow_running; then
    log "MLflow already running on port $MLFLOW_PORT"
    return 0
  fi
  mkdir -p "$STATE/mlflow/artifacts"
  log "starting MLflow on 127.0.0.1:$MLFLOW_PORT (sqlite backend store, artifacts served by the server)"
  nohup "$MLFLOW_VENV/bin/mlflow" server --host 127.0.0.1 --port "$MLFLOW_PORT" --workers 2 \
    --backend-store-uri "sqlite:///$STATE/mlflow/mlflow.db" \
    --serve-artifacts --artifacts-destination "$STATE/mlflow/artifacts" >>"$LOGS/mlflow.log" 2>&1 &
  echo $! >"$STATE/mlflow.pid"
  # A first start creates and migrates its database, then each of the 2 workers imports
  # MLflow's server: on a cold page cache and 2 busy cores that took more than 60 s once (CI,
  # 2026-12-05: the workers had not answered when a 60 s wait gave up). Wait up to 5 minutes,
  # and say so every 30 s.
  local waited=0
  while [ "$waited" -lt 600 ]; do
    curl -sf --max-time 5 "http://127.0.0.1:$MLFLOW_PORT/health" >/dev/null 2>&1 && return 0
    mlflow_running || break
    sleep 0.5
    waited=$((waited + 1))
    [ $((waited % 60)) -eq 0 ] && log "MLflow not answering yet after $((waited / 2)) s"
  done
  tail -40 "$LOGS/mlflow.log" >&2
  log "MLflow did not start"
  exit 1
}

cmd_up() {
  install_postgres
  install_compose_checker
  install_tansu
  install_mlflow
  install_airflow
  install_schemathesis
  start_postgres
  start_tansu
  start_mlflow
  init_airflow
  cmd_status
}

cmd_down() {
  if mlflow_running; then
    log "stopping MLflow"
    # The server's gunicorn/uvicorn workers are its children.
    pkill -TERM -P "$(mlflow_pid)" 2>/dev/null || true
    kill "$(mlflow_pid)" 2>/dev/null || true
    for _ in $(seq 1 50); do mlflow_running || break; sleep 0.1; done
  fi
  rm -f "$STATE/mlflow.pid"
  if tansu_running; then
    log "stopping Tansu"
    kill "$(tansu_pid)" 2>/dev/null || true
    for _ in $(seq 1 50); do tansu_running || break; sleep 0.1; done
  fi
  rm -f "$STATE/tansu.pid"
  if pg_running; then
    log "stopping PostgreSQL"
    runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$(pg_dir)/data" -m fast -w stop >/dev/null
  fi
}

cmd_status() {
  if pg_running; then echo "postgres  up    postgres://postgres@127.0.0.1:$PG_PORT/airq  data $(pg_dir)/data"; else echo "postgres  down"; fi
  if tansu_running; then echo "kafka     up    127.0.0.1:$KAFKA_PORT  pid $(tansu_pid)  storage $KAFKA_STORAGE"; else echo "kafka     down"; fi
  if mlflow_running; then echo "mlflow    up    http://127.0.0.1:$MLFLOW_PORT  pid $(mlflow_pid)  store $STATE/mlflow"; else echo "mlflow    down"; fi
}

cmd_env() {
  echo "export AIRQ__DATABASE__URL=postgres://postgres@127.0.0.1:$PG_PORT/airq"
  echo "export AIRQ__KAFKA__BROKERS=127.0.0.1:$KAFKA_PORT"
  echo "export AIRQ_TEST_PG_URL=postgres://postgres@127.0.0.1:$PG_PORT/postgres"
  echo "export AIRQ_TEST_BROKERS=127.0.0.1:$KAFKA_PORT"
  echo "export AIRQ_PG_BIN=$PG_BIN"
  echo "export AIRQ__MLFLOW__URL=http://127.0.0.1:$MLFLOW_PORT"
  echo "export AIRQ_TEST_MLFLOW_URL=http://127.0.0.1:$MLFLOW_PORT"
  echo "export AIRQ_PYTHON=$MLFLOW_VENV/bin/python"
  echo "export AIRQ_TANSU_BIN=$TANSU"
  echo "export AIRQ_TANSU_SCHEMA=$TANSU_SCHEMA"
  # The tests delete their topics from the broker's storage, never through DeleteTopics (docs/tansu.md).
  echo "export AIRQ_KAFKA_STORAGE=$KAFKA_STORAGE"
  echo "export AIRQ_SCHEMATHESIS=$SCHEMATHESIS_VENV/bin/schemathesis"
  echo "export AIRQ_BENCH_PYTHON=$BENCH_VENV/bin/python"
  airflow_env
}

cmd_reset() {
  cmd_down
  log "deleting $STATE and $(pg_dir)"
  rm -rf "$(pg_dir)" "$STATE"
}

case "${1:-status}" in
  up) cmd_up ;;
  reset) cmd_reset ;;
  down|stop) cmd_down ;;
  status) cmd_status ;;
  env) cmd_env ;;
  bench-python) install_bench; echo "$BENCH_VENV/bin/python" ;;
  *) echo "usage: $0 up|down|status|env|reset|bench-python" >&2; exit 2 ;;
esac
