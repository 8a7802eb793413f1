"""The matching core on its own, for an instrument that is not a Binance spot pair: a binary
prediction-market contract priced 0.01..0.99 dollars in whole contracts, with a Kalshi-style fee
function. Nothing in the core assumes Binance's grids or fees."""

from __future__ import annotations

from decimal import ROUND_CEILING, Decimal

import pytest

from engine.domain.types import Liquidity, OrderType, Side, TimeInForce, VenueOrderStatus
from engine.venues.matching import (
    Accepted,
    Closed,
    Event,
    Expiry,
    FeeAsset,
    Filled,
    InstrumentSpec,
    MatchingCore,
    NewOrder,
    RefusalKind,
    Refused,
    ReservePolicy,
    Violation,
)

D = Decimal
CENT = D("0.01")

YES = InstrumentSpec(
    symbol="PRES-YES",
    base_asset="PRES-YES",
    quote_asset="USD",
    tick_size=CENT,
    step_size=D(1),
    min_qty=D(1),
    max_qty=D(25_000),
    min_price=CENT,
    max_price=D("0.99"),
    fee_asset=FeeAsset.QUOTE,
)


class KalshiFees:
    """ceil(0.07 x C x P x (1 - P)) to the cent, the same for maker and taker."""

    RATE = D("0.07")

    def fee(
        self, *, quantity: Decimal, price: Decimal, liquidity: Liquidity, in_quote: bool
    ) -> Decimal:
        assert in_quote
        raw = self.RATE * quantity * price * (1 - price)
        return raw.quantize(CENT, rounding=ROUND_CEILING)

    def buy_reserve_per_unit(self, price: Decimal) -> Decimal:
        # Fees round up per fill, so each unit may cost up to one more cent than its share.
        return price + self.RATE * price * (1 - price) + CENT


class Clock:
    def __init__(self) -> None:
        self.t = 0

    def __call__(self) -> int:
        self.t += 1
        return self.t


def core(usd: str = "100") -> MatchingCore[int]:
    return MatchingCore([YES], {"USD": D(usd)}, KalshiFees(), reserve=ReservePolicy.LIMIT_ORDERS)


def buy(qty: int, price: str, cid: str, tif: TimeInForce = TimeInForce.GTC) -> NewOrder:
    return NewOrder(
        symbol="PRES-YES",
        client_order_id=cid,
        side=Side.BUY,
        type=OrderType.LIMIT,
        quantity=D(qty),
        price=D(price),
        time_in_force=tif,
    )


def test_the_price_grid_and_contract_step_are_the_instruments() -> None:
    ref = D("0.50")
    assert YES.violation(D(10), D("0.55"), ref_price=ref) is None
    assert YES.violation(D(10), D("1.00"), ref_price=ref) is Violation.PRICE
    assert YES.violation(D(10), D("0.555"), ref_price=ref) is Violation.PRICE
    assert YES.violation(D("1.5"), D("0.55"), ref_price=ref) is Violation.QUANTITY
    assert YES.floor_to_step(D("7.9")) == D(7)


def test_a_taker_buy_pays_the_fee_function_and_rests_the_rest() -> None:
    c, clock = core(), Clock()
    c.on_quote(
        "PRES-YES", bid=D("0.40"), bid_size=D(50), ask=D("0.42"), ask_size=D(30), clock=clock
    )
    placed, events = c.place(buy(100, "0.45", "a"), clock=clock)
    assert [type(e) for e in events if not hasattr(e, "lines")] == [Accepted, Filled]
    (fill,) = placed.fills
    assert (fill.price, fill.quantity, fill.liquidity) == (D("0.42"), D(30), Liquidity.TAKER)
    # 0.07 * 30 * 0.42 * 0.58 = 0.51156 -> 0.52
    assert (fill.fee, fill.fee_asset) == (D("0.52"), "USD")
    assert placed.status is VenueOrderStatus.PARTIALLY_FILLED
    usd, yes = c.balances["USD"], c.balances["PRES-YES"]
    assert yes.free == D(30)
    assert usd.free + usd.locked == D(100) - D("12.60") - D("0.52")
    assert usd.locked == placed.remaining * KalshiFees().buy_reserve_per_unit(D("0.45"))
    assert fill.trade_id == 1
    assert c.next_trade_id("PRES-YES") == 2


