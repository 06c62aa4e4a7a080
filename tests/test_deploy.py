"""deploy/ and configs/{cpu,gpu,production}.yaml checked without a Docker engine or a cluster.

What can drift silently between the deployment files and the code is checked against the code itself: settings
names (the pydantic tree), the CLI (its parser), the HTTP paths (a real HealthServer), the metric names (a real
registry), the pinned requirements. Linters run when installed (yamllint, hadolint, check-jsonschema for the
compose spec, kubernetes-validate), and their tests skip with the reason otherwise.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel, SecretStr

from stream_iqa.cli import build_parser
from stream_iqa.service.metrics import HealthServer, ServiceMetrics
from stream_iqa.settings import DEFAULT_CHECKPOINT, REPO_ROOT, Settings

DEPLOY = REPO_ROOT / "deploy"
K8S = DEPLOY / "k8s"
DOCKERFILE = DEPLOY / "Dockerfile"
COMPOSE = DEPLOY / "docker-compose.yml"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "stream-iqa.json"
OPERATIONS = REPO_ROOT / "docs" / "OPERATIONS.md"
CONFIGS = {name: REPO_ROOT / "configs" / f"{name}.yaml" for name in ("cpu", "gpu", "production")}
YAML_FILES = sorted([*DEPLOY.rglob("*.yaml"), *DEPLOY.rglob("*.yml"), DEPLOY / ".yamllint", *CONFIGS.values()])
JSON_FILES = sorted(DEPLOY.rglob("*.json"))
K8S_CORE = ["namespace", "configmap", "deployment", "service", "pdb", "secret.template", "topics-job"]
# Placeholders the prose uses for "any variable"; not names anyone sets.
ENV_PLACEHOLDERS = {"STREAM_IQA_SECTION__KEY"}


# ------------------------------------------------------------------------------------------------------ helpers
def load_all(path: Path) -> list[Any]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def k8s(name: str, kind: str | None = None) -> dict[str, Any]:
    docs = load_all(K8S / f"{name}.yaml")
    if kind is not None:
        docs = [d for d in docs if d["kind"] == kind]
    assert len(docs) == 1, f"{name}.yaml: expected one {kind or 'document'}"
    return docs[0]


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comment lines dropped."""
    out: list[tuple[str, str]] = []
    buf = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not buf and (not line or line.startswith("#")):
            continue
        if buf and line.startswith("#"):
            continue
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        buf += line
        word, _, rest = buf.partition(" ")
        out.append((word.upper(), rest.strip()))
        buf = ""
    return out


def dockerfile_args(word: str) -> list[str]:
    return [rest for w, rest in dockerfile() if w == word]


def runtime_env() -> dict[str, str]:
    """ENV of the final stage (after `FROM base-${VARIANT} AS runtime`), ${VARIANT} left in."""
    env: dict[str, str] = {}
    in_runtime = False
    for word, rest in dockerfile():
        if word == "FROM":
            in_runtime = rest.endswith("AS runtime")
        elif word == "ENV" and in_runtime:
            for item in shlex.split(rest):
                key, _, value = item.partition("=")
                env[key] = value
    return env


def exec_form(word: str) -> list[str]:
    (rest,) = dockerfile_args(word)
    value = json.loads(rest)
    assert isinstance(value, list), f"{word} must use the JSON (exec) form so signals reach the service"
    return value


def settings_env_names() -> set[str]:
    """Every STREAM_IQA_… name the settings tree reads: sections (JSON) and their fields."""
    names = {"STREAM_IQA_CONFIG"}
    for section, field in Settings.model_fields.items():
        names.add(f"STREAM_IQA_{section.upper()}")
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            names |= {f"STREAM_IQA_{section.upper()}__{sub.upper()}" for sub in ann.model_fields}
    return names


def secret_env_names() -> set[str]:
    out = set()
    for section, field in Settings.model_fields.items():
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            for sub, f in ann.model_fields.items():
                if "SecretStr" in str(f.annotation):
                    out.add(f"STREAM_IQA_{section.upper()}__{sub.upper()}")
    return out


def env_names_in(text: str) -> set[str]:
    return {m for m in re.findall(r"STREAM_IQA_[A-Z0-9_]*[A-Z0-9]", text)}


