"""The matching engine on its own: no sockets, no clock, no randomness."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from engine.domain.types import OrderType, Side, TimeInForce, VenueOrderStatus
from engine.venues.simulator.account import Fees, SimulatedAccount, SymbolRules
from engine.venues.simulator.records import (
    AccountPositionEvent,
    ExecutionEvent,
    NewOrder,
    Rejection,
)

RULES = SymbolRules(
    symbol="BTCUSDT",
    base_asset="BTC",
    quote_asset="USDT",
    tick_size=D("0.01"),
    step_size=D("0.001"),
    min_qty=D("0.001"),
    max_qty=D("100"),
    min_price=D("0.01"),
    max_price=D("1000000"),
    min_notional=D("10"),
)
ETH = SymbolRules(
    symbol="ETHUSDT",
    base_asset="ETH",
    quote_asset="USDT",
    tick_size=D("0.01"),
    step_size=D("0.01"),
    min_qty=D("0.01"),
    max_qty=D("1000"),
    min_price=D("0.01"),
    max_price=D("100000"),
)


def engine(usdt: str = "100000", btc: str = "10") -> SimulatedAccount:
    e = SimulatedAccount(
        [RULES, ETH],
        {"USDT": D(usdt), "BTC": D(btc), "ETH": D(0)},
        Fees(maker=D("0.001"), taker=D("0.002")),
    )
    quote(e, bid="100.00", ask="100.02", size="1")
    e.on_quote("ETHUSDT", bid=D(50), bid_size=D(10), ask=D("50.01"), ask_size=D(10), now_ms=0)
    return e


def quote(e: SimulatedAccount, *, bid: str, ask: str, size: str = "1", now_ms: int = 1) -> list:
    return e.on_quote(
        "BTCUSDT", bid=D(bid), bid_size=D(size), ask=D(ask), ask_size=D(size), now_ms=now_ms
    )


def limit(
    side: Side, qty: str, price: str, cid: str, tif: TimeInForce = TimeInForce.GTC
) -> NewOrder:
    return NewOrder(
        symbol="BTCUSDT",
        side=side,
        type=OrderType.LIMIT,
        quantity=D(qty),
        price=D(price),
        time_in_force=tif,
        client_order_id=cid,
    )


def market(side: Side, qty: str, cid: str) -> NewOrder:
    return NewOrder(
        symbol="BTCUSDT", side=side, type=OrderType.MARKET, quantity=D(qty), client_order_id=cid
    )


def test_crossing_limit_buy_takes_the_ask_and_pays_taker_fee_in_quote() -> None:
    e = engine()
    r = e.place(limit(Side.BUY, "0.5", "101", "a"), now_ms=5)
    assert r.order.status is VenueOrderStatus.FILLED
    (t,) = r.trades
    assert (t.price, t.qty, t.is_maker) == (D("100.02"), D("0.5"), False)
    assert t.commission == D("0.10002")
    assert t.commission_asset == "USDT"
    assert e.balances["BTC"].free == D("10.5")
    assert e.balances["USDT"].free == D(100000) - D("50.01") - D("0.10002")
    assert e.balances["USDT"].locked == 0


def test_gtc_partial_fill_limited_by_touch_size_rests_the_remainder() -> None:
    e = engine()
    r = e.place(limit(Side.BUY, "3", "100.02", "a"), now_ms=5)
    assert r.order.status is VenueOrderStatus.PARTIALLY_FILLED
    assert r.order.executed_qty == D(1)
    assert [o.client_order_id for o in e.open_orders()] == ["a"]
    # the remainder's funds stay locked: 2 * 100.02 * (1 + max fee)
    assert e.balances["USDT"].locked == D(2) * D("100.02") * D("1.002")


def test_touch_liquidity_is_consumed_until_the_next_quote() -> None:
    e = engine()
    e.place(limit(Side.BUY, "1", "100.02", "a", TimeInForce.IOC), now_ms=5)
    second = e.place(limit(Side.BUY, "1", "100.02", "b", TimeInForce.IOC), now_ms=6)
    assert second.order.status is VenueOrderStatus.EXPIRED
    assert second.trades == ()


def test_ioc_expires_the_unfilled_rest_and_releases_funds() -> None:
    e = engine()
    r = e.place(limit(Side.BUY, "2.5", "100.02", "a", TimeInForce.IOC), now_ms=5)
    assert r.order.status is VenueOrderStatus.EXPIRED
    assert r.order.executed_qty == D(1)
    assert e.balances["USDT"].locked == 0
    kinds = [ev.execution_type for ev in r.events if isinstance(ev, ExecutionEvent)]
    assert kinds == ["NEW", "TRADE", "EXPIRED"]


def test_fok_that_the_touch_cannot_fill_expires_without_any_fill() -> None:
    e = engine()
    r = e.place(limit(Side.BUY, "2", "100.02", "a", TimeInForce.FOK), now_ms=5)
    assert r.order.status is VenueOrderStatus.EXPIRED
    assert r.order.executed_qty == 0
    assert r.trades == ()
    ok = e.place(limit(Side.BUY, "1", "100.02", "b", TimeInForce.FOK), now_ms=6)
    assert ok.order.status is VenueOrderStatus.FILLED


def test_market_sell_fills_at_the_bid_and_expires_the_rest() -> None:
    e = engine()
    r = e.place(market(Side.SELL, "1.5", "m"), now_ms=5)
    assert r.order.status is VenueOrderStatus.EXPIRED
    assert r.order.executed_qty == D(1)
    assert r.trades[0].price == D("100.00")
    assert e.balances["BTC"].free == D("9")
    assert e.balances["BTC"].locked == 0
    assert e.balances["USDT"].free == D(100000) + D(100) - D("0.2")


def test_resting_orders_fill_as_maker_when_the_market_crosses_them() -> None:
    e = engine()
    e.place(limit(Side.BUY, "1", "99.50", "low"), now_ms=1)
    events = quote(e, bid="99.40", ask="99.45", size="5", now_ms=9)
    fills = [ev for ev in events if isinstance(ev, ExecutionEvent) and ev.trade]
    assert len(fills) == 1
    trade = fills[0].trade
    assert trade is not None
    assert (trade.price, trade.is_maker, trade.commission) == (D("99.50"), True, D("0.0995"))
    assert isinstance(events[-1], AccountPositionEvent)
    assert e.balances["USDT"].locked == 0


def test_resting_orders_fill_in_price_then_time_priority() -> None:
    e = engine()
    e.place(limit(Side.BUY, "1", "99.50", "first"), now_ms=1)
    e.place(limit(Side.BUY, "1", "99.50", "second"), now_ms=2)
    e.place(limit(Side.BUY, "1", "99.60", "best"), now_ms=3)
    quote(e, bid="99.00", ask="99.10", size="1.5", now_ms=9)
    by_cid = {o.client_order_id: o for o in e.orders.values()}
    assert by_cid["best"].executed_qty == D(1)
    assert by_cid["first"].executed_qty == D("0.5")
    assert by_cid["second"].executed_qty == 0


def test_insufficient_balance_is_refused_with_2010() -> None:
    e = engine(usdt="50")
    with pytest.raises(Rejection) as exc:
        e.place(limit(Side.BUY, "1", "99", "a"), now_ms=1)
    assert (exc.value.code, exc.value.msg) == (
        -2010,
        "Account has insufficient balance for requested action.",
    )
    with pytest.raises(Rejection):
        e.place(market(Side.SELL, "11", "b"), now_ms=1)
    assert e.orders == {}


@pytest.mark.parametrize(
    ("qty", "price", "failure"),
    [
        ("1", "99.001", "PRICE_FILTER"),
        ("1.0005", "99", "LOT_SIZE"),
        ("0.0001", "99", "LOT_SIZE"),
        ("0.05", "99", "NOTIONAL"),
    ],
)
def test_filter_violations_are_refused_with_1013(qty: str, price: str, failure: str) -> None:
    e = engine()
    with pytest.raises(Rejection) as exc:
        e.place(limit(Side.BUY, qty, price, "a"), now_ms=1)
    assert (exc.value.code, exc.value.msg) == (-1013, f"Filter failure: {failure}")


def test_open_client_id_is_refused_and_reusable_once_closed() -> None:
    e = engine()
    e.place(limit(Side.BUY, "1", "90", "dup"), now_ms=1)
    with pytest.raises(Rejection) as exc:
        e.place(limit(Side.BUY, "1", "90", "dup"), now_ms=2)
    assert (exc.value.code, exc.value.msg) == (-2010, "Duplicate order sent.")
    e.cancel("BTCUSDT", order_id=None, client_order_id="dup", cancel_client_order_id="x", now_ms=3)
    again = e.place(limit(Side.BUY, "1", "90", "dup"), now_ms=4)
    assert again.order.order_id == 2
    assert e.find("BTCUSDT", client_order_id="dup") is e.orders[2]


def test_cancel_releases_locked_funds_and_reports_the_cancel_id() -> None:
    e = engine()
    e.place(limit(Side.SELL, "2", "150", "s"), now_ms=1)
    assert e.balances["BTC"].locked == D(2)
    order, events = e.cancel(
        "BTCUSDT", order_id=1, client_order_id=None, cancel_client_order_id="c1", now_ms=2
    )
    assert order.status is VenueOrderStatus.CANCELED
    assert e.balances["BTC"] == type(e.balances["BTC"])(free=D(10), locked=D(0))
    ev = events[0]
    assert isinstance(ev, ExecutionEvent)
    assert ev.cancel_client_order_id == "c1"
    with pytest.raises(Rejection) as exc:
        e.cancel("BTCUSDT", order_id=1, client_order_id=None, cancel_client_order_id=None, now_ms=3)
    assert exc.value.code == -2011


def test_trade_ids_are_consecutive_per_symbol() -> None:
    e = engine()
    e.place(market(Side.BUY, "0.2", "a"), now_ms=1)
    e.place(market(Side.BUY, "0.2", "b"), now_ms=2)
    e.place(
        NewOrder(
            symbol="ETHUSDT",
            side=Side.BUY,
            type=OrderType.MARKET,
            quantity=D("1"),
            client_order_id="c",
        ),
        now_ms=3,
    )
    assert [t.trade_id for t in e.trades["BTCUSDT"]] == [1, 2]
    assert [t.trade_id for t in e.trades["ETHUSDT"]] == [1]


def test_state_round_trips_through_json() -> None:
    e = engine()
    e.place(limit(Side.BUY, "3", "100.02", "a"), now_ms=5)
    copy = engine()
    copy.restore(e.to_json())
    assert copy.to_json() == e.to_json()
    quote(e, bid="99", ask="99.5", size="5", now_ms=7)
    quote(copy, bid="99", ask="99.5", size="5", now_ms=7)
    assert copy.to_json() == e.to_json()
