#!/usr/bin/env bash
# One-shot job of docker-compose.yml: Airflow's metadata database, and the admin's password
# (the simple auth manager's passwords file): AIRFLOW_ADMIN_PASSWORD if set, otherwise one
# generated once and printed here (`docker compose logs airflow-init`).
set -euo pipefail
airflow db migrate
file=/opt/airflow/secrets/passwords.json
user=${AIRFLOW_ADMIN_USER:-admin}
if [ -n "${AIRFLOW_ADMIN_PASSWORD:-}" ]; then
  python -c 'import json,sys; print(json.dumps({sys.argv[1]: sys.argv[2]}))' "$user" "$AIRFLOW_ADMIN_PASSWORD" >"$file"
  echo "Airflow user $user: password from AIRFLOW_ADMIN_PASSWORD"
elif [ ! -s "$file" ]; then
  pw=$(python -c 'import secrets; print(secrets.token_urlsafe(18))')
  python -c 'import json,sys; print(json.dumps({sys.argv[1]: sys.argv[2]}))' "$user" "$pw" >"$file"
  echo "Airflow user $user, generated password: $pw (kept in the airflow-secrets volume)"
else
  echo "Airflow user $user: password kept from the first start"
fi
chmod 600 "$file"