_INTERP = re.compile(r"\$\{([A-Z0-9_]+)(?::?-([^}]*))?\}")


def compose_resolve(value: Any) -> str:
    """Compose interpolation with nothing set in the environment: ${VAR:-default} → default."""
    return _INTERP.sub(lambda m: m.group(2) or "", str(value))


def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def worker_services(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: svc for name, svc in doc["services"].items() if "build" in svc}


def linter(name: str) -> str:
    found = shutil.which(name) or (str(Path(sys.executable).parent / name)
                                   if (Path(sys.executable).parent / name).exists() else None)
    if not found:
        pytest.skip(f"{name} not installed (pip install {name}; see the deploy report for the pins)")
    return found


def drain_timeout(config: Path) -> float:
    return Settings.load(config=config).service.drain_timeout_s


def seconds(value: str | int) -> float:
    m = re.fullmatch(r"(?:(\d+)m)?(?:(\d+)s)?", str(value))
    assert m and any(m.groups()), f"duration {value!r}"
    return int(m.group(1) or 0) * 60 + int(m.group(2) or 0)


# ------------------------------------------------------------------------------------------------- parsing
@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_yaml_parses(path: Path) -> None:
    assert load_all(path), f"{path} is empty"


@pytest.mark.parametrize("path", JSON_FILES, ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_json_parses(path: Path) -> None:
    assert json.loads(path.read_text())


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_configs_load_as_settings(name: str) -> None:
    s = Settings.load(config=CONFIGS[name])
    assert s.model.device == {"cpu": "cpu", "gpu": "cuda", "production": "cuda"}[name]
    for secret in ("sasl_password", "ssl_password"):  # secrets come from the environment, never from the file
        assert getattr(s.kafka, secret) is None, f"{name}.yaml must not hold kafka.{secret}"
    assert s.kafka.max_poll_interval_ms / 1000 > max(s.service.drain_timeout_s, s.kafka.delivery_timeout_s)


def test_production_config_is_secure_and_bounded() -> None:
    s = Settings.load(config=CONFIGS["production"])
    assert s.kafka.security_protocol == "SASL_SSL" and s.kafka.sasl_mechanism and s.kafka.ssl_cafile
    assert s.kafka.ssl_check_hostname
    assert s.service.allowed_roots and not (s.video.allow_urls and not s.service.allowed_hosts)


# ------------------------------------------------------------------------------------ settings names (env vars)
def test_every_stream_iqa_variable_is_a_settings_field() -> None:
    valid = settings_env_names() | ENV_PLACEHOLDERS
    files = [DOCKERFILE, COMPOSE, OPERATIONS, *K8S.glob("*.yaml"), *CONFIGS.values()]
    unknown = {f"{p.relative_to(REPO_ROOT)}: {n}" for p in files for n in env_names_in(p.read_text()) - valid}
    assert not unknown, f"not settings fields: {sorted(unknown)}"


def test_every_variable_the_deployment_sets_is_documented() -> None:
    """The reverse: what deploy/ sets, docs/OPERATIONS.md names."""
    set_names = set(runtime_env()) | set(k8s_container_env()) | {
        n for svc in worker_services(compose()).values() for n in svc["environment"]}
    set_names = {n for n in set_names if n.startswith("STREAM_IQA_")}
    missing = set_names - env_names_in(OPERATIONS.read_text())
    assert not missing, f"docs/OPERATIONS.md does not mention {sorted(missing)}"


def k8s_container_env() -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container(k8s("deployment")).get("env", [])}


def test_secrets_only_from_secret_refs() -> None:
    secrets = secret_env_names()
    assert "STREAM_IQA_KAFKA__SASL_PASSWORD" in secrets
    for name, entry in k8s_container_env().items():
        if name in secrets:
            assert "secretKeyRef" in entry.get("valueFrom", {}), f"{name} must come from a Secret"
    for svc in worker_services(compose()).values():
        assert not secrets & set(svc["environment"]), "compose must not write secrets into the file"
    assert not secrets & set(runtime_env()), "the image must not bake secrets in"


