"""The migrations build exactly the schema that engine/ledger/schema.py describes."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.engine import URL, Connection

from engine.exceptions import SchemaNotAtHead
from engine.ledger import schema, schema_ddl, views
from engine.ledger.db import (
    ROOT,
    _run_alembic,
    asyncpg_connect_kwargs,
    downgrade,
    ensure_at_head,
    libpq_url,
    make_engine,
    schema_revision_status,
    upgrade_head,
)

CATALOG_QUERIES: dict[str, str] = {
    "columns": """
        SELECT table_name, column_name, ordinal_position, data_type, is_nullable, column_default,
               numeric_precision, numeric_scale
        FROM information_schema.columns
        WHERE table_schema = 'public' AND table_name <> 'alembic_version'
        ORDER BY table_name, ordinal_position
    """,
    "indexes": """
        SELECT tablename, indexname, indexdef FROM pg_indexes
        WHERE schemaname = 'public' AND tablename <> 'alembic_version'
        ORDER BY tablename, indexname
    """,
    "constraints": """
        SELECT c.conrelid::regclass::text AS table_name, c.conname, c.contype,
               pg_get_constraintdef(c.oid) AS definition
        FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace
        WHERE n.nspname = 'public' AND c.conrelid::regclass::text <> 'alembic_version'
        ORDER BY 1, 2
    """,
    "views": """
        SELECT viewname, definition FROM pg_views WHERE schemaname = 'public' ORDER BY viewname
    """,
    "triggers": """
        SELECT t.tgrelid::regclass::text AS table_name, t.tgname, pg_get_triggerdef(t.oid)
        FROM pg_trigger t WHERE NOT t.tgisinternal ORDER BY 1, 2
    """,
    "functions": """
        SELECT p.proname, pg_get_functiondef(p.oid) FROM pg_proc p
        JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'public' ORDER BY 1
    """,
    "sequences": """
        SELECT sequence_name, data_type FROM information_schema.sequences
        WHERE sequence_schema = 'public' ORDER BY 1
    """,
}


async def _connect(url: URL) -> asyncpg.Connection:
    return await asyncpg.connect(**asyncpg_connect_kwargs(url))  # type: ignore[arg-type]


async def _catalog(url: URL) -> dict[str, list[tuple[Any, ...]]]:
    conn = await _connect(url)
    try:
        return {
            name: [tuple(row.values()) for row in await conn.fetch(sql)]
            for name, sql in CATALOG_QUERIES.items()
        }
    finally:
        await conn.close()


@pytest.fixture
async def reference_database_url(pg_server_url: URL) -> AsyncIterator[URL]:
    """A database built straight from schema.py (no alembic)."""
    name = f"tradectl_ref_{uuid.uuid4().hex[:10]}"
    admin = await _connect(pg_server_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = pg_server_url.set(database=name)
    engine = make_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(schema_ddl.create_all)
    finally:
        await engine.dispose()
    yield url
    admin = await _connect(pg_server_url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


def _metadata_diffs(conn: Connection) -> list[Any]:
    context = MigrationContext.configure(conn, opts={"compare_type": True})
    return list(compare_metadata(context, schema.metadata))


async def _autogenerate_diffs(url: URL) -> list[Any]:
    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(_metadata_diffs)
    finally:
        await engine.dispose()


def _assert_same_catalog(
    migrated: dict[str, list[tuple[Any, ...]]], reference: dict[str, list[tuple[Any, ...]]]
) -> None:
    for part in CATALOG_QUERIES:
        assert migrated[part] == reference[part], f"{part} differ between migrations and schema.py"


async def test_upgrade_head_matches_schema_py_then_downgrades_to_nothing_and_back(
    empty_database_url: URL, reference_database_url: URL
) -> None:
    await upgrade_head(empty_database_url)

    assert await _autogenerate_diffs(empty_database_url) == []
    reference = await _catalog(reference_database_url)
    assert {row[0] for row in reference["views"]} == {name for name, _ in views.VIEWS}
    assert len(reference["triggers"]) == 2 * len(schema_ddl.APPEND_ONLY_TABLES)
    _assert_same_catalog(await _catalog(empty_database_url), reference)

    await downgrade(empty_database_url, "base")
    after_downgrade = await _catalog(empty_database_url)
    assert all(rows == [] for rows in after_downgrade.values()), after_downgrade

    await upgrade_head(empty_database_url)
    _assert_same_catalog(await _catalog(empty_database_url), reference)


async def test_revision_status_reports_current_and_head(empty_database_url: URL) -> None:
    engine = make_engine(empty_database_url)
    try:
        current, head = await schema_revision_status(engine)
        assert current is None
        assert head is not None
        await upgrade_head(empty_database_url)
        assert await schema_revision_status(engine) == (head, head)
        await ensure_at_head(engine)
    finally:
        await engine.dispose()


async def test_ensure_at_head_refuses_an_empty_database_and_names_tradectl_migrate(
    empty_database_url: URL,
) -> None:
    engine = make_engine(empty_database_url)
    try:
        with pytest.raises(SchemaNotAtHead, match="tradectl migrate"):
            await ensure_at_head(engine)
    finally:
        await engine.dispose()


def _alembic(*args: str, env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "alembic", *args],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout + done.stderr


async def test_the_alembic_cli_takes_the_url_from_x_or_database_url(
    empty_database_url: URL,
) -> None:
    url = libpq_url(empty_database_url)
    # -x wins over DATABASE_URL: point the latter somewhere unusable to prove it
    bogus = {"DATABASE_URL": "postgresql://nobody@127.0.0.1:1/nothing"}
    await asyncio.to_thread(_alembic, "-x", f"url={url}", "upgrade", "head", env=bogus)
    current = await asyncio.to_thread(_alembic, "current", env={"DATABASE_URL": url})
    assert "0017 (head)" in current


# -- 0003: the account in every identity --------------------------------------------------------

_AT_0002 = """
INSERT INTO decisions (decision_id, strategy_id, account, symbol, intent, reason, md_ts,
                       decided_at, interval_key, sequence, verdicts, outcome)
