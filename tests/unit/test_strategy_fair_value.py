from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from types import MappingProxyType

import pytest

from engine.domain.intents import Buy, Hold, Intent, Sell
from engine.domain.market import Quote
from engine.domain.types import ClientOrderId, OrderState, Side, StrategyId, Symbol, TimeInForce
from strategies.base import OpenOrder, ParamError, Snapshot, StrategyLimits
from strategies.fair_value import FairValue, create

MKT = Symbol("PRES28-DEM")
OTHER = Symbol("PRES28-REP")
SID = StrategyId("fv")
NOW = datetime(2026, 11, 3, 20, 0, tzinfo=UTC)
STRATEGY = FairValue(
    SID, {MKT: Decimal("0.55")}, edge=Decimal("0.02"), qty=Decimal(10), max_inventory=Decimal(25)
)


def quote(bid: str, ask: str, *, size: str = "100", age_s: float = 0.0) -> Quote:
    received = NOW - timedelta(seconds=age_s)
    return Quote(
        symbol=MKT,
        bid=Decimal(bid),
        bid_size=Decimal(size),
        ask=Decimal(ask),
        ask_size=Decimal(size),
        venue_ts=received,
        received_at=received,
    )


def snapshot(
    q: Quote | None,
    *,
    position: str = "0",
    open_orders: tuple[OpenOrder, ...] = (),
    limits: StrategyLimits | None = None,
) -> Snapshot:
    return Snapshot(
        strategy_id=SID,
        now=NOW,
        md_ts=NOW,
        interval_key=NOW.isoformat(),
        quotes=MappingProxyType({MKT: q} if q is not None else {}),
        inventory=MappingProxyType({MKT: Decimal(position)}),
        open_orders=open_orders,
        limits=limits or StrategyLimits(),
    )


def only(decision: list[Intent]) -> Intent:
    assert len(decision) == 1
    return decision[0]


def test_buys_at_the_ask_below_fair_minus_edge() -> None:
    intent = only(STRATEGY.decide(snapshot(quote("0.50", "0.52"))))
    assert isinstance(intent, Buy)
    assert intent.limit_price == Decimal("0.52")
    assert intent.quantity == Decimal(10)
    assert intent.time_in_force is TimeInForce.IOC
    assert intent.key.side is Side.BUY


def test_does_not_buy_at_exactly_fair_minus_edge() -> None:
    intent = only(STRATEGY.decide(snapshot(quote("0.51", "0.53"))))
    assert isinstance(intent, Hold)
    assert intent.reason.startswith("no edge")


def test_buy_is_capped_by_inventory_pending_buys_and_displayed_size() -> None:
    pending = OpenOrder(
        client_order_id=ClientOrderId("t-1"),
        symbol=MKT,
        side=Side.BUY,
        quantity=Decimal(5),
        filled_quantity=Decimal(0),
        limit_price=Decimal("0.5"),
        state=OrderState.OPEN,
    )
    intent = only(
        STRATEGY.decide(snapshot(quote("0.50", "0.52"), position="12", open_orders=(pending,)))
    )
    assert isinstance(intent, Buy)
    assert intent.quantity == Decimal(8)
    intent = only(STRATEGY.decide(snapshot(quote("0.50", "0.52", size="3"))))
    assert isinstance(intent, Buy)
    assert intent.quantity == Decimal(3)


def test_holds_at_the_inventory_cap() -> None:
    intent = only(STRATEGY.decide(snapshot(quote("0.50", "0.52"), position="25")))
    assert isinstance(intent, Hold)
    assert "at cap 25" in intent.reason


def test_sells_at_the_bid_above_fair_plus_edge_only_what_is_held() -> None:
    intent = only(STRATEGY.decide(snapshot(quote("0.58", "0.60"), position="4")))
    assert isinstance(intent, Sell)
    assert intent.limit_price == Decimal("0.58")
    assert intent.quantity == Decimal(4)
    intent = only(STRATEGY.decide(snapshot(quote("0.58", "0.60"))))
    assert isinstance(intent, Hold)
    assert "nothing held" in intent.reason


def test_holds_on_a_stale_quote() -> None:
    limits = StrategyLimits(max_quote_age=timedelta(seconds=2))
    intent = only(STRATEGY.decide(snapshot(quote("0.40", "0.42", age_s=3), limits=limits)))
    assert isinstance(intent, Hold)
    assert intent.reason.startswith("quote is stale")


def test_holds_without_a_quote_or_with_prices_outside_the_unit_interval() -> None:
    assert only(STRATEGY.decide(snapshot(None))).reason == "no quote yet"
    intent = only(STRATEGY.decide(snapshot(quote("0.99", "1.01"))))
    assert isinstance(intent, Hold)
    assert "outside (0, 1)" in intent.reason


def test_order_size_respects_max_order_qty() -> None:
    limits = StrategyLimits(max_order_qty=Decimal(2))
    intent = only(STRATEGY.decide(snapshot(quote("0.40", "0.42"), limits=limits)))
    assert isinstance(intent, Buy)
    assert intent.quantity == Decimal(2)


def test_factory_takes_per_market_fair_values() -> None:
    built = create(
        SID,
        [MKT, OTHER],
        {"fair": "0.5", f"fair.{OTHER}": "0.3", "edge": "0", "qty": "1", "max_inventory": "5"},
    )
    assert built.fair == {MKT: Decimal("0.5"), OTHER: Decimal("0.3")}
    assert built.symbols == (MKT, OTHER)


def test_factory_errors_name_the_field() -> None:
    base = {"fair": "0.5", "edge": "0.01", "qty": "1", "max_inventory": "5"}
    cases = [
        ({**base, "fair": "1.2"}, "fair"),
        ({**base, "edge": "-0.1"}, "edge"),
        ({k: v for k, v in base.items() if k != "fair"}, f"fair.{MKT}"),
        ({**base, "fair.NOPE": "0.2"}, "fair.NOPE"),
        ({**base, "qty": "ten"}, "qty"),
        ({**base, "edg": "0.1"}, "edg"),
    ]
    for params, field in cases:
        with pytest.raises(ParamError) as info:
            create(SID, [MKT], params)
        assert info.value.field == field, params