def test_image_env_is_valid_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    env = runtime_env()
    assert "STREAM_IQA_CONFIG" in set(env)
    # the model is not copied beside the package: it is package data of the wheel the image installs, so the image
    # names no checkpoint and the default (inside the installed package) serves
    assert "STREAM_IQA_MODEL__CHECKPOINT" not in env
    assert not [a for a in dockerfile_args("COPY") if "model.safetensors" in a]
    assert any(shlex.split(a)[0] == "stream_iqa" for a in dockerfile_args("COPY")), "the wheel stage copies the package"
    data = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["stream_iqa"]
    for name in ("model.safetensors", "model.json", "model.onnx"):
        assert f"weights/*/{name}" in data and (DEFAULT_CHECKPOINT.parent / name).is_file(), name
    # every variant's config is copied to where STREAM_IQA_CONFIG points
    for variant in ("cpu", "gpu"):
        path = env["STREAM_IQA_CONFIG"].replace("${VARIANT}", variant)
        assert path == f"/etc/stream-iqa/{variant}.yaml"
        assert any(f"configs/{variant}.yaml" in a and "/etc/stream-iqa/" in a for a in dockerfile_args("COPY"))
        assert f"AS base-{variant}" in DOCKERFILE.read_text()
        monkeypatch.setenv("STREAM_IQA_CONFIG", str(CONFIGS[variant]))
        for key, value in env.items():
            if key.startswith("STREAM_IQA_") and key != "STREAM_IQA_CONFIG":
                monkeypatch.setenv(key, value)
        s = Settings()
        assert s.model.checkpoint is None or s.model.checkpoint == DEFAULT_CHECKPOINT


# ------------------------------------------------------------------------------------- image: CLI, probes, pins
def test_entrypoint_is_the_cli_serve_command() -> None:
    entry, cmd = exec_form("ENTRYPOINT"), exec_form("CMD")
    scripts = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert entry[0] in scripts and scripts[entry[0]] == "stream_iqa.cli:main"
    args = build_parser().parse_args(entry[1:] + cmd)
    assert args.command == "serve"
    # Kubernetes replaces CMD with args; compose keeps CMD
    k8s_args = container(k8s("deployment")).get("args", cmd)
    assert build_parser().parse_args(entry[1:] + k8s_args).command == "serve"
    for svc in worker_services(compose()).values():
        assert "command" not in svc and "entrypoint" not in svc


def test_dockerfile_structure() -> None:
    text = DOCKERFILE.read_text()
    users = dockerfile_args("USER")
    assert users and users[-1] not in ("root", "0"), "the image must run as a non-root user"
    assert str(Settings().service.metrics_port) in dockerfile_args("EXPOSE")
    assert dockerfile_args("STOPSIGNAL") == ["SIGTERM"]
    # CUDA base matches the torch CUDA index (cu130 <-> 13.0) and, where the installed torch is a CUDA build, it
    cuda_image = re.search(r"ARG CUDA_IMAGE=nvidia/cuda:(\d+)\.(\d+)\.\d+-runtime-", text)
    index = re.search(r"ARG TORCH_CUDA_INDEX=https://download\.pytorch\.org/whl/cu(\d+)", text)
    assert cuda_image and index, "CUDA runtime base and PyTorch CUDA index must be ARGs"
    assert index.group(1) == cuda_image.group(1) + cuda_image.group(2)
    assert "ARG TORCH_CPU_INDEX=https://download.pytorch.org/whl/cpu" in text
    import torch

    if torch.version.cuda and "+cu" in torch.__version__:
        assert torch.version.cuda.split(".")[:2] == [cuda_image.group(1), cuda_image.group(2)]
    # both variants exist and are selected by the VARIANT build arg
    assert re.search(r"^ARG VARIANT=gpu$", text, re.MULTILINE)
    assert "FROM base-${VARIANT} AS runtime" in text
    assert {svc["build"]["args"]["VARIANT"] for svc in worker_services(compose()).values()} == {"gpu", "cpu"}