VALUES ('d1', 'fv-pres', 'acct-a', 'PRES-YES', 'hold', 'r', now(), now(), 'k', 0, '[]', 'hold'),
       ('d2', 'shared', 'acct-a', 'BTCUSDT', 'hold', 'r', now(), now(), 'k', 0, '[]', 'hold'),
       ('d3', 'shared', 'acct-b', 'BTCUSDT', 'hold', 'r', now(), now(), 'k', 0, '[]', 'hold'),
       ('d4', 'sma', 'acct-b', 'ETHUSDT', 'buy', 'r', now(), now(), 'k', 0, '[]', 'reserved');
INSERT INTO orders (client_order_id, decision_id, strategy_id, account, venue, symbol, side, type,
                    time_in_force, requested_qty, state, created_at, expires_at, updated_at)
VALUES ('tctl-b1', 'd4', 'sma', 'acct-b', 'simulator', 'ETHUSDT', 'BUY', 'LIMIT', 'GTC', 1,
        'OPEN', now(), now(), now());
INSERT INTO controls (scope, target, kind, active, reason, set_by, set_at) VALUES
    ('global', '*', 'halt', true, 'everything', 't', now()),
    ('account', 'acct-b', 'pause', true, 'one account', 't', now()),
    ('strategy', 'fv-pres', 'pause', true, 'one account has it', 't', now()),
    ('strategy', 'shared', 'pause', true, 'two accounts have it', 't', now()),
    ('symbol', 'NOBODY', 'reduce_only', true, 'no account has it', 't', now());
INSERT INTO incidents (opened_at, kind, scope, severity, message, details, dedupe_key) VALUES
    (now(), 'loss_limit', 'account:acct-a', 'critical', 'm', '{}', 'loss_limit:acct-a:2026-11-22'),
    (now(), 'fills_missing', 'symbol:ETHUSDT', 'error', 'm', '{"client_order_id": "tctl-b1"}',
     'fills_missing:tctl-b1'),
    (now(), 'strategy_failed', 'strategy:shared', 'error', 'm', '{}', 'strategy_failed:shared');
