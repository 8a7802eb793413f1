"""The alerts of conditions that last: a venue connection down too long (a real WebSocket
client against a port nobody listens on), an order UNKNOWN too long, a daily loss past half its
limit; each raised once per episode, into the real Postgres outbox."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from dataclasses import replace
from decimal import Decimal

import pytest
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncEngine

from engine.alert_watch import AlertWatch
from engine.domain.alerts import AlertLevel
from engine.domain.risk import Limits
from engine.domain.types import OrderState
from engine.exceptions import LeaseLost
from engine.venues.binance import BinanceConfig, BinanceVenue
from engine.venues.binance.stream import StreamSettings
from engine.venues.paper import BTCUSDT, PaperVenue, default_paper_venue
from tests.helpers import eventually
from tests.integration.test_execution import Clock, quote
from tests.integration.test_risk_controls import A, Rig, order, rig


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def venue(clock: Clock) -> PaperVenue:
    v = default_paper_venue((BTCUSDT,), seed=3, clock=clock)
    v.set_quote(quote(clock, "50000", "50001", size="1000"))
    return v


async def rig_standby(db_engine: AsyncEngine, venue: PaperVenue, clock: Clock) -> Rig:
    return Rig(db_engine, venue, clock, Limits())


def dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_a_user_stream_down_past_the_threshold_raises_one_critical_alert(
    db_engine: AsyncEngine, venue: PaperVenue, clock: Clock
) -> None:
    r = await rig(db_engine, venue, clock)
    port = dead_port()
    binance = BinanceVenue(
        BinanceConfig(
            api_key="k",
            api_secret=SecretStr("s"),
            rest_url=f"http://127.0.0.1:{port}",
            ws_api_url=f"ws://127.0.0.1:{port}/ws-api/v3",
            stream_url=f"ws://127.0.0.1:{port}",
            stream=StreamSettings(backoff_initial_s=0.05, backoff_max_s=0.1),
        )
    )
    # real time here: the stream stamps its outage with the wall clock
    watch = AlertWatch(r.ledger, venue=binance, gate=None, disconnect_s=0.2, unknown_s=60)

    async def consume() -> None:
        async for _ in binance.user_stream():
            pass

    consumer = asyncio.create_task(consume())
    try:

        async def alerted() -> bool:
            await watch.check()
            return bool(await r.ledger.alerts.recent())

        await eventually(alerted, message="no disconnect alert")
        await watch.check()  # still down: the same episode
    finally:
        consumer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await consumer
        await binance.close()
    [alert] = await r.ledger.alerts.recent()
    assert alert.level is AlertLevel.CRITICAL
    assert alert.kind == "venue_disconnected"
    assert "no connection to" in alert.message
    assert "`tradectl cancel-all --reason '…'`" in alert.message


async def test_an_order_unknown_past_the_threshold_raises_one_alert(
    db_engine: AsyncEngine, venue: PaperVenue, clock: Clock
) -> None:
    r = await rig(db_engine, venue, clock)
    venue.fail_next_submit_before_accept()
    await r.execution.process([order(clock, A, "0.01", price="40000", i="lost")])
    [unknown] = await r.ledger.orders.non_terminal()
    assert unknown.state is OrderState.UNKNOWN
    watch = AlertWatch(r.ledger, venue=venue, gate=None, disconnect_s=60, unknown_s=30, clock=clock)
    await watch.check()
    assert await r.ledger.alerts.recent() == []  # not long enough yet
    clock.advance(31)
    await watch.check()
    await watch.check()
    [alert] = await r.ledger.alerts.recent()
    assert alert.level is AlertLevel.HIGH
    assert alert.kind == "order_unknown"
    assert alert.scope == f"order:{unknown.client_order_id}"
    assert "`tradectl reconcile --reason '…'`" in alert.message


async def test_a_daily_loss_past_half_its_limit_raises_one_high_alert(
    db_engine: AsyncEngine, venue: PaperVenue, clock: Clock
) -> None:
    r = await rig(db_engine, venue, clock, max_daily_loss=Decimal(150))
    await r.execution.rules_for(BTCUSDT)
    await r.execution.process([order(clock, A, "0.1", i="in")])  # bought at 50001
    watch = AlertWatch(
        r.ledger, venue=venue, gate=r.gate, disconnect_s=60, unknown_s=60, clock=clock
    )
    await watch.check()
    assert await r.ledger.alerts.recent() == []
    r.conflator.publish(quote(clock, "49000", "49001", size="10"))  # -100: 2/3 of the limit
    r.portfolio.mark_dirty()
    await r.portfolio.refresh_pnl(clock())
    await watch.check()
    await watch.check()
    [alert] = await r.ledger.alerts.recent()
    assert alert.level is AlertLevel.HIGH
    assert alert.kind == "daily_loss"
    assert "of its limit 150" in alert.message


async def test_a_partial_fill_raises_one_low_alert_per_order(
    db_engine: AsyncEngine, venue: PaperVenue, clock: Clock
) -> None:
    r = await rig(db_engine, venue, clock)
    venue.set_quote(quote(clock, "50000", "50001", size="0.004"))
    await r.execution.process([order(clock, A, "0.01", price="50001", i="part")])
    [working] = await r.ledger.orders.non_terminal()
    assert working.state is OrderState.PARTIALLY_FILLED
    watch = AlertWatch(r.ledger, venue=venue, gate=None, disconnect_s=60, unknown_s=60, clock=clock)
    await watch.check()
    await watch.check()
    [alert] = await r.ledger.alerts.recent()
    assert alert.level is AlertLevel.LOW
    assert alert.kind == "partial_fill"
    assert "(0.004 of 0.01)" in alert.message


async def test_a_strategy_whose_closed_orders_filled_under_half_raises_one_high_alert(
    db_engine: AsyncEngine, venue: PaperVenue, clock: Clock
) -> None:
    r = await rig(db_engine, venue, clock)
    await r.execution.process(
        [order(clock, A, "0.001", price="40000", i=f"rest{n}") for n in range(10)]
    )
    assert await r.execution.cancel_all(cause="test") == 10
    watch = AlertWatch(r.ledger, venue=venue, gate=None, disconnect_s=60, unknown_s=60, clock=clock)
    await watch.check()
    await watch.check()
    [alert] = await r.ledger.alerts.recent()
    assert alert.level is AlertLevel.HIGH
    assert alert.kind == "fill_rate"
    assert f"Strategy {A} filled 0% of what its last 10 closed orders asked for" in alert.message


async def test_a_lost_lease_raises_one_critical_alert_in_the_account(
    db_engine: AsyncEngine, venue: PaperVenue, clock: Clock
) -> None:
    first = await rig(db_engine, venue, clock)
    second = await rig_standby(db_engine, venue, clock)
    clock.advance(4)  # the first stopped renewing; the standby takes over after the TTL
    await second.lease.acquire()
    with pytest.raises(LeaseLost):
        await first.lease.renew()
    await first.lease.report_lost("fenced out at a reservation")  # execution found it too
    [alert] = await second.ledger.alerts.recent()
    assert alert.level is AlertLevel.CRITICAL
    assert alert.kind == "lease_lost"
    assert first.lease.holder in alert.message
    assert "restart this one only if no other engine is running" in alert.message


async def test_an_order_filled_far_from_its_expected_price_raises_one_high_alert(
    db_engine: AsyncEngine, venue: PaperVenue, clock: Clock
) -> None:
    r = await rig(db_engine, venue, clock)
    # market orders, judged against the price decided on: one decided at a mid of 49,900 (the
    # market moved before it reached the venue) fills 20 bps worse; one decided at 50,000 does not
    far = replace(order(clock, A, "0.01", i="far"), decision_price=Decimal(49900))
    near = replace(order(clock, A, "0.01", i="near"), decision_price=Decimal(50000))
    # a limit order is judged against its own limit, which it cannot fill worse than
    limit = replace(order(clock, A, "0.01", price="50001", i="lim"), decision_price=Decimal(49000))
    await r.execution.process([far, near, limit])
    watch = AlertWatch(
        r.ledger,
        venue=venue,
        gate=None,
        disconnect_s=60,
        unknown_s=60,
        slippage_bps=Decimal(10),
        clock=clock,
    )
    await watch.check()
    clock.advance(61)
    await watch.check()

    [alert] = await r.ledger.alerts.recent()
    assert alert.level is AlertLevel.HIGH
    assert alert.kind == "slippage"
    assert "against its decision price 49900, 20 bps worse" in alert.message
    assert "tradectl explain" in alert.message


async def test_a_restarted_watch_leaves_the_previous_runs_fills_alone(
    db_engine: AsyncEngine, venue: PaperVenue, clock: Clock
) -> None:
    r = await rig(db_engine, venue, clock)
    await r.execution.process(
        [replace(order(clock, A, "0.01", i="far"), decision_price=Decimal(49900))]
    )
    clock.advance(1)
    watch = AlertWatch(
        r.ledger,
        venue=venue,
        gate=None,
        disconnect_s=60,
        unknown_s=60,
        slippage_bps=Decimal(10),
        clock=clock,
    )
    await watch.check()

    assert await r.ledger.alerts.recent() == []
