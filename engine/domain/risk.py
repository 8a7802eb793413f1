"""Pure pre-trade checks: ``(intent, view, limits, now) -> verdicts``.

:func:`evaluate` runs every configured check in :data:`CHECK_ORDER` and returns a
:class:`RiskAssessment`. A check whose limit is not configured yields no verdict; every other check
yields one (PASS / REJECT / RESIZE) with its limit and the value it observed, so the ledger can
answer "which limits were checked, with which values". All checks run even after a rejection, so
the record is complete.

Order of the checks, and why:

1. gates that do not depend on the size (freshness, loss halts, order rate, market quality, price
   band) come first;
2. then the size checks, each of which may RESIZE when ``limits.resizable`` names it. They run
   from the order's own size outwards (fat finger, order quantity, order notional, share of
   volume, strategy position, account exposure), and each sees the quantity the previous ones
   left. A resize only ever lowers the quantity.

Position and exposure checks use the worst case: the position plus resting orders on the same
side plus this order. An order that only reduces the exposure always passes them.

Prices: a limit order is valued at its limit price; a market order at the far touch (the ask for
a buy, the bid for a sell). A check whose input is missing (no quote, no P&L figure) rejects with
a message saying what is missing; it never passes by default.

Resized quantities are not rounded to the instrument's step size: the caller rounds down with
``InstrumentRules.round_quantity``, which never increases them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import ROUND_FLOOR, Decimal, localcontext
from enum import StrEnum
from types import MappingProxyType

from engine.domain.intents import Buy, Sell
from engine.domain.types import Side, Symbol, VerdictResult, require_aware

ZERO = Decimal(0)
BPS = Decimal(10_000)
#: the observed value of a check whose input is missing
_MISSING = "missing"


@dataclass(frozen=True, slots=True, kw_only=True)
class Verdict:
    """One check's outcome, stored with the decision so "which limits were checked" has an answer.

    ``limit`` and ``observed`` are kept as text so any unit (a quantity, a duration in seconds,
    a ratio) is stored exactly as compared.
    """

    check: str
    result: VerdictResult
    limit: str
    observed: str
    message: str = ""
    #: with RESIZE: the quantity the order was reduced to
    resized_qty: Decimal | None = None

    @property
    def passed(self) -> bool:
        return self.result is not VerdictResult.REJECT

    def as_json(self) -> dict[str, str | None]:
        return {
            "check": self.check,
            "result": self.result.value,
            "limit": self.limit,
            "observed": self.observed,
            "message": self.message,
            "resized_qty": None if self.resized_qty is None else str(self.resized_qty),
        }


class Check(StrEnum):
    """Check names, as stored in verdicts. Declaration order is the evaluation order."""

    INPUT_AGE = "input_age"  #: now - intent.md_ts
    PRICE_AGE = "price_age"  #: now - quote received_at
    BALANCE_AGE = "balance_age"  #: now - balances received_at
    DAILY_LOSS = "daily_loss"  #: halts the engine when crossed
    DRAWDOWN = "drawdown"  #: halts the engine when crossed
    ORDER_RATE = "orders_per_minute"
    MIN_SPREAD = "min_spread"  #: a crossed, locked or implausibly tight book
    MAX_SPREAD = "max_spread"  #: liquidity has gone
    PRICE_BAND = "price_band"  #: limit price vs mid
    FAT_FINGER = "fat_finger"  #: vs the strategy's typical order size
    ORDER_QTY = "max_order_qty"
    ORDER_NOTIONAL = "max_order_notional"
    VOLUME_FRACTION = "max_volume_fraction"
    POSITION_QTY = "max_position_qty"
    POSITION_NOTIONAL = "max_position_notional"
    ACCOUNT_EXPOSURE = "max_account_exposure"


CHECK_ORDER: tuple[Check, ...] = tuple(Check)

#: the checks that can shrink an order instead of rejecting it
SIZE_CHECKS: frozenset[Check] = frozenset(
    {
        Check.FAT_FINGER,
        Check.ORDER_QTY,
        Check.ORDER_NOTIONAL,
        Check.VOLUME_FRACTION,
        Check.POSITION_QTY,
        Check.POSITION_NOTIONAL,
        Check.ACCOUNT_EXPOSURE,
    }
)

#: the checks whose breach halts the engine (and opens an incident), not just this order
HALTING_CHECKS: frozenset[Check] = frozenset({Check.DAILY_LOSS, Check.DRAWDOWN})


def _no_limits() -> Mapping[Symbol, Decimal]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    """Every field is optional: ``None`` means the check is not configured.

    Money is in the quote asset. ``max_daily_loss`` and ``max_drawdown`` are positive amounts.
    """

    max_order_qty: Decimal | None = None
    max_order_notional: Decimal | None = None
    #: default for every symbol; ``*_by_symbol`` overrides it per symbol
    max_position_qty: Decimal | None = None
    max_position_qty_by_symbol: Mapping[Symbol, Decimal] = field(default_factory=_no_limits)
    max_position_notional: Decimal | None = None
    max_position_notional_by_symbol: Mapping[Symbol, Decimal] = field(default_factory=_no_limits)
    #: gross notional over every symbol and every strategy of the account
    max_account_exposure: Decimal | None = None
    max_daily_loss: Decimal | None = None
    #: peak equity minus equity
    max_drawdown: Decimal | None = None
    max_orders_per_minute: int | None = None
    max_price_age: timedelta | None = None
    max_balance_age: timedelta | None = None
    max_input_age: timedelta | None = None
    #: the largest allowed distance of a limit price from mid, in basis points of mid
    price_band_bps: Decimal | None = None
    min_spread_bps: Decimal | None = None
    max_spread_bps: Decimal | None = None
    #: largest share of ``MarketView.recent_volume`` one order may take (0.1 = 10 %)
    max_volume_fraction: Decimal | None = None
    #: the largest multiple of ``AccountView.typical_order_qty`` one order may be
    fat_finger_multiple: Decimal | None = None
    #: size checks allowed to RESIZE instead of REJECT
    resizable: frozenset[Check] = frozenset()

    def __post_init__(self) -> None:
        for name in (
            "max_order_qty",
            "max_order_notional",
            "max_position_qty",
            "max_position_notional",
            "max_account_exposure",
            "max_daily_loss",
            "max_drawdown",
            "price_band_bps",
            "min_spread_bps",
            "max_spread_bps",
            "max_volume_fraction",
            "fat_finger_multiple",
        ):
            value = getattr(self, name)
            if value is not None and (
                not isinstance(value, Decimal) or not value.is_finite() or value < 0
            ):
                raise ValueError(f"limit {name} must be a Decimal >= 0, got {value!r}")
        for name in ("max_position_qty_by_symbol", "max_position_notional_by_symbol"):
            for symbol, value in getattr(self, name).items():
                if not isinstance(value, Decimal) or not value.is_finite() or value < 0:
                    raise ValueError(f"limit {name}[{symbol}] must be a Decimal >= 0")
        for name in ("max_price_age", "max_balance_age", "max_input_age"):
            age = getattr(self, name)
            if age is not None and age < timedelta(0):
                raise ValueError(f"limit {name} must not be negative, got {age}")
        if self.max_orders_per_minute is not None and self.max_orders_per_minute < 0:
            raise ValueError("limit max_orders_per_minute must be >= 0")
        wrong = {Check(c) for c in self.resizable} - SIZE_CHECKS
        if wrong:
            raise ValueError(
                f"only size checks can resize; not: {sorted(wrong)} "
                f"(size checks: {sorted(SIZE_CHECKS)})"
            )

    def position_qty_limit(self, symbol: Symbol) -> Decimal | None:
        return self.max_position_qty_by_symbol.get(symbol, self.max_position_qty)

    def position_notional_limit(self, symbol: Symbol) -> Decimal | None:
        return self.max_position_notional_by_symbol.get(symbol, self.max_position_notional)


@dataclass(frozen=True, slots=True, kw_only=True)
class Exposure:
    """A position in one symbol and the resting orders that could still move it."""

    position: Decimal = ZERO  #: signed: long > 0
    open_buy_qty: Decimal = ZERO  #: unfilled quantity of resting buys
    open_sell_qty: Decimal = ZERO

    def worst_case(self, side: Side) -> Decimal:
        """The position if every resting order on ``side`` filled, signed along ``side``:
        positive means an order on ``side`` makes it larger, negative that it reduces it."""
        if side is Side.BUY:
            return self.position + self.open_buy_qty
        return -self.position + self.open_sell_qty

    def gross(self) -> Decimal:
        """The larger of the worst-case long and short positions, as a magnitude."""
        return max(abs(self.position + self.open_buy_qty), abs(self.position - self.open_sell_qty))


_NO_EXPOSURE = Exposure()


@dataclass(frozen=True, slots=True, kw_only=True)
class MarketView:
    """The market for the intent's symbol, as the strategy saw it (or newer, at the final gate)."""

    symbol: Symbol
    bid: Decimal | None
    ask: Decimal | None
    #: our receipt time of the quote
    received_at: datetime | None
    #: traded volume over the venue's recent window, in base units
    recent_volume: Decimal | None = None

    def __post_init__(self) -> None:
        if self.received_at is not None:
            require_aware(self.received_at, "MarketView.received_at")

    @property
    def mid(self) -> Decimal | None:
        if self.bid is None or self.ask is None:
            return None
        return (self.bid + self.ask) / 2