def test_a_resting_order_fills_as_maker_when_a_quote_crosses_it_and_releases_its_lock() -> None:
    c, clock = core(), Clock()
    c.on_quote("PRES-YES", bid=D("0.40"), bid_size=D(50), ask=D("0.42"), ask_size=D(0), clock=clock)
    placed, _ = c.place(buy(10, "0.41", "a"), clock=clock)
    events: list[Event[int]] = c.on_quote(
        "PRES-YES", bid=D("0.38"), bid_size=D(5), ask=D("0.40"), ask_size=D(100), clock=clock
    )
    fills = [e.fill for e in events if isinstance(e, Filled)]
    assert [(f.price, f.quantity, f.liquidity) for f in fills] == [
        (D("0.41"), D(10), Liquidity.MAKER)
    ]
    assert placed.status is VenueOrderStatus.FILLED
    assert c.balances["USD"].locked == 0
    # 0.07 * 10 * 0.41 * 0.59 = 0.16933 -> 0.17
    assert c.balances["USD"].free == D(100) - D("4.10") - D("0.17")


def test_fok_that_cannot_fill_expires_unlocked_and_a_duplicate_open_id_is_refused() -> None:
    c, clock = core(), Clock()
    c.on_quote("PRES-YES", bid=D("0.40"), bid_size=D(5), ask=D("0.42"), ask_size=D(5), clock=clock)
    fok, events = c.place(buy(6, "0.42", "f", TimeInForce.FOK), clock=clock)
    assert fok.status is VenueOrderStatus.EXPIRED
    assert fok.expiry is Expiry.FOK_UNFILLABLE
    assert isinstance(events[-1], Closed)
    assert fok.fills == []
    assert c.balances["USD"].free == D(100)
    c.place(buy(1, "0.30", "dup"), clock=clock)
    with pytest.raises(Refused) as exc:
        c.place(buy(1, "0.30", "dup"), clock=clock)
    assert exc.value.kind is RefusalKind.DUPLICATE


def test_an_order_the_free_balance_cannot_cover_with_its_fee_is_refused() -> None:
    c, clock = core(usd="4.20"), Clock()
    c.on_quote("PRES-YES", bid=D("0.40"), bid_size=D(5), ask=D("0.42"), ask_size=D(5), clock=clock)
    with pytest.raises(Refused) as exc:
        c.place(buy(10, "0.42", "a"), clock=clock)
    assert exc.value.kind is RefusalKind.INSUFFICIENT_BALANCE
    assert exc.value.asset == "USD"
    assert exc.value.needed is not None
    assert exc.value.needed > D("4.20")
    assert c.orders == {}


def test_a_core_nobody_listens_to_makes_no_events_and_trades_the_same() -> None:
    heard: list[Event[int]] = []
    listened = {"on": False}
    quiet = MatchingCore(
        [YES],
        {"USD": D(100)},
        KalshiFees(),
        reserve=ReservePolicy.LIMIT_ORDERS,
        listener=heard.append,
        listening=lambda: listened["on"],
    )
    loud = core()
    for c in (quiet, loud):
        clock = Clock()
        c.on_quote(
            "PRES-YES", bid=D("0.40"), bid_size=D(50), ask=D("0.42"), ask_size=D(30), clock=clock
        )
        placed, events = c.place(buy(100, "0.45", "a"), clock=clock)
        assert (events == []) is (c is quiet)
        assert placed.fills[0].quantity == D(30)
    assert heard == []
    assert quiet.balances == loud.balances
    assert quiet.fill_log == loud.fill_log
    listened["on"] = True  # somebody listens again: events as before
    quiet.cancel(quiet.open_orders()[0].order_id, clock=Clock())
    assert [type(e) for e in heard if not hasattr(e, "lines")] == [Closed]
