"""The venue contract run against the production Binance adapter talking to the simulator over
real loopback sockets, plus adapter-vs-simulator behaviours the contract does not cover (faults,
rate limits, credentials, stream reconnects, fills that only ``myTrades`` knows)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from decimal import Decimal

import httpx
import pytest
from pydantic import SecretStr

from engine.domain.types import OrderType, Side, Symbol, TimeInForce, VenueName, VenueOrderStatus
from engine.exceptions import Ambiguous, AuthFailed, NotFound, RateLimited
from engine.venues.base import (
    BalanceReport,
    FillReport,
    OrderReport,
    OrderRequest,
    StreamReconnected,
    UserEvent,
)
from engine.venues.binance import BinanceConfig, BinanceVenue
from engine.venues.binance.ratelimit import RateBudget
from engine.venues.binance.stream import StreamSettings
from engine.venues.simulator import (
    FaultPlan,
    SimulatorConfig,
    SimulatorHandle,
    run_simulator,
)
from tests.contract.venue_contract import (
    VenueContract,
    VenueHarness,
    collecting,
    new_client_order_id,
)
from tests.helpers import eventually

BTCUSDT = Symbol("BTCUSDT")
#: reconnect at once in tests: the production default backs off from half a second
FAST_STREAMS = StreamSettings(backoff_initial_s=0.02, backoff_max_s=0.2, subscribe_timeout_s=5.0)


class SimulatorMarketDriver:
    """The suite's :class:`~tests.contract.venue_contract.MarketDriver` for the simulator: the
    admin endpoint sets the touch and matches before it answers."""

    def __init__(self, admin: httpx.AsyncClient) -> None:
        self._admin = admin

    async def set_quote(self, symbol: Symbol, *, bid: Decimal, ask: Decimal, size: Decimal) -> None:
        response = await self._admin.post(
            "/admin/quote",
            json={"symbol": symbol, "bid": str(bid), "ask": str(ask), "size": str(size)},
        )
        if response.status_code != 200:
            raise AssertionError(f"the simulator refused the quote: {response.text}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Rig:
    sim: SimulatorHandle
    venue: BinanceVenue
    admin: httpx.AsyncClient


@contextlib.asynccontextmanager
async def binance_on_simulator(
    config: SimulatorConfig | None = None,
    *,
    api_secret: str | None = None,
    budget: RateBudget | None = None,
    request_timeout_s: float = 5.0,
) -> AsyncIterator[Rig]:
    """A fresh simulator whose market only moves when told to, and the adapter pointed at it."""
    config = config or SimulatorConfig(seed=23, market_interval=None)
    async with (
        run_simulator(config) as sim,
        httpx.AsyncClient(base_url=sim.rest_url, timeout=5.0) as admin,
    ):
        venue = BinanceVenue(
            BinanceConfig(
                api_key=config.api_key,
                api_secret=SecretStr(api_secret if api_secret is not None else config.api_secret),
                rest_url=sim.rest_url,
                ws_api_url=sim.ws_api_url,
                stream_url=sim.stream_url,
                venue_name=VenueName("simulator"),
                request_timeout_s=request_timeout_s,
                stream=FAST_STREAMS,
            ),
            budget=budget,
        )
        try:
            yield Rig(sim=sim, venue=venue, admin=admin)
        finally:
            await venue.close()


def subscribed(sim: SimulatorHandle, count: int = 1) -> Callable[[], bool]:
    return lambda: sim.state.user_subscriptions() >= count


@contextlib.asynccontextmanager
async def binance_harness(
    symbol: Symbol, price: Decimal, quantity: Decimal
) -> AsyncIterator[VenueHarness]:
    async with binance_on_simulator() as rig:

        async def stream_ready(stream: AsyncIterator[UserEvent]) -> None:
            await eventually(
                subscribed(rig.sim), message="the simulator never saw the user stream subscribe"
            )

        yield VenueHarness(
            venue=rig.venue,
            market=SimulatorMarketDriver(rig.admin),
            symbol=symbol,
            price=price,
            quantity=quantity,
            stream_ready=stream_ready,
        )


class TestBinanceAdapterOnSimulatorContract(VenueContract):
    def open_venue(self) -> contextlib.AbstractAsyncContextManager[VenueHarness]:
        return binance_harness(BTCUSDT, Decimal("30000.00"), Decimal("0.002"))


class TestBinanceAdapterOnSimulatorCoarserLotContract(VenueContract):
    """ETHUSDT: another tick/step grid and price level, the same guarantees."""

    def open_venue(self) -> contextlib.AbstractAsyncContextManager[VenueHarness]:
        return binance_harness(Symbol("ETHUSDT"), Decimal("2000.00"), Decimal("0.0150"))


# ---------------------------------------------------------------------- beyond the contract


def faults(*rules: dict[str, object]) -> SimulatorConfig:
    return SimulatorConfig(seed=23, market_interval=None, faults=FaultPlan.from_mapping(rules))


def resting_buy(label: str) -> OrderRequest:
    """Below the simulator's opening touch (30000 +- a tick): it rests."""
    return OrderRequest(
        client_order_id=new_client_order_id(label),
        symbol=BTCUSDT,
        side=Side.BUY,
        type=OrderType.LIMIT,
        quantity=Decimal("0.002"),
        limit_price=Decimal("29900.00"),
        time_in_force=TimeInForce.GTC,
    )


