"""Recovery in bulk: many unresolved orders settled from one venue listing, not a lookup each.

A crash with thousands of orders in flight used to cost one lookup (request weight 4 on
Binance) and one transaction per order: minutes, and more weight than the venue allows a
minute. A listing (``allOrders``) answers for all of them; what it lacks is still looked up on
its own, which is the only way an order the venue never had is decided.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine

from engine.config import load_settings
from engine.database import open_database
from engine.domain.ids import client_order_id
from engine.domain.intents import DecisionKey
from engine.domain.types import (
    AccountId,
    ClientOrderId,
    DecisionId,
    DecisionOutcome,
    OrderState,
    OrderType,
    Side,
    StrategyId,
    Symbol,
    TimeInForce,
    VenueName,
    VenueOrderStatus,
    utc_now,
)
from engine.exceptions import LedgerError
from engine.ledger.ledger import Ledger
from engine.ledger.records import DecisionRecord, Reservation
from engine.runtime import Engine, VenueSession
from engine.venues.binance import BinanceConfig, BinanceVenue
from engine.venues.simulator import SimulatorConfig, SimulatorHandle, run_simulator
from engine.venues.simulator.records import NewOrder
from tests.integration.test_ledger import ACCOUNT as LEDGER_ACCOUNT
from tests.integration.test_ledger import HOLDER, T0, report, reservation

ACCOUNT = "bulk"
PREFIX = "bulk"
SYMBOL = Symbol("BTCUSDT")
VENUE = VenueName("simulator")


# -- the ledger: a listing moves each order exactly as its own lookup would ------------------


@pytest.fixture
def ledger(db_engine: AsyncEngine) -> Ledger:
    return Ledger(db_engine, account=LEDGER_ACCOUNT, venue=VenueName("binance"), clock=lambda: T0)


@pytest.fixture
async def epoch(ledger: Ledger) -> int:
    got = await ledger.leases.acquire(HOLDER, timedelta(seconds=30))
    assert got is not None
    return got


CASES = [
    (VenueOrderStatus.NEW, "0"),
    (VenueOrderStatus.PARTIALLY_FILLED, "0.2"),
    (VenueOrderStatus.FILLED, "0.5"),
    (VenueOrderStatus.CANCELED, "0"),
    (VenueOrderStatus.CANCELED, "0.2"),
    (VenueOrderStatus.REJECTED, "0"),
    (VenueOrderStatus.EXPIRED, "0"),
]


async def _events(db: AsyncEngine, coid: str) -> list[tuple[Any, ...]]:
    async with db.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT from_state, to_state, detail->>'venue_status', detail->>'venue_filled_qty'"
                " FROM order_events WHERE client_order_id = :c ORDER BY id"
            ),
            {"c": coid},
        )
        return [tuple(r) for r in rows]


@pytest.mark.parametrize("before", [OrderState.PENDING_SUBMIT, OrderState.UNKNOWN, OrderState.OPEN])
async def test_a_listing_moves_every_order_as_its_own_lookup_would(
    ledger: Ledger, epoch: int, db_engine: AsyncEngine, before: OrderState
) -> None:
    for n, (status, filled) in enumerate(CASES):
        single = reservation(2 * n + 1)
        listed = reservation(2 * n + 2)
        await ledger.orders.reserve([single, listed], holder=HOLDER, epoch=epoch)
        for r in (single, listed):
            if before is OrderState.UNKNOWN:
                await ledger.orders.mark_unknown(r.client_order_id, "timeout", submitted_at=None)
            elif before is OrderState.OPEN:
                ack = report(r.client_order_id, VenueOrderStatus.NEW)
                await ledger.orders.record_ack(r.client_order_id, ack, submitted_at=ack.received_at)

        one = await ledger.orders.apply_report(
            report(single.client_order_id, status, filled=filled), cause="lookup"
        )
        [many] = await ledger.orders.apply_listed(
            [report(listed.client_order_id, status, filled=filled)], cause="lookup (listing)"
        )

        assert one is not None
        assert (many.state, many.venue_order_id) == (one.state, one.venue_order_id), status
        assert await _events(db_engine, listed.client_order_id) == await _events(
            db_engine, single.client_order_id
        )


async def test_a_listing_skips_orders_the_ledger_does_not_hold(ledger: Ledger, epoch: int) -> None:
    r = reservation(1)
    await ledger.orders.reserve([r], holder=HOLDER, epoch=epoch)

    settled = await ledger.orders.apply_listed(
        [
            report(r.client_order_id, VenueOrderStatus.NEW),
            report("someone-elses-order", VenueOrderStatus.NEW),
        ],
        cause="lookup (listing)",
    )

    assert [o.client_order_id for o in settled] == [r.client_order_id]
    assert settled[0].state is OrderState.OPEN


async def test_a_listing_with_a_non_finite_quantity_writes_nothing(
    ledger: Ledger, epoch: int
) -> None:
    good, bad = reservation(1), reservation(2)
    await ledger.orders.reserve([good, bad], holder=HOLDER, epoch=epoch)

    with pytest.raises(LedgerError, match="filled_quantity"):
        await ledger.orders.apply_listed(
            [
                report(good.client_order_id, VenueOrderStatus.NEW),
                report(bad.client_order_id, VenueOrderStatus.FILLED, filled="NaN"),
            ],
            cause="lookup (listing)",
        )

    untouched = await ledger.orders.get(good.client_order_id)
    assert untouched is not None
    assert untouched.state is OrderState.PENDING_SUBMIT


# -- startup against the simulator ----------------------------------------------------------


def _coid(i: int) -> ClientOrderId:
    key = DecisionKey(
        strategy_id=StrategyId("bulk"), symbol=SYMBOL, interval_key=f"i{i}", side=Side.BUY
    )
    return client_order_id(PREFIX, key)


@contextlib.asynccontextmanager
async def _engine(database_url: URL, sim: SimulatorHandle) -> AsyncIterator[Engine]:
    settings = load_settings(
        database_url=database_url.render_as_string(hide_password=False),
        account=ACCOUNT,
        order_id_prefix=PREFIX,
        consistency_window_s=0,
    )
    config = sim.state.config
    venue = BinanceVenue(
        BinanceConfig(
            api_key=config.api_key,
            api_secret=SecretStr(config.api_secret),
            rest_url=sim.rest_url,
            ws_api_url=sim.ws_api_url,
            stream_url=sim.stream_url,
            venue_name=VENUE,
        )
    )
    try:
        async with open_database(settings) as database:
            engine = Engine(settings, database, VenueSession(venue=venue), strategies=())
            engine.execution.symbols.add(SYMBOL)
            await engine.lease.acquire()
            yield engine
    finally:
        await venue.close()


async def _unknown_orders(engine: Engine, sim: SimulatorHandle, n: int, on_venue: int) -> None:
    """N orders the ledger reserved and marked UNKNOWN (a crash after the submit); the first
    ``on_venue`` of them reached the simulator and rest there."""
    now = utc_now()
    reservations = []
    for i in range(n):
        decision = DecisionRecord(
            decision_id=DecisionId(f"d-{i}"),
            strategy_id=StrategyId("bulk"),
            account=AccountId(ACCOUNT),
            symbol=SYMBOL,
            intent="buy",
            side=Side.BUY,
            quantity=Decimal("0.001"),
            limit_price=Decimal("10000"),
            reason="test",
            md_ts=now,
            decided_at=now,
            interval_key=f"i{i}",
            sequence=i,
            verdicts=(),
            outcome=DecisionOutcome.RESERVED,
        )
        reservations.append(
            Reservation(
                decision=decision,
                client_order_id=_coid(i),
                venue=VENUE,
                type=OrderType.LIMIT,
                time_in_force=TimeInForce.GTC,
                quantity=Decimal("0.001"),
                limit_price=Decimal("10000"),
                expires_at=now + timedelta(minutes=5),
            )
        )
    await engine.ledger.orders.reserve(
        reservations, holder=engine.lease.holder, epoch=engine.lease.epoch
    )
    for i, r in enumerate(reservations):
        if i < on_venue:
            sim.state.place_order(
                NewOrder(
                    symbol=SYMBOL,
                    side=Side.BUY,
                    type=OrderType.LIMIT,
                    quantity=r.quantity,
                    client_order_id=r.client_order_id,
                    price=r.limit_price,
                    time_in_force=TimeInForce.GTC,
                )
            )
        await engine.ledger.orders.mark_unknown(r.client_order_id, "timeout", submitted_at=now)


@contextlib.contextmanager
def _counting(venue: Any, *methods: str) -> Iterator[dict[str, int]]:
    """How often the adapter's own methods were called (the real ones run)."""
    calls = dict.fromkeys(methods, 0)
    originals = {m: getattr(venue, m) for m in methods}

    def wrap(name: str) -> Any:
        async def counted(*args: Any, **kwargs: Any) -> Any:
            calls[name] += 1
            return await originals[name](*args, **kwargs)

        return counted

    for m in methods:
        setattr(venue, m, wrap(m))
    try:
        yield calls
    finally:
        for m, original in originals.items():
            setattr(venue, m, original)