def _no_exposure() -> Mapping[Symbol, Exposure]:
    return MappingProxyType({})


def _no_marks() -> Mapping[Symbol, Decimal]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True, kw_only=True)
class AccountView:
    """What the checks need to know about the strategy and the account."""

    #: this strategy's positions and resting orders
    strategy_exposure: Mapping[Symbol, Exposure] = field(default_factory=_no_exposure)
    #: every strategy of the account together
    account_exposure: Mapping[Symbol, Exposure] = field(default_factory=_no_exposure)
    #: marks for valuing the account's positions in other symbols
    marks: Mapping[Symbol, Decimal] = field(default_factory=_no_marks)
    #: realized + unrealized P&L since the start of the trading day
    pnl_today: Decimal | None = None
    equity: Decimal | None = None
    peak_equity: Decimal | None = None
    #: when this strategy's recent orders were submitted (for the order rate)
    recent_order_times: Sequence[datetime] = ()
    #: our receipt time of the latest balance snapshot
    balances_received_at: datetime | None = None
    typical_order_qty: Decimal | None = None

    def __post_init__(self) -> None:
        if self.balances_received_at is not None:
            require_aware(self.balances_received_at, "AccountView.balances_received_at")
        for at in self.recent_order_times:
            require_aware(at, "AccountView.recent_order_times")


