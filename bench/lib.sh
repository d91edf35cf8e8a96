# Shared by the bench scripts (sourced).

# start_tansu PORT LOG STORAGE: a second Tansu on STORAGE, its log appended to LOG. Sets
# TANSU_PID.
start_tansu() {
  local port=$1 log=$2 storage=$3 cache=${AIRQ_CACHE_DIR:-$HOME/.cache/airq}
  "$cache/tansu-0.6.0/bin/tansu" broker --listener-url "tcp://127.0.0.1:$port" \
    --advertised-listener-url "tcp://127.0.0.1:$port" --storage-engine "$storage" \
    >>"$log" 2>&1 &
  TANSU_PID=$!
  for _ in $(seq 1 50); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0; sleep 0.2; done
  echo "Tansu did not start on port $port (see $log)" >&2
  return 1
}

# start_memory_tansu PORT LOG: a second Tansu on memory storage, for single-pass benches
# (no restart, no resume from committed offsets: see docs/tansu.md). Sets TANSU_PID.
# The consumers started after it fetch every 10 ms (AIRQ_BENCH_FETCH_WAIT_MS), not the services'
# 100: Tansu 0.6.0 answers a fetch only once its whole wait is over, data or not, so 1 MB
# fetches at 100 ms cap any consumer at 10 MB/s, about 65k Beijing readings/s, librdkafka
# alone included (docs/benchmarks.md, 2026-12-07). Apache Kafka answers at once when it has data.
start_memory_tansu() {
  : >"$2"
  export AIRQ_KAFKA_FETCH_WAIT_MS=${AIRQ_BENCH_FETCH_WAIT_MS:-10}
  start_tansu "$1" "$2" memory://tansu/
}

# beijing_counts DIR: sets TOTAL (the data set's readings) and EXPECTED (those with at least one
# of PM2.5, PM10, NO2: the rows the cleaner stores; the rest go to dead_letter).
beijing_counts() {
  TOTAL=$(awk 'FNR>1 {n++} END {print n}' "$1"/raw/*.csv)
  EXPECTED=$(awk -F, 'FNR>1 && !($6=="NA" && $7=="NA" && $9=="NA") {n++} END {print n}' "$1"/raw/*.csv)
}

# rows DB_URL: the readings stored there.
rows() { psql "$1" -tAc "select count(*) from readings"; }

# cpu_ticks PID: the process's user + system CPU time so far, in clock ticks (getconf CLK_TCK).
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
