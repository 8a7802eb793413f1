"""Position, realized/unrealized and settlement P&L folded from fills."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from engine.domain.positions import (
    Position,
    PositionFill,
    apply_fill,
    position_from_fills,
    settle,
    total_pnl,
    unrealized,
)
from engine.domain.types import Asset, Side

BTC, USDT, BNB = Asset("BTC"), Asset("USDT"), Asset("BNB")
D = Decimal


def fold(*fills: PositionFill) -> Position:
    return position_from_fills(fills, base_asset=BTC, quote_asset=USDT)


def buy(qty: str, price: str, fee: str = "0", fee_asset: Asset | None = None) -> PositionFill:
    return PositionFill(side=Side.BUY, qty=D(qty), price=D(price), fee=D(fee), fee_asset=fee_asset)


def sell(qty: str, price: str, fee: str = "0", fee_asset: Asset | None = None) -> PositionFill:
    return PositionFill(side=Side.SELL, qty=D(qty), price=D(price), fee=D(fee), fee_asset=fee_asset)


# --- examples ----------------------------------------------------------------------------------


def test_no_fills_is_flat_with_no_entry_price() -> None:
    position = fold()
    assert position.is_flat
    assert position.avg_entry_price is None
    assert unrealized(position, D(100)) == 0


def test_buys_average_their_entry_price() -> None:
    position = fold(buy("1", "100"), buy("3", "120"))
    assert position.quantity == 4
    assert position.avg_entry_price == D(115)
    assert position.realized_pnl == 0


def test_a_partial_close_realizes_against_the_average_entry() -> None:
    position = fold(buy("2", "100"), sell("1", "110"))
    assert position.quantity == 1
    assert position.realized_pnl == 10
    assert position.avg_entry_price == 100


def test_a_short_profits_when_bought_back_lower() -> None:
    position = fold(sell("2", "100"), buy("1", "90"))
    assert position.quantity == -1
    assert position.realized_pnl == 10
    assert unrealized(position, D(80)) == 20


def test_a_flip_closes_the_old_side_and_opens_the_rest_at_the_fill_price() -> None:
    position = fold(buy("1", "100"), sell("3", "110"))
    assert position.quantity == -2
    assert position.realized_pnl == 10
    assert position.avg_entry_price == 110


def test_closing_everything_leaves_no_cost_behind() -> None:
    position = fold(buy("3", "10"), buy("7", "10.01"), sell("1", "11"), sell("9", "9"))
    assert position.is_flat
    assert position.cost_basis == 0
    assert position.realized_pnl == D("1") * 11 + D(9) * 9 - (D(30) + D("70.07"))


def test_quote_fees_reduce_realized_pnl() -> None:
    position = fold(buy("1", "100", "0.1", USDT))
    assert position.quantity == 1
    assert position.avg_entry_price == 100
    assert position.realized_pnl == D("-0.1")
    assert position.quote_fees == D("0.1")


def test_base_fees_reduce_the_quantity_received_and_cost_their_value() -> None:
    # Binance takes a buy's commission from the base asset received
    position = fold(buy("1", "100", "0.001", BTC))
    assert position.quantity == D("0.999")
    assert position.base_fees == D("0.001")
    assert position.avg_entry_price == 100
    assert position.realized_pnl == D("-0.1")


def test_third_asset_fees_are_tracked_per_asset_and_not_netted() -> None:
    position = fold(buy("1", "100", "0.0001", BNB), sell("1", "101", "0.0002", BNB))
    assert position.other_fees == {BNB: D("0.0003")}
    assert position.realized_pnl == 1
    assert position.quote_fees == 0


def test_a_fee_without_its_asset_is_refused() -> None:
    with pytest.raises(ValueError, match="needs its asset"):
        fold(buy("1", "100", "0.1", None))


def test_a_non_positive_fill_quantity_is_refused() -> None:
    with pytest.raises(ValueError, match="qty"):
        fold(buy("0", "100"))


def test_fill_count_counts_fills() -> None:
    assert fold(buy("1", "1"), sell("1", "1")).fill_count == 2


def test_a_contract_that_resolves_yes_pays_one_per_contract() -> None:
    position = fold(buy("10", "0.40", "0.07", USDT))
    settled = settle(position, D(1))
    assert settled.is_flat
    assert settled.cost_basis == 0
    assert settled.realized_pnl == D("6") - D("0.07")


def test_a_contract_that_resolves_no_loses_its_cost() -> None:
    assert settle(fold(buy("10", "0.40")), D(0)).realized_pnl == D(-4)


def test_a_short_contract_that_resolves_no_keeps_the_premium() -> None:
    assert settle(fold(sell("5", "0.30")), D(0)).realized_pnl == D("1.5")


def test_settlement_outside_zero_to_one_is_refused() -> None:
    with pytest.raises(ValueError, match="between 0 and 1"):
        settle(fold(buy("1", "0.5")), D(2))


# --- properties --------------------------------------------------------------------------------

quantities = st.integers(1, 10**6).map(lambda n: Decimal(n).scaleb(-4))
prices = st.integers(1, 10**7).map(lambda n: Decimal(n).scaleb(-2))
fee_amounts = st.integers(1, 10**4).map(lambda n: Decimal(n).scaleb(-6))


@st.composite
def fills(
    draw: st.DrawFn, fee_assets: tuple[Asset | None, ...] = (None, USDT, BTC, BNB)
) -> PositionFill:
    asset = draw(st.sampled_from(fee_assets))
    return PositionFill(
        side=draw(st.sampled_from(list(Side))),
        qty=draw(quantities),
        price=draw(prices),
        fee=D(0) if asset is None else draw(fee_amounts),
        fee_asset=asset,
    )


def cash_flow_pnl(sequence: list[PositionFill], mark: Decimal) -> Decimal:
    """P&L straight from cash: quote paid or received, quote fees, the held quantity at ``mark``."""
    cash = sum(
        (-f.side.sign * f.qty * f.price - (f.fee if f.fee_asset == USDT else 0) for f in sequence),
        D(0),
    )
    held = sum((f.side.sign * f.qty - (f.fee if f.fee_asset == BTC else 0) for f in sequence), D(0))
    return cash + held * mark


@given(sequence=st.lists(fills(), max_size=30), mark=prices)
def test_realized_plus_unrealized_is_the_cash_flow_pnl(
    sequence: list[PositionFill], mark: Decimal
) -> None:
    position = fold(*sequence)
    assert position.realized_pnl + unrealized(position, mark) == cash_flow_pnl(sequence, mark)
    assert total_pnl(position, mark) == cash_flow_pnl(sequence, mark)


@given(sequence=st.lists(fills(), max_size=30))
def test_quantity_is_the_signed_sum_of_fills_net_of_base_fees(
    sequence: list[PositionFill],
) -> None:
    expected = sum(
        (f.side.sign * f.qty - (f.fee if f.fee_asset == BTC else 0) for f in sequence), D(0)
    )
    assert fold(*sequence).quantity == expected


@given(sequence=st.lists(fills(), max_size=20), mark=prices)
def test_fill_order_never_changes_quantity_fees_or_total_pnl(
    sequence: list[PositionFill], mark: Decimal
) -> None:
    a, b = fold(*sequence), fold(*reversed(sequence))
    assert (a.quantity, a.quote_fees, a.base_fees, dict(a.other_fees)) == (
        b.quantity,
        b.quote_fees,
        b.base_fees,
        dict(b.other_fees),
    )
    assert total_pnl(a, mark) == total_pnl(b, mark)


@given(data=st.data(), sequence=st.lists(fills(), min_size=1, max_size=20))
def test_realized_pnl_of_a_round_trip_does_not_depend_on_fill_order(
    data: st.DataObject, sequence: list[PositionFill]
) -> None:
    # Realized P&L in general depends on the order (average cost), but once the position is
    # flat again it is the whole cash-flow P&L, which does not.
    residual = fold(*sequence).quantity
    if residual:
        side = Side.SELL if residual > 0 else Side.BUY
        sequence = [*sequence, PositionFill(side=side, qty=abs(residual), price=data.draw(prices))]
    shuffled = data.draw(st.permutations(sequence))
    a, b = fold(*sequence), fold(*shuffled)
    assert a.is_flat
    assert b.is_flat
    assert a.realized_pnl == b.realized_pnl


@given(side=st.sampled_from(list(Side)), data=st.data())
def test_same_side_fills_with_quote_fees_realize_and_average_independently_of_order(
    side: Side, data: st.DataObject
) -> None:
    sequence = [
        PositionFill(
            side=side,
            qty=data.draw(quantities),
            price=data.draw(prices),
            fee=data.draw(fee_amounts),
            fee_asset=USDT,
        )
        for _ in range(data.draw(st.integers(1, 8)))
    ]
    a, b = fold(*sequence), fold(*data.draw(st.permutations(sequence)))
    assert a.realized_pnl == b.realized_pnl == -sum((f.fee for f in sequence), D(0))
    assert a.avg_entry_price == b.avg_entry_price


@given(opening=st.lists(fills((None,)), min_size=1, max_size=10), data=st.data())
def test_a_fill_through_zero_realizes_the_old_side_and_opens_at_its_price(
    opening: list[PositionFill], data: st.DataObject
) -> None:
    before = fold(*opening)
    assume(not before.is_flat)
    extra, price = data.draw(quantities), data.draw(prices)
    side = Side.SELL if before.quantity > 0 else Side.BUY
    after = apply_fill(
        before, PositionFill(side=side, qty=abs(before.quantity) + extra, price=price)
    )
    assert after.quantity == (extra if side is Side.BUY else -extra)
    assert after.avg_entry_price == price
    assert after.realized_pnl == before.realized_pnl + unrealized(before, price)


@given(sequence=st.lists(fills(), max_size=15), outcome=st.sampled_from([D(0), D(1)]))
def test_settlement_realizes_exactly_the_pnl_at_the_settlement_price(
    sequence: list[PositionFill], outcome: Decimal
) -> None:
    position = fold(*sequence)
    settled = settle(position, outcome)
    assert settled.quantity == 0
    assert settled.realized_pnl == total_pnl(position, outcome)


@pytest.mark.parametrize("mark", [Decimal("NaN"), Decimal("sNaN"), Decimal("-1"), 1.5])
def test_a_mark_total_pnl_cannot_price_is_refused_as_unrealized_refuses_it(mark: object) -> None:
    position = fold(buy("1", "100"))
    with pytest.raises(ValueError, match=r"^mark must be") as by_unrealized:
        unrealized(position, mark)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^mark must be") as by_total:
        total_pnl(position, mark)  # type: ignore[arg-type]
    assert str(by_total.value) == str(by_unrealized.value)
