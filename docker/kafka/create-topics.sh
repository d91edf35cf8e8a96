#!/usr/bin/env bash
# One-shot job of docker-compose.yml: the platform's topics (scripts/stack.sh creates the same
# natively). Data topics keep DATA_RETENTION_MS (24 h); dead_letter and anomalies keep a week.
set -euo pipefail
KT=/opt/kafka/bin/kafka-topics.sh
BOOT=kafka:9092
create() {
  "$KT" --bootstrap-server "$BOOT" --create --if-not-exists --topic "$1" \
    --partitions "${PARTITIONS:-6}" --replication-factor 1 \
    --config cleanup.policy=delete --config "retention.ms=$2"
}
create raw_data "${DATA_RETENTION_MS:-86400000}"
create processed_data "${DATA_RETENTION_MS:-86400000}"
create anomalies 604800000
create dead_letter 604800000
"$KT" --bootstrap-server "$BOOT" --list
