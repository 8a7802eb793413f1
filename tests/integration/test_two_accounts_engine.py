"""Two accounts, one ledger, the built-in simulator with the same seed: the case a user measured.

The simulator restarts its trade ids in every process, so the second account's trades carry the
first account's trade ids; each account must still have a fill row for every filled order, and a
pause or an incident in one account must not reach the other.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest
from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine

from engine import runtime
from engine.config import load_settings
from engine.domain.types import AccountId, ControlKind, ControlScope, VenueName
from engine.ledger.ledger import Ledger
from engine.status import ledger_status
from tests.helpers import ROOT, eventually

STRATEGIES = ROOT / "tests/resources/engine/fast_strategies.toml"


async def _rows(engine: AsyncEngine, sql: str, **params: object) -> list[tuple[object, ...]]:
    async with engine.connect() as conn:
        return [tuple(r) for r in (await conn.execute(text(sql), params)).all()]


async def _run_until(
    account: str, db_engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch, *, strategy: str
) -> None:
    """Run an engine for ``account`` until it has filled orders of both strategies."""
    monkeypatch.setenv("TRADECTL_ACCOUNT", account)
    stop = asyncio.Event()
    task = asyncio.create_task(runtime.run(load_settings(), stop), name=f"engine-{account}")

    async def filled() -> bool:
        if task.done():
            task.result()
        rows = await _rows(
            db_engine,
            "SELECT strategy_id, count(*) FROM orders WHERE account = :a AND state = 'FILLED'"
            " GROUP BY 1",
            a=account,
        )
        counts = {str(strategy_id): int(str(n)) for strategy_id, n in rows}
        return counts.get(strategy, 0) >= 2 and sum(counts.values()) >= 3

    try:
        await eventually(filled, timeout=90, message=f"{account} should fill orders")
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=30)


async def _assert_every_filled_order_has_its_fills(db_engine: AsyncEngine, account: str) -> None:
    # filled per the order's own fills (same account), against what was requested
    rows = await _rows(
        db_engine,
        """SELECT o.client_order_id, o.requested_qty,
                  (SELECT COALESCE(sum(f.qty), 0) FROM fills f
                   WHERE f.client_order_id = o.client_order_id AND f.account = o.account)
           FROM orders o WHERE o.account = :a AND o.state = 'FILLED'""",
        a=account,
    )
    assert rows
    missing = [(coid, req, got) for coid, req, got in rows if got != req]
    assert missing == [], f"{account}: filled orders without their fill rows"


async def test_two_accounts_on_one_ledger_each_keep_their_fills_controls_and_incidents(
    database_url: URL, db_engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in {
        "DATABASE_URL": database_url.render_as_string(hide_password=False),
        "TRADECTL_VENUE": "simulator",
        "TRADECTL_SEED": "7",
        "TRADECTL_STRATEGIES_FILE": str(STRATEGIES),
        "TRADECTL_STATUS_INTERVAL_S": "3600",
        "TRADECTL_LEASE_TTL_S": "3",
    }.items():
        monkeypatch.setenv(key, value)

    await _run_until("acct-a", db_engine, monkeypatch, strategy="fv-fast")

    # account A's operator pauses fv-fast and has an open incident
    ledger_a = Ledger(db_engine, account=AccountId("acct-a"), venue=VenueName("simulator"))
    pause = await ledger_a.controls.set(
        ControlScope.STRATEGY, "fv-fast", ControlKind.PAUSE, reason="checking", set_by="test"
    )
    incident = await ledger_a.incidents.open(
        kind="fills_missing",
        scope="symbol:PRES-YES",
        severity="error",
        message="check the venue",
        details={},
        dedupe_key="fills_missing:x",
    )

    # account B: same seed, a fresh simulator whose trade ids start again at the beginning;
    # its fv-fast trades although fv-fast is paused in A
    await _run_until("acct-b", db_engine, monkeypatch, strategy="fv-fast")

    for account in ("acct-a", "acct-b"):
        await _assert_every_filled_order_has_its_fills(db_engine, account)
    shared = await _rows(
        db_engine,
        """SELECT symbol, trade_id FROM fills WHERE account = 'acct-a'
           INTERSECT SELECT symbol, trade_id FROM fills WHERE account = 'acct-b'""",
    )
    assert shared, "the simulator should have reused trade ids (the case under test)"

    # no row of a view mixes the accounts: per account, positions add up to its own fills
    for account in ("acct-a", "acct-b"):
        [(from_view, from_fills)] = await _rows(
            db_engine,
            """SELECT (SELECT sum(bought_qty + sold_qty) FROM positions WHERE account = :a),
                      (SELECT sum(qty) FROM fills WHERE account = :a)""",
            a=account,
        )
        assert from_view == from_fills
        assert isinstance(from_view, Decimal)

    # the pause held in A only: no fv-fast order of A after it, and B's fv-fast was never
    # refused by a control
    after_pause = await _rows(
        db_engine,
        "SELECT count(*) FROM orders WHERE account = 'acct-a' AND strategy_id = 'fv-fast'"
        " AND created_at > :t",
        t=pause.set_at,
    )
    assert after_pause == [(0,)]
    refused_in_b = await _rows(
        db_engine,
        """SELECT count(*) FROM decisions d, jsonb_array_elements(d.verdicts) v
           WHERE d.account = 'acct-b' AND v->>'check' = 'control'""",
    )
    assert refused_in_b == [(0,)]

    status_b = await ledger_status(db_engine, "acct-b")
    assert "open incidents: 0" in status_b
    assert "controls:" not in status_b
    status_a = await ledger_status(db_engine, "acct-a")
    assert "open incidents: 1" in status_a
    assert "pause strategy:fv-fast" in status_a
    ledger_b = Ledger(db_engine, account=AccountId("acct-b"), venue=VenueName("simulator"))
    assert await ledger_b.incidents.read() == []
    assert [i.id for i in await ledger_a.incidents.read()] == [incident.id]
