"""The production path: docker-compose.yml wires Postgres, a one-shot migration and the engine."""

from __future__ import annotations

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
