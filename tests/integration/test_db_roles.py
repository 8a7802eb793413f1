"""Least privilege: the owner migrates, the engine role writes what the engine writes and cannot
rewrite history, the read-only role reads.

Each test starts from the private database of ``database_url``, built by the superuser: the
layout of an install from before the roles. Provisioning hands it over to the owner, as it does
for such an install. Roles are cluster-wide: every test provisions the same ones, idempotently.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine

from engine import runtime
from engine.config import load_settings
from engine.database import open_database
from engine.domain.types import AccountId, ControlKind, ControlScope, VenueName
from engine.exceptions import ConfigError
from engine.ledger.db import (
    asyncpg_connect_kwargs,
    downgrade,
    make_engine,
    normalize_url,
    upgrade_head,
)
from engine.ledger.embedded import embedded_postgres
from engine.ledger.ledger import Ledger
from engine.ledger.records import Operator, OperatorRequestKind
from engine.ledger.roles import ENGINE_ACCESS, RoleNames, apply_grants, provision_roles
from tests.helpers import ROOT, eventually, tradectl

ROLES = RoleNames()
PASSWORDS = {role: f"test-{role}" for role in (ROLES.owner, ROLES.engine, ROLES.readonly)}
STRATEGIES = ROOT / "tests/resources/engine/fast_strategies.toml"


@dataclass(frozen=True)
class RoleUrls:
    owner: URL
    engine: URL
    readonly: URL


def _as(url: URL, role: str) -> URL:
    return url.set(username=role, password=PASSWORDS[role])


@pytest.fixture
async def roles(database_url: URL) -> RoleUrls:
    await provision_roles(database_url, ROLES, PASSWORDS)
    owner = _as(database_url, ROLES.owner)
    await upgrade_head(owner)
    assert await apply_grants(owner, ROLES)
    return RoleUrls(owner, _as(database_url, ROLES.engine), _as(database_url, ROLES.readonly))


@pytest.fixture
async def engine_db(roles: RoleUrls) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(roles.engine)
    yield engine
    await engine.dispose()


async def _connect(url: URL) -> asyncpg.Connection:
    conn: asyncpg.Connection = await asyncpg.connect(**asyncpg_connect_kwargs(url))  # type: ignore[call-overload]
    return conn


async def tradectl_module(module: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", module],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
        cwd=ROOT,
    )


async def _insert_fill(conn: asyncpg.Connection) -> None:
    await conn.execute(
        """INSERT INTO fills (venue, symbol, trade_id, account, side, qty, price, fee,
                              venue_ts, received_at, recorded_at)
           VALUES ('simulator', 'BTCUSDT', '1', 'acct', 'BUY', 1, 100, 0, now(), now(), now())"""
    )


@pytest.mark.parametrize(
    ("statement", "refusal"),
    [
        ("UPDATE fills SET qty = 2", "permission denied"),
        ("DELETE FROM fills", "permission denied"),
        ("TRUNCATE fills", "permission denied"),
        ("ALTER TABLE fills DISABLE TRIGGER USER", "must be owner"),
        ("ALTER TABLE fills DISABLE TRIGGER fills_append_only", "must be owner"),
        ("DROP TRIGGER fills_append_only ON fills", "must be owner"),
        ("DROP TABLE fills", "must be owner"),
        ("ALTER TABLE fills OWNER TO CURRENT_USER", "must be owner"),
        ("DROP FUNCTION ledger_refuse_rewrite() CASCADE", "must be owner"),
        ("CREATE TABLE fills_copy (id bigint)", "permission denied for schema"),
        ("SET session_replication_role = replica", "permission denied"),
    ],
)
async def test_the_engine_role_cannot_rewrite_fills_or_switch_off_their_triggers(
    roles: RoleUrls, statement: str, refusal: str
) -> None:
    conn = await _connect(roles.engine)
    try:
        await _insert_fill(conn)  # what it may do
        with pytest.raises(asyncpg.PostgresError, match=refusal):
            await conn.execute(statement)
        assert await conn.fetchval("SELECT qty FROM fills") == 1
        assert (
            await conn.fetchval(
                "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'fills'::regclass "
                "AND NOT tgisinternal AND tgenabled = 'O'"
            )
            == 2
        )
    finally:
        await conn.close()


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE order_events SET cause = 'rewritten'",
        "DELETE FROM order_events",
        "UPDATE decisions SET reason = 'rewritten'",
        "DELETE FROM orders",
        "UPDATE orders SET requested_qty = 2",
        "UPDATE incidents SET message = 'nothing happened'",
        "UPDATE controls SET reason = 'rewritten'",
        "DELETE FROM incidents",
        "UPDATE balances SET free = 0",
    ],
)
async def test_the_engine_role_changes_only_the_columns_the_engine_changes(
    roles: RoleUrls, statement: str
) -> None:
    conn = await _connect(roles.engine)
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied"):
            await conn.execute(statement)
    finally:
        await conn.close()


async def test_the_read_only_role_reads_every_table_and_view_and_writes_none(
    roles: RoleUrls,
) -> None:
    conn = await _connect(roles.readonly)
    try:
        for table in ENGINE_ACCESS:
            await conn.fetch(f"SELECT * FROM {table} LIMIT 1")
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute(f"INSERT INTO {table} DEFAULT VALUES")
        await conn.fetch("SELECT * FROM positions LIMIT 1")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("UPDATE orders SET state = 'CANCELED'")
    finally:
        await conn.close()


async def test_provisioning_hands_an_older_single_role_install_to_the_owner_and_keeps_its_rows(
    database_url: URL,
) -> None:
    admin = await _connect(database_url)
    try:
        await _insert_fill(admin)  # written when the superuser owned everything
    finally:
        await admin.close()
    for _ in range(2):  # idempotent: every `make run` provisions again
        await provision_roles(database_url, ROLES, PASSWORDS)
        await upgrade_head(_as(database_url, ROLES.owner))
        assert await apply_grants(_as(database_url, ROLES.owner), ROLES)
    conn = await _connect(_as(database_url, ROLES.owner))
    try:
        foreign = await conn.fetch(
            """SELECT relname FROM pg_class
               WHERE relnamespace = 'public'::regnamespace AND relkind IN ('r', 'v', 'S')
                 AND relowner <> (SELECT oid FROM pg_roles WHERE rolname = current_user)
               UNION ALL
               SELECT proname FROM pg_proc WHERE pronamespace = 'public'::regnamespace
                 AND proowner <> (SELECT oid FROM pg_roles WHERE rolname = current_user)"""
        )
        assert foreign == []
        assert await conn.fetchval("SELECT count(*) FROM fills") == 1
    finally:
        await conn.close()


async def test_grants_are_skipped_with_a_warning_when_the_roles_do_not_exist(
    database_url: URL, caplog: pytest.LogCaptureFixture
) -> None:
    missing = RoleNames(owner="tctl_no_owner", engine="tctl_no_engine", readonly="tctl_no_ro")
    assert not await apply_grants(database_url, missing)
    assert "no least-privilege grants" in caplog.text


async def test_the_ledger_operations_of_operator_commands_work_as_the_engine_role(
    engine_db: AsyncEngine,
) -> None:
    ledger = Ledger(engine_db, account=AccountId("acct"), venue=VenueName("simulator"))
    # as the CLI does it: every change with its operator journal row
    who = Operator(actor="test", reason="checking")
    await ledger.controls.set(
        ControlScope.ACCOUNT, "acct", ControlKind.PAUSE, reason="checking", set_by="test",
        operator=who,
    )  # fmt: skip
    assert await ledger.controls.clear(
        ControlScope.ACCOUNT, "acct", ControlKind.PAUSE, cleared_by="test", operator=who
    )
    incident = await ledger.incidents.open(
        kind="k", scope="s", severity="error", message="m", details={}, dedupe_key="k:1"
    )
    assert incident is not None
    assert await ledger.incidents.resolve(incident.id, "checked", operator=who)
    request = await ledger.operations.request(
        OperatorRequestKind.RECONCILE, requested_by="test", reason="r", operator=who
    )
    claimed = await ledger.operations.claim("holder")
    assert claimed is not None
    assert claimed.id == request.id
    assert await ledger.operations.complete(request.id, holder="holder", result={"ok": True})
    dropped = await ledger.operations.request(
        OperatorRequestKind.CANCEL_ALL, requested_by="test", reason="r", operator=who
    )
    assert await ledger.operations.drop(dropped.id, operator=who, dropped_by="test")
    assert len(await ledger.journal.read()) == 6


async def test_the_engine_trades_reconciles_and_serves_operators_as_the_engine_role(
    roles: RoleUrls, engine_db: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in {
        "DATABASE_URL": roles.engine.render_as_string(hide_password=False),
        "TRADECTL_ACCOUNT": "acct-roles",
        "TRADECTL_VENUE": "simulator",
        "TRADECTL_STRATEGIES_FILE": str(STRATEGIES),
        "TRADECTL_STATUS_INTERVAL_S": "3600",
    }.items():
        monkeypatch.setenv(key, value)
    stop = asyncio.Event()
    task = asyncio.create_task(runtime.run(load_settings(), stop))

    async def rows(sql: str) -> int:
        if task.done():
            task.result()  # the engine stopped: its error is the test's
        async with engine_db.connect() as conn:
            return int((await conn.execute(text(sql))).scalar_one())

    ledger = Ledger(engine_db, account=AccountId("acct-roles"), venue=VenueName("simulator"))
    try:
        await eventually(
            lambda: rows("SELECT count(*) FROM orders WHERE state = 'FILLED'"),
            timeout=90,
            message="the engine should fill orders",
        )
        request = await ledger.operations.request(
            OperatorRequestKind.RECONCILE, requested_by="test", reason="roles"
        )
        await eventually(
            lambda: rows(f"SELECT count(*) FROM operator_requests "
                         f"WHERE id = {request.id} AND handled_at IS NOT NULL"),
            timeout=60,
            message="the engine should run the requested reconcile",
        )  # fmt: skip
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=30)
    assert await rows("SELECT count(*) FROM incidents") == 0
    assert await rows("SELECT count(*) FROM balance_baselines") > 0


async def test_the_embedded_database_upgrades_an_older_data_dir_and_connects_as_the_engine_role(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("TRADECTL_MIGRATE_DATABASE_URL", raising=False)
    # short: the server's Unix socket lives in the data directory
    data = Path(tempfile.mkdtemp(prefix="tctl-roles-", dir="/tmp"))
    monkeypatch.setenv("TRADECTL_DATA_DIR", str(data))
    try:
        # a data directory from before the roles: the superuser migrated and wrote a fill
        with embedded_postgres(data / "pg") as raw:
            await upgrade_head(normalize_url(raw))
            admin = await _connect(normalize_url(raw))
            try:
                await _insert_fill(admin)
            finally:
                await admin.close()
        for _ in range(2):  # `make run`, twice
            async with open_database(load_settings()) as db:
                assert db.url.username == ROLES.engine
                assert f"{ROLES.readonly}@" in db.psql
                conn = await _connect(db.url)
                try:
                    assert await conn.fetchval("SELECT count(*) FROM fills") == 1
                    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="must be owner"):
                        await conn.execute("ALTER TABLE fills DISABLE TRIGGER USER")
                finally:
                    await conn.close()
    finally:
        shutil.rmtree(data, ignore_errors=True)


async def test_the_compose_role_setup_sets_passwords_without_printing_them(
    database_url: URL,
) -> None:
    passwords = {"OWNER": "pw-owner-x", "ENGINE": "pw-engine-x", "READONLY": "pw-ro-x"}
    done = await tradectl_module(
        "engine.db_roles",
        {
            "TRADECTL_ADMIN_DATABASE_URL": database_url.render_as_string(hide_password=False),
            **{f"TRADECTL_{kind}_PASSWORD": pw for kind, pw in passwords.items()},
        },
    )
    assert done.returncode == 0, done.stderr
    assert "tradectl_engine (engine)" in done.stdout
    for pw in passwords.values():
        assert pw not in done.stdout + done.stderr
    admin = await _connect(database_url)
    try:
        with_password = await admin.fetchval(
            "SELECT count(*) FROM pg_authid WHERE rolname = ANY($1::text[]) "
            "AND rolpassword IS NOT NULL",
            [ROLES.owner, ROLES.engine, ROLES.readonly],
        )
        assert with_password == 3
        assert (
            await admin.fetchval("SELECT tableowner FROM pg_tables WHERE tablename = 'fills'")
            == ROLES.owner
        )
    finally:
        await admin.close()
    # the next test provisions its passwords again
    await provision_roles(database_url, ROLES, PASSWORDS)


async def test_migrating_as_the_engine_role_is_refused_naming_the_owner_url(
    roles: RoleUrls, monkeypatch: pytest.MonkeyPatch
) -> None:
    await downgrade(roles.owner, "0004")
    monkeypatch.setenv("DATABASE_URL", roles.engine.render_as_string(hide_password=False))
    with pytest.raises(ConfigError, match="TRADECTL_MIGRATE_DATABASE_URL") as refused:
        async with open_database(load_settings(), migrate=True):
            pass
    assert PASSWORDS[ROLES.engine] not in str(refused.value)
    # as the owner it goes through, and the engine role can write again
    monkeypatch.setenv(
        "TRADECTL_MIGRATE_DATABASE_URL", roles.owner.render_as_string(hide_password=False)
    )
    async with open_database(load_settings(), migrate=True) as db:
        assert db.url.username == ROLES.engine
        conn = await _connect(db.url)
        try:
            await _insert_fill(conn)
        finally:
            await conn.close()


async def test_operator_commands_run_as_the_engine_role_and_print_a_read_only_psql(
    roles: RoleUrls,
) -> None:
    env = {
        "DATABASE_URL": roles.engine.render_as_string(hide_password=False),
        "TRADECTL_ACCOUNT": "acct-cli",
        "TRADECTL_VENUE": "paper",
    }
    for args in (["halt", "--reason", "checking"], ["unhalt", "--reason", "checked"]):
        done = await tradectl(env, *args)
        assert done.returncode == 0, done.stderr
    journal = await tradectl(env, "journal")
    assert journal.returncode == 0, journal.stderr
    assert "checking" in journal.stdout
    sql = await tradectl(env, "sql", "--print")
    assert sql.returncode == 0, sql.stderr
    assert f"{ROLES.readonly}@" in "".join(sql.stdout.split())