@pytest.mark.parametrize(
    ("mode", "timeout_s"), [("close", 5.0), ("hang", 0.5)], ids=["reset", "timeout"]
)
async def test_a_submit_whose_answer_is_lost_is_ambiguous_and_find_order_finds_it(
    mode: str, timeout_s: float
) -> None:
    lost = {"kind": "drop_response", "endpoints": ["POST /api/v3/order"], "max_count": 1}
    config = faults({**lost, "mode": mode, "hang_seconds": 10})
    async with binance_on_simulator(config, request_timeout_s=timeout_s) as rig:
        order = resting_buy(f"lost-{mode}")

        with pytest.raises(Ambiguous):
            await rig.venue.submit(order)

        found = await rig.venue.find_order(BTCUSDT, order.client_order_id)
        assert found.status is VenueOrderStatus.NEW
        placed = rig.sim.state.venue_orders_by_client_id()[order.client_order_id]
        assert [int(found.venue_order_id or 0)] == placed


@pytest.mark.parametrize("after_accept", [True, False], ids=["placed", "not-placed"])
async def test_error_1007_is_ambiguous_whether_or_not_the_order_was_placed(
    after_accept: bool,
) -> None:
    config = faults(
        {
            "kind": "error_1007",
            "endpoints": ["POST /api/v3/order"],
            "max_count": 1,
            "after_accept": after_accept,
        }
    )
    async with binance_on_simulator(config) as rig:
        order = resting_buy("b1007")

        with pytest.raises(Ambiguous) as raised:
            await rig.venue.submit(order)

        assert raised.value.code == -1007
        if after_accept:
            found = await rig.venue.find_order(BTCUSDT, order.client_order_id)
            assert found.status is VenueOrderStatus.NEW
        else:
            with pytest.raises(NotFound):
                await rig.venue.find_order(BTCUSDT, order.client_order_id)


class FakeWallClock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


async def test_429_is_rate_limited_and_nothing_is_sent_until_retry_after_passed() -> None:
    clock = FakeWallClock()
    # enforce=false: the simulator itself would take the next request; only the adapter holds off
    config = faults(
        {
            "kind": "rate_limit_429",
            "endpoints": ["POST /api/v3/order"],
            "max_count": 1,
            "retry_after": 7,
            "enforce": False,
        }
    )
    async with binance_on_simulator(config, budget=RateBudget(clock=clock)) as rig:
        with pytest.raises(RateLimited) as raised:
            await rig.venue.submit(resting_buy("r429"))
        assert raised.value.retry_after == 7
        attempts = len(rig.sim.state.submissions)

        clock.now += 6.5
        with pytest.raises(RateLimited) as held:
            await rig.venue.submit(resting_buy("r429-held"))
        assert 0 < held.value.retry_after <= 0.5
        with pytest.raises(RateLimited):
            await rig.venue.balances()
        assert len(rig.sim.state.submissions) == attempts, "sent during the back-off"

        clock.now += 0.5
        accepted = await rig.venue.submit(resting_buy("r429-after"))
        assert accepted.status is VenueOrderStatus.NEW