def test_dockerfile_installs_the_pinned_requirements_then_the_wheel() -> None:
    runs = " ".join(dockerfile_args("RUN"))
    assert any(a.split()[0] == "requirements.txt" for a in dockerfile_args("COPY"))
    assert "pip install -r /tmp/requirements.txt" in runs
    # torch/torchvision versions are read from requirements.txt, never written twice
    assert "grep -E '^(torch|torchvision)=='" in runs
    instructions = " ".join(rest for _word, rest in dockerfile())
    assert not re.search(r"torch(vision)?==\d", instructions), "versions belong in requirements.txt only"
    # the package comes from a wheel of this repository, without dependencies (all pinned above)
    assert "pip wheel --no-cache-dir --no-deps --wheel-dir /wheels ." in runs
    assert "pip install --no-deps /tmp/wheels/*.whl" in runs
    assert runs.index("-r /tmp/requirements.txt") < runs.index("/tmp/wheels/*.whl")
    # the cpu variant installs the torch-free serving set unless CPU_TORCH=1 asks for the torch stack
    assert re.search(r"^ARG CPU_TORCH=0$", DOCKERFILE.read_text(), re.MULTILINE)
    branch = re.search(r'if \[ "\$VARIANT" = cpu \] && \[ "\$CPU_TORCH" != 1 \]; then\s+pip install -r '
                       r'/tmp/requirements-worker.txt;\s+else\s+(.*?)\s+fi\b', runs)
    assert branch, "the cpu variant must install requirements-worker.txt alone"
    assert "pip install -r /tmp/requirements.txt" in branch.group(1) and "$pins" in branch.group(1)
    worker = (REPO_ROOT / "requirements-worker.txt").read_text()
    assert not re.search(r"^(torch|torchvision|timm)\b", worker, re.MULTILINE)
    assert "onnxruntime" in worker
    # `make install` and the README use the same file
    assert "-r requirements.txt" in (REPO_ROOT / "Makefile").read_text()
    # test, evaluation and lint tools stay out of the image (and so does the compiler brisque's libsvm may need)
    assert "requirements-dev" not in runs and "pytest" not in (REPO_ROOT / "requirements.txt").read_text()
    assert "requirements" in (REPO_ROOT / "README.md").read_text()


