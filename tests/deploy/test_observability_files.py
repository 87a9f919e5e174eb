"""Offline checks of the observability files in deploy/: the Grafana dashboard asks
only for metrics the services export, and Prometheus (compose and Kubernetes) scrapes
every service on the port it serves /metrics on."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from coremachine.services.api_gateway.metrics import GatewayMetrics
from coremachine.services.orchestrator.metrics import OrchestratorMetrics
from coremachine.services.state.metrics import StateMetrics
from coremachine.services.worker.metrics import WorkerMetrics
from coremachine.shared.grpc_metrics import GrpcServerMetrics
from coremachine.shared.metrics import PoolCollector, new_registry
from tests.deploy.test_deploy_files import COMPOSE, DEPLOY, K8S, _compose_config, _env

DASHBOARD = DEPLOY / "grafana" / "dashboards" / "coremachine.json"
PROMETHEUS = DEPLOY / "prometheus" / "prometheus.yml"
PROMETHEUS_K8S = DEPLOY / "prometheus" / "prometheus-kubernetes.yml"
# compose service -> its metrics port setting (and Kubernetes Deployment name).
METRICS_PORTS = {
    "state": ("STATE_METRICS_PORT", "state"),
    "orchestrator": ("ORCHESTRATOR_METRICS_PORT", "orchestrator"),
    "worker": ("WORKER_METRICS_PORT", "worker"),
    "api_gateway": ("GATEWAY_METRICS_PORT", "api-gateway"),
}
_SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}


class _Pool:
    def get_stats(self) -> dict[str, int]:
        return {}


def exported_names() -> set[str]:
    """The series names every service can export, from the instruments themselves."""
    # One registry per service, as each process has its own.
    common = new_registry("test")
    GrpcServerMetrics(common)
    common.register(PoolCollector(lambda: [("p", _Pool())]))
    registries = [common]
    for build in (StateMetrics, OrchestratorMetrics, GatewayMetrics):
        registries.append(CollectorRegistry())
        build(registries[-1])
    registries.append(CollectorRegistry())
    WorkerMetrics(registries[-1]).watch_load(lambda: 0, 1)
    names = set()
    for reg in registries:
        for family in reg.collect():
            names |= {family.name + s for s in _SUFFIXES.get(family.type, ("",))}
            names |= {sample.name for sample in family.samples}
    return names


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def _expressions(dashboard: dict[str, Any]) -> list[str]:
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]


def test_the_dashboard_is_a_provisionable_grafana_dashboard(dashboard: dict[str, Any]) -> None:
    assert dashboard["uid"] == "coremachine" and dashboard["title"]
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert {"datasource", "job_type"} <= variables
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
            assert panel["targets"], panel["title"]
    # The provisioning files point Grafana at the dashboards and at the compose Prometheus.
    provider = yaml.safe_load(
        (DEPLOY / "grafana/provisioning/dashboards/coremachine.yaml").read_text()
    )
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"
    source = yaml.safe_load(
        (DEPLOY / "grafana/provisioning/datasources/prometheus.yaml").read_text()
    )
    assert source["datasources"][0]["url"] == "http://prometheus:9090"


def test_every_dashboard_query_asks_for_metrics_the_services_export(dashboard) -> None:
    exported = exported_names()
    used = set()
    for expr in _expressions(dashboard):
        assert expr.count("(") == expr.count(")"), expr
        used |= set(
            re.findall(r"\b((?:coremachine|grpc_server|http_server|process)_[a-z_]+)", expr)
        )
    assert used, "no query names a metric"
    assert used <= exported, f"not exported by any service: {sorted(used - exported)}"
    # And the dashboard covers what operators ask first.
    for needed in (
        "coremachine_tasks_completed_total",
        "coremachine_task_duration_seconds_bucket",
        "coremachine_task_queue_wait_seconds_bucket",
        "coremachine_queue_messages",
        "coremachine_queue_oldest_message_age_seconds",
        "coremachine_queue_dead_letters",
        "coremachine_stage_advancement_lag_seconds_bucket",
        "coremachine_claim_duration_seconds_bucket",
        "coremachine_worker_tasks_in_flight",
        "coremachine_db_pool_connections",
        "grpc_server_handling_seconds_bucket",
    ):
        assert needed in used, needed


def test_the_check_above_catches_an_unknown_metric() -> None:
    assert "coremachine_tasks_completed_total" in exported_names()
    assert "coremachine_tasks_finished_total" not in exported_names()


def test_compose_prometheus_scrapes_every_service_on_its_metrics_port() -> None:
    services = _compose_config(COMPOSE, profiles=("observability",))["services"]
    assert {"prometheus", "grafana", "jaeger"} <= set(services)
    config = yaml.safe_load(PROMETHEUS.read_text())
    targets: dict[str, int] = {}
    for job in config["scrape_configs"]:
        for static in job.get("static_configs", []):
            for target in static["targets"]:
                host, port = target.split(":")
                targets[host] = int(port)
        for sd in job.get("dns_sd_configs", []):
            for name in sd["names"]:
                targets[name] = int(sd["port"])
    for service, (setting, _) in METRICS_PORTS.items():
        port = int(_env(services[service])[setting])
        assert targets.get(service) == port, f"{service}: scraped on {targets.get(service)}"
    mounts = (
        " ".join(services["prometheus"]["volumes"][0].values())
        if isinstance(services["prometheus"]["volumes"][0], dict)
        else services["prometheus"]["volumes"][0]
    )
    assert "prometheus.yml" in mounts
    # Tracing in compose is off unless OTEL_EXPORTER_OTLP_ENDPOINT is given (Jaeger's OTLP port).
    assert "4318" in " ".join(
        str(p.get("target", p)) if isinstance(p, dict) else p for p in services["jaeger"]["ports"]
    )


def _docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def test_kubernetes_pods_announce_their_metrics_port_to_prometheus() -> None:
    config = next(d for d in _docs(K8S / "configmap.yaml") if d["kind"] == "ConfigMap")["data"]
    for _, (setting, deployment) in METRICS_PORTS.items():
        file = "api-gateway.yaml" if deployment == "api-gateway" else f"{deployment}.yaml"
        [doc] = [d for d in _docs(K8S / file) if d["kind"] == "Deployment"]
        template = doc["spec"]["template"]
        annotations = template["metadata"]["annotations"]
        ports = {p["name"]: p["containerPort"] for p in template["spec"]["containers"][0]["ports"]}
        assert annotations["prometheus.io/scrape"] == "true", deployment
        assert annotations["prometheus.io/path"] == "/metrics", deployment
        assert int(annotations["prometheus.io/port"]) == ports["metrics"] == int(config[setting])
    job = yaml.safe_load(PROMETHEUS_K8S.read_text())["scrape_configs"][0]
    kept = [r for r in job["relabel_configs"] if r.get("action") == "keep"]
    assert kept and "prometheus_io_scrape" in kept[0]["source_labels"][0]