@dataclass(frozen=True, slots=True, kw_only=True)
class RiskAssessment:
    verdicts: tuple[Verdict, ...]
    approved: bool
    #: the quantity to order after resizes; zero when not approved
    quantity: Decimal
    #: set when a halting check (daily loss, drawdown) was crossed: halt and open an incident
    halt_reason: str | None = None

    @property
    def rejections(self) -> tuple[Verdict, ...]:
        return tuple(v for v in self.verdicts if v.result is VerdictResult.REJECT)


@dataclass(slots=True, kw_only=True)
class _Ctx:
    intent: Buy | Sell
    market: MarketView
    account: AccountView
    limits: Limits
    now: datetime
    qty: Decimal

    @property
    def side(self) -> Side:
        return self.intent.side

    @property
    def symbol(self) -> Symbol:
        return self.intent.symbol

    def price(self) -> Decimal | None:
        """A limit order's limit price, a market order's far touch (``None`` when there is no
        usable touch)."""
        if self.intent.limit_price is not None:
            return self.intent.limit_price
        touch = self.market.ask if self.side is Side.BUY else self.market.bid
        return touch if touch is not None and touch > 0 else None

    def price_missing(self) -> str:
        touch = "ask" if self.side is Side.BUY else "bid"
        return f"no {touch} for market {self.side.value.lower()} {self.symbol}: cannot value it"


def _text(value: object) -> str:
    """Decimals in plain notation without trailing zeros (``200``, not ``200.00`` or ``2E+2``)."""
    if isinstance(value, Decimal):
        return f"{value.normalize():f}" if value.is_finite() else str(value)
    return str(value)


def _seconds(delta: timedelta) -> str:
    return f"{_text(Decimal(delta // timedelta(microseconds=1)).scaleb(-6))}s"


def _verdict(
    check: Check, result: VerdictResult, limit: object, observed: object, message: str = ""
) -> Verdict:
    return Verdict(
        check=check.value,
        result=result,
        limit=_text(limit),
        observed=_text(observed),
        message=message,
    )


def _reject(check: Check, limit: object, observed: object, message: str) -> Verdict:
    return _verdict(check, VerdictResult.REJECT, limit, observed, message)


