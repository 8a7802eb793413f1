"""The paper venue's own behaviour beyond the venue contract: fees, locks, priority, fault hooks,
streams and determinism."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from engine.domain.market import Quote
from engine.domain.types import (
    Asset,
    ClientOrderId,
    Liquidity,
    OrderType,
    Side,
    Symbol,
    TimeInForce,
    TradeId,
    VenueOrderStatus,
)
from engine.exceptions import Ambiguous, Definitive, NotFound
from engine.venues.base import (
    BalanceReport,
    FillReport,
    OrderReport,
    OrderRequest,
    StreamReconnected,
    UserEvent,
    Venue,
)
from engine.venues.paper import (
    BTCUSDT,
    DEFAULT_RULES,
    PRES_YES,
    PaperVenue,
    default_paper_venue,
)
from tests.helpers import eventually

BTC, USDT, USD = Asset("BTC"), Asset("USDT"), Asset("USD")
T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


class SteppingClock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        self.now += timedelta(milliseconds=1)
        return self.now


def make_venue(**overrides: object) -> PaperVenue:
    kwargs: dict[str, object] = {
        "rules": dict(DEFAULT_RULES),
        "balances": {USDT: Decimal(10_000), BTC: Decimal(1), USD: Decimal(1_000)},
        "clock": SteppingClock(),
        "fees_in_quote": [PRES_YES],
    }
    kwargs.update(overrides)
    return PaperVenue(**kwargs)  # type: ignore[arg-type]


@pytest.fixture
async def venue() -> AsyncIterator[PaperVenue]:
    v = make_venue()
    yield v
    await v.close()


def quote(
    bid: str, ask: str, size: str = "1", symbol: Symbol = BTCUSDT, at: datetime = T0
) -> Quote:
    return Quote(
        symbol=symbol,
        bid=Decimal(bid),
        bid_size=Decimal(size),
        ask=Decimal(ask),
        ask_size=Decimal(size),
        venue_ts=at,
        received_at=at,
    )


def limit(
    coid: str,
    side: Side,
    qty: str,
    price: str,
    tif: TimeInForce = TimeInForce.GTC,
    symbol: Symbol = BTCUSDT,
) -> OrderRequest:
    return OrderRequest(
        client_order_id=ClientOrderId(coid),
        symbol=symbol,
        side=side,
        type=OrderType.LIMIT,
        quantity=Decimal(qty),
        limit_price=Decimal(price),
        time_in_force=tif,
    )


def market(coid: str, side: Side, qty: str, symbol: Symbol = BTCUSDT) -> OrderRequest:
    return OrderRequest(
        client_order_id=ClientOrderId(coid),
        symbol=symbol,
        side=side,
        type=OrderType.MARKET,
        quantity=Decimal(qty),
    )


def free_locked(v: PaperVenue, asset: Asset) -> tuple[Decimal, Decimal]:
    b = v.balances_now()[asset]
    return b.free, b.locked


def test_paper_venue_implements_the_venue_protocol(venue: PaperVenue) -> None:
    assert isinstance(venue, Venue)


# --------------------------------------------------------------------------- fees and balances


async def test_taker_buy_pays_the_ask_and_the_fee_in_the_base_asset(venue: PaperVenue) -> None:
    venue.set_quote(quote("100.00", "100.10"))

    report = await venue.submit(limit("a", Side.BUY, "0.5", "101.00"))

    (fill,) = report.fills
    assert (fill.price, fill.quantity, fill.liquidity) == (
        Decimal("100.10"),
        Decimal("0.5"),
        Liquidity.TAKER,
    )
    assert (fill.fee, fill.fee_asset) == (Decimal("0.0005"), BTC)
    assert report.cumulative_quote == Decimal("50.05")
    assert free_locked(venue, USDT) == (Decimal("9949.95"), Decimal(0))
    assert free_locked(venue, BTC) == (Decimal("1.4995"), Decimal(0))


async def test_maker_sell_fills_at_its_limit_and_pays_the_fee_in_the_quote_asset() -> None:
    venue = make_venue(maker_fee=Decimal("0.0002"), taker_fee=Decimal("0.002"))
    venue.set_quote(quote("100.00", "100.10"))
    await venue.submit(limit("s", Side.SELL, "0.4", "100.50"))
    assert free_locked(venue, BTC) == (Decimal("0.6"), Decimal("0.4"))

    venue.set_quote(quote("100.60", "100.70"))

    (fill,) = venue.all_fills()
    assert (fill.price, fill.liquidity, fill.fee, fill.fee_asset) == (
        Decimal("100.50"),
        Liquidity.MAKER,
        Decimal("0.00804"),
        USDT,
    )
    assert free_locked(venue, BTC) == (Decimal("0.6"), Decimal(0))
    assert free_locked(venue, USDT) == (Decimal("10040.19196"), Decimal(0))


async def test_prediction_market_buys_pay_fees_in_the_quote_asset(venue: PaperVenue) -> None:
    venue.set_quote(quote("0.40", "0.42", size="100", symbol=PRES_YES))

    report = await venue.submit(limit("p", Side.BUY, "10", "0.42", symbol=PRES_YES))

    (fill,) = report.fills
    assert (fill.fee, fill.fee_asset) == (Decimal("0.0042"), USD)
    assert free_locked(venue, Asset("PRES-YES")) == (Decimal(10), Decimal(0))
    assert free_locked(venue, USD) == (Decimal("995.7958"), Decimal(0))


async def test_resting_buy_locks_limit_times_quantity_and_a_better_fill_returns_the_rest(
    venue: PaperVenue,
) -> None:
    venue.set_quote(quote("100.00", "100.10"))
    await venue.submit(limit("b", Side.BUY, "2", "99.00"))
    assert free_locked(venue, USDT) == (Decimal("9802.00"), Decimal("198.00"))

    venue.set_quote(quote("98.00", "98.50", size="1"))

    # A resting order fills at its own limit as maker; half is done, half stays locked.
    assert free_locked(venue, USDT) == (Decimal("9802.00"), Decimal("99.00"))
    await venue.cancel(BTCUSDT, ClientOrderId("b"))
    assert free_locked(venue, USDT) == (Decimal("9901.00"), Decimal(0))


async def test_insufficient_balance_is_definitive_and_places_nothing(venue: PaperVenue) -> None:
    venue.set_quote(quote("100.00", "100.10"))

    with pytest.raises(Definitive, match="insufficient balance") as exc:
        await venue.submit(limit("big", Side.BUY, "200", "99.00"))

    assert exc.value.code == -2010
    assert venue.all_orders().orders == ()
    assert venue.all_orders().attempts[ClientOrderId("big")] == 0
    assert venue.all_orders().submits == {ClientOrderId("big"): 1}
    assert free_locked(venue, USDT) == (Decimal(10_000), Decimal(0))


async def test_selling_more_than_the_free_base_is_refused(venue: PaperVenue) -> None:
    venue.set_quote(quote("100.00", "100.10"))
    await venue.submit(limit("s1", Side.SELL, "0.8", "200.00"))

    with pytest.raises(Definitive, match="insufficient balance"):
        await venue.submit(market("s2", Side.SELL, "0.3"))


# --------------------------------------------------------------------------- matching


async def test_touch_size_is_shared_best_price_first_then_oldest_first(venue: PaperVenue) -> None:
    venue.set_quote(quote("100.00", "100.10"))
    await venue.submit(limit("low", Side.BUY, "1", "98.00"))
    await venue.submit(limit("high-old", Side.BUY, "1", "99.00"))
    await venue.submit(limit("high-new", Side.BUY, "1", "99.00"))

    venue.set_quote(quote("97.00", "97.50", size="1.5"))

    filled = {f.client_order_id: f.quantity for f in venue.all_fills()}
    assert filled == {"high-old": Decimal(1), "high-new": Decimal("0.5")}


async def test_each_quote_refreshes_the_touch_size(venue: PaperVenue) -> None:
    venue.set_quote(quote("100.00", "100.10", size="0.3"))
    first = await venue.submit(limit("t1", Side.BUY, "0.2", "100.10"))
    second = await venue.submit(limit("t2", Side.BUY, "0.2", "100.10", tif=TimeInForce.IOC))
    assert first.status is VenueOrderStatus.FILLED
    assert (second.status, second.filled_quantity) == (VenueOrderStatus.EXPIRED, Decimal("0.1"))

    venue.set_quote(quote("100.00", "100.10", size="0.3"))
    third = await venue.submit(limit("t3", Side.BUY, "0.2", "100.10"))

    assert third.status is VenueOrderStatus.FILLED


async def test_fills_are_rounded_down_to_the_step_size(venue: PaperVenue) -> None:
    venue.set_quote(quote("100.00", "100.10", size="0.123456789"))

    report = await venue.submit(limit("r", Side.BUY, "0.2", "100.10", tif=TimeInForce.IOC))

    assert report.filled_quantity == Decimal("0.12345")


async def test_fok_that_cannot_fill_completely_expires_without_filling(venue: PaperVenue) -> None:
    venue.set_quote(quote("100.00", "100.10", size="0.5"))
    before = venue.balances_now()

    killed = await venue.submit(limit("k", Side.BUY, "0.6", "100.10", tif=TimeInForce.FOK))
    filled = await venue.submit(limit("f", Side.BUY, "0.5", "100.10", tif=TimeInForce.FOK))

    assert (killed.status, killed.filled_quantity) == (VenueOrderStatus.EXPIRED, Decimal(0))
    assert (filled.status, filled.filled_quantity) == (VenueOrderStatus.FILLED, Decimal("0.5"))
    assert before[USDT].free - venue.balances_now()[USDT].free == Decimal("50.05")


async def test_market_order_takes_the_touch_and_expires_the_rest(venue: PaperVenue) -> None:
    venue.set_quote(quote("100.00", "100.10", size="0.25"))

    report = await venue.submit(market("m", Side.BUY, "0.5"))

    assert report.status is VenueOrderStatus.EXPIRED
    assert report.filled_quantity == Decimal("0.25")
    assert [f.price for f in report.fills] == [Decimal("100.10")]


async def test_market_order_without_a_quote_is_refused(venue: PaperVenue) -> None:
    with pytest.raises(Definitive, match="no quote"):
        await venue.submit(market("m", Side.BUY, "0.1"))


@pytest.mark.parametrize(
    ("order", "problem"),
    [
        (limit("q", Side.BUY, "0.000015", "100.00"), "step_size"),
        (limit("q", Side.BUY, "0.01", "100.005"), "tick_size"),
        (limit("q", Side.BUY, "0.01", "100.00"), "min_notional"),
        (limit("q", Side.BUY, "10", "0.995", symbol=PRES_YES), "outside"),
        (market("q", Side.BUY, "0.00001"), "min_notional"),
    ],
)
async def test_filter_failures_are_definitive_with_code_1013(
    venue: PaperVenue, order: OrderRequest, problem: str
) -> None:
    venue.set_quote(quote("100.00", "100.10"))

    with pytest.raises(Definitive, match=problem) as exc:
        await venue.submit(order)

    assert exc.value.code == -1013


async def test_unknown_symbol_is_refused_with_code_1121(venue: PaperVenue) -> None:
    with pytest.raises(Definitive, match="ETHUSDT") as exc:
        await venue.submit(limit("x", Side.BUY, "1", "10.00", symbol=Symbol("ETHUSDT")))
    assert exc.value.code == -1121


# --------------------------------------------------------------------------- client order ids


async def test_duplicate_of_an_open_order_is_refused_like_binance(venue: PaperVenue) -> None:
    venue.set_quote(quote("100.00", "100.10"))
    await venue.submit(limit("d", Side.BUY, "0.1", "99.00"))

    with pytest.raises(Definitive, match=r"^Duplicate order sent\.$") as exc:
        await venue.submit(limit("d", Side.BUY, "0.1", "98.00"))

    assert exc.value.code == -2010
    assert venue.all_orders().submits == {ClientOrderId("d"): 2}
    assert venue.all_orders().attempts == {ClientOrderId("d"): 1}
    assert len(venue.all_orders().accepted(ClientOrderId("d"))) == 1


async def test_reused_client_order_id_is_found_as_the_newest_order(venue: PaperVenue) -> None:
    venue.set_quote(quote("100.00", "100.10"))
    await venue.submit(limit("r", Side.BUY, "0.1", "99.00"))
    await venue.cancel(BTCUSDT, ClientOrderId("r"))

    second = await venue.submit(limit("r", Side.BUY, "0.1", "98.00"))

    found = await venue.find_order(BTCUSDT, ClientOrderId("r"))
    assert found.venue_order_id == second.venue_order_id
    assert found.limit_price == Decimal("98.00")
    assert venue.all_orders().attempts[ClientOrderId("r")] == 2
    assert [o.status for o in venue.all_orders().accepted(ClientOrderId("r"))] == [
        VenueOrderStatus.CANCELED,
        VenueOrderStatus.NEW,
    ]


async def test_cancel_of_a_filled_order_raises_not_found_naming_its_state(
    venue: PaperVenue,
) -> None:
    venue.set_quote(quote("100.00", "100.10"))
    await venue.submit(limit("f", Side.BUY, "0.1", "100.10"))

    with pytest.raises(NotFound, match="already FILLED") as exc:
        await venue.cancel(BTCUSDT, ClientOrderId("f"))
    assert exc.value.code == -2011


# --------------------------------------------------------------------------- fault hooks


async def test_fail_after_accept_places_the_order_but_reports_ambiguous(venue: PaperVenue) -> None:
    venue.set_quote(quote("100.00", "100.10"))
    venue.fail_next_submit_after_accept()

    with pytest.raises(Ambiguous, match="timeout"):
        await venue.submit(limit("amb", Side.BUY, "0.1", "99.00"))

    found = await venue.find_order(BTCUSDT, ClientOrderId("amb"))
    assert found.status is VenueOrderStatus.NEW
    # A blind resend is refused while the first is open: exactly one order on the venue.
    with pytest.raises(Definitive, match="Duplicate"):
        await venue.submit(limit("amb", Side.BUY, "0.1", "99.00"))
    truth = venue.all_orders()
    assert len(truth.accepted(ClientOrderId("amb"))) == 1
    assert truth.attempts[ClientOrderId("amb")] == 1
    assert truth.submits[ClientOrderId("amb")] == 2


async def test_fail_after_accept_is_consumed_only_by_accepted_submits(venue: PaperVenue) -> None:
    venue.set_quote(quote("100.00", "100.10"))
    venue.fail_next_submit_after_accept()

    with pytest.raises(Definitive):
        await venue.submit(limit("bad", Side.BUY, "0.1", "99.001"))
    with pytest.raises(Ambiguous):
        await venue.submit(limit("good", Side.BUY, "0.1", "99.00"))
    await venue.submit(limit("next", Side.BUY, "0.1", "99.00"))


async def test_fail_before_accept_places_nothing(venue: PaperVenue) -> None:
    venue.fail_next_submit_before_accept(2)

    for _ in range(2):
        with pytest.raises(Ambiguous):
            await venue.submit(limit("lost", Side.BUY, "0.1", "99.00"))

    with pytest.raises(NotFound):
        await venue.find_order(BTCUSDT, ClientOrderId("lost"))
    assert venue.all_orders().submits == {}
    assert venue.all_orders().attempts[ClientOrderId("lost")] == 0
    await venue.submit(limit("lost", Side.BUY, "0.1", "99.00"))
    assert venue.all_orders().attempts[ClientOrderId("lost")] == 1


async def test_reject_next_submit_raises_definitive_once(venue: PaperVenue) -> None:
    venue.reject_next_submit("Market is closed.", code=-1013)

    with pytest.raises(Definitive, match="Market is closed") as exc:
        await venue.submit(limit("rj", Side.BUY, "0.1", "99.00"))
    assert exc.value.code == -1013
    assert venue.all_orders().attempts[ClientOrderId("rj")] == 0
    assert venue.all_orders().submits[ClientOrderId("rj")] == 1

    await venue.submit(limit("rj", Side.BUY, "0.1", "99.00"))


async def test_dropped_stream_events_leave_fills_visible_through_trades_since(
    venue: PaperVenue,
) -> None:
    stream = venue.user_stream()
    venue.set_quote(quote("100.00", "100.10"))
    venue.drop_stream_events(True)
    await venue.submit(limit("quiet", Side.BUY, "0.1", "100.10"))
    venue.drop_stream_events(False)
    await venue.submit(limit("loud", Side.BUY, "0.1", "99.00"))
    await venue.close()

    events = [e async for e in stream]

    assert isinstance(events[0], StreamReconnected)
    assert all(getattr(e, "client_order_id", "loud") == "loud" for e in events)
    assert [f.client_order_id for f in await venue_trades(venue)] == ["quiet"]


async def test_silent_drop_announces_nothing(venue: PaperVenue) -> None:
    stream = venue.user_stream()
    venue.set_quote(quote("100.00", "100.10"))
    venue.drop_stream_events(True)
    await venue.submit(limit("quiet", Side.BUY, "0.1", "100.10"))
    venue.drop_stream_events(False, announce_reconnect=False)
    await venue.close()

    assert [e async for e in stream] == []
    assert len(await venue_trades(venue)) == 1


async def venue_trades(venue: PaperVenue) -> list[FillReport]:
    """Fills as ``trades_since`` shows them; the venue is closed, so read the ground truth."""
    return [f for f in venue.all_fills() if f.symbol == BTCUSDT]


# --------------------------------------------------------------------------- streams


async def test_user_stream_reports_new_fill_order_and_balances_in_order(venue: PaperVenue) -> None:
    stream = venue.user_stream()
    venue.set_quote(quote("100.00", "100.10"))
    await venue.submit(limit("s", Side.BUY, "0.1", "100.10"))
    await venue.close()

    kinds = [
        (type(e).__name__, getattr(e, "status", None) or getattr(e, "asset", None))
        async for e in stream
    ]

    assert kinds == [
        ("OrderReport", VenueOrderStatus.NEW),
        ("BalanceReport", USDT),  # the lock
        ("FillReport", None),
        ("OrderReport", VenueOrderStatus.FILLED),
        ("BalanceReport", BTC),
        ("BalanceReport", USDT),
    ]


async def test_user_stream_is_delivered_to_every_subscriber(venue: PaperVenue) -> None:
    first, second = venue.user_stream(), venue.user_stream()
    venue.set_quote(quote("100.00", "100.10"))

    await venue.submit(limit("x", Side.BUY, "0.1", "99.00"))

    a, b = await anext(first), await anext(second)
    assert isinstance(a, OrderReport)
    assert a == b
    await first.aclose()
    await second.aclose()


async def test_drain_takes_what_was_published_without_waiting(venue: PaperVenue) -> None:
    stream = venue.user_stream()
    venue.set_quote(quote("100.00", "100.10"))
    await venue.submit(limit("x", Side.BUY, "0.1", "99.00"))
    await venue.close()

    drained = stream.drain()

    assert [type(e).__name__ for e in drained] == ["OrderReport", "BalanceReport"]
    assert stream.drain() == []
    assert [e async for e in stream] == []


async def test_a_closed_subscription_stops_receiving(venue: PaperVenue) -> None:
    stream = venue.user_stream()
    await stream.aclose()

    venue.set_quote(quote("100.00", "100.10"))
    await venue.submit(limit("x", Side.BUY, "0.1", "99.00"))

    assert [e async for e in stream] == []


async def test_close_ends_a_waiting_user_stream(venue: PaperVenue) -> None:
    stream = venue.user_stream()
    seen: list[UserEvent] = []
    ended = False

    async def read() -> None:
        nonlocal ended
        async for e in stream:
            seen.append(e)
        ended = True

    task = asyncio.create_task(read())
    await venue.close()
    await eventually(lambda: ended, message="user stream did not end on close")
    await task
    assert seen == []


async def test_market_stream_conflates_per_symbol_for_a_slow_reader(venue: PaperVenue) -> None:
    stream = venue.market_stream([BTCUSDT])
    venue.set_quote(quote("100.00", "100.10"))
    venue.set_quote(quote("0.40", "0.41", symbol=PRES_YES))
    venue.set_quote(quote("100.01", "100.11"))
    await venue.close()

    quotes = [q async for q in stream]

    assert [(q.symbol, q.bid) for q in quotes if isinstance(q, Quote)] == [
        (BTCUSDT, Decimal("100.01"))
    ]


async def test_calls_after_close_are_refused(venue: PaperVenue) -> None:
    await venue.close()

    with pytest.raises(Definitive, match="closed"):
        await venue.balances()
    assert [e async for e in venue.user_stream()] == []


# --------------------------------------------------------------------------- ids, time, seeds


async def test_trade_ids_are_increasing_integers_per_symbol(venue: PaperVenue) -> None:
    venue.set_quote(quote("100.00", "100.10", size="10"))
    venue.set_quote(quote("0.40", "0.41", size="100", symbol=PRES_YES))
    await venue.submit(limit("a", Side.BUY, "0.1", "100.10"))
    await venue.submit(limit("b", Side.BUY, "5", "0.41", symbol=PRES_YES))
    await venue.submit(limit("c", Side.BUY, "0.1", "100.10"))

    assert [(f.symbol, f.trade_id) for f in venue.all_fills()] == [
        (BTCUSDT, TradeId("1")),
        (PRES_YES, TradeId("1")),
        (BTCUSDT, TradeId("2")),
    ]
    assert [f.trade_id for f in await venue.trades_since(BTCUSDT, TradeId("1"))] == ["2"]
    with pytest.raises(Definitive, match="integers"):
        await venue.trades_since(BTCUSDT, TradeId("abc"))


async def test_timestamps_come_from_the_injected_clock() -> None:
    clock = SteppingClock()
    venue = make_venue(clock=clock)
    venue.set_quote(quote("100.00", "100.10"))

    report = await venue.submit(limit("t", Side.BUY, "0.1", "100.10"))

    assert T0 < report.fills[0].venue_ts <= report.received_at <= clock.now


async def test_a_naive_clock_is_refused() -> None:
    venue = make_venue(clock=lambda: datetime(2026, 1, 1))
    venue.set_quote(quote("100.00", "100.10"))
    with pytest.raises(ValueError, match="aware"):
        await venue.submit(limit("t", Side.BUY, "0.1", "100.10"))


async def run_session(seed: int) -> tuple[list[Quote], tuple[FillReport, ...], list[BalanceReport]]:
    venue = default_paper_venue(seed=seed, clock=SteppingClock())
    quotes = venue.step()
    btc = next(q for q in quotes if q.symbol == BTCUSDT)
    await venue.submit(limit("buy", Side.BUY, "0.3", str(btc.bid)))
    await venue.submit(limit("sell", Side.SELL, "0.2", str(btc.ask)))
    for _ in range(50):
        quotes += venue.step()
    balances = list(await venue.balances())
    await venue.close()
    return quotes, venue.all_fills(), balances


async def test_same_seed_and_calls_give_the_same_session() -> None:
    assert await run_session(seed=42) == await run_session(seed=42)


async def test_a_different_seed_gives_a_different_market() -> None:
    a, _, _ = await run_session(seed=1)
    b, _, _ = await run_session(seed=2)
    assert [q.bid for q in a] != [q.bid for q in b]


async def test_step_quotes_every_attached_walk_and_orders_trade_on_them() -> None:
    venue = default_paper_venue(seed=3, clock=SteppingClock())
    stream = venue.market_stream([PRES_YES])
    (btc, pres) = sorted(venue.step(), key=lambda q: q.symbol)
    assert (btc.symbol, pres.symbol) == (BTCUSDT, PRES_YES)
    assert Decimal(0) < pres.bid < pres.ask < Decimal(1)
    assert await anext(stream) == pres

    await venue.submit(limit("lift", Side.BUY, "0.1", str(btc.ask + 1000)))
    assert venue.balances_now()[BTC].total > Decimal(1)
    await venue.close()


async def test_orders_since_lists_a_symbols_orders_from_a_time_in_any_status(
    venue: PaperVenue,
) -> None:
    venue.set_quote(quote("100", "101"))
    venue.set_quote(quote("0.40", "0.42", symbol=PRES_YES))
    await venue.submit(limit("early", Side.BUY, "0.1", "90"))
    since = venue._now()
    await venue.submit(limit("resting", Side.BUY, "0.1", "90"))
    await venue.submit(market("filled", Side.BUY, "0.1"))
    await venue.submit(limit("other-symbol", Side.BUY, "10", "0.30", symbol=PRES_YES))

    listed = await venue.orders_since(BTCUSDT, since)

    assert [(r.client_order_id, r.status) for r in listed] == [
        ("resting", VenueOrderStatus.NEW),
        ("filled", VenueOrderStatus.FILLED),
    ]


async def test_submit_now_places_and_fills_as_submit_does_without_a_report() -> None:
    awaited, direct = make_venue(), make_venue()
    for v in (awaited, direct):
        v.set_quote(quote("100.00", "100.10"))
    orders = [limit("a", Side.BUY, "0.5", "101.00"), limit("b", Side.SELL, "0.2", "100.50")]

    for order in orders:
        await awaited.submit(order)
        assert direct.submit_now(order) is None  # type: ignore[func-returns-value]

    assert direct.all_fills() == awaited.all_fills()
    assert [r.status for r in direct.all_orders().orders] == [
        r.status for r in awaited.all_orders().orders
    ]
    for asset in (BTC, USDT):
        assert free_locked(direct, asset) == free_locked(awaited, asset)


async def test_submit_now_refuses_and_fails_like_submit(venue: PaperVenue) -> None:
    venue.set_quote(quote("100.00", "100.10"))
    with pytest.raises(Definitive, match="insufficient balance"):
        venue.submit_now(limit("big", Side.BUY, "1000", "101.00"))
    venue.fail_next_submit_before_accept()
    with pytest.raises(Ambiguous):
        venue.submit_now(limit("lost", Side.BUY, "0.1", "99.00"))
    venue.fail_next_submit_after_accept()
    with pytest.raises(Ambiguous):
        venue.submit_now(limit("amb", Side.BUY, "0.1", "99.00"))
    assert venue.all_orders().attempts[ClientOrderId("amb")] == 1
    assert venue.all_orders().attempts[ClientOrderId("lost")] == 0
    await venue.close()
    with pytest.raises(Definitive, match="closed"):
        venue.submit_now(limit("late", Side.BUY, "0.1", "99.00"))


async def test_fills_from_and_all_fills_report_each_fill_once(venue: PaperVenue) -> None:
    venue.set_quote(quote("100.00", "100.10"))
    await venue.submit(limit("a", Side.BUY, "0.5", "101.00"))
    (first,) = venue.fills_from(0)
    await venue.submit(limit("b", Side.BUY, "0.1", "101.00"))

    assert venue.fills_from(2) == ()
    (second,) = venue.fills_from(1)
    assert venue.all_fills() == (first, second)
    assert venue.all_fills()[0] is first  # built once: a fill never changes
