"""Circuit breakers, the reconnect gate and auth halts of a running engine, through the real gate
against the built-in Binance-protocol simulator (faults injected through its fault plan), with
the metrics read over HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import text
from sqlalchemy.engine import URL

from engine.config import load_settings
from engine.database import open_database
from engine.demo import simulator_config
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
from engine.ledger.records import Incident
from engine.runtime import Engine
from engine.strategy_config import TradingConfig, parse_trading_config
from engine.venue_guard import EndpointClass
from engine.venue_session import VenueSession
from engine.venues.binance import BinanceConfig, BinanceVenue
from engine.venues.binance.stream import StreamSettings
from engine.venues.metrics import VenueMetrics
from engine.venues.simulator import FaultPlan, SimulatorHandle, run_simulator
from tests.helpers import eventually
from tests.integration.silent_link import SilentLink
from tests.metrics_http import metrics_server, scrape

BTC = Symbol("BTCUSDT")
MANUAL = StrategyId("manual")


def _config(on_disconnect: str = "keep", toml: dict[str, Any] | None = None) -> TradingConfig:
    # fair_value on a coin always holds (its quotes are outside (0, 1)): it decides every quote,
    # which is what the reconnect gate must stop, and never trades by itself
    raw: dict[str, Any] = {
        **(toml or {}),
        "strategy": [
            {
                "id": "holder",
                "kind": "fair_value",
                "symbols": [BTC],
                "on_disconnect": on_disconnect,
                "params": {"fair": "0.5", "edge": "0.01", "qty": "1", "max_inventory": "1"},
            },
            {  # on_disconnect left out: "keep"
                "id": "keeper",
                "kind": "fair_value",
                "symbols": [BTC],
                "params": {"fair": "0.5", "edge": "0.01", "qty": "1", "max_inventory": "1"},
            },
        ],
    }
    return parse_trading_config(raw, source=Path("<test>"))


@dataclasses.dataclass
class Running:
    engine: Engine
    sim: SimulatorHandle
    task: asyncio.Task[None]
    account: str
    #: the streams' path to the venue, when the test can make it go silent
    link: SilentLink | None = None


@pytest.fixture
def metrics_url() -> Iterator[str]:
    with metrics_server() as url:
        yield url


@contextlib.asynccontextmanager
async def running(
    database_url: URL,
    account: str,
    on_disconnect: str = "keep",
    toml: dict[str, Any] | None = None,
    silent_link: bool = False,
    **overrides: object,
) -> AsyncIterator[Running]:
    """An engine on the simulator; with ``silent_link`` its WebSocket streams go through a
    :class:`SilentLink` and ping every 0.2 s (REST goes straight to the venue)."""
    settings = load_settings(
        database_url=database_url.render_as_string(hide_password=False),
        account=account,
        venue="simulator",
        status_interval_s=3600,
        resolve_interval_s=0.2,
        consistency_window_s=0.2,
        **overrides,
    )
    config = simulator_config((BTC,), seed=11)
    async with contextlib.AsyncExitStack() as stack:
        db = await stack.enter_async_context(open_database(settings))
        sim = await stack.enter_async_context(run_simulator(config))
        link = None
        ws_api_url, stream_url = sim.ws_api_url, sim.stream_url
        stream = StreamSettings(backoff_initial_s=0.1, backoff_max_s=0.5)
        if silent_link:
            link = await stack.enter_async_context(SilentLink(sim.host, sim.port).running())
            ws_api_url, stream_url = link.url(ws_api_url), link.url(stream_url)
            stream = dataclasses.replace(
                stream, ping_interval_s=0.2, ping_timeout_s=0.4, open_timeout_s=1.0
            )
        metrics = VenueMetrics(account=account, venue="simulator")
        venue = BinanceVenue(
            BinanceConfig(
                api_key=config.api_key,
                api_secret=SecretStr(config.api_secret),
                rest_url=sim.rest_url,
                ws_api_url=ws_api_url,
                stream_url=stream_url,
                venue_name=VenueName("simulator"),
                stream=stream,
            ),
            metrics=metrics,
        )
        session = VenueSession(
            venue=venue, metrics=metrics, credential="the simulator's built-in API key"
        )
        trading = _config(on_disconnect, toml)
        engine = Engine(
            settings,
            db,
            session,
            trading.strategies,
            protection=trading.protection.resolve(settings),
        )
        stop = asyncio.Event()
        task = asyncio.create_task(engine.run(stop))
        try:
            await eventually(lambda: engine.ready, timeout=30, message="engine never started")
            await eventually(
                lambda: engine.conflator.quote(BTC) is not None, message="no quote arrived"
            )
            yield Running(engine, sim, task, account, link)
        finally:
            stop.set()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, timeout=30)
            await venue.close()


def _buy(interval: str, price: str = "20000", strategy: StrategyId = MANUAL) -> Buy:
    return Buy(
        key=DecisionKey(strategy_id=strategy, symbol=BTC, interval_key=interval, side=Side.BUY),
        reason="a resting bid",
        md_ts=utc_now(),
        quantity=Decimal("0.001"),
        limit_price=Decimal(price),
        time_in_force=TimeInForce.GTC,
    )


async def _verdict(run: Running, interval: str, check: str) -> dict[str, str]:
    """The stored verdict of ``check`` in the decision of ``interval`` (a manual intent)."""
    async with run.engine.db.engine.connect() as conn:
        verdicts = (
            await conn.execute(
                text(
                    "SELECT verdicts FROM decisions "
                    "WHERE account = :a AND strategy_id = :s AND interval_key = :i"
                ),
                {"a": run.account, "s": MANUAL, "i": interval},
            )
        ).scalar_one()
    (found,) = [v for v in verdicts if v["check"] == check]
    return dict(found)


async def _outcome(
    run: Running, interval: str, strategy: StrategyId = MANUAL
) -> tuple[str, list[str]] | None:
    async with run.engine.db.engine.connect() as conn:
        row = (
            await conn.execute(
                text(
                    "SELECT outcome, verdicts FROM decisions "
                    "WHERE account = :a AND strategy_id = :s AND interval_key = :i"
                ),
                {"a": run.account, "s": strategy, "i": interval},
            )
        ).first()
    if row is None:
        return None
    return row[0], [v["check"] for v in row[1] if v["result"] == "reject"]


async def test_the_orders_breaker_opens_under_5xx_denies_circuit_open_and_closes_after_recovery(
    database_url: URL, metrics_url: str
) -> None:
    # the orders breaker's thresholds from the strategies file; the others keep the settings'
    # open for 3 s: long enough for the denial and the cancel below on a busy machine
    orders = {"failure_threshold": 2, "recovery_timeout": "3s", "success_threshold": 1}
    async with running(database_url, "breaker", toml={"breakers": {"orders": orders}}) as run:
        engine, account = run.engine, run.account
        reads = engine.guard.breakers[EndpointClass.READS].config
        assert (reads.failure_threshold, reads.recovery_timeout_s) == (5, 30.0)
        labels = {"account": account, "venue": "simulator", "endpoint": "orders"}
        # a bid resting before the venue's trouble: its cancel must still go out later
        await engine.execution.submit_intent(_buy("i0"))
        rests = client_order_id("tctl", _buy("i0").key)

        async def state_of(coid: str) -> OrderState | None:
            order = await engine.ledger.orders.get(coid)
            return None if order is None else order.state

        await eventually(lambda: _is(state_of(rests), OrderState.OPEN))
        run.sim.state.set_faults(
            FaultPlan.from_mapping(
                [{"kind": "http_5xx", "endpoints": ["POST /api/v3/order"], "probability": 1.0}]
            )
        )
        for interval in ("i1", "i2"):
            await engine.execution.submit_intent(_buy(interval))
        await eventually(
            lambda: engine.guard.state(EndpointClass.ORDERS).value == "open",
            message="two 5xx answers should open the orders breaker",
        )
        assert (await scrape(metrics_url)).value("tradectl_circuit_state", **labels) == 2
        skipped_before = (await scrape(metrics_url)).total(
            "tradectl_decisions_skipped_total", account=account, check="circuit_open"
        )

        # While it is open: denied before any reservation, the verdict stored with the decision.
        await engine.execution.submit_intent(_buy("i3"))
        denied = await eventually(lambda: _outcome(run, "i3"))
        assert denied == (DecisionOutcome.DENIED.value, ["circuit_open"])
        stored = await _verdict(run, "i3", "circuit_open")
        assert (stored["limit"], stored["observed"]) == ("2 failures in a row", "open")
        assert await engine.ledger.orders.get(client_order_id("tctl", _buy("i3").key)) is None
        # counted (the resolver's resends of the two unplaced orders may be counted too: the
        # final gate expires them unsent while the breaker is open)
        assert (await scrape(metrics_url)).total(
            "tradectl_decisions_skipped_total", account=account, check="circuit_open"
        ) >= skipped_before + 1

        # Cancels still go out while it is open: they only make exposure smaller.
        resting = await engine.ledger.orders.get(rests)
        assert resting is not None
        assert engine.guard.state(EndpointClass.ORDERS).value == "open"
        await engine.execution.cancel_order(resting, cause="test: the orders breaker is open")
        assert await state_of(rests) is OrderState.CANCELED

        # The venue recovers; after the recovery time a probe goes through and closes it.
        run.sim.state.set_faults(FaultPlan())
        await eventually(
            lambda: engine.guard.state(EndpointClass.ORDERS).value == "half-open",
            message="the breaker should let a probe through after its recovery time",
        )
        await engine.execution.submit_intent(_buy("i4"))
        accepted = await eventually(lambda: _outcome(run, "i4"))
        assert accepted[0] == DecisionOutcome.RESERVED.value

        async def acked() -> bool:
            order = await engine.ledger.orders.get(client_order_id("tctl", _buy("i4").key))
            return order is not None and order.state is OrderState.OPEN

        await eventually(acked, message="the probe order should be acknowledged")
        assert engine.guard.state(EndpointClass.ORDERS).value == "closed"
        assert (await scrape(metrics_url)).value("tradectl_circuit_state", **labels) == 0
        assert "orders closed" in engine.guard.status_line()
        assert not run.task.done()


async def test_a_reconnect_holds_the_strategies_until_its_reconciliation_completed(
    database_url: URL, metrics_url: str
) -> None:
    async with running(database_url, "reconnect") as run:
        engine = run.engine
        refused = {
            "account": run.account,
            "endpoint": "GET /api/v3/openOrders",
            "outcome": "ambiguous",
        }
        holder = StrategyId("holder")
        await eventually(lambda: engine.host.decisions.get(holder, 0) > 0)
        # Reconciliation cannot complete while the venue refuses the open-orders read.
        run.sim.state.set_faults(
            FaultPlan.from_mapping(
                [
                    {"kind": "ws_disconnect_user", "probability": 1.0, "max_count": 1},
                    {
                        "kind": "http_5xx",
                        "endpoints": ["GET /api/v3/openOrders"],
                        "probability": 1.0,
                    },
                ]
            )
        )
        # the disconnect fires before the next user-stream event: cause one
        await engine.execution.submit_intent(_buy("r1"))
        await eventually(lambda: engine.connection.held, message="a reconnect should hold")
        held_at = engine.host.decisions.get(holder, 0)
        await eventually(
            lambda: engine.session.metrics.connections.get("user", 0) >= 2,
            message="the user stream should have come back",
        )
        ticket = engine.connection._hold_ticket
        refusals = (await scrape(metrics_url)).total("tradectl_venue_requests_total", **refused)

        async def reconcile_failed_again() -> bool:
            now = (await scrape(metrics_url)).total("tradectl_venue_requests_total", **refused)
            return now >= refusals + 2

        # two passes after the reconnect failed (the engine retries while it holds): still held
        await eventually(reconcile_failed_again, timeout=20)
        assert engine.reconciler.completed_through < ticket
        assert engine.host.decisions.get(holder, 0) == held_at
        assert not engine.connection.may_trade()
        assert "held" in engine.connection.status_line()

        run.sim.state.set_faults(FaultPlan())
        await eventually(
            lambda: not engine.connection.held,
            timeout=30,
            message="the strategies should resume once the reconciliation completed",
        )
        assert engine.reconciler.completed_through >= ticket
        await eventually(lambda: engine.host.decisions.get(holder, 0) > held_at)
        assert not run.task.done()


async def test_an_auth_failure_on_a_read_halts_the_account_and_the_engine_keeps_running(
    database_url: URL,
) -> None:
    async with running(database_url, "auth-read", reconcile_interval_s=0.3) as run:
        engine, sim = run.engine, run.sim
        real = sim.state.config
        # the key is revoked on the venue: the next read (the periodic reconcile) is refused
        sim.state.config = dataclasses.replace(real, api_key="revoked")

        async def halted() -> bool:
            return any(c.kind is ControlKind.HALT for c in await engine.ledger.controls.active())

        await eventually(halted, message="an auth failure on a read should halt the account")
        [incident] = [i for i in await engine.ledger.incidents.read() if i.kind == "auth_failed"]
        assert incident.severity == "critical"
        assert "the simulator's built-in API key" in incident.message
        assert not run.task.done(), "the engine must keep running"

        # halted: new orders are blocked; reconciliation goes on once the key works again
        sim.state.config = real
        await engine.execution.submit_intent(_buy("a1"))
        blocked = await eventually(lambda: _outcome(run, "a1"))
        assert blocked[0] == DecisionOutcome.DENIED.value
        assert await engine.ledger.orders.get(client_order_id("tctl", _buy("a1").key)) is None
        passes = engine.reconciler.completed_through
        engine.reconciler.request()
        await eventually(lambda: engine.reconciler.completed_through > passes)
        assert not run.task.done()


async def test_a_refused_user_stream_subscription_halts_the_account_and_the_engine_keeps_running(
    database_url: URL,
) -> None:
    # Binance's user stream is a signed WebSocket API subscription (it replaces the listen key):
    # a key revoked between two subscriptions is refused there. No periodic REST read, so the
    # halt can only come from the stream.
    async with running(database_url, "auth-stream", reconcile_interval_s=3600) as run:
        engine, sim = run.engine, run.sim
        real = sim.state.config
        sim.state.config = dataclasses.replace(real, api_key="revoked")
        sim.state.set_faults(
            FaultPlan.from_mapping([{"kind": "ws_disconnect_user", "probability": 1.0}])
        )
        sim.state.deposit("USDT", Decimal(1))  # a user event: the connection drops before it

        async def halted() -> bool:
            return any(c.kind is ControlKind.HALT for c in await engine.ledger.controls.active())

        await eventually(halted, message="a refused subscription should halt the account")
        [incident] = [i for i in await engine.ledger.incidents.read() if i.kind == "auth_failed"]
        assert incident.severity == "critical"
        # the stream's own report or the guard's view of its request: the same place
        assert incident.details["where"] in (
            "the user stream",
            "WS userDataStream.subscribe.signature",
        )
        assert incident.details["code"] == -2015
        assert "the simulator's built-in API key" in incident.message
        assert not run.task.done(), "the engine must keep running"

        # halted: a new order is denied by the halt, named in its stored verdict, never sent
        sim.state.config = real
        sim.state.set_faults(FaultPlan())
        await engine.execution.submit_intent(_buy("s1"))
        assert await eventually(lambda: _outcome(run, "s1")) == (
            DecisionOutcome.DENIED.value,
            ["control"],
        )
        control = await _verdict(run, "s1", "control")
        assert control["limit"] == "no halt covering the order"
        assert control["observed"].startswith(f"halt account:{run.account} #")
        assert await engine.ledger.orders.get(client_order_id("tctl", _buy("s1").key)) is None
        passes = engine.reconciler.completed_through
        engine.reconciler.request()
        await eventually(lambda: engine.reconciler.completed_through > passes)
        assert not run.task.done()


async def test_a_lost_connection_disconnects_the_account_and_its_return_applies_the_policy(
    database_url: URL,
) -> None:
    holder = StrategyId("holder")
    async with running(
        database_url,
        "disconnect",
        on_disconnect="cancel",
        toml={"connection": {"disconnect_after": "1s"}},
    ) as run:
        engine, sim = run.engine, run.sim
        resting = _buy("d1", strategy=holder)
        kept = _buy("k1", strategy=StrategyId("keeper"))
        await engine.execution.submit_intent(resting)
        await engine.execution.submit_intent(kept)

        async def state_of(intent: Buy) -> OrderState | None:
            order = await engine.ledger.orders.get(client_order_id("tctl", intent.key))
            return None if order is None else order.state

        await eventually(lambda: _is(state_of(resting), OrderState.OPEN))
        await eventually(lambda: _is(state_of(kept), OrderState.OPEN))

        # The venue goes away (its state kept): past disconnect_after_s the account is
        # disconnected, an incident is open, and new orders are denied.
        await sim.stop()
        await eventually(
            lambda: engine.connection.reason is not None, message="should be disconnected"
        )

        async def incidents() -> list[Incident]:
            return [
                i for i in await engine.ledger.incidents.read() if i.kind == "venue_disconnected"
            ]

        [incident] = await eventually(incidents, message="a disconnection opens an incident")
        assert incident.severity == "critical"
        await engine.execution.submit_intent(_buy("d2"))
        assert await eventually(lambda: _outcome(run, "d2")) == (
            DecisionOutcome.DENIED.value,
            ["disconnected"],
        )
        stored = await _verdict(run, "d2", "disconnected")
        assert (stored["limit"], stored["observed"]) == ("connected", "disconnected")
        assert "(disconnect_after 1s)" in stored["message"]
        assert "DISCONNECTED" in engine.connection.status_line()

        # It returns on the same address: reconciled, then on_disconnect = "cancel" cancels the
        # strategy's resting order (the "keep" strategy's stays, on the venue too), the incident
        # is resolved, and trading resumes.
        async with run_simulator(sim.state.config, port=sim.port, state=sim.state):
            await eventually(
                lambda: engine.connection.may_trade(),
                timeout=30,
                message="trading should resume after the return and its reconciliation",
            )
            assert await state_of(resting) is OrderState.CANCELED
            assert await state_of(kept) is OrderState.OPEN
            on_venue = {o.client_order_id: o.status for o in sim.state.orders()}
            assert on_venue[client_order_id("tctl", kept.key)] == "NEW"
            assert on_venue[client_order_id("tctl", resting.key)] == "CANCELED"
            assert not await incidents()
            assert not run.task.done()


async def _is(value: Awaitable[object], expected: object) -> bool:
    return await value == expected


async def test_a_link_gone_silent_is_found_by_its_unanswered_pings_and_disconnects_the_account(
    database_url: URL,
) -> None:
    # No close, no error: the streams' path stops carrying bytes, so only the keepalive pings
    # can tell. REST still answers, so the return's reconciliation is quick.
    async with running(
        database_url,
        "silent",
        toml={"connection": {"disconnect_after": "1s"}},
        silent_link=True,
    ) as run:
        engine, link = run.engine, run.link
        assert link is not None
        link.silent = True
        await eventually(
            lambda: engine.connection.reason is not None,
            timeout=20,
            message="unanswered pings should make the account disconnected",
        )
        await engine.execution.submit_intent(_buy("h1"))
        assert await eventually(lambda: _outcome(run, "h1")) == (
            DecisionOutcome.DENIED.value,
            ["disconnected"],
        )
        stored = await _verdict(run, "h1", "disconnected")
        assert (stored["limit"], stored["observed"]) == ("connected", "disconnected")
        assert "(disconnect_after 1s)" in stored["message"]
        assert not run.task.done()

        link.silent = False
        await eventually(
            lambda: engine.connection.may_trade(),
            timeout=30,
            message="trading should resume once the link carries the streams again",
        )
        await engine.execution.submit_intent(_buy("h2"))
        outcome = await eventually(lambda: _outcome(run, "h2"))
        assert outcome[0] == DecisionOutcome.RESERVED.value
