#!/usr/bin/env bash
# First start of the compose PostgreSQL (docker-entrypoint-initdb.d): one database and owner per
# user of it (airq's application data, MLflow's store, Airflow's metadata) and a read-only role
# for Grafana on airq's tables, present and future (the migrations run later, as airq).
set -euo pipefail
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
  -v airq_pw="$AIRQ_DB_PASSWORD" -v mlflow_pw="$MLFLOW_DB_PASSWORD" \
  -v airflow_pw="$AIRFLOW_DB_PASSWORD" -v grafana_pw="$GRAFANA_DB_PASSWORD" <<'SQL'
CREATE ROLE airq LOGIN PASSWORD :'airq_pw';
CREATE ROLE mlflow LOGIN PASSWORD :'mlflow_pw';
CREATE ROLE airflow LOGIN PASSWORD :'airflow_pw';
CREATE ROLE grafana LOGIN PASSWORD :'grafana_pw';
CREATE DATABASE airq OWNER airq;
CREATE DATABASE mlflow OWNER mlflow;
CREATE DATABASE airflow OWNER airflow;
REVOKE CONNECT ON DATABASE mlflow, airflow FROM PUBLIC;
\connect airq
GRANT USAGE ON SCHEMA public TO grafana;
ALTER DEFAULT PRIVILEGES FOR ROLE airq IN SCHEMA public GRANT SELECT ON TABLES TO grafana;
ALTER ROLE grafana SET default_transaction_read_only = on;
ALTER ROLE grafana SET statement_timeout = '30s';
SQL