def _pass(check: Check, limit: object, observed: object, message: str = "") -> Verdict:
    return _verdict(check, VerdictResult.PASS, limit, observed, message)


def _size(ctx: _Ctx, check: Check, limit: object, observed: object, max_qty: Decimal) -> Verdict:
    """PASS when the quantity fits ``max_qty``; else RESIZE down to it when allowed, else REJECT."""
    max_qty = max(max_qty, ZERO)
    if ctx.qty <= max_qty:
        return _pass(check, limit, observed)
    if check in ctx.limits.resizable and max_qty > 0:
        cut = ctx.qty - max_qty
        return Verdict(
            check=check.value,
            result=VerdictResult.RESIZE,
            limit=_text(limit),
            observed=_text(observed),
            message=f"resized from {ctx.qty} to {max_qty} (-{cut}) to fit {check.value} {limit}",
            resized_qty=max_qty,
        )
    return _reject(
        check, limit, observed, f"quantity {ctx.qty} exceeds {max_qty} allowed by {check.value}"
    )


def _age(
    check: Check, limit: timedelta | None, at: datetime | None, ctx: _Ctx, what: str
) -> Verdict | None:
    if limit is None:
        return None
    if at is None:
        return _reject(check, _seconds(limit), _MISSING, f"no {what} received yet")
    age = ctx.now - require_aware(at, what)
    if age > limit:
        return _reject(
            check,
            _seconds(limit),
            _seconds(age),
            f"{what} is {_seconds(age)} old, limit {_seconds(limit)}",
        )
    return _pass(check, _seconds(limit), _seconds(age))


def _input_age(ctx: _Ctx) -> Verdict | None:
    return _age(
        Check.INPUT_AGE,
        ctx.limits.max_input_age,
        ctx.intent.md_ts,
        ctx,
        "the decision's market data",
    )


def _price_age(ctx: _Ctx) -> Verdict | None:
    return _age(Check.PRICE_AGE, ctx.limits.max_price_age, ctx.market.received_at, ctx, "quote")


def _balance_age(ctx: _Ctx) -> Verdict | None:
    return _age(
        Check.BALANCE_AGE,
        ctx.limits.max_balance_age,
        ctx.account.balances_received_at,
        ctx,
        "balance snapshot",
    )


def _daily_loss(ctx: _Ctx) -> Verdict | None:
    limit = ctx.limits.max_daily_loss
    if limit is None:
        return None
    pnl = ctx.account.pnl_today
    if pnl is None:
        return _reject(Check.DAILY_LOSS, limit, _MISSING, "today's P&L is not known")
    loss = -pnl
    if loss > limit:
        return _reject(Check.DAILY_LOSS, limit, loss, f"daily loss {loss} exceeds {limit}: halting")
    return _pass(Check.DAILY_LOSS, limit, loss)


def _drawdown(ctx: _Ctx) -> Verdict | None:
    limit = ctx.limits.max_drawdown
    if limit is None:
        return None
    equity, peak = ctx.account.equity, ctx.account.peak_equity
    if equity is None or peak is None:
        return _reject(Check.DRAWDOWN, limit, _MISSING, "equity or peak equity is not known")
    drawdown = peak - equity
    if drawdown > limit:
        return _reject(
            Check.DRAWDOWN,
            limit,
            drawdown,
            f"drawdown {drawdown} from peak {peak} exceeds {limit}: halting",
        )
    return _pass(Check.DRAWDOWN, limit, drawdown)


def _order_rate(ctx: _Ctx) -> Verdict | None:
    limit = ctx.limits.max_orders_per_minute
    if limit is None:
        return None
    since = ctx.now - timedelta(minutes=1)
    recent = sum(1 for t in ctx.account.recent_order_times if since < t <= ctx.now)
    if recent + 1 > limit:
        return _reject(
            Check.ORDER_RATE,
            limit,
            recent,
            f"{recent} orders in the last minute; one more exceeds {limit}",
        )
    return _pass(Check.ORDER_RATE, limit, recent)


def _spread_bps(ctx: _Ctx) -> Decimal | None:
    bid, ask, mid = ctx.market.bid, ctx.market.ask, ctx.market.mid
    if bid is None or ask is None or mid is None or mid <= 0:
        return None
    return (ask - bid) / mid * BPS


