"""The production path: docker-compose.yml wires Postgres, a one-shot migration, the engine,
and Prometheus + Grafana provisioned from deploy/."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]


def _compose() -> dict[str, Any]:
    data = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert isinstance(data, dict)
    return data


def test_compose_has_postgres_with_a_healthcheck_and_a_named_volume() -> None:
    compose = _compose()
    postgres = compose["services"]["postgres"]
    assert postgres["healthcheck"]["test"]
    volume = postgres["volumes"][0].split(":")[0]
    assert volume in compose["volumes"]


def test_migrations_run_once_after_postgres_is_healthy() -> None:
    migrate = _compose()["services"]["migrate"]
    assert migrate["command"] == ["migrate"]
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert migrate["restart"] == "no"


def test_the_engine_starts_after_postgres_and_a_completed_migration() -> None:
    engine = _compose()["services"]["engine"]
    assert engine["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert engine["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert engine["environment"]["DATABASE_URL"].startswith("postgresql://")


def test_secrets_come_from_the_environment_not_the_compose_file() -> None:
    for service in _compose()["services"].values():
        for name, value in (service.get("environment") or {}).items():
            if any(word in name for word in ("SECRET", "API_KEY", "PASSWORD")):
                assert str(value).startswith("${"), f"{name} is written into the compose file"


def test_the_image_ships_the_migrations_the_engine_looks_for() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    for needed in ("alembic.ini", "migrations", "engine", "strategies"):
        assert needed in dockerfile
    assert "TRADECTL_HOME=/app" in dockerfile


def _user(url: str) -> str:
    return url.split("://", 1)[1].split(":", 1)[0]


def test_roles_are_created_before_the_migration_which_runs_as_the_owner() -> None:
    services = _compose()["services"]
    roles = services["db-roles"]
    assert roles["entrypoint"] == ["python", "-m", "engine.db_roles"]
    assert roles["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert roles["restart"] == "no"
    migrate = services["migrate"]
    assert migrate["depends_on"]["db-roles"]["condition"] == "service_completed_successfully"
    assert _user(migrate["environment"]["TRADECTL_MIGRATE_DATABASE_URL"]) == "tradectl_owner"
    assert "DATABASE_URL" not in migrate["environment"]


def test_the_engine_the_owner_and_the_superuser_are_separate_roles() -> None:
    services = _compose()["services"]
    superuser = services["postgres"]["environment"]["POSTGRES_USER"]
    admin = _user(services["db-roles"]["environment"]["TRADECTL_ADMIN_DATABASE_URL"])
    owner = _user(services["migrate"]["environment"]["TRADECTL_MIGRATE_DATABASE_URL"])
    engine = _user(services["engine"]["environment"]["DATABASE_URL"])
    assert admin == superuser
    assert engine == "tradectl_engine"
    assert len({superuser, owner, engine}) == 3
    # only the role setup holds the superuser's password
    for name, service in services.items():
        if name not in ("postgres", "db-roles"):
            assert "POSTGRES_PASSWORD" not in str(service.get("environment")), name


# -- watching: the ops endpoints, Prometheus and Grafana --------------------------------------

DEPLOY = ROOT / "deploy"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "tradectl.json"


def _yaml(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict), path
    return data


def _mounts(service: dict[str, Any]) -> dict[str, Path]:
    """Container path -> host path (relative to the compose file) of each bind mount."""
    mounts: dict[str, Path] = {}
    for volume in service.get("volumes", []):
        host, container = volume.split(":")[:2]
        if host.startswith("./"):
            mounts[container] = ROOT / host
    return mounts


def dashboard_exprs() -> list[str]:
    """Every PromQL query of the dashboard: panel targets and template variable queries."""
    data = json.loads(DASHBOARD.read_text())
    exprs = [
        target["expr"]
        for panel in data["panels"]
        for target in panel.get("targets", [])
        if "expr" in target
    ]
    exprs += [var["definition"] for var in data["templating"]["list"] if var["type"] == "query"]
    return exprs


def test_the_engine_serves_its_ops_endpoints_on_the_network_and_is_healthy_when_ready() -> None:
    engine = _compose()["services"]["engine"]
    env = engine["environment"]
    port = env["TRADECTL_METRICS_PORT"]
    assert env["TRADECTL_METRICS_HOST"] == "0.0.0.0"
    assert any(str(p).endswith(f":{port}") for p in engine["ports"])
    check = " ".join(engine["healthcheck"]["test"])
    assert f"127.0.0.1:{port}/readyz" in check


def test_the_image_healthcheck_asks_whether_the_process_is_alive() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    [line] = [line for line in dockerfile.splitlines() if "urlopen" in line]
    assert "/healthz" in line
    assert "curl" not in dockerfile


def test_prometheus_scrapes_the_engine_on_its_metrics_port() -> None:
    services = _compose()["services"]
    prometheus = services["prometheus"]
    mounts = _mounts(prometheus)
    config_path = mounts["/etc/prometheus/prometheus.yml"]
    assert config_path.is_file()
    [job] = _yaml(config_path)["scrape_configs"]
    assert job["metrics_path"] == "/metrics"
    port = services["engine"]["environment"]["TRADECTL_METRICS_PORT"]
    [discovery] = job["dns_sd_configs"]
    assert discovery["names"] == ["engine"]
    assert discovery["type"] == "A"
    assert str(discovery["port"]) == port


def test_grafana_is_provisioned_from_the_repository() -> None:
    grafana = _compose()["services"]["grafana"]
    mounts = _mounts(grafana)
    provisioning = mounts["/etc/grafana/provisioning"]
    for path in mounts.values():
        assert path.exists(), path
    [datasource] = _yaml(next((provisioning / "datasources").glob("*.yml")))["datasources"]
    assert datasource["url"] == "http://prometheus:9090"
    [provider] = _yaml(next((provisioning / "dashboards").glob("*.yml")))["providers"]
    dashboards = mounts[provider["options"]["path"]]
    assert DASHBOARD.parent == dashboards
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert (dashboards / Path(home).name).is_file()
    # every panel queries the provisioned data source
    data = json.loads(DASHBOARD.read_text())
    for panel in data["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == datasource["uid"], panel["title"]


def test_no_dashboard_query_mixes_two_accounts() -> None:
    exprs = dashboard_exprs()
    assert len(exprs) > 20
    for expr in exprs:
        if expr.startswith("label_values("):
            continue
        for selector in re.findall(r"tradectl_\w+\{([^}]*)\}", expr):
            assert 'account=~"$account"' in selector, expr
        for grouping in re.findall(r"\bby \(([^)]*)\)", expr):
            assert "account" in grouping.split(", "), expr


# -- scaling out: compose replicas and the Kubernetes example ---------------------------------

K8S = DEPLOY / "k8s"


def _k8s() -> dict[str, dict[str, Any]]:
    """Every manifest under deploy/k8s, by kind."""
    docs: dict[str, dict[str, Any]] = {}
    for path in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") != "Kustomization":
                docs[doc["kind"]] = doc
    return docs


def test_compose_runs_engine_replicas_each_with_its_own_metrics_port() -> None:
    engine = _compose()["services"]["engine"]
    assert "replicas" in engine["deploy"]
    [ports] = engine["ports"]
    host_range = str(ports).split(":")[1]
    low, high = (int(p) for p in host_range.split("-"))
    assert high - low >= 2  # `--scale engine=3` binds three host ports


def test_the_kubernetes_example_runs_engines_and_a_migration_with_secrets_by_reference() -> None:
    docs = _k8s()
    deployment, service, job = docs["Deployment"], docs["Service"], docs["Job"]
    [engine] = deployment["spec"]["template"]["spec"]["containers"]
    [migrate] = job["spec"]["template"]["spec"]["containers"]
    assert engine["args"] == ["run"]
    assert migrate["args"] == ["migrate"]
    for container in (engine, migrate):
        for var in container["env"]:
            if any(word in var["name"] for word in ("SECRET", "API_KEY", "DATABASE_URL")):
                assert "secretKeyRef" in var["valueFrom"], var["name"]
    assert deployment["spec"]["replicas"] > 1
    assert engine["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert engine["livenessProbe"]["httpGet"]["path"] == "/healthz"
    # the metrics Service selects the engine pods, on the port the engine serves
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    port = next(v["value"] for v in engine["env"] if v["name"] == "TRADECTL_METRICS_PORT")
    assert str(service["spec"]["ports"][0]["port"]) == port
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == sorted(
        p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml"
    )
