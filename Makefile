# airq: the two commands that matter are `make run` and `make test` (see README.md).
SHELL := /bin/bash
.DEFAULT_GOAL := help
STATE ?= .stack
# The Beijing data set (README, Data): the same variable the binaries, scripts and compose read.
AIRQ_BEIJING_DIR ?= ../shared/data/beijing_prsa
# `make train` window (after `make replay`: TRAIN_FROM=2013-03-01 TRAIN_TO=2017-03-01)
TRAIN_FROM ?= $(shell date -u -d '7 days ago' +%F)
TRAIN_TO ?= $(shell date -u -d tomorrow +%F)
ENV = eval "$$(scripts/stack.sh env)"

help:
	@echo "make run      start the stack (PostgreSQL, Kafka) and the services, simulator streaming"
	@echo "make test     start the stack, check fmt + clippy, run every test"
	@echo "make stop     stop services and stack     make status   what runs"
	@echo "make replay   replay the Beijing data set into the running platform"
	@echo "make airflow  Airflow 3 UI + scheduler with the airq DAGs (foreground)"
	@echo "make train    run the ML pipeline on the last 7 days of readings (TRAIN_FROM=, TRAIN_TO=)"
	@echo "make demo     prepare and check the 20-minute demo on the running platform (docs/demo.md)"
	@echo "make catalog regenerate docs/catalog.md (the data catalog; a test fails when it is stale)"
	@echo "make bench    the replay, platform, memory, latency, training and predict benchmarks (docs/benchmarks.md)"

stack:
	scripts/stack.sh up

build:
	cargo build --release --workspace --bins

run: stack build
	@$(ENV) && target/release/stream-cleaner migrate
	@scripts/services.sh start
	@scripts/stack.sh status
	@scripts/services.sh status
	@echo "readings so far: psql postgres://postgres@127.0.0.1:$${AIRQ_PG_PORT:-55432}/airq -c 'select count(*) from readings'"

# Lint first (fails fast), then every test on the real servers.
test: stack
	cargo fmt --all --check
	cargo clippy --workspace --all-targets --locked -- -D warnings
	@# The raw-archive's MongoDB test is ignored unless AIRQ_MONGODB_URL names a server (none here).
	@$(ENV) && if command -v cargo-nextest >/dev/null; then cargo nextest run --workspace --no-fail-fast $${AIRQ_MONGODB_URL:+--run-ignored all}; else cargo test --workspace --no-fail-fast; fi
	@# The DAGs, the compose stack and the Grafana dashboards (pytest, in Airflow's virtualenv)
	@# with the binaries the Rust tests built.
	@$(ENV) && AIRQ_BIN_DIR=$(CURDIR)/target/debug "$$(dirname "$$AIRQ_AIRFLOW")/python" -m pytest -q -p no:cacheprovider airflow/tests tests/deploy

# Prepares the 20-minute demo on the running platform (`make run` first) and prints its steps.
demo: build
	scripts/demo.sh

# The data catalog's page, generated from the code (crates/airq-catalog).
catalog:
	cargo run -q -p airq-catalog -- markdown > docs/catalog.md

train: stack build
	@$(ENV) && target/release/trainer extract --from $(TRAIN_FROM) --to $(TRAIN_TO) \
	  && target/release/trainer validate && target/release/trainer train && target/release/trainer evaluate

# Airflow's UI and scheduler (http://127.0.0.1:8080, user admin, password in
# .stack/airflow/simple_auth_manager_passwords.json.generated), running the DAGs of
# airflow/dags with the native binaries of target/release (scripts/airflow.sh).
airflow: stack build
	scripts/airflow.sh

replay: build
	@$(ENV) && target/release/sensor-sim replay --data-dir $(AIRQ_BEIJING_DIR) --speedup 0

bench: stack build
	bench/replay.sh
	bench/pg_insert.sh
	bench/profile_cleaner.sh
	bench/json_parsers.sh
	bench/platform.sh
	bench/memory.sh 30 10        # the platform platform.sh left running, 30 live minutes after the replay
	bench/latency.sh 5000 60
	bench/train_beijing.sh
	bench/predict_load.sh
	bench/grafana.sh

stop:
	-@scripts/services.sh stop
	scripts/stack.sh down

status:
	@scripts/stack.sh status
	@scripts/services.sh status

.PHONY: help stack build run test train airflow replay bench stop status catalog demo
