"""Auth failures anywhere halt the account with a critical incident naming the key to check,
and the engine keeps running for cancels and reconciliation: a running engine against the
built-in Kalshi simulator over real sockets, with the key refused on the submit path, on the user
stream, and on the market-data streams (Kalshi signs those too). For the streams REST keeps
answering and only new handshakes are refused (a key revoked between a stream's reconnects), so
the halt can only come from the stream."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

from pydantic import SecretStr
from sqlalchemy import text
from sqlalchemy.engine import URL

from engine.config import load_settings
from engine.database import open_database
from engine.domain.ids import client_order_id
from engine.domain.intents import Buy, DecisionKey
from engine.domain.types import (
    ControlKind,
    DecisionOutcome,
    OrderState,
    Side,
    StrategyId,
    Symbol,
    TimeInForce,
    VenueName,
    utc_now,
)
from engine.runtime import Engine
from engine.strategy_config import parse_trading_config
from engine.venue_session import VenueSession
from engine.venues.binance.stream import StreamSettings
from engine.venues.kalshi import KalshiConfig, KalshiVenue
from engine.venues.kalshi.settlements import CHANNEL as LIFECYCLE_CHANNEL
from engine.venues.kalshi_simulator import KalshiSimConfig, KalshiSimHandle, run_kalshi_simulator
from engine.venues.metrics import VenueMetrics
from tests.helpers import eventually

MARKET = Symbol("KXSIM-26DEC31-T50")
KEY = "TRADECTL_KALSHI_KEY_ID and its private key"


@dataclasses.dataclass
class Running:
    engine: Engine
    sim: KalshiSimHandle
    task: asyncio.Task[None]
    account: str


@contextlib.asynccontextmanager
async def running(database_url: URL, account: str) -> AsyncIterator[Running]:
    settings = load_settings(
        database_url=database_url.render_as_string(hide_password=False),
        account=account,
        venue="kalshi_simulator",
        status_interval_s=3600,
        # no periodic REST read: the halt must come from the stream alone
        reconcile_interval_s=3600,
        resolve_interval_s=0.2,
        consistency_window_s=0.2,
    )
    # fair_value far from the touch: it decides on every quote and never trades
    specs = parse_trading_config(
        {
            "strategy": [
                {
                    "id": "holder",
                    "kind": "fair_value",
                    "symbols": [MARKET],
                    "params": {"fair": "0.5", "edge": "0.4", "qty": "1", "max_inventory": "1"},
                }
            ]
        },
        source=Path("<test>"),
    ).strategies
    async with (
        open_database(settings) as db,
        run_kalshi_simulator(KalshiSimConfig(seed=5)) as sim,
    ):
        metrics = VenueMetrics(account=account, venue="kalshi-simulator")
        venue = KalshiVenue(
            KalshiConfig(
                key_id=sim.key_id,
                private_key=SecretStr(sim.private_key_pem),
                rest_url=sim.rest_url,
                ws_url=sim.ws_url,
                venue_name=VenueName("kalshi-simulator"),
                stream=StreamSettings(backoff_initial_s=0.05, backoff_max_s=0.2),
                read_margin=timedelta(0),
            ),
            metrics=metrics,
        )
        session = VenueSession(venue=venue, metrics=metrics, credential=KEY)
        engine = Engine(settings, db, session, specs)
        stop = asyncio.Event()
        task = asyncio.create_task(engine.run(stop))
        try:
            await eventually(lambda: engine.ready, timeout=30, message="engine never started")
            await eventually(
                lambda: engine.conflator.quote(MARKET) is not None, message="no quote arrived"
            )
            yield Running(engine, sim, task, account)
        finally:
            stop.set()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, timeout=30)
            await venue.close()


async def _halted_by_stream(run: Running, where: str | tuple[str, ...]) -> None:
    engine = run.engine

    async def halted() -> bool:
        return any(c.kind is ControlKind.HALT for c in await engine.ledger.controls.active())

    await eventually(halted, timeout=15, message=f"a refusal on {where} should halt the account")
    [incident] = [i for i in await engine.ledger.incidents.read() if i.kind == "auth_failed"]
    assert incident.severity == "critical"
    places = (where,) if isinstance(where, str) else where
    assert incident.details["where"] in places
    assert f"on {incident.details['where']}" in incident.message
    assert KEY in incident.message
    assert not run.task.done(), "the engine must keep running"


def _intent(interval: str) -> Buy:
    return Buy(
        key=DecisionKey(
            strategy_id=StrategyId("manual"), symbol=MARKET, interval_key=interval, side=Side.BUY
        ),
        reason="a resting bid",
        md_ts=utc_now(),
        quantity=Decimal(1),
        limit_price=Decimal("0.10"),
        time_in_force=TimeInForce.GTC,
    )


async def _still_serves(run: Running, interval: str) -> None:
    """Halted: a new order is denied; a reconciliation pass (REST) still completes."""
    engine = run.engine
    await engine.execution.submit_intent(_intent(interval))

    async def outcome() -> str | None:
        async with engine.db.engine.connect() as conn:
            return (
                await conn.execute(
                    text(
                        "SELECT outcome FROM decisions WHERE account = :a "
                        "AND strategy_id = 'manual' AND interval_key = :i"
                    ),
                    {"a": run.account, "i": interval},
                )
            ).scalar()

    assert await eventually(outcome) == DecisionOutcome.DENIED.value
    passes = engine.reconciler.completed_through
    engine.reconciler.request()
    await eventually(lambda: engine.reconciler.completed_through > passes)
    assert not run.task.done()


async def test_a_refused_market_stream_halts_the_account_and_the_engine_keeps_running(
    database_url: URL,
) -> None:
    async with running(database_url, "kalshi-md-auth") as run:
        run.sim.state.refuse_streams = True
        assert run.sim.state.drop_streams("orderbook_delta") == 1
        await _halted_by_stream(run, "the market stream")
        await _still_serves(run, "m1")


async def test_a_refused_lifecycle_stream_halts_the_account_and_the_engine_keeps_running(
    database_url: URL,
) -> None:
    async with running(database_url, "kalshi-lc-auth") as run:
        run.sim.state.refuse_streams = True
        assert run.sim.state.drop_streams(LIFECYCLE_CHANNEL) == 1
        await _halted_by_stream(run, "the market lifecycle stream")
        await _still_serves(run, "l1")


async def test_a_refused_user_stream_halts_the_account_and_the_engine_keeps_running(
    database_url: URL,
) -> None:
    async with running(database_url, "kalshi-user-auth") as run:
        run.sim.state.refuse_streams = True
        assert run.sim.state.drop_streams("fill") == 1
        await _halted_by_stream(run, "the user stream")
        await _still_serves(run, "u1")


async def test_a_refused_submit_halts_the_account_and_the_engine_keeps_running(
    database_url: URL,
) -> None:
    async with running(database_url, "kalshi-submit-auth") as run:
        real = run.sim.state.config
        run.sim.state.config = dataclasses.replace(real, key_id="revoked")
        first = _intent("s1")
        await run.engine.execution.submit_intent(first)
        # the execution path ("submit") or the guard watching every request (its endpoint)
        await _halted_by_stream(run, ("submit", "POST /portfolio/events/orders"))

        async def rejected() -> bool:
            order = await run.engine.ledger.orders.get(client_order_id("tctl", first.key))
            return order is not None and order.state is OrderState.REJECTED

        await eventually(rejected, message="the refused order should be rejected")
        run.sim.state.config = real  # the key repaired: reconciliation goes on, still halted
        await _still_serves(run, "s2")
