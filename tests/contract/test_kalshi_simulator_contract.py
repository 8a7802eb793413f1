"""The venue contract run against the production Kalshi adapter talking to the Kalshi simulator
over real loopback sockets (RSA-PSS signed, verified with the simulator's own key pair), plus
the behaviours only Kalshi has: a 409 on a duplicate open client order id is ambiguous (not a
rejection), reads that lag writes, and lookups by scanning."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import timedelta
from decimal import Decimal

import httpx
import pytest
from pydantic import SecretStr

from engine.domain.types import OrderType, Side, Symbol, TimeInForce, VenueName, VenueOrderStatus
from engine.exceptions import Ambiguous, AuthFailed, Definitive, NotFound, RateLimited
from engine.venues.base import (
    FillReport,
    OrderReport,
    OrderRequest,
    StreamReconnected,
    UserEvent,
)
from engine.venues.binance.stream import StreamSettings
from engine.venues.kalshi import KalshiConfig, KalshiVenue
from engine.venues.kalshi.ratelimit import Tier
from engine.venues.kalshi.signing import generate_key_pair
from engine.venues.kalshi_simulator import KalshiSimConfig, KalshiSimHandle, run_kalshi_simulator
from engine.venues.simulator.faults import FaultPlan
from tests.contract.venue_contract import (
    VenueContract,
    VenueHarness,
    collecting,
    new_client_order_id,
)
from tests.helpers import eventually

MARKET = Symbol("KXSIM-26DEC31-T50")
FAST_STREAMS = StreamSettings(backoff_initial_s=0.02, backoff_max_s=0.2, subscribe_timeout_s=5.0)


class KalshiMarketDriver:
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
    sim: KalshiSimHandle
    venue: KalshiVenue
    market: KalshiMarketDriver


def adapter_for(
    sim: KalshiSimHandle, *, pem: str | None = None, timeout_s: float = 5.0
) -> KalshiVenue:
    return KalshiVenue(
        KalshiConfig(
            key_id=sim.key_id,
            private_key=SecretStr(pem or sim.private_key_pem),
            rest_url=sim.rest_url,
            ws_url=sim.ws_url,
            venue_name=VenueName("kalshi-sim"),
            request_timeout_s=timeout_s,
            stream=FAST_STREAMS,
            read_margin=timedelta(0),
        )
    )


@contextlib.asynccontextmanager
async def kalshi_on_simulator(
    config: KalshiSimConfig | None = None, *, pem: str | None = None, timeout_s: float = 5.0
) -> AsyncIterator[Rig]:
    async with (
        run_kalshi_simulator(config or KalshiSimConfig(seed=23)) as sim,
        httpx.AsyncClient(base_url=sim.base_url, timeout=5.0) as admin,
    ):
        venue = adapter_for(sim, pem=pem, timeout_s=timeout_s)
        try:
            yield Rig(sim=sim, venue=venue, market=KalshiMarketDriver(admin))
        finally:
            await venue.close()


@contextlib.asynccontextmanager
async def kalshi_harness() -> AsyncIterator[VenueHarness]:
    async with kalshi_on_simulator() as rig:

        async def stream_ready(stream: AsyncIterator[UserEvent]) -> None:
            await eventually(
                lambda: rig.sim.state.user_subscriptions() >= 1,
                message="the simulator never saw the user stream subscribe",
            )

        yield VenueHarness(
            venue=rig.venue,
            market=rig.market,
            symbol=MARKET,
            price=Decimal("0.50"),
            quantity=Decimal("4"),
            stream_ready=stream_ready,
        )


class TestKalshiAdapterOnSimulatorContract(VenueContract):
    def open_venue(self) -> contextlib.AbstractAsyncContextManager[VenueHarness]:
        return kalshi_harness()

    async def test_duplicate_client_order_id_of_an_open_order_is_refused_definitively(
        self, h: VenueHarness
    ) -> None:
        """Kalshi's deviation, on purpose: the 409 may be this very order's first attempt, so
        it is ``Ambiguous`` (look it up), never a rejection; nothing second is placed."""
        await self.quiet_market(h)
        price = await self.passive_buy_price(h)
        t = await self.tick(h)
        coid = new_client_order_id("dup")
        await h.venue.submit(self.limit_order(h, coid, Side.BUY, price))

        with pytest.raises(Ambiguous):
            await h.venue.submit(self.limit_order(h, coid, Side.BUY, price - t))

        same = [o for o in await h.venue.open_orders(h.symbol) if o.client_order_id == coid]
        assert len(same) == 1
        assert same[0].limit_price == price
        assert (await h.venue.find_order(h.symbol, coid)).limit_price == price


# ---------------------------------------------------------------------- beyond the contract


def faults(*rules: dict[str, object], read_lag_s: float = 0.0) -> KalshiSimConfig:
    return KalshiSimConfig(seed=23, faults=FaultPlan.from_mapping(rules), read_lag_s=read_lag_s)


def resting_bid(label: str) -> OrderRequest:
    return OrderRequest(
        client_order_id=new_client_order_id(label),
        symbol=MARKET,
        side=Side.BUY,
        type=OrderType.LIMIT,
        quantity=Decimal("3"),
        limit_price=Decimal("0.30"),
        time_in_force=TimeInForce.GTC,
    )


@pytest.mark.parametrize(
    ("mode", "timeout_s"), [("close", 5.0), ("hang", 0.5)], ids=["reset", "timeout"]
)
async def test_a_create_whose_answer_is_lost_is_ambiguous_and_found_by_scanning(
    mode: str, timeout_s: float
) -> None:
    lost = {"kind": "drop_response", "endpoints": ["POST /portfolio/events/orders"]}
    config = faults({**lost, "max_count": 1, "mode": mode, "hang_seconds": 10})
    async with kalshi_on_simulator(config, timeout_s=timeout_s) as rig:
        order = resting_bid(f"lost-{mode}")
        with pytest.raises(Ambiguous):
            await rig.venue.submit(order)

        found = await rig.venue.find_order(MARKET, order.client_order_id)

        assert found.status is VenueOrderStatus.NEW
        placed = rig.sim.state.venue_orders_by_client_id()[order.client_order_id]
        assert [found.venue_order_id] == placed


async def test_an_order_hidden_by_read_lag_is_ambiguous_until_visible_never_not_found() -> None:
    lost = {"kind": "drop_response", "endpoints": ["POST /portfolio/events/orders"]}
    async with kalshi_on_simulator(faults({**lost, "max_count": 1}, read_lag_s=1.0)) as rig:
        order = resting_bid("lagged")
        with pytest.raises(Ambiguous):
            await rig.venue.submit(order)

        with pytest.raises(Ambiguous):
            await rig.venue.find_order(MARKET, order.client_order_id)

        async def visible() -> bool:
            try:
                return (await rig.venue.find_order(MARKET, order.client_order_id)).status is (
                    VenueOrderStatus.NEW
                )
            except Ambiguous:
                return False

        await eventually(visible, message="the order never became visible")


async def test_balances_come_back_only_once_the_fills_listing_covers_them() -> None:
    """A fill the balances hold must be listed by the fills read after them: else the balance
    check bakes it into a baseline and counts it again when it lands (chaos kalshi seed 0)."""
    async with kalshi_on_simulator(faults(read_lag_s=1.0)) as rig:
        held_before = rig.sim.state.position(MARKET)
        taker = replace(
            resting_bid("taker"), limit_price=Decimal("0.47"), time_in_force=TimeInForce.IOC
        )
        assert (await rig.venue.submit(taker)).filled_quantity == 3

        balances = {b.asset: b.total for b in await rig.venue.balances()}
        fills = await rig.venue.trades_since(MARKET, None)

        assert balances[MARKET] == held_before + 3
        assert sum(f.quantity for f in fills) == 3


async def test_a_resting_bid_hidden_by_read_lag_still_counts_in_the_usd_total() -> None:
    """The cash a resting bid holds leaves ``balance`` at once; the orders listing that adds it
    back lags: the total must not dip by it (a baseline taken then stays short for good)."""
    async with kalshi_on_simulator(faults(read_lag_s=1.0)) as rig:
        cash = rig.sim.state.config.cash
        await rig.venue.submit(resting_bid("hidden"))  # 3 at 0.30 hold 0.90

        usd = next(b for b in await rig.venue.balances() if b.asset == "USD")

        assert (usd.free, usd.locked) == (cash - Decimal("0.90"), Decimal("0.90"))


async def test_a_429_without_retry_after_is_rate_limited() -> None:
    config = faults({"kind": "rate_limit_429", "max_count": 1})
    async with kalshi_on_simulator(config) as rig:
        with pytest.raises(RateLimited):
            await rig.venue.balances()
        assert (await rig.venue.balances())[0].asset == "USD"


async def test_a_5xx_after_accept_is_ambiguous_and_the_order_exists() -> None:
    rule = {"kind": "http_5xx", "endpoints": ["POST /portfolio/events/orders"], "max_count": 1}
    async with kalshi_on_simulator(faults({**rule, "after_accept": True})) as rig:
        order = resting_bid("5xx")
        with pytest.raises(Ambiguous):
            await rig.venue.submit(order)
        assert (await rig.venue.find_order(MARKET, order.client_order_id)).status is (
            VenueOrderStatus.NEW
        )


async def test_a_wrong_key_is_auth_failed_and_places_nothing() -> None:
    _, wrong = generate_key_pair()
    async with kalshi_on_simulator(pem=wrong) as rig:
        with pytest.raises(AuthFailed):
            await rig.venue.submit(resting_bid("badsig"))
        assert rig.sim.state.venue_orders_by_client_id() == {}


async def test_user_stream_reconnects_after_a_drop_and_says_so() -> None:
    async with kalshi_on_simulator() as rig:
        async with collecting(rig.venue.user_stream()) as events:
            await eventually(lambda: rig.sim.state.user_subscriptions() >= 1, message="no sub")
            rig.sim.state.faults.set_plan(
                FaultPlan.from_mapping([{"kind": "ws_disconnect_user", "max_count": 1}])
            )
            missed = await rig.venue.submit(resting_bid("ws-missed"))
            await eventually(
                lambda: any(isinstance(e, StreamReconnected) for e in events),
                message="no StreamReconnected after the drop",
            )
            await eventually(lambda: rig.sim.state.user_subscriptions() >= 1, message="no sub")
            after = await rig.venue.submit(resting_bid("ws-after"))
            await eventually(
                lambda: any(
                    isinstance(e, OrderReport) and e.client_order_id == after.client_order_id
                    for e in events
                ),
                message="nothing on the stream after the reconnect",
            )
        found = await rig.venue.find_order(MARKET, missed.client_order_id)
        assert found.status is VenueOrderStatus.NEW


async def test_an_unknown_order_is_not_found_once_reads_are_current() -> None:
    async with kalshi_on_simulator() as rig:
        with pytest.raises(NotFound):
            await rig.venue.find_order(MARKET, new_client_order_id("nothing"))


async def test_find_order_answers_from_the_user_stream_while_reads_still_lag() -> None:
    """A process that did not send the order (as after a restart) but whose ``user_orders``
    stream saw it answers a lookup from that evidence; without it the lag makes it ambiguous."""
    async with kalshi_on_simulator(faults(read_lag_s=30.0)) as rig:
        other = adapter_for(rig.sim)
        blind = adapter_for(rig.sim)
        try:
            async with collecting(other.user_stream()) as events:
                await eventually(lambda: rig.sim.state.user_subscriptions() >= 1, message="sub")
                order = resting_bid("stream-seen")
                await rig.venue.submit(order)
                await eventually(
                    lambda: any(isinstance(e, OrderReport) for e in events),
                    message="the stream never showed the order",
                )

                found = await other.find_order(MARKET, order.client_order_id)

                assert found.status is VenueOrderStatus.NEW
                assert [found.venue_order_id] == rig.sim.state.venue_orders_by_client_id()[
                    order.client_order_id
                ]
                with pytest.raises(Ambiguous):
                    await blind.find_order(MARKET, order.client_order_id)
        finally:
            await other.close()
            await blind.close()


async def test_duplicated_and_reordered_stream_messages_pass_through_as_they_come() -> None:
    """The adapter passes repeats and late messages on (the ledger deduplicates by trade id);
    what the stream says in the end matches the REST fills."""
    config = faults(
        {"kind": "duplicate_execution_report", "probability": 0.5},
        {"kind": "reorder_execution_report", "probability": 0.3},
    )
    async with kalshi_on_simulator(config) as rig:
        async with collecting(rig.venue.user_stream()) as events:
            await eventually(lambda: rig.sim.state.user_subscriptions() >= 1, message="sub")
            for i in range(4):
                order = OrderRequest(
                    client_order_id=new_client_order_id(f"dupre{i}"),
                    symbol=MARKET,
                    side=Side.BUY,
                    type=OrderType.LIMIT,
                    quantity=Decimal("1"),
                    limit_price=Decimal("0.47"),  # takes the ask: one fill each
                )
                await rig.venue.submit(order)
            rest = {f.trade_id for f in await rig.venue.trades_since(MARKET, None)}

            def streamed() -> list[str]:
                return [e.trade_id for e in events if isinstance(e, FillReport)]

            await eventually(lambda: set(streamed()) == rest, message="stream fills differ")
        counts = rig.sim.state.fault_counts()
        assert counts.get("duplicate_execution_report", 0) > 0
        assert len(streamed()) > len(rest)


async def test_the_adapter_paces_itself_to_its_tier_and_the_venue_refuses_a_faster_one() -> None:
    tiny = Tier(read_per_s=1000.0, write_per_s=20.0, burst_s=1.0)  # 2 creates a second
    config = KalshiSimConfig(seed=23, tier=tiny)
    async with kalshi_on_simulator(config) as rig:
        paced = KalshiVenue(replace(rig.venue.config, tier=tiny))
        try:
            for i in range(5):
                await paced.submit(resting_bid(f"paced{i}"))
        finally:
            await paced.close()
        assert rig.sim.state.fault_counts().get("rate_limited", 0) == 0

        async def eager() -> None:  # the rig's adapter assumes the default tier
            for i in range(8):
                await rig.venue.submit(resting_bid(f"eager{i}"))

        with pytest.raises(RateLimited):
            await eager()
        assert rig.sim.state.fault_counts()["rate_limited"] == 1


async def test_a_scan_showing_only_an_older_order_of_the_same_client_id_does_not_win() -> None:
    """Client order ids are unique among open orders only: while the reads lag, a scan may show
    the filled first order and not the second one; the lookup answers with the second."""
    async with kalshi_on_simulator(faults(read_lag_s=0.5)) as rig:
        coid = new_client_order_id("reuse-lag")
        taker = OrderRequest(
            client_order_id=coid,
            symbol=MARKET,
            side=Side.BUY,
            type=OrderType.LIMIT,
            quantity=Decimal("1"),
            limit_price=Decimal("0.47"),
        )
        first = await rig.venue.submit(taker)
        assert first.status is VenueOrderStatus.FILLED
        await eventually(
            lambda: any(
                o["order_id"] == first.venue_order_id
                for o in rig.sim.state.listed_orders(ticker=MARKET, status=None, min_ts=None)
            ),
            message="the first order never became visible",
        )
        second = await rig.venue.submit(replace(taker, limit_price=Decimal("0.30")))

        found = await rig.venue.find_order(MARKET, coid)

        assert found.venue_order_id == second.venue_order_id
        assert found.status is VenueOrderStatus.NEW


async def test_a_market_that_closes_cancels_resting_orders_and_refuses_new_ones() -> None:
    async with kalshi_on_simulator() as rig:
        resting = await rig.venue.submit(resting_bid("before-close"))
        admin = httpx.AsyncClient(base_url=rig.sim.base_url)
        async with admin:
            closed = await admin.post("/admin/close_market", json={"ticker": MARKET})
        assert closed.json() == {"canceled": 1}

        found = await rig.venue.find_order(MARKET, resting.client_order_id)
        assert found.status is VenueOrderStatus.CANCELED  # venue evidence, not a guess
        with pytest.raises(Definitive):
            await rig.venue.submit(resting_bid("after-close"))
        assert len(rig.sim.state.venue_orders_by_client_id()) == 1


async def test_maintenance_refuses_new_orders_definitively_but_lets_cancels_through() -> None:
    async with kalshi_on_simulator() as rig:
        resting = await rig.venue.submit(resting_bid("before-pause"))
        rig.sim.state.maintenance = True

        with pytest.raises(Definitive):
            await rig.venue.submit(resting_bid("during-pause"))
        canceled = await rig.venue.cancel(MARKET, resting.client_order_id)

        assert canceled.status is VenueOrderStatus.CANCELED
