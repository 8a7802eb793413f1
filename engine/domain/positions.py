"""Positions and P&L folded from fills, all in ``Decimal``.

Accounting conventions (average cost):

- ``quantity`` is signed (long > 0, short < 0) and is the signed sum of fill quantities, net of
  fees charged in the base asset (Binance takes buy commissions from the base asset received).
- ``cost_basis`` is what the open quantity cost, signed like it; ``avg_entry_price`` derives from
  it. Keeping the cost rather than the average makes ``realized + unrealized`` exactly equal the
  cash-flow P&L: a rounded division when part of a position closes moves the same amount from the
  cost to the realized P&L, so nothing is lost.
- A fill that reduces the position realizes ``closed_qty * (price - avg_entry)`` (sign-adjusted);
  one that crosses zero closes the old position first and opens the rest at the fill price.
- Fees in the quote asset reduce realized P&L. A fee in the base asset is a quantity given up at
  the fill price: it moves the position like a trade of that size at that price whose proceeds
  are lost, so realized P&L drops by the fee's value. Fees in any other asset (BNB) are summed
  per asset in ``other_fees`` and are not netted: their price is not this position's business.
- All P&L is in the quote asset.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import Context, Decimal, DivisionByZero, InvalidOperation, Overflow, localcontext
from itertools import repeat
from types import MappingProxyType
from typing import Protocol

from engine.domain.records import replacer
from engine.domain.types import Asset, Side, Symbol

ZERO = Decimal(0)

# The only inexact step is the share of the cost that leaves with a partial close. It is rounded
# to 18 places and everything else is computed with room to spare, so sums stay exact and the
# rounding only moves value between cost and realized P&L, never loses it.
_CONTEXT = Context(prec=60, traps=[InvalidOperation, DivisionByZero, Overflow])
_COST_QUANTUM = Decimal("1e-18")


class FillLike(Protocol):
    """The fields of a fill the position math needs (``PositionFill`` or any look-alike)."""

    @property
    def side(self) -> Side: ...
    @property
    def qty(self) -> Decimal: ...
    @property
    def price(self) -> Decimal: ...
    @property
    def fee(self) -> Decimal: ...
    @property
    def fee_asset(self) -> Asset | None: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class PositionFill:
    side: Side
    qty: Decimal
    price: Decimal
    fee: Decimal = ZERO
    #: ``None`` only when there is no fee
    fee_asset: Asset | None = None


def _empty_fees() -> Mapping[Asset, Decimal]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True, kw_only=True)
class Position:
    base_asset: Asset
    quote_asset: Asset
    symbol: Symbol | None = None
    quantity: Decimal = ZERO
    #: what the open quantity cost in the quote asset; negative for a short (proceeds received)
    cost_basis: Decimal = ZERO
    #: in the quote asset, net of quote fees and base fees valued at their fill price
    realized_pnl: Decimal = ZERO
    quote_fees: Decimal = ZERO
    #: in base units; already deducted from ``quantity``
    base_fees: Decimal = ZERO
    #: fees in third assets (e.g. BNB), per asset, not netted into P&L
    other_fees: Mapping[Asset, Decimal] = field(default_factory=_empty_fees)
    fill_count: int = 0

    @property
    def is_flat(self) -> bool:
        return self.quantity == 0

    @property
    def avg_entry_price(self) -> Decimal | None:
        """``None`` when flat."""
        if self.quantity == 0:
            return None
        return self.cost_basis / self.quantity


def _sign(x: Decimal) -> int:
    return (x > 0) - (x < 0)


def _check(value: Decimal, what: str, *, positive: bool = False) -> None:
    if not isinstance(value, Decimal) or not value.is_finite():
        raise ValueError(f"{what} must be a finite Decimal, got {value!r}")
    if positive and value <= 0:
        raise ValueError(f"{what} must be positive, got {value}")
    if value < 0:
        raise ValueError(f"{what} must be >= 0, got {value}")


def _trade(
    q: Decimal, cost: Decimal, signed_qty: Decimal, price: Decimal
) -> tuple[Decimal, Decimal, Decimal]:
    """Fold a trade of ``signed_qty`` at ``price`` into a position of ``q`` that cost ``cost``:
    ``(quantity, cost_basis, realized_delta)``."""
    if signed_qty == 0:
        return q, cost, ZERO
    if q == 0 or _sign(q) == _sign(signed_qty):
        return q + signed_qty, cost + signed_qty * price, ZERO
    closing = min(abs(signed_qty), abs(q))
    # The cost that leaves with the closed part; exact when everything closes, so a flat
    # position always has zero cost.
    share = cost * closing / abs(q)
    removed_cost = cost if closing == abs(q) else share.quantize(_COST_QUANTUM)
    # closing a long sells (proceeds +price), closing a short buys (pays price)
    realized = _sign(q) * closing * price - removed_cost
    new_q = q + signed_qty
    new_cost = cost - removed_cost
    if abs(signed_qty) > closing:  # crossed zero: the rest opens at the fill price
        new_cost = new_q * price
    return new_q, new_cost, realized


def apply_fill(position: Position, fill: FillLike) -> Position:
    """The position after one more fill."""
    _check(fill.qty, "fill qty", positive=True)
    _check(fill.price, "fill price")
    if not isinstance(fill.fee, Decimal) or not fill.fee.is_finite():
        raise ValueError(f"fee must be a finite Decimal (negative for a rebate), got {fill.fee!r}")
    if fill.fee != 0 and fill.fee_asset is None:
        raise ValueError(f"a fee of {fill.fee} needs its asset")
    with localcontext(_CONTEXT):
        return _apply_fill(position, fill)


def _apply_fill(position: Position, fill: FillLike) -> Position:
    q, cost, realized = _trade(
        position.quantity, position.cost_basis, fill.side.sign * fill.qty, fill.price
    )
    realized_pnl = position.realized_pnl + realized
    quote_fees, base_fees = position.quote_fees, position.base_fees
    other_fees = position.other_fees

    if fill.fee != 0:
        if fill.fee_asset == position.quote_asset:
            quote_fees += fill.fee
            realized_pnl -= fill.fee
        elif fill.fee_asset == position.base_asset:
            # The fee units leave the position like a sale at the fill price whose proceeds
            # the venue keeps.
            q, cost, fee_realized = _trade(q, cost, -fill.fee, fill.price)
            realized_pnl += fee_realized - fill.fee * fill.price
            base_fees += fill.fee
        else:
            assert fill.fee_asset is not None
            fees = dict(other_fees)
            fees[fill.fee_asset] = fees.get(fill.fee_asset, ZERO) + fill.fee
            other_fees = MappingProxyType(fees)

    # Position checks nothing itself: the quick copy (a backtest folds every fill)
    return _REPLACE_POSITION(
        position,
        quantity=q,
        cost_basis=cost,
        realized_pnl=realized_pnl,
        quote_fees=quote_fees,
        base_fees=base_fees,
        other_fees=other_fees,
        fill_count=position.fill_count + 1,
    )


_REPLACE_POSITION = replacer(Position)


def position_from_fills(
    fills: Iterable[FillLike],
    *,
    base_asset: Asset,
    quote_asset: Asset,
    symbol: Symbol | None = None,
) -> Position:
    """Fold ``fills`` in the given order (venue trade order) into a position."""
    position = Position(base_asset=base_asset, quote_asset=quote_asset, symbol=symbol)
    for fill in fills:
        position = apply_fill(position, fill)
    return position


def unrealized(position: Position, mark: Decimal) -> Decimal:
    """P&L of the open quantity if it were closed at ``mark`` (no exit fees assumed)."""
    _check(mark, "mark")
    # the context's own methods: the same rounding as ``with localcontext``, without entering
    # one (a backtest marks its position on every bar)
    return _CONTEXT.subtract(_CONTEXT.multiply(position.quantity, mark), position.cost_basis)


def total_pnl(position: Position, mark: Decimal) -> Decimal:
    """Realized plus unrealized at ``mark``: the cash-flow P&L, in the quote asset."""
    # unrealized() inlined, the same checks and operations (a backtest marks every bar held)
    if type(mark) is not Decimal or not mark.is_finite() or mark < 0:
        _check(mark, "mark")  # raises as unrealized() would
    return _ADD(
        position.realized_pnl, _SUBTRACT(_MULTIPLY(position.quantity, mark), position.cost_basis)
    )


_ADD, _SUBTRACT, _MULTIPLY = _CONTEXT.add, _CONTEXT.subtract, _CONTEXT.multiply


def pnl_at_marks(position: Position, marks: Sequence[Decimal]) -> Iterator[Decimal]:
    """:func:`total_pnl` at each of ``marks`` in turn: the same checks and operations, mapped
    over them rather than called per mark (a backtest marks a held position on every bar)."""
    try:
        valid = all(map(_IS_FINITE, marks)) and (not marks or min(marks) >= 0)
    except TypeError:  # not a Decimal
        valid = False
    if not valid:
        for mark in marks:
            _check(mark, "mark")  # raises for the first that total_pnl would refuse
    return map(
        _ADD,
        repeat(position.realized_pnl),
        map(
            _SUBTRACT, map(_MULTIPLY, repeat(position.quantity), marks), repeat(position.cost_basis)
        ),
    )


_IS_FINITE = Decimal.is_finite


def settle(position: Position, outcome: Decimal) -> Position:
    """Resolve a prediction-market contract: every open contract is worth ``outcome``
    (1 when it resolved yes, 0 when no; fractional settlement values are accepted)."""
    _check(outcome, "settlement outcome")
    if outcome > 1:
        raise ValueError(f"a contract settles between 0 and 1, got {outcome}")
    open_pnl = unrealized(position, outcome)
    with localcontext(_CONTEXT):
        realized = position.realized_pnl + open_pnl
    return replace(position, quantity=ZERO, cost_basis=ZERO, realized_pnl=realized)
