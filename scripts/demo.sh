#!/usr/bin/env bash
# The 20-minute demo (docs/demo.md), prepared and checked on the running platform (`make run`):
#
#   scripts/demo.sh          (or `make demo`)
#
# 1. checks the platform answers (PostgreSQL, MLflow, predict-api);
# 2. replays the Beijing data into it, unless its window is stored already, and waits until
#    every reading has landed;
# 3. trains, gates and (if it wins) promotes a model on that window, unless production has one;
# 4. asks /predict for the next 24 h of a Beijing station;
# 5. injects the demo's fault (a 900 ug/m3 reading of a live sensor) and waits for its alert;
# 6. prints each step of the demo with its command and URL.
#
# It stops at the first step that fails, saying what failed. Overridable: AIRQ_BIN_DIR
# (target/release), AIRQ_BEIJING_DIR, AIRQ_DEMO_FROM / AIRQ_DEMO_TO (the replay and training
# window, 2013-03-01 / 2017-03-01), AIRQ_DEMO_STATION (bj_aotizhongxin), AIRQ_DEMO_SENSOR (the
# live sensor given the fault, CAP_001), AIRQ_PREDICT_URL (http://127.0.0.1:8000), and the
# services' own AIRQ__SECTION__KEY settings (database, topics, MLflow model).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# The stack's environment, under whatever the caller set already (a test's database, topics).
caller=$(export -p | grep -E '^declare -x AIRQ' || true)
eval "$("$ROOT/scripts/stack.sh" env)"
eval "$caller"
BIN=${AIRQ_BIN_DIR:-$ROOT/target/release}
export AIRQ_BEIJING_DIR=${AIRQ_BEIJING_DIR:-$(cd "$ROOT/.." && pwd)/shared/data/beijing_prsa}
FROM=${AIRQ_DEMO_FROM:-2013-03-01}
TO=${AIRQ_DEMO_TO:-2017-03-01}
STATION=${AIRQ_DEMO_STATION:-bj_aotizhongxin}
SENSOR=${AIRQ_DEMO_SENSOR:-CAP_001}
API=${AIRQ_PREDICT_URL:-http://127.0.0.1:8000}
PG_URL=${AIRQ__DATABASE__URL:-postgres://postgres@127.0.0.1:${AIRQ_PG_PORT:-55432}/airq}
MLFLOW=${AIRQ__MLFLOW__URL:-http://127.0.0.1:${AIRQ_MLFLOW_PORT:-5500}}
MODEL=${AIRQ__MLFLOW__MODEL:-airq-pm25-1h}

step() { printf '\n== %s\n' "$*"; }
fail() { printf 'demo: %s\n' "$*" >&2; exit 1; }
sql() { psql "$PG_URL" -XAtq -v ON_ERROR_STOP=1 -c "$1"; }
for b in sensor-sim stream-cleaner trainer; do
  [ -x "$BIN/$b" ] || fail "$BIN/$b is missing: run \`make run\` (it builds the binaries)"
done

step "1. The platform answers"
sql "SELECT 1" >/dev/null || fail "PostgreSQL does not answer at $PG_URL: run \`make run\`"
curl -fsS "$MLFLOW/health" >/dev/null || fail "MLflow does not answer at $MLFLOW: run \`make run\`"
curl -fsS "$API/health" >/dev/null || fail "predict-api does not answer at $API: run \`make run\`"
echo "PostgreSQL, MLflow and predict-api answer; $(sql "SELECT count(*) FROM readings") readings stored"

step "2. The Beijing data, $FROM to $TO"
beijing_stored() { sql "SELECT count(*) FROM readings WHERE sensor_id LIKE 'bj\\_%' AND ts >= '$FROM' AND ts < '$TO'"; }
stored=$(beijing_stored)
if [ "$stored" -gt 0 ]; then
  echo "already stored: $stored readings (delete them to replay again)"
else
  summary=$("$BIN/sensor-sim" replay --data-dir "$AIRQ_BEIJING_DIR" --speedup 0 --quiet --from "$FROM" --to "$TO" | tail -1)
  echo "published: $summary"
  "$BIN/stream-cleaner" landed --summary "$summary" --timeout-secs "${AIRQ_DEMO_LANDED_SECS:-900}" \
    || fail "the replay did not land in PostgreSQL (is stream-cleaner running? \`make status\`)"
  echo "stored: $(beijing_stored) readings"
fi

step "3. A model in production"
production() { curl -fsS -G "$MLFLOW/api/2.0/mlflow/registered-models/alias" \
  --data-urlencode "name=$MODEL" --data-urlencode "alias=production" 2>/dev/null \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["model_version"]["version"])' 2>/dev/null || true; }
version=$(production)
if [ -n "$version" ]; then
  echo "$MODEL version $version is in production (AIRQ__MLFLOW__MODEL names another registry entry)"
else
  snapshot=$("$BIN/trainer" extract --from "$FROM" --to "$TO")
  "$BIN/trainer" validate --snapshot-run "$snapshot"
  candidate=$("$BIN/trainer" train --snapshot-run "$snapshot")
  echo "trained: $MODEL version $candidate (staging)"
  "$BIN/trainer" evaluate --version "$candidate"
  version=$(production)
  [ -n "$version" ] || fail "evaluate kept version $candidate out of production (its reason is above); \
the demo needs a served model: set the alias by hand in MLflow ($MLFLOW/#/models/$MODEL) to show one"
fi

step "4. The next 24 hours of $STATION"
for _ in $(seq 1 60); do
  curl -fsS "$API/ready" >/dev/null 2>&1 && break
  sleep 1
done
forecast=$(curl -sS -X POST "$API/predict" -H 'content-type: application/json' \
  -d "{\"sensor_id\":\"$STATION\",\"horizons\":[1,6,24]}")
echo "$forecast"
echo "$forecast" | python3 -c 'import json,sys; d=json.load(sys.stdin); assert "pm2_5" in d, d' \
  || fail "/predict did not forecast $STATION"

step "5. A fault injected into $SENSOR, and its alert"
sent_at=$(sql "SELECT now()")
now=$(date -u -d '+3 seconds' +%FT%TZ)
printf '%s\n' "{\"sensor_id\":\"$SENSOR\",\"timestamp\":\"$now\",\"location\":{\"lat\":48.8566,\"lon\":2.3522},\"measurements\":{\"pm2_5\":900,\"pm10\":950,\"no2\":40}}" \
  | "$BIN/sensor-sim" send
alert=""
for _ in $(seq 1 "${AIRQ_DEMO_ALERT_SECS:-90}"); do
  alert=$(sql "SELECT kind || ': ' || explanation FROM anomalies WHERE sensor_id = '$SENSOR' \
               AND observed >= 900 AND updated_at >= '$sent_at' ORDER BY updated_at LIMIT 1")
  [ -n "$alert" ] && break
  sleep 1
done
[ -n "$alert" ] || fail "no alert for $SENSOR's 900 ug/m3 reading (is the live fleet of sensor-sim and anomaly-detector running? \`make status\`)"
echo "alert: $alert"

step "The demo, step by step (docs/demo.md)"
cat <<EOF
1. Data flowing     make status
                    psql $PG_URL -c "select sensor_id, ts, pm2_5, aqi, flag_names from readings_flagged order by ts desc limit 5"
                    curl -s $API/catalog   # every dataset, its lineage and freshness (docs/catalog.md)
                    Grafana (docker compose): http://localhost:3000, dashboards airq / Overview, Sensor, Model
2. A fault, live    the command of step 5 above; then
                    psql $PG_URL -c "select kind, severity, explanation from anomalies where sensor_id = '$SENSOR' order by detected_at desc limit 5"
3. A model          MLflow: $MLFLOW/#/models/$MODEL (aliases staging and production, per-horizon metrics)
                    /docs: $API/docs, e.g. POST /predict {"sensor_id":"$STATION","horizons":[1,6,24]}
                    promote: make train TRAIN_FROM=$FROM TRAIN_TO=$TO (evaluate moves production only if it wins)
4. Airflow          make airflow, then http://127.0.0.1:8080 (user admin; password in .stack/airflow/simple_auth_manager_passwords.json.generated)
                    trigger airq_backfill with {"start": "2016-01-01", "end": "2016-01-08"}
5. Close            docs/report.md (figures and the commands that reproduce them); make stop
EOF