def test_dockerignore_lets_every_copied_file_in() -> None:
    allowed = [line[1:].rstrip("/") for line in (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
               if line.startswith("!")]
    for args in dockerfile_args("COPY"):
        if args.startswith("--from"):
            continue
        *srcs, _dest = shlex.split(args)
        for src in srcs:
            assert (REPO_ROOT / src).exists(), src
            assert any(src.rstrip("/") == a or src.startswith(a + "/") for a in allowed), f"{src} is ignored"


def http_get(port: int, path: str) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_probes_hit_the_service_http_paths() -> None:
    c = container(k8s("deployment"))
    port = {p["name"]: p["containerPort"] for p in c["ports"]}
    probes = {kind: c[kind]["httpGet"] for kind in ("startupProbe", "livenessProbe", "readinessProbe")}
    assert probes["livenessProbe"]["path"] == "/healthz" and probes["startupProbe"]["path"] == "/healthz"
    assert probes["readinessProbe"]["path"] == "/readyz"
    prod = Settings.load(config=CONFIGS["production"])
    for probe in probes.values():
        assert port[probe["port"]] == prod.service.metrics_port
    (health,) = dockerfile_args("HEALTHCHECK")
    assert "/healthz" in health and "STREAM_IQA_SERVICE__METRICS_PORT" in health
    # the real server: alive and ready, then alive but not ready (what a broker outage or a drain looks like)
    state = {"ready": True}
    server = HealthServer(ServiceMetrics(), "127.0.0.1", 0, alive=lambda: True, ready=lambda: state["ready"]).start()
    try:
        for probe in probes.values():
            assert http_get(server.port, probe["path"]) == 200
        assert http_get(server.port, "/metrics") == 200
        state["ready"] = False
        assert http_get(server.port, "/healthz") == 200 and http_get(server.port, "/readyz") == 503
    finally:
        server.stop()


# ---------------------------------------------------------------------------------------------- Kubernetes
def test_deployment_env_makes_valid_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    dep = k8s("deployment")
    c = container(dep)
    cm = k8s("configmap")
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in dep["spec"]["template"]["spec"]["volumes"]}
    env = k8s_container_env()
    config_path = Path(env["STREAM_IQA_CONFIG"]["value"])
    (cfg_volume,) = [n for n, v in volumes.items() if v.get("configMap", {}).get("name") == cm["metadata"]["name"]]
    assert config_path.parent == Path(mounts[cfg_volume]) and config_path.name in cm["data"]
    (tmp_path / config_path.name).write_text(cm["data"][config_path.name])
    monkeypatch.setenv("STREAM_IQA_CONFIG", str(tmp_path / config_path.name))
    secret = k8s("secret.template")
    for name, entry in env.items():
        if name == "STREAM_IQA_CONFIG":
            continue
        src = entry.get("valueFrom", {})
        if "secretKeyRef" in src:
            ref = src["secretKeyRef"]
            assert ref["name"] == secret["metadata"]["name"] and ref["key"] in secret["stringData"]
            monkeypatch.setenv(name, "from-secret")
        elif "fieldRef" in src:
            monkeypatch.setenv(name, "pod-0")
        else:
            monkeypatch.setenv(name, str(entry["value"]))
    s = Settings()
    assert isinstance(s.kafka.sasl_password, SecretStr) and s.kafka.sasl_username == "from-secret"
    # the CA file and the allowed roots are mounted where the config says
    assert str(s.kafka.ssl_cafile).startswith(mounts["kafka-ca"] + "/")
    assert Path(s.kafka.ssl_cafile).name in [i["path"] for i in volumes["kafka-ca"]["secret"]["items"]]
    for root in s.service.allowed_roots:
        assert str(root) in mounts.values()
    # graceful termination outlives the drain deadline
    grace = dep["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace > s.service.drain_timeout_s + 5
    assert c["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert dep["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True


def test_configmap_is_generated_from_production_config() -> None:
    spec = importlib.util.spec_from_file_location("render_config", K8S / "render_config.py")
    mod = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(mod)
    assert mod.main(["--check"]) == 0, "run: python deploy/k8s/render_config.py"
    text = CONFIGS["production"].read_text()
    assert k8s("configmap")["data"]["stream-iqa.yaml"] == text
    annotations = k8s("deployment")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["checksum/config"] == mod.checksum(text)


def test_service_pdb_and_kustomization_select_the_workers() -> None:
    dep = k8s("deployment")
    labels = dep["spec"]["template"]["metadata"]["labels"]
    svc, pdb = k8s("service"), k8s("pdb")
    assert svc["spec"]["selector"].items() <= labels.items()
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert pdb["spec"]["maxUnavailable"] == 1
    assert {p["port"] for p in svc["spec"]["ports"]} == {Settings.load(config=CONFIGS["production"]).service.metrics_port}
    kust = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    for res in kust["resources"]:
        assert (K8S / res).is_file(), res
    assert "secret.template.yaml" not in kust["resources"], "the template holds placeholders, never applied as is"


def test_keda_scales_on_the_configured_group_and_topic() -> None:
    so = k8s("keda-scaledobject", "ScaledObject")
    auth = k8s("keda-scaledobject", "TriggerAuthentication")
    kafka = Settings.load(config=CONFIGS["production"]).kafka
    assert so["spec"]["scaleTargetRef"]["name"] == k8s("deployment")["metadata"]["name"]
    (trigger,) = so["spec"]["triggers"]
    meta = trigger["metadata"]
    assert trigger["type"] == "kafka"
    assert meta["topic"] == kafka.input_topic and meta["consumerGroup"] == kafka.group_id
    assert meta["bootstrapServers"] == kafka.bootstrap_servers
    assert meta["offsetResetPolicy"] == kafka.auto_offset_reset
    assert meta["allowIdleConsumers"] == "false"
    assert int(meta["lagThreshold"]) >= 1
    assert trigger["authenticationRef"]["name"] == auth["metadata"]["name"]
    secret = k8s("secret.template")
    for ref in auth["spec"]["secretTargetRef"]:
        assert ref["name"] == secret["metadata"]["name"] and ref["key"] in secret["stringData"]
    keda_sasl = {"PLAIN": "plaintext", "SCRAM-SHA-256": "scram_sha256", "SCRAM-SHA-512": "scram_sha512",
                 "OAUTHBEARER": "oauthbearer", "GSSAPI": "gssapi"}
    assert secret["stringData"]["sasl"] == keda_sasl[kafka.sasl_mechanism]
    # partitions >= replicas: the topic job creates the input topic with at least maxReplicaCount partitions
    job = k8s("topics-job")
    job_env = {e["name"]: e for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert so["spec"]["minReplicaCount"] <= so["spec"]["maxReplicaCount"] <= int(job_env["PARTITIONS"]["value"])
    assert set(job_env["TOPICS"]["value"].split()) == {
        kafka.input_topic, kafka.output_topic, kafka.errors_topic, kafka.frames_topic}
    assert job_env["BOOTSTRAP"]["value"] == kafka.bootstrap_servers
    # lagThreshold is explained where it is set and in the guide
    assert "lagThreshold =" in (K8S / "keda-scaledobject.yaml").read_text()
    assert "lagThreshold" in OPERATIONS.read_text()


# -------------------------------------------------------------------------------------------------- compose
def test_compose_stack(monkeypatch: pytest.MonkeyPatch) -> None:
    doc = compose()
    services = doc["services"]
    kafka = services["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    kenv = {k: compose_resolve(v) for k, v in kafka["environment"].items()}
    assert "controller" in kenv["KAFKA_PROCESS_ROLES"] and "broker" in kenv["KAFKA_PROCESS_ROLES"]  # KRaft
    advertised = dict(reversed(x.split("://")) for x in kenv["KAFKA_ADVERTISED_LISTENERS"].split(","))
    defaults = Settings().kafka
    assert int(kenv["KAFKA_MESSAGE_MAX_BYTES"]) >= defaults.max_message_bytes
    init = services["kafka-init"]
    assert init["depends_on"]["kafka"]["condition"] == "service_healthy"
    ienv = {k: compose_resolve(v) for k, v in init["environment"].items()}
    assert {ienv[k] for k in ("INPUT_TOPIC", "OUTPUT_TOPIC", "ERRORS_TOPIC", "FRAMES_TOPIC")} == {
        defaults.input_topic, defaults.output_topic, defaults.errors_topic, defaults.frames_topic}
    assert "${TOPIC_PARTITIONS" in COMPOSE.read_text() and "--partitions" in " ".join(init["command"])
    workers = worker_services(doc)
    assert set(workers) == {"stream-iqa", "stream-iqa-cpu"}
    gpu = workers["stream-iqa"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert gpu["driver"] == "nvidia" and "gpu" in gpu["capabilities"]
    for name, svc in workers.items():
        assert svc["depends_on"]["kafka-init"]["condition"] == "service_completed_successfully"
        assert svc["build"]["dockerfile"] == "deploy/Dockerfile" and svc["build"]["context"] == ".."
        env = {k: compose_resolve(v) for k, v in svc["environment"].items()}
        variant = svc["build"]["args"]["VARIANT"]
        monkeypatch.setenv("STREAM_IQA_CONFIG", str(CONFIGS[variant]))
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        s = Settings()
        assert s.kafka.bootstrap_servers in advertised, "workers must use an advertised listener"
        assert seconds(svc["stop_grace_period"]) > s.service.drain_timeout_s
        mounts = {compose_resolve(v).split(":")[1] for v in svc["volumes"]}
        assert {str(r) for r in s.service.allowed_roots} <= mounts
        assert str(s.service.metrics_port) in [str(p) for p in svc["expose"]]
    prom = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    (sd,) = prom["scrape_configs"][0]["dns_sd_configs"]
    assert set(sd["names"]) == set(workers) and sd["port"] == Settings().service.metrics_port
    assert prom["scrape_configs"][0]["metrics_path"] == "/metrics"


# ------------------------------------------------------------------------------------------------- dashboard
def registry_series() -> dict[str, set[str]]:
    """Series names the service's registry exports → their label names (prometheus-client's suffixes applied)."""
    metrics = ServiceMetrics()
    labels = {c._name: set(c._labelnames) for c in vars(metrics).values() if hasattr(c, "_labelnames")}
    suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"], "gauge": [""]}
    out: dict[str, set[str]] = {}
    for family in metrics.registry.collect():
        for suffix in suffixes[family.type]:
            out[family.name + suffix] = labels[family.name] | ({"le"} if suffix == "_bucket" else set())
    return out


def dashboard_exprs() -> list[str]:
    dash = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]


def test_dashboard_queries_only_exported_metrics() -> None:
    series = registry_series()
    exprs = dashboard_exprs()
    assert exprs
    used: set[str] = set()
    for expr in exprs:
        for name in re.findall(r"\bstream_iqa_[a-z_]+", expr):
            assert name in series, f"{name} (in {expr!r}) is not exported by ServiceMetrics"
            used.add(name)
        for name, matchers in re.findall(r"\b(stream_iqa_[a-z_]+)\{([^}]*)\}", expr):
            for label in re.findall(r"(\w+)\s*=~?", matchers):
                assert label in series[name], f"{name} has no label {label!r}"
        for group in re.findall(r"\bby \(([^)]*)\)", expr):
            for label in (x.strip() for x in group.split(",")):
                assert label in set().union(*series.values()) | {"instance", "job"}, label
    # every family is on the dashboard
    families = {re.sub(r"_(total|bucket|sum|count)$", "", n) for n in series}
    assert families <= {re.sub(r"_(total|bucket|sum|count)$", "", n) for n in used}


def test_dashboard_uses_the_provisioned_datasource() -> None:
    (ds,) = yaml.safe_load((DEPLOY / "grafana/provisioning/datasources/prometheus.yml").read_text())["datasources"]
    dash = json.loads(DASHBOARD.read_text())
    uids = {p["datasource"]["uid"] for p in dash["panels"] if "datasource" in p}
    assert uids == {ds["uid"]}
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    provider = yaml.safe_load((DEPLOY / "grafana/provisioning/dashboards/stream-iqa.yml").read_text())
    path = provider["providers"][0]["options"]["path"]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in compose()["services"]["grafana"]["volumes"]}
    assert mounts[path] == "./grafana/dashboards"


# ------------------------------------------------------------------------------------------------- the guide
def test_operations_guide_covers_the_brief() -> None:
    text = OPERATIONS.read_text()
    for heading in ("Sizing", "Scaling", "Long clips", "errors topic", "new model", "dashboard", "Security"):
        assert heading.lower() in text.lower(), heading
    from stream_iqa.schema import ERROR_CODES

    for code in ERROR_CODES:
        assert f"`{code}`" in text, f"error code {code} not explained"
    for path in ("/healthz", "/readyz", "/metrics"):
        assert path in text
    # figures quoted as measured come from BENCHMARKS.md (to their rounding); no GPU figure is claimed
    bench = [float(x) for x in re.findall(r"\d+(?:\.\d+)?", (REPO_ROOT / "BENCHMARKS.md").read_text())]
    quoted = [float(x) for x in re.findall(r"(?<![~\d.])(\d+(?:\.\d+)?)(?:× real time| frames/s)", text)]
    assert len(quoted) >= 5
    for figure in quoted:
        assert any(abs(b - figure) <= 0.05 for b in bench), f"{figure} is not a BENCHMARKS.md figure"
    assert "no figure has been measured" in text.lower()


# ---------------------------------------------------------------------------------------------------- linters
def test_yamllint() -> None:
    exe = linter("yamllint")
    files = [str(p) for p in YAML_FILES]
    r = subprocess.run([exe, "--strict", "-c", str(DEPLOY / ".yamllint"), *files], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_hadolint() -> None:
    exe = linter("hadolint")
    r = subprocess.run([exe, "--config", str(DEPLOY / ".hadolint.yaml"), str(DOCKERFILE)], capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_compose_matches_the_compose_spec() -> None:
    exe = linter("check-jsonschema")
    r = subprocess.run([exe, "--builtin-schema", "vendor.compose-spec", str(COMPOSE)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_kubernetes_manifests_match_the_api_schemas() -> None:
    exe = linter("kubernetes-validate")
    files = [str(K8S / f"{name}.yaml") for name in K8S_CORE]
    r = subprocess.run([exe, "--strict", "--quiet", *files], capture_output=True, text=True,
                       env={**os.environ, "NO_COLOR": "1"})
    assert r.returncode == 0, r.stdout + r.stderr