def _min_spread(ctx: _Ctx) -> Verdict | None:
    limit = ctx.limits.min_spread_bps
    if limit is None:
        return None
    spread = _spread_bps(ctx)
    if spread is None:
        return _reject(Check.MIN_SPREAD, limit, _MISSING, f"no two-sided quote for {ctx.symbol}")
    if spread < limit:
        return _reject(
            Check.MIN_SPREAD,
            limit,
            spread,
            f"spread {spread} bps below {limit}: crossed or stale book?",
        )
    return _pass(Check.MIN_SPREAD, limit, spread)


def _max_spread(ctx: _Ctx) -> Verdict | None:
    limit = ctx.limits.max_spread_bps
    if limit is None:
        return None
    spread = _spread_bps(ctx)
    if spread is None:
        return _reject(Check.MAX_SPREAD, limit, _MISSING, f"no two-sided quote for {ctx.symbol}")
    if spread > limit:
        return _reject(Check.MAX_SPREAD, limit, spread, f"spread {spread} bps wider than {limit}")
    return _pass(Check.MAX_SPREAD, limit, spread)


def _price_band(ctx: _Ctx) -> Verdict | None:
    limit = ctx.limits.price_band_bps
    if limit is None:
        return None
    price = ctx.intent.limit_price
    if price is None:
        return _pass(
            Check.PRICE_BAND, limit, "market order", "no limit price: executes at the touch"
        )
    mid = ctx.market.mid
    if mid is None or mid <= 0:
        return _reject(
            Check.PRICE_BAND,
            limit,
            _MISSING,
            f"no mid for {ctx.symbol} to compare the limit price with",
        )
    distance = abs(price - mid) / mid * BPS
    if distance > limit:
        return _reject(
            Check.PRICE_BAND,
            limit,
            distance,
            f"limit price {price} is {distance} bps from mid {mid}",
        )
    return _pass(Check.PRICE_BAND, limit, distance)


def _fat_finger(ctx: _Ctx) -> Verdict | None:
    multiple = ctx.limits.fat_finger_multiple
    if multiple is None:
        return None
    typical = ctx.account.typical_order_qty
    if typical is None or typical <= 0:
        return _reject(
            Check.FAT_FINGER, multiple, _MISSING, "the strategy's typical order size is not known"
        )
    return _size(ctx, Check.FAT_FINGER, multiple, ctx.qty / typical, multiple * typical)


def _order_qty(ctx: _Ctx) -> Verdict | None:
    limit = ctx.limits.max_order_qty
    if limit is None:
        return None
    return _size(ctx, Check.ORDER_QTY, limit, ctx.qty, limit)


def _order_notional(ctx: _Ctx) -> Verdict | None:
    limit = ctx.limits.max_order_notional
    if limit is None:
        return None
    price = ctx.price()
    if price is None:
        return _reject(Check.ORDER_NOTIONAL, limit, _MISSING, ctx.price_missing())
    max_qty = limit / price
    return _size(ctx, Check.ORDER_NOTIONAL, limit, ctx.qty * price, max_qty)


def _volume_fraction(ctx: _Ctx) -> Verdict | None:
    fraction = ctx.limits.max_volume_fraction
    if fraction is None:
        return None
    volume = ctx.market.recent_volume
    if volume is None:
        return _reject(
            Check.VOLUME_FRACTION,
            fraction,
            _MISSING,
            f"recent volume of {ctx.symbol} is not known",
        )
    observed = ctx.qty / volume if volume > 0 else "no volume"
    return _size(ctx, Check.VOLUME_FRACTION, fraction, observed, fraction * volume)


def _max_growth(exposure: Exposure, side: Side, room: Decimal) -> Decimal:
    """The largest order on ``side`` that keeps the worst-case position within ``room`` (a
    magnitude), or that only reduces the position when it is already beyond it."""
    along = exposure.worst_case(side)
    return max(ZERO, max(room, ZERO) - along)


def _position_qty(ctx: _Ctx) -> Verdict | None:
    limit = ctx.limits.position_qty_limit(ctx.symbol)
    if limit is None:
        return None
    exposure = ctx.account.strategy_exposure.get(ctx.symbol, _NO_EXPOSURE)
    after = exposure.worst_case(ctx.side) + ctx.qty
    return _size(ctx, Check.POSITION_QTY, limit, after, _max_growth(exposure, ctx.side, limit))