"""


async def _rows(url: URL, sql: str) -> list[tuple[Any, ...]]:
    conn = await _connect(url)
    try:
        return [tuple(r.values()) for r in await conn.fetch(sql)]
    finally:
        await conn.close()


async def _at_0002_with_data(url: URL, *, leases: tuple[str, ...]) -> None:
    await asyncio.to_thread(_run_alembic, url, "upgrade", "0002")
    conn = await _connect(url)
    try:
        await conn.execute(_AT_0002)
        for account in leases:
            await conn.execute(
                "INSERT INTO leases VALUES ($1, 'h', 1, now(), now() + interval '1 minute')",
                account,
            )
    finally:
        await conn.close()


async def test_0003_gives_existing_controls_and_incidents_the_account_they_are_about(
    empty_database_url: URL,
) -> None:
    url = empty_database_url
    await _at_0002_with_data(url, leases=("acct-a", "acct-b"))
    await upgrade_head(url)

    controls = await _rows(
        url, "SELECT scope, target, account FROM controls ORDER BY scope, target, account"
    )
    assert controls == [
        ("account", "acct-b", "acct-b"),
        ("global", "*", None),
        # ambiguous and two leases: one per account with decisions for it
        ("strategy", "fv-pres", "acct-a"),
        ("strategy", "shared", "acct-a"),
        ("strategy", "shared", "acct-b"),
        # nobody has it and two leases: every known account keeps it
        ("symbol", "NOBODY", "acct-a"),
        ("symbol", "NOBODY", "acct-b"),
    ]
    incidents = await _rows(
        url, "SELECT dedupe_key, account FROM incidents ORDER BY dedupe_key, account"
    )
    assert incidents == [
        ("fills_missing:tctl-b1", "acct-b"),  # the account of the order it is about
        ("loss_limit:acct-a:2026-11-22", "acct-a"),
        ("strategy_failed:shared", "acct-a"),
        ("strategy_failed:shared", "acct-b"),
    ]

    # and back: the old identities return (duplicates collapse to the oldest) and forth again
    await downgrade(url, "0002")
    active = await _rows(
        url, "SELECT scope, target FROM controls WHERE active ORDER BY scope, target"
    )
    assert active == [
        ("account", "acct-b"),
        ("global", "*"),
        ("strategy", "fv-pres"),
        ("strategy", "shared"),
        ("symbol", "NOBODY"),
    ]
    await upgrade_head(url)


async def test_0003_with_one_lease_gives_ambiguous_rows_to_the_leased_account(
    empty_database_url: URL,
) -> None:
    url = empty_database_url
    await _at_0002_with_data(url, leases=("acct-b",))
    await upgrade_head(url)
    controls = await _rows(
        url,
        "SELECT target, account FROM controls WHERE scope IN ('strategy', 'symbol') ORDER BY 1",
    )
    # fv-pres names exactly one account (acct-a); the rest is ambiguous → the leased account
    assert controls == [("NOBODY", "acct-b"), ("fv-pres", "acct-a"), ("shared", "acct-b")]
    incidents = await _rows(
        url, "SELECT account FROM incidents WHERE dedupe_key = 'strategy_failed:shared'"
    )
    assert incidents == [("acct-b",)]


async def test_0003_downgrade_refuses_to_merge_fills_of_two_accounts(
    empty_database_url: URL,
) -> None:
    url = empty_database_url
    await upgrade_head(url)
    conn = await _connect(url)
    try:
        for account in ("acct-a", "acct-b"):
            await conn.execute(
                """INSERT INTO fills (venue, symbol, trade_id, account, side, qty, price, fee,
                                      venue_ts, received_at, recorded_at)
                VALUES ('simulator', 'BTCUSDT', '1', $1, 'BUY', 1, 1, 0, now(), now(), now())""",
                account,
            )
    finally:
        await conn.close()
    with pytest.raises(RuntimeError, match="recorded in several accounts"):
        await downgrade(url, "0002")
    assert await _rows(url, "SELECT count(*) FROM fills") == [(2,)]


# -- 0004: no NaN or Infinity in a money or quantity column ------------------------------------


async def test_every_numeric_column_has_a_finite_check(empty_database_url: URL) -> None:
    url = empty_database_url
    await upgrade_head(url)
    numeric = await _rows(
        url,
        """SELECT c.table_name, c.column_name FROM information_schema.columns c
        JOIN information_schema.tables t USING (table_schema, table_name)
        WHERE c.table_schema = 'public' AND t.table_type = 'BASE TABLE'
          AND c.data_type = 'numeric'
        ORDER BY 1, 2""",
    )
    checks = await _rows(
        url,
        """SELECT conrelid::regclass::text, conname FROM pg_constraint
        WHERE contype = 'c' AND conname LIKE '%\\_finite' ORDER BY 1, 2""",
    )
    assert len(numeric) == 19  # 0010: loss_marks.day_start_pnl, peak_pnl; 0015 capital_fraction
    assert sorted(checks) == sorted((t, schema.finite_check_name(t, c)) for t, c in numeric)


async def test_0004_refuses_to_upgrade_over_nan_or_infinity_naming_the_rows(
    empty_database_url: URL,
) -> None:
    url = empty_database_url
    await asyncio.to_thread(_run_alembic, url, "upgrade", "0003")
    conn = await _connect(url)
    try:
        # 'NaN' > 0 is true in Postgres: ck_fills_qty_positive let this in before 0004
        await conn.execute(
            """INSERT INTO fills (venue, symbol, trade_id, account, side, qty, price, fee,
                                  venue_ts, received_at, recorded_at)
            VALUES ('simulator', 'BTCUSDT', '7', 'acct-a', 'BUY', 'NaN', 1, 0, now(), now(),
                    now()),
                   ('simulator', 'BTCUSDT', '8', 'acct-a', 'BUY', 1, 1, 0, now(), now(), now())"""
        )
        await conn.execute(
            """INSERT INTO balances (account, venue, asset, free, locked, received_at)
            VALUES ('acct-a', 'simulator', 'USDT', 'Infinity', 0, now())"""
        )
    finally:
        await conn.close()
    with pytest.raises(RuntimeError) as refused:
        await upgrade_head(url)
    message = str(refused.value)
    assert "fills.qty: 1 row(s): id=1, account=acct-a, trade_id=7, qty=NaN" in message
    assert "balances.free: 1 row(s): id=1, account=acct-a, asset=USDT, free=Infinity" in message
    assert "fills.price" not in message
    # nothing changed: still at 0003, both fills kept
    assert await _rows(url, "SELECT version_num FROM alembic_version") == [("0003",)]
    assert await _rows(url, "SELECT count(*) FROM fills") == [(2,)]


# -- 0005: decisions, orders and order events keyed per account --------------------------------

_AT_0004 = """
INSERT INTO decisions (decision_id, strategy_id, account, symbol, intent, side, quantity,
                       limit_price, reason, md_ts, decided_at, interval_key, sequence, verdicts,
                       outcome)
