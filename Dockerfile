# syntax=docker/dockerfile:1
# One image for every airq binary (sensor-sim, stream-cleaner, anomaly-detector, raw-archive,
# trainer, predict-api); docker-compose.yml picks the binary with `command:`. Build: `docker compose build`
# (or `docker build -t airq .`).
#
# Stages: chef (toolchain + cargo-chef) -> planner (the dependency recipe of the workspace) ->
# builder (dependencies first, cached as long as Cargo.toml/Cargo.lock do not change, then the
# workspace, exactly as `make build` does natively) -> runtime (Debian slim, non-root).

ARG RUST_IMAGE=rust:1.95.0-slim-bookworm
ARG RUNTIME_IMAGE=debian:12.11-slim

FROM ${RUST_IMAGE} AS chef
# librdkafka is built from source by rdkafka-sys (make, a C/C++ compiler, zlib for `libz`).
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential cmake perl python3 zlib1g-dev \
 && rm -rf /var/lib/apt/lists/*
RUN cargo install cargo-chef --locked --version 0.1.76
WORKDIR /build

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
COPY --from=planner /build/recipe.json recipe.json
RUN cargo chef cook --release --locked --workspace --bins --recipe-path recipe.json
COPY . .
# The native build's command (Makefile `build`), with the lock file enforced.
RUN cargo build --release --locked --workspace --bins \
 && mkdir -p /out \
 && cp target/release/sensor-sim target/release/stream-cleaner target/release/anomaly-detector \
       target/release/trainer target/release/predict-api target/release/raw-archive /out/

FROM ${RUNTIME_IMAGE} AS runtime
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="airq" \
      org.opencontainers.image.description="airq services: sensor-sim, stream-cleaner, anomaly-detector, raw-archive, trainer, predict-api" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/airq/airq"
# ca-certificates: the OpenAQ client (rustls with the system roots); zlib: librdkafka.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates zlib1g \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 airq \
 && useradd --system --uid 10001 --gid airq --home-dir /var/lib/airq --create-home airq
COPY --from=builder /out/ /usr/local/bin/
COPY scripts/http-health /usr/local/bin/http-health
USER airq:airq
WORKDIR /var/lib/airq
# Only predict-api serves HTTP; compose gives each service its own healthcheck.
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD ["http-health", "127.0.0.1", "8000", "/health"]
ENTRYPOINT []
CMD ["predict-api"]
