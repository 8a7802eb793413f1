"""The graceful hand-off between two engine processes on one account (engine/handoff.py):
`tradectl release` makes the owner settle its in-flight orders, record the result and release
its lease; the standby takes the account over at once (not after the TTL) and reconciles
before it trades."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine

from engine.controls import LeaseKeeper
from engine.demo import simulator_config
from engine.domain.intents import Buy, DecisionKey
from engine.domain.market import Quote
from engine.domain.risk import Limits
from engine.domain.types import AccountId, Side, StrategyId, utc_now
from engine.execution import Execution, ExecutionConfig
from engine.handoff import HandOff
from engine.ledger.ledger import Ledger
from engine.limits_book import LimitsBook
from engine.marketdata.conflator import Conflator
from engine.portfolio import Portfolio
from engine.risk_gate import RiskGate
from engine.venues.paper import BTCUSDT, default_paper_venue
from engine.venues.simulator import run_simulator
from tests.chaos.harness import SYMBOLS, EngineProcess, engine_env
from tests.helpers import eventually, tradectl

#: long: a takeover that waited for the lease to expire would fail every wait below
TTL_S = "120"


async def _one(db_engine: AsyncEngine, sql: str) -> object:
    async with db_engine.connect() as conn:
        return (await conn.execute(text(sql))).scalar()


def _log(log: Path) -> str:
    return log.read_text("utf-8", errors="replace")


async def test_a_released_account_is_taken_over_at_once_and_reconciled_before_trading(
    database_url: URL, db_engine: AsyncEngine, tmp_path: Path
) -> None:
    async with run_simulator(simulator_config(SYMBOLS, seed=5)) as sim:
        env = engine_env(sim, database_url, None) | {
            "TRADECTL_LEASE_TTL_S": TTL_S,
        }
        first = EngineProcess(env, tmp_path / "first.log")
        second = EngineProcess(env, tmp_path / "second.log")
        try:
            await first.start()
            await first.wait_ready()
            await eventually(
                lambda: _one(db_engine, "SELECT count(*) >= 2 FROM orders WHERE lease_epoch = 1"),
                timeout=60,
                message="the first engine never traded",
            )
            await second.start()
            await eventually(
                lambda: "lease.standby" in _log(second.log),
                timeout=60,
                message="the second engine never stood by",
            )

            proc = await tradectl(env, "release", "--reason", "rebalancing onto the second")
            assert proc.returncode == 0, proc.stdout + proc.stderr
            assert "handed the account off" in proc.stdout

            assert await first.wait(timeout=60) == 0  # a clean stop, not a failure
            await second.wait_ready()
            assert await _one(db_engine, "SELECT epoch FROM leases") == 2
            await eventually(
                lambda: _one(db_engine, "SELECT count(*) > 0 FROM orders WHERE lease_epoch = 2"),
                timeout=60,
                message="the second engine never traded",
            )
        finally:
            await first.close()
            await second.close()

    # the first engine left nothing in flight: every order of its epoch has a definite state
    # (or a recorded UNKNOWN the next owner looks up)
    pending = await _one(
        db_engine,
        "SELECT count(*) FROM orders WHERE lease_epoch = 1 AND state = 'PENDING_SUBMIT'",
    )
    assert pending == 0
    # the second reconciled (its startup) before its first order went out
    log = _log(second.log)
    assert "tradectl running" in log
    if "order.submitted" in log:
        assert log.index("tradectl running") < log.index("order.submitted")
    # the journal records the hand-off with its reason and what came of it
    proc = await tradectl(env, "journal", "--json")
    assert proc.returncode == 0, proc.stderr
    [entry] = [e for e in map(json.loads, proc.stdout.splitlines()) if e["action"] == "release"]
    assert entry["reason"] == "rebalancing onto the second"
    assert entry["request"].startswith("ok"), entry


async def test_give_up_settles_what_is_in_flight_journals_the_reason_and_lets_the_next_owner_in(
    db_engine: AsyncEngine,
) -> None:
    """The hand-off as a pool calls it (no operator request), on the real execution path over
    the paper venue: the orders sent have their answers, the journal has the reason, and once
    the lease is released the next owner takes it at once."""
    venue = default_paper_venue((BTCUSDT,), seed=1)
    now = utc_now()
    quote = Quote(
        symbol=BTCUSDT, bid=Decimal("30000.00"), bid_size=Decimal(100), ask=Decimal("30000.01"),
        ask_size=Decimal(100), venue_ts=now, received_at=now,
    )  # fmt: skip
    venue.set_quote(quote)
    conflator = Conflator()
    conflator.publish(quote)
    ledger = Ledger(db_engine, account=AccountId("pool-1"), venue=venue.name)
    lease = LeaseKeeper(ledger, ttl=timedelta(seconds=120))
    await lease.acquire()
    portfolio = Portfolio(db_engine, "pool-1")
    limits = Limits(
        max_order_qty=Decimal(1), max_order_notional=Decimal(100_000),
        max_position_qty=Decimal(10), max_price_age=timedelta(hours=1),
    )  # fmt: skip
    execution = Execution(
        ledger=ledger,
        venue=venue,
        gate=RiskGate(
            limits=LimitsBook(account=limits), market=conflator, portfolio=portfolio, clock=utc_now
        ),
        lease=lease,
        config=ExecutionConfig(account=AccountId("pool-1"), order_id_prefix="pool"),
    )
    running = asyncio.create_task(execution.run())
    try:
        for i in range(5):
            key = DecisionKey(
                strategy_id=StrategyId("s"), symbol=BTCUSDT, interval_key=f"i{i}", side=Side.BUY
            )
            await execution.submit_intent(
                Buy(key=key, reason="r", md_ts=now, quantity=Decimal("0.001"))
            )
        handoff = HandOff(ledger, execution, holder=lease.holder)
        result = await handoff.give_up("rebalancing: a new engine joined", actor="engine:pool")
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        await venue.close()
    assert handoff.done.is_set()
    assert result["ok"] is True
    assert result["unresolved_orders"] == 0
    assert await _one(db_engine, "SELECT count(*) FROM orders WHERE account = 'pool-1'") == 5
    [action] = await ledger.journal.read()
    assert (action.action, action.actor) == ("release", "engine:pool")
    assert action.reason == "rebalancing: a new engine joined"
    await lease.release()
    assert await ledger.leases.acquire("the-next-owner", timedelta(seconds=120)) == 2