@pytest.fixture
async def sim() -> AsyncIterator[SimulatorHandle]:
    config = SimulatorConfig(
        seed=5, market_interval=None, balances={"USDT": Decimal(10**6), "BTC": Decimal(1)}
    )
    async with run_simulator(config) as handle:
        yield handle


async def test_startup_settles_many_unknown_orders_from_one_listing_not_a_lookup_each(
    database_url: URL, sim: SimulatorHandle
) -> None:
    async with _engine(database_url, sim) as engine:
        await _unknown_orders(engine, sim, n=40, on_venue=40)

        with _counting(engine.venue, "find_order", "orders_since") as calls:
            await engine.execution.recover()

        orders = await engine.ledger.orders.non_terminal()
        assert [o.state for o in orders] == [OrderState.OPEN] * 40
        assert all(o.venue_order_id for o in orders)
        assert calls == {"find_order": 0, "orders_since": 1}
        # nothing was sent twice: the venue holds each client order id once
        assert all(len(ids) == 1 for ids in sim.state.venue_orders_by_client_id().values())


async def test_an_order_missing_from_the_listing_is_looked_up_and_sent_once(
    database_url: URL, sim: SimulatorHandle
) -> None:
    async with _engine(database_url, sim) as engine:
        # the last order never reached the venue (the crash came before the send)
        await _unknown_orders(engine, sim, n=8, on_venue=7)

        with _counting(engine.venue, "find_order", "orders_since") as calls:
            await engine.execution.recover()

        assert calls == {"find_order": 1, "orders_since": 1}
        orders = {o.client_order_id: o for o in await engine.ledger.orders.non_terminal()}
        assert {o.state for o in orders.values()} == {OrderState.OPEN}
        assert len(orders) == 8
        # looked up, not found after the consistency window, resent under the same id: once
        on_venue = sim.state.venue_orders_by_client_id()
        assert len(on_venue[_coid(7)]) == 1
        assert all(len(ids) == 1 for ids in on_venue.values())