async def test_a_bad_api_secret_is_auth_failed_with_the_signature_code() -> None:
    wrong = "not-the-simulator-secret"
    async with binance_on_simulator(api_secret=wrong) as rig:
        order = resting_buy("badsig")

        with pytest.raises(AuthFailed) as raised:
            await rig.venue.submit(order)
        with pytest.raises(AuthFailed):
            await rig.venue.balances()

        assert raised.value.code == -1022
        assert wrong not in str(raised.value)
        assert rig.sim.state.venue_orders_by_client_id() == {}


async def test_user_stream_reconnects_after_a_disconnect_and_says_so() -> None:
    async with binance_on_simulator() as rig:
        stream = rig.venue.user_stream()
        async with collecting(stream) as events:
            await eventually(subscribed(rig.sim), message="never subscribed")
            rig.sim.state.set_faults(
                FaultPlan.from_mapping([{"kind": "ws_disconnect_user", "max_count": 1}])
            )
            missed = await rig.venue.submit(resting_buy("ws-missed"))

            await eventually(
                lambda: any(isinstance(e, StreamReconnected) for e in events),
                message="no StreamReconnected after the simulator dropped the user stream",
            )
            await eventually(subscribed(rig.sim), message="never subscribed again")
            after = await rig.venue.submit(resting_buy("ws-after"))
            await eventually(
                lambda: any(
                    isinstance(e, OrderReport) and e.client_order_id == after.client_order_id
                    for e in events
                ),
                message="the stream carried nothing after the reconnect",
            )

        assert rig.sim.state.fault_counts()["ws_disconnect_user"] == 1
        assert not any(
            isinstance(e, OrderReport) and e.client_order_id == missed.client_order_id
            for e in events
        ), "the event that triggered the disconnect should have been lost"
        # what the stream missed is what reconciliation finds by asking
        found = await rig.venue.find_order(BTCUSDT, missed.client_order_id)
        assert found.status is VenueOrderStatus.NEW


async def test_a_fill_only_in_my_trades_is_returned_by_trades_since_with_its_order() -> None:
    config = faults({"kind": "drop_fill_report"})
    async with binance_on_simulator(config) as rig:
        market = SimulatorMarketDriver(rig.admin)
        order = resting_buy("mytrades-only")
        price = order.limit_price or Decimal(0)
        stream = rig.venue.user_stream()
        async with collecting(stream) as events:
            await eventually(subscribed(rig.sim), message="never subscribed")
            await rig.venue.submit(order)
            await market.set_quote(
                BTCUSDT, bid=price - Decimal("1.00"), ask=price, size=Decimal("1")
            )
            # the account update after the fill follows the dropped TRADE report on the wire
            await eventually(
                lambda: any(
                    isinstance(e, BalanceReport) and e.asset == "USDT" and e.locked == 0
                    for e in events
                ),
                message="no balance update after the fill",
            )

        assert not [e for e in events if isinstance(e, FillReport)]
        [fill] = await rig.venue.trades_since(BTCUSDT, None)
        assert (fill.client_order_id, fill.quantity, fill.price) == (
            order.client_order_id,
            order.quantity,
            price,
        )
        # a restarted process knows no order ids yet: it asks allOrders for the client id
        async with binance_on_simulator_venue(rig) as restarted:
            assert [f.client_order_id for f in await restarted.trades_since(BTCUSDT, None)] == [
                order.client_order_id
            ]


@contextlib.asynccontextmanager
async def binance_on_simulator_venue(rig: Rig) -> AsyncIterator[BinanceVenue]:
    """A second adapter on the same simulator account, as after a restart."""
    venue = BinanceVenue(replace(rig.venue.config))
    try:
        yield venue
    finally:
        await venue.close()
