"""Two accounts, one ledger, the built-in simulator with the same seed: the case a user measured.

Both engines run at the same time. Each has its own simulator, whose trade ids start again in
every process, so the accounts' trades carry the same trade ids; and the same market gives the
same decisions, hence the same decision ids and client order ids in both accounts. Each account
must still have its own order, decision and fill rows for every filled order, and a pause or an
incident in one account must not reach the other.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
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


async def _filled(db_engine: AsyncEngine, account: str, strategy: str) -> bool:
    """The account has filled orders of both strategies."""
    rows = await _rows(
        db_engine,
        "SELECT strategy_id, count(*) FROM orders WHERE account = :a AND state = 'FILLED'"
        " GROUP BY 1",
        a=account,
    )
    counts = {str(strategy_id): int(str(n)) for strategy_id, n in rows}
    return counts.get(strategy, 0) >= 2 and sum(counts.values()) >= 3


def _start(
    account: str, monkeypatch: pytest.MonkeyPatch
) -> tuple[asyncio.Task[None], asyncio.Event]:
    # Settings are read from the environment once, here: the next engine may set another account.
    monkeypatch.setenv("TRADECTL_ACCOUNT", account)
    stop = asyncio.Event()
    task = asyncio.create_task(runtime.run(load_settings(), stop), name=f"engine-{account}")
    return task, stop


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

    # Both engines at once, each with its own simulator (same seed: the same market, the same
    # decisions, hence the same decision ids and client order ids, and trade ids that restart
    # in every simulator). Orders and decisions are keyed per account, so neither collides.
    engines = {account: _start(account, monkeypatch) for account in ("acct-a", "acct-b")}

    def running(check: Callable[[], Awaitable[bool]]) -> Callable[[], Awaitable[bool]]:
        """``check``, failing at once (with its error) if an engine has stopped."""

        async def probe() -> bool:
            for task, _ in engines.values():
                if task.done():
                    task.result()
            return await check()

        return probe

    try:
        for account in engines:
            await eventually(
                running(functools.partial(_filled, db_engine, account, "fv-fast")),
                timeout=90,
                message=f"{account} should fill orders",
            )

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

        # B's fv-fast keeps trading although fv-fast is paused in A
        async def b_trades_after_pause() -> bool:
            [(n,)] = await _rows(
                db_engine,
                "SELECT count(*) FROM orders WHERE account = 'acct-b' AND strategy_id = 'fv-fast'"
                " AND created_at > :t",
                t=pause.set_at,
            )
            return int(str(n)) > 0

        await eventually(
            running(b_trades_after_pause),
            timeout=60,
            message="acct-b's fv-fast should trade while paused in acct-a",
        )
    finally:
        for _, stop in engines.values():
            stop.set()
        for task, _ in engines.values():
            await asyncio.wait_for(task, timeout=30)

    shared_ids = await _rows(
        db_engine,
        """SELECT client_order_id FROM orders WHERE account = 'acct-a'
           INTERSECT SELECT client_order_id FROM orders WHERE account = 'acct-b'""",
    )
    assert shared_ids, "the same decisions should have given both accounts the same order ids"
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