async def test_a_few_unknown_orders_are_looked_up_one_by_one(
    database_url: URL, sim: SimulatorHandle
) -> None:
    async with _engine(database_url, sim) as engine:
        await _unknown_orders(engine, sim, n=3, on_venue=3)

        with _counting(engine.venue, "find_order", "orders_since") as calls:
            await engine.execution.recover()

        assert calls == {"find_order": 3, "orders_since": 0}
        assert {o.state for o in await engine.ledger.orders.non_terminal()} == {OrderState.OPEN}


async def test_orders_closed_on_the_venue_while_down_are_settled_from_one_listing(
    database_url: URL, sim: SimulatorHandle
) -> None:
    async with _engine(database_url, sim) as engine:
        await _unknown_orders(engine, sim, n=12, on_venue=12)
        await engine.execution.recover()
        # while the engine was away, the venue canceled them (their reports lost with the crash)
        for i in range(12):
            sim.state.cancel_order(
                "BTCUSDT", order_id=None, client_order_id=_coid(i), cancel_client_order_id=f"x{i}"
            )

        with _counting(engine.venue, "find_order", "orders_since") as calls:
            await engine.reconciler.reconcile(startup=True)

        assert calls == {"find_order": 0, "orders_since": 1}
        assert await engine.ledger.orders.non_terminal() == []