VALUES ('d1', 'sma', 'acct-a', 'BTCUSDT', 'buy', 'BUY', 1, 100, 'crossed',
        '2026-11-29 10:00Z', '2026-11-29 10:00:01Z', 'k1', 0, '[{"check": "x"}]', 'reserved'),
       ('d2', 'sma', 'acct-a', 'BTCUSDT', 'buy', 'BUY', 1, 100, 'crossed',
        '2026-11-29 10:01Z', '2026-11-29 10:01:01Z', 'k2', 0, '[]', 'reserved');
INSERT INTO orders (client_order_id, decision_id, strategy_id, account, venue, symbol, side, type,
                    time_in_force, requested_qty, limit_price, state, created_at, expires_at,
                    updated_at)
VALUES ('a-1', 'd1', 'sma', 'acct-a', 'sim', 'BTCUSDT', 'BUY', 'LIMIT', 'GTC', 1, 100, 'OPEN',
        '2026-11-29 10:00:02Z', now(), now()),
       ('a-2', 'd2', 'sma', 'acct-a', 'sim', 'BTCUSDT', 'BUY', 'LIMIT', 'GTC', 1, 100, 'OPEN',
        '2026-11-29 10:01:02Z', now(), now());
INSERT INTO order_events (client_order_id, from_state, to_state, cause, recorded_at)
VALUES ('a-1', NULL, 'PENDING_SUBMIT', 'reserved', now()),
       ('a-1', 'PENDING_SUBMIT', 'OPEN', 'ack', now()),
       ('a-2', NULL, 'PENDING_SUBMIT', 'reserved', now());