def _position_notional(ctx: _Ctx) -> Verdict | None:
    limit = ctx.limits.position_notional_limit(ctx.symbol)
    if limit is None:
        return None
    price = ctx.price()
    if price is None:
        return _reject(Check.POSITION_NOTIONAL, limit, _MISSING, ctx.price_missing())
    exposure = ctx.account.strategy_exposure.get(ctx.symbol, _NO_EXPOSURE)
    after = (exposure.worst_case(ctx.side) + ctx.qty) * price
    room = limit / price
    return _size(ctx, Check.POSITION_NOTIONAL, limit, after, _max_growth(exposure, ctx.side, room))


def _account_exposure(ctx: _Ctx) -> Verdict | None:
    limit = ctx.limits.max_account_exposure
    if limit is None:
        return None
    price = ctx.price()
    if price is None:
        return _reject(Check.ACCOUNT_EXPOSURE, limit, _MISSING, ctx.price_missing())
    others = ZERO
    for symbol, exposure in sorted(ctx.account.account_exposure.items()):
        if symbol == ctx.symbol or exposure.gross() == 0:
            continue
        mark = ctx.account.marks.get(symbol)
        if mark is None:
            return _reject(
                Check.ACCOUNT_EXPOSURE,
                limit,
                _MISSING,
                f"no mark for {symbol} to value the account's position",
            )
        others += exposure.gross() * mark
    exposure = ctx.account.account_exposure.get(ctx.symbol, _NO_EXPOSURE)
    after = others + abs(exposure.worst_case(ctx.side) + ctx.qty) * price
    room = (limit - others) / price
    return _size(ctx, Check.ACCOUNT_EXPOSURE, limit, after, _max_growth(exposure, ctx.side, room))


_CHECKS: Mapping[Check, Callable[[_Ctx], Verdict | None]] = MappingProxyType(
    {
        Check.INPUT_AGE: _input_age,
        Check.PRICE_AGE: _price_age,
        Check.BALANCE_AGE: _balance_age,
        Check.DAILY_LOSS: _daily_loss,
        Check.DRAWDOWN: _drawdown,
        Check.ORDER_RATE: _order_rate,
        Check.MIN_SPREAD: _min_spread,
        Check.MAX_SPREAD: _max_spread,
        Check.PRICE_BAND: _price_band,
        Check.FAT_FINGER: _fat_finger,
        Check.ORDER_QTY: _order_qty,
        Check.ORDER_NOTIONAL: _order_notional,
        Check.VOLUME_FRACTION: _volume_fraction,
        Check.POSITION_QTY: _position_qty,
        Check.POSITION_NOTIONAL: _position_notional,
        Check.ACCOUNT_EXPOSURE: _account_exposure,
    }
)


def evaluate(
    intent: Buy | Sell, market: MarketView, account: AccountView, limits: Limits, now: datetime
) -> RiskAssessment:
    """Run every configured check on ``intent`` in :data:`CHECK_ORDER`."""
    now = require_aware(now, "now")
    if market.symbol != intent.symbol:
        raise ValueError(f"market view is for {market.symbol}, the intent for {intent.symbol}")
    ctx = _Ctx(
        intent=intent, market=market, account=account, limits=limits, now=now, qty=intent.quantity
    )
    verdicts: list[Verdict] = []
    halt: list[str] = []
    # Rounding towards minus infinity: a quantity derived from a limit (limit / price) is never
    # rounded up past it.
    with localcontext() as decimal_context:
        decimal_context.rounding = ROUND_FLOOR
        for check in CHECK_ORDER:
            verdict = _CHECKS[check](ctx)
            if verdict is None:
                continue
            verdicts.append(verdict)
            if verdict.result is VerdictResult.RESIZE:
                assert verdict.resized_qty is not None
                assert verdict.resized_qty < ctx.qty
                ctx.qty = verdict.resized_qty
            elif (
                verdict.result is VerdictResult.REJECT
                and check in HALTING_CHECKS
                and verdict.observed != _MISSING  # unknown P&L blocks orders; it is no breach
            ):
                halt.append(f"{check.value}: {verdict.message}")
    approved = all(v.passed for v in verdicts)
    return RiskAssessment(
        verdicts=tuple(verdicts),
        approved=approved,
        quantity=ctx.qty if approved else ZERO,
        halt_reason="; ".join(halt) or None,
    )
