"""docker-compose.yml, the Dockerfiles and Grafana's provisioning, checked without a Docker
engine (none runs on our machines): the compose file is valid for docker-compose and for the
Compose Specification's JSON schema, every image is pinned, and the two sides of every
reference agree (the services' config keys, the topics, volumes, networks, the DAGs' image)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "grafana"))
COMPOSE = ROOT / "docker-compose.yml"
# Debian's docker-compose (installed by scripts/stack.sh) ships the Compose Specification schema.
COMPOSE_SCHEMA = Path("/usr/lib/python3/dist-packages/compose/config/compose_spec.json")
AIRQ_BINARIES = ["sensor-sim", "stream-cleaner", "anomaly-detector", "raw-archive", "trainer", "predict-api"]
# The binaries the DAGs' tasks run in the airq image.
DAG_BINARIES = ["trainer", "stream-cleaner", "sensor-sim"]


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def defaults(binary: str) -> dict:
    return tomllib.loads((ROOT / "services" / binary / "config" / "default.toml").read_text())


def has_key(config: dict, path: list[str]) -> bool:
    for part in path:
        if not isinstance(config, dict) or part not in config:
            return False
        config = config[part]
    return True


def env_of(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def binary_of(service: dict) -> str | None:
    """The airq binary a service runs (its command's first word), if it runs one."""
    if not str(service.get("image", "")).startswith("airq:"):
        return None
    command = service.get("command") or []
    words = command if isinstance(command, list) else command.split()
    if service.get("entrypoint"):  # a shell line: the binary it starts
        words = " ".join(words).split()
    return next((w for w in words if w in AIRQ_BINARIES), None)


def test_docker_compose_accepts_the_file():
    exe = shutil.which("docker-compose")
    assert exe, "docker-compose is missing: scripts/stack.sh up installs Debian's package"
    out = subprocess.run([exe, "-f", str(COMPOSE), "config", "-q"], capture_output=True, text=True,
                         cwd=ROOT, env={"PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    # With every profile too: the replay and training jobs.
    out = subprocess.run([exe, "-f", str(COMPOSE), "--profile", "replay", "--profile", "train", "config",
                          "--services"], capture_output=True, text=True, cwd=ROOT, env={"PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    assert {"replay", "train"} <= set(out.stdout.split())


def test_the_file_follows_the_compose_specification(compose):
    import jsonschema

    assert COMPOSE_SCHEMA.exists(), f"{COMPOSE_SCHEMA} is missing: scripts/stack.sh up installs docker-compose"
    schema = json.loads(COMPOSE_SCHEMA.read_text())
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(compose), key=str)
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)


def test_every_image_is_pinned(compose):
    images = [s["image"] for s in compose["services"].values() if "image" in s]
    for dockerfile in [ROOT / "Dockerfile", *sorted((ROOT / "docker").glob("*/Dockerfile"))]:
        text = dockerfile.read_text()
        args = dict(re.findall(r"^ARG (\w+)=(\S+)", text, re.M))
        for ref in re.findall(r"^FROM (\S+)", text, re.M):
            images.append(re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], ref))
    stages = {m for m in re.findall(r"^FROM \S+ AS (\w+)", (ROOT / "Dockerfile").read_text(), re.M)}
    for image in images:
        if image in stages:
            continue
        name, _, tag = image.rpartition(":")
        assert name and tag and tag != "latest" and re.search(r"\d", tag), f"{image} is not pinned to a version"


def test_every_airq_setting_compose_passes_is_one_the_service_reads(compose):
    checked = 0
    for name, service in compose["services"].items():
        binary = binary_of(service)
        if binary is None:
            continue
        config = defaults(binary)
        for var in env_of(service):
            if var.startswith("AIRQ__"):
                path = var[len("AIRQ__"):].lower().split("__")
                assert has_key(config, path), f"{name}: {var} is not a key of {binary}'s config/default.toml"
                checked += 1
        # The built-in defaults point at 127.0.0.1, which is nothing in a container.
        for key in ("database.url", "kafka.brokers", "mlflow.url", "server.addr"):
            if has_key(config, key.split(".")):
                var = "AIRQ__" + key.upper().replace(".", "__")
                assert var in env_of(service), f"{name} ({binary}) must set {var}"
    assert checked >= 10


def test_the_dag_tasks_get_the_image_network_and_settings_compose_defines(compose):
    services = compose["services"]
    airflow = env_of(services["airflow-scheduler"])
    airq_images = {s["image"] for s in services.values() if str(s.get("image", "")).startswith("airq:")}
    assert airq_images == {airflow["AIRQ_IMAGE"]}
    network = compose["networks"][airflow["AIRQ_DOCKER_NETWORK"]]
    assert network["name"] == airflow["AIRQ_DOCKER_NETWORK"], "a fixed name, as the Docker API sees it"
    assert "/var/run/docker.sock" in " ".join(services["airflow-scheduler"]["volumes"])
    configs = {b: defaults(b) for b in DAG_BINARIES}
    for var in airflow:
        if var.startswith("AIRQ__"):
            path = var[len("AIRQ__"):].lower().split("__")
            assert any(has_key(c, path) for c in configs.values()), f"airflow: {var} is read by no task binary"
    for var in ("AIRQ__DATABASE__URL", "AIRQ__KAFKA__BROKERS", "AIRQ__MLFLOW__URL"):
        assert var in airflow, f"the DAG tasks need {var}"
    assert airflow["AIRQ_BEIJING_DIR"].startswith("/"), "a path inside the task container"


def test_every_topic_the_services_use_is_created_by_the_init_job():
    script = (ROOT / "docker" / "kafka" / "create-topics.sh").read_text()
    created = set(re.findall(r"^create (\w+)", script, re.M))
    for binary in ("sensor-sim", "stream-cleaner", "anomaly-detector", "raw-archive"):
        topics = set(defaults(binary)["kafka"]["topics"].values())
        assert topics <= created, f"{binary} uses {topics - created}, which kafka-init does not create"


def test_references_resolve(compose):
    services = compose["services"]
    volumes = set(compose.get("volumes") or {})
    networks = set(compose.get("networks") or {})
    for name, s in services.items():
        for dep in (s.get("depends_on") or {}):
            assert dep in services, f"{name} depends on unknown {dep}"
        for net in s.get("networks") or []:
            assert net in networks, f"{name} uses undeclared network {net}"
        for v in s.get("volumes") or []:
            source = v.split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), f"{name} mounts {source}, which is not in the repository"
            elif not source.startswith(("/", "$", "..")):
                assert source in volumes, f"{name} uses undeclared volume {source}"
        for port in s.get("ports") or []:
            assert re.fullmatch(r"\$\{\w+:-\d+\}:\d+", port), f"{name}: port {port} is not configurable"
    published = {n for n, s in services.items() if s.get("ports")}
    assert published == {"grafana", "airflow-apiserver", "mlflow", "predict-api"}, "ports only for people"
    for consumer in ("stream-cleaner", "anomaly-detector", "predict-api"):
        assert services[consumer]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    for name, s in services.items():
        if s.get("ports"):
            assert "healthcheck" in s and not s["healthcheck"].get("disable"), f"{name} serves without a healthcheck"