"""

# Account B, another prefix, the same decision: its decision row was dropped by
# ON CONFLICT (decision_id) DO NOTHING, and its order points at A's decision.
_B_POINTS_AT_A = """
INSERT INTO orders (client_order_id, decision_id, strategy_id, account, venue, symbol, side, type,
                    time_in_force, requested_qty, limit_price, state, created_at, expires_at,
                    updated_at)
VALUES ('b-1', 'd1', 'sma', 'acct-b', 'sim', 'BTCUSDT', 'BUY', 'LIMIT', 'GTC', 2, 99, 'OPEN',
        '2026-11-29 10:00:03Z', now(), now());
INSERT INTO order_events (client_order_id, from_state, to_state, cause, recorded_at)
VALUES ('b-1', NULL, 'PENDING_SUBMIT', 'reserved', now());
"""


async def _at_0004(url: URL, *sql: str) -> None:
    await asyncio.to_thread(_run_alembic, url, "upgrade", "0004")
    conn = await _connect(url)
    try:
        for statement in sql:
            await conn.execute(statement)
    finally:
        await conn.close()


async def test_0005_gives_events_their_account_and_an_order_its_own_accounts_decision(
    empty_database_url: URL,
) -> None:
    url = empty_database_url
    await _at_0004(url, _AT_0004, _B_POINTS_AT_A)
    await upgrade_head(url)

    events = await _rows(
        url, "SELECT account, client_order_id, to_state FROM order_events ORDER BY id"
    )
    assert events == [
        ("acct-a", "a-1", "PENDING_SUBMIT"),
        ("acct-a", "a-1", "OPEN"),
        ("acct-a", "a-2", "PENDING_SUBMIT"),
        ("acct-b", "b-1", "PENDING_SUBMIT"),
    ]
    restored = await _rows(
        url,
        """SELECT side, quantity, limit_price, decided_at = '2026-11-29 10:00:03Z', interval_key,
                  verdicts, outcome, reason
        FROM decisions WHERE account = 'acct-b' AND decision_id = 'd1'""",
    )
    assert len(restored) == 1
    *known, reason = restored[0]
    assert known == ["BUY", 2, 99, True, "k1", "[]", "reserved"]  # (asyncpg: jsonb as text)
    assert "restored by migration 0005" in reason
    assert "acct-a" in reason
    assert reason.endswith("The other account's reason: crossed")
    # A's decision is untouched; each account's trace shows its own order and events
    trace = await _rows(
        url,
        """SELECT account, client_order_id, jsonb_array_length(events) FROM decision_trace
        WHERE decision_id = 'd1' ORDER BY account""",
    )
    assert trace == [("acct-a", "a-1", 2), ("acct-b", "b-1", 1)]

    # d1 is now in two accounts: the old single-column key cannot hold it
    at_head = await _rows(url, "SELECT version_num FROM alembic_version")
    with pytest.raises(RuntimeError, match=r"decision ids: d1 \(accounts acct-a, acct-b\)"):
        await downgrade(url, "0004")
    # the downgrade is one transaction: nothing of it (not even later revisions') was undone
    assert await _rows(url, "SELECT version_num FROM alembic_version") == at_head


async def test_0005_downgrades_and_upgrades_again_when_no_id_is_shared(
    empty_database_url: URL,
) -> None:
    url = empty_database_url
    await _at_0004(url, _AT_0004)
    await upgrade_head(url)
    await downgrade(url, "0004")
    assert await _rows(url, "SELECT count(*) FROM order_events") == [(3,)]
    await upgrade_head(url)
    assert await _rows(
        url, "SELECT DISTINCT account FROM order_events UNION SELECT account FROM orders"
    ) == [("acct-a",)]
