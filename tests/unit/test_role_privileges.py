"""The engine role's privileges are declared per table, for every table of the schema."""

from __future__ import annotations

import pytest

from engine.config import load_settings
from engine.exceptions import ConfigError
from engine.ledger.roles import ENGINE_ACCESS, RoleNames, grant_statements
from engine.ledger.schema import metadata
from engine.ledger.schema_ddl import APPEND_ONLY_TABLES


def test_every_table_of_the_schema_declares_what_the_engine_may_do_to_it() -> None:
    # A new table gets an entry in ENGINE_ACCESS (engine/ledger/roles.py): APPEND_ONLY for facts,
    # updates(columns...) for the columns the engine changes.
    assert sorted(ENGINE_ACCESS) == sorted(metadata.tables)


def test_declared_update_columns_exist_and_are_not_part_of_the_key() -> None:
    for name, access in ENGINE_ACCESS.items():
        table = metadata.tables[name]
        for column in access.update:
            assert column in table.columns, f"{name}.{column} is not a column"
            assert not table.columns[column].primary_key, f"{name}.{column} is in the key"


def test_append_only_tables_are_never_granted_an_update() -> None:
    for name in APPEND_ONLY_TABLES:
        assert ENGINE_ACCESS[name].update == ()


def test_grants_give_fills_select_and_insert_only_and_an_undeclared_table_nothing() -> None:
    stmts = grant_statements(
        RoleNames(), "public", ["fills", "orders", "stray", "positions"], ["fills_id_seq"]
    )
    fills = [s for s in stmts if '"fills"' in s]
    assert fills == ['GRANT SELECT, INSERT ON "fills" TO "tradectl_engine"',
                     'GRANT SELECT ON "fills" TO "tradectl_readonly"']  # fmt: skip
    assert not [s for s in stmts if "stray" in s]
    assert 'GRANT USAGE ON SEQUENCE "fills_id_seq" TO "tradectl_engine"' in stmts
    assert 'GRANT SELECT ON "positions" TO "tradectl_readonly"' in stmts
    # a narrower declaration takes effect: everything is revoked first
    assert stmts[0].startswith("REVOKE ALL ON ALL TABLES")


@pytest.mark.parametrize(
    "name", ["Engine", "1role", "has space", 'q"uote', "x" * 64, "", "pg_monitor"]
)
def test_a_role_name_that_would_need_quoting_is_refused_naming_the_variable(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRADECTL_ENGINE_ROLE", name)
    with pytest.raises(ConfigError, match="TRADECTL_ENGINE_ROLE"):
        load_settings()


def test_the_engine_role_must_not_be_the_owner() -> None:
    with pytest.raises(ConfigError, match="three different roles"):
        RoleNames(owner="tradectl", engine="tradectl")


def test_role_names_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRADECTL_READONLY_ROLE", "grafana")
    assert load_settings().roles == RoleNames(readonly="grafana")