def test_every_setting_has_a_documented_default():
    documented = dict(re.findall(r"^(\w+)=(.*)$", (ROOT / ".env.example").read_text(), re.M))
    used = dict(re.findall(r"\$\{(\w+):-([^}]*)\}", COMPOSE.read_text()))
    assert set(used) <= set(documented), f"not in .env.example: {set(used) - set(documented)}"
    for var, default in used.items():
        assert documented[var] == default, f"{var}: compose defaults to {default!r}, .env.example says {documented[var]!r}"


def test_the_image_builds_as_the_native_build_does():
    dockerfile = (ROOT / "Dockerfile").read_text()
    make_build = re.search(r"^build:\n\t(.+)$", (ROOT / "Makefile").read_text(), re.M).group(1)
    assert make_build.startswith("cargo build --release --workspace --bins")
    assert "cargo build --release --locked --workspace --bins" in dockerfile
    assert "cargo chef cook --release --locked --workspace --bins" in dockerfile, "dependencies in their own layer"
    runtime = dockerfile.split("AS runtime", 1)[1]
    assert re.search(r"^USER (?!root)\w+", runtime, re.M), "the runtime stage runs as a non-root user"
    assert "HEALTHCHECK" in runtime and "org.opencontainers.image.source" in runtime
    members = [p.parent.name for p in (ROOT / "services").glob("*/Cargo.toml")]
    for binary in members:
        assert f"target/release/{binary}" in dockerfile, f"the image lacks {binary}"
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {"target/", ".stack/", ".env"} <= set(ignored)


def test_the_health_probe_reads_an_http_status(tmp_path):
    import http.server
    import threading

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200 if self.path == "/health" else 503)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        probe = [str(ROOT / "scripts" / "http-health"), "127.0.0.1", str(server.server_port)]
        assert subprocess.run([*probe, "/health"]).returncode == 0
        assert subprocess.run([*probe, "/other"]).returncode == 1
    finally:
        server.shutdown()
    assert subprocess.run([str(ROOT / "scripts" / "http-health"), "127.0.0.1", "1", "/health"],
                          stderr=subprocess.DEVNULL).returncode == 1


def test_grafana_provisioning_and_dashboards_agree(compose, tmp_path):
    import generate

    committed = {p.name: p.read_text() for p in (ROOT / "grafana" / "dashboards").glob("*.json")}
    assert committed == generate.render(), "grafana/dashboards is stale: run python3 grafana/generate.py"
    sources = yaml.safe_load((ROOT / "grafana/provisioning/datasources/airq.yaml").read_text())["datasources"]
    uids = {s["uid"] for s in sources}
    providers = yaml.safe_load((ROOT / "grafana/provisioning/dashboards/airq.yaml").read_text())["providers"]
    mounts = dict(v.split(":")[:2] for v in compose["services"]["grafana"]["volumes"])
    assert mounts["./grafana/dashboards"] == providers[0]["options"]["path"]
    assert mounts["./grafana/provisioning"] == "/etc/grafana/provisioning"
    assert "GRAFANA_DB_PASSWORD" in env_of(compose["services"]["grafana"])
    assert sources[0]["user"] == "grafana" and sources[0]["jsonData"]["database"] == "airq"
    for text in committed.values():
        dash = json.loads(text)
        assert dash["uid"] and dash["title"].startswith("airq / ")
        ids = [p["id"] for p in dash["panels"]]
        assert len(ids) == len(set(ids))
        for p in dash["panels"]:
            assert p["datasource"]["uid"] in uids
            assert p["targets"][0]["rawSql"].strip() and p["airqColumns"]
            g = p["gridPos"]
            assert 0 <= g["x"] and g["x"] + g["w"] <= 24
