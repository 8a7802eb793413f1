"""The individual pre-trade checks, one function per :class:`~engine.domain.risk.limits.Check`.

Each takes the :class:`CheckContext` of one intent and returns ``None`` when its limit is not
configured, else a verdict with the limit and the value it observed. A check whose input is
missing (no quote, no P&L figure) rejects with a message saying what is missing; it never passes
by default. Size checks may RESIZE (when ``limits.resizable`` names them) and see the quantity
the previous size checks left in ``CheckContext.qty``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from types import MappingProxyType

from engine.domain.intents import Buy, Sell
from engine.domain.risk.limits import CHECK_ORDER, Check, Limits
from engine.domain.risk.verdicts import Verdict
from engine.domain.risk.views import NO_EXPOSURE, ZERO, AccountView, Exposure, MarketView
from engine.domain.types import Side, Symbol, VerdictResult, require_aware

BPS = Decimal(10_000)
#: the observed value of a check whose input is missing
MISSING = "missing"


@dataclass(slots=True, kw_only=True)
class CheckContext:
    """One intent under evaluation. ``qty`` starts at the intent's quantity and is lowered by
    each resize, so that later size checks judge what would really be sent."""

    intent: Buy | Sell
    market: MarketView
    account: AccountView
    limits: Limits
    now: datetime
    qty: Decimal
    #: False: a check that passes says nothing (``None``), so no verdict text is built for a
    #: result nobody stores (the final gate keeps only what refuses an order)
    explain: bool = True

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


_MICROSECOND = timedelta(microseconds=1)


def _seconds(delta: timedelta) -> str:
    """A duration in seconds as :func:`_text` writes the Decimal (``1.5s``, ``300s``,
    ``-0.0015s``), from integers: two of them on every assessment's freshness verdict."""
    micros = delta // _MICROSECOND
    whole, fraction = divmod(abs(micros), 1_000_000)
    sign = "-" if micros < 0 else ""
    if not fraction:
        return f"{sign}{whole}s"
    return f"{sign}{whole}.{fraction:06d}".rstrip("0") + "s"


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


def _pass(
    ctx: CheckContext, check: Check, limit: object, observed: object, message: str = ""
) -> Verdict | None:
    if not ctx.explain:
        return None
    return _verdict(check, VerdictResult.PASS, limit, observed, message)


def _size(
    ctx: CheckContext,
    check: Check,
    limit: object,
    observed: object,
    max_qty: Decimal,
    basis: str = "",
) -> Verdict | None:
    """PASS when the quantity fits ``max_qty``; else RESIZE down to it when allowed, else REJECT.
    ``basis`` names the inputs the limit was applied to (kept in the verdict's message)."""
    max_qty = max(max_qty, ZERO)
    suffix = f" ({basis})" if basis else ""
    if ctx.qty <= max_qty:
        return _pass(ctx, check, limit, observed, basis)
    if check in ctx.limits.resizable and max_qty > 0:
        cut = ctx.qty - max_qty
        return Verdict(
            check=check.value,
            result=VerdictResult.RESIZE,
            limit=_text(limit),
            observed=_text(observed),
            message=f"resized from {ctx.qty} to {max_qty} (-{cut}) to fit {check.value} {limit}"
            + suffix,
            resized_qty=max_qty,
        )
    return _reject(
        check,
        limit,
        observed,
        f"quantity {ctx.qty} exceeds {max_qty} allowed by {check.value}" + suffix,
    )


def _age(
    check: Check, limit: timedelta | None, at: datetime | None, ctx: CheckContext, what: str
) -> Verdict | None:
    if limit is None:
        return None
    if at is None:
        return _reject(check, _seconds(limit), MISSING, f"no {what} received yet")
    age = ctx.now - require_aware(at, what)
    if age > limit:
        return _reject(
            check,
            _seconds(limit),
            _seconds(age),
            f"{what} is {_seconds(age)} old, limit {_seconds(limit)}",
        )
    if not ctx.explain:
        return None  # two durations formatted for a verdict nobody keeps
    return _pass(ctx, check, _seconds(limit), _seconds(age))


def _input_age(ctx: CheckContext) -> Verdict | None:
    return _age(
        Check.INPUT_AGE,
        ctx.limits.max_input_age,
        ctx.intent.md_ts,
        ctx,
        "the decision's market data",
    )


def _price_age(ctx: CheckContext) -> Verdict | None:
    return _age(Check.PRICE_AGE, ctx.limits.max_price_age, ctx.market.received_at, ctx, "quote")


def _balance_age(ctx: CheckContext) -> Verdict | None:
    return _age(
        Check.BALANCE_AGE,
        ctx.limits.max_balance_age,
        ctx.account.balances_received_at,
        ctx,
        "balance snapshot",
    )


def _daily_loss(ctx: CheckContext) -> Verdict | None:
    limit = ctx.limits.max_daily_loss
    if limit is None:
        return None
    pnl = ctx.account.pnl_today
    if pnl is None:
        return _reject(Check.DAILY_LOSS, limit, MISSING, "today's P&L is not known")
    loss = -pnl
    if loss > limit:
        return _reject(Check.DAILY_LOSS, limit, loss, f"daily loss {loss} exceeds {limit}: halting")
    return _pass(ctx, Check.DAILY_LOSS, limit, loss)


def _drawdown(ctx: CheckContext) -> Verdict | None:
    limit = ctx.limits.max_drawdown
    if limit is None:
        return None
    equity, peak = ctx.account.equity, ctx.account.peak_equity
    if equity is None or peak is None:
        return _reject(Check.DRAWDOWN, limit, MISSING, "equity or peak equity is not known")
    drawdown = peak - equity
    if drawdown > limit:
        return _reject(
            Check.DRAWDOWN,
            limit,
            drawdown,
            f"drawdown {drawdown} from peak {peak} exceeds {limit}: halting",
        )
    return _pass(ctx, Check.DRAWDOWN, limit, drawdown)


def _order_rate(ctx: CheckContext) -> Verdict | None:
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
    return _pass(ctx, Check.ORDER_RATE, limit, recent)


def _spread_bps(ctx: CheckContext) -> Decimal | None:
    bid, ask, mid = ctx.market.bid, ctx.market.ask, ctx.market.mid
    if bid is None or ask is None or mid is None or mid <= 0:
        return None
    return (ask - bid) / mid * BPS


def _min_spread(ctx: CheckContext) -> Verdict | None:
    limit = ctx.limits.min_spread_bps
    if limit is None:
        return None
    spread = _spread_bps(ctx)
    if spread is None:
        return _reject(Check.MIN_SPREAD, limit, MISSING, f"no two-sided quote for {ctx.symbol}")
    if spread < limit:
        return _reject(
            Check.MIN_SPREAD,
            limit,
            spread,
            f"spread {spread} bps below {limit}: crossed or stale book?",
        )
    return _pass(ctx, Check.MIN_SPREAD, limit, spread)


def _max_spread(ctx: CheckContext) -> Verdict | None:
    limit = ctx.limits.max_spread_bps
    if limit is None:
        return None
    spread = _spread_bps(ctx)
    if spread is None:
        return _reject(Check.MAX_SPREAD, limit, MISSING, f"no two-sided quote for {ctx.symbol}")
    if spread > limit:
        return _reject(Check.MAX_SPREAD, limit, spread, f"spread {spread} bps wider than {limit}")
    return _pass(ctx, Check.MAX_SPREAD, limit, spread)


def _price_band(ctx: CheckContext) -> Verdict | None:
    limit = ctx.limits.price_band_bps
    if limit is None:
        return None
    price = ctx.intent.limit_price
    if price is None:
        return _pass(
            ctx, Check.PRICE_BAND, limit, "market order", "no limit price: executes at the touch"
        )
    mid = ctx.market.mid
    if mid is None or mid <= 0:
        return _reject(
            Check.PRICE_BAND,
            limit,
            MISSING,
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
    return _pass(ctx, Check.PRICE_BAND, limit, distance)


def _fat_finger(ctx: CheckContext) -> Verdict | None:
    multiple = ctx.limits.fat_finger_multiple
    if multiple is None:
        return None
    typical = ctx.account.typical_order_qty
    if typical is None or typical <= 0:
        return _reject(
            Check.FAT_FINGER, multiple, MISSING, "the strategy's typical order size is not known"
        )
    return _size(ctx, Check.FAT_FINGER, multiple, ctx.qty / typical, multiple * typical)


def _order_qty(ctx: CheckContext) -> Verdict | None:
    limit = ctx.limits.max_order_qty
    if limit is None:
        return None
    return _size(ctx, Check.ORDER_QTY, limit, ctx.qty, limit)


def _order_notional(ctx: CheckContext) -> Verdict | None:
    limit = ctx.limits.max_order_notional
    if limit is None:
        return None
    price = ctx.price()
    if price is None:
        return _reject(Check.ORDER_NOTIONAL, limit, MISSING, ctx.price_missing())
    max_qty = limit / price
    return _size(ctx, Check.ORDER_NOTIONAL, limit, ctx.qty * price, max_qty)


def _volume_fraction(ctx: CheckContext) -> Verdict | None:
    fraction = ctx.limits.max_volume_fraction
    if fraction is None:
        return None
    volume = ctx.market.recent_volume
    window = _seconds(ctx.limits.volume_window)
    if volume is None:
        return _reject(
            Check.VOLUME_FRACTION,
            fraction,
            MISSING,
            f"recent volume of {ctx.symbol} (over {window}) is not known",
        )
    observed = ctx.qty / volume if volume > 0 else "no volume"
    basis = f"volume {_text(volume)} over {window}"
    return _size(ctx, Check.VOLUME_FRACTION, fraction, observed, fraction * volume, basis)


def _depth_fraction(ctx: CheckContext) -> Verdict | None:
    fraction = ctx.limits.max_depth_fraction
    if fraction is None:
        return None
    # the side the order takes from: a buy lifts the ask, a sell hits the bid
    touch = "ask" if ctx.side is Side.BUY else "bid"
    depth = ctx.market.ask_size if ctx.side is Side.BUY else ctx.market.bid_size
    if depth is None:
        return _reject(Check.DEPTH_FRACTION, fraction, MISSING, f"no {touch} size for {ctx.symbol}")
    observed = ctx.qty / depth if depth > 0 else f"no {touch} size"
    basis = f"{touch} size {_text(depth)}"
    return _size(ctx, Check.DEPTH_FRACTION, fraction, observed, fraction * depth, basis)


def _max_growth(exposure: Exposure, side: Side, room: Decimal) -> Decimal:
    """The largest order on ``side`` that keeps the worst-case position within ``room`` (a
    magnitude), or that only reduces the position when it is already beyond it."""
    along = exposure.worst_case(side)
    return max(ZERO, max(room, ZERO) - along)


def _position_qty(ctx: CheckContext) -> Verdict | None:
    limit = ctx.limits.position_qty_limit(ctx.symbol)
    if limit is None:
        return None
    exposure = ctx.account.strategy_exposure.get(ctx.symbol, NO_EXPOSURE)
    after = exposure.worst_case(ctx.side) + ctx.qty
    return _size(ctx, Check.POSITION_QTY, limit, after, _max_growth(exposure, ctx.side, limit))


def _position_notional(ctx: CheckContext) -> Verdict | None:
    limit = ctx.limits.position_notional_limit(ctx.symbol)
    if limit is None:
        return None
    price = ctx.price()
    if price is None:
        return _reject(Check.POSITION_NOTIONAL, limit, MISSING, ctx.price_missing())
    exposure = ctx.account.strategy_exposure.get(ctx.symbol, NO_EXPOSURE)
    after = (exposure.worst_case(ctx.side) + ctx.qty) * price
    room = limit / price
    return _size(ctx, Check.POSITION_NOTIONAL, limit, after, _max_growth(exposure, ctx.side, room))


def _symbol_qty(ctx: CheckContext) -> Verdict | None:
    limit = ctx.limits.max_symbol_position.get(ctx.symbol)
    if limit is None:
        return None
    exposure = ctx.account.account_exposure.get(ctx.symbol, NO_EXPOSURE)
    after = exposure.worst_case(ctx.side) + ctx.qty
    return _size(ctx, Check.SYMBOL_QTY, limit, after, _max_growth(exposure, ctx.side, limit))


def _symbol_notional(ctx: CheckContext) -> Verdict | None:
    limit = ctx.limits.max_symbol_notional.get(ctx.symbol)
    if limit is None:
        return None
    price = ctx.price()
    if price is None:
        return _reject(Check.SYMBOL_NOTIONAL, limit, MISSING, ctx.price_missing())
    exposure = ctx.account.account_exposure.get(ctx.symbol, NO_EXPOSURE)
    after = (exposure.worst_case(ctx.side) + ctx.qty) * price
    room = limit / price
    return _size(ctx, Check.SYMBOL_NOTIONAL, limit, after, _max_growth(exposure, ctx.side, room))


def _position_equity(ctx: CheckContext) -> Verdict | None:
    pct = ctx.limits.max_position_equity_pct
    if pct is None:
        return None
    price = ctx.price()
    if price is None:
        return _reject(Check.POSITION_EQUITY, pct, MISSING, ctx.price_missing())
    cash = ctx.account.cash
    if cash is None:
        return _reject(
            Check.POSITION_EQUITY, pct, MISSING, "the account's cash balance is not known"
        )
    equity = cash
    for symbol, exposure in sorted(ctx.account.account_exposure.items()):
        if exposure.position == 0:
            continue
        mark = price if symbol == ctx.symbol else ctx.account.marks.get(symbol)
        if mark is None:
            return _reject(
                Check.POSITION_EQUITY, pct, MISSING, f"no mark for {symbol} to value the equity"
            )
        equity += exposure.position * mark
    exposure = ctx.account.account_exposure.get(ctx.symbol, NO_EXPOSURE)
    allowed = max(equity, ZERO) * pct / 100
    after = abs(exposure.worst_case(ctx.side) + ctx.qty) * price
    observed = after / equity * 100 if equity > 0 else "no equity"
    room = allowed / price
    basis = f"notional {_text(after)} of equity {_text(equity)}"
    return _size(
        ctx, Check.POSITION_EQUITY, pct, observed, _max_growth(exposure, ctx.side, room), basis
    )


def _others_in_category(
    ctx: CheckContext, check: Check, limit: Decimal, category: str, *, net: bool
) -> Decimal | Verdict:
    """The category's notional outside this symbol: gross (magnitudes), or net along the
    order's side (what it adds to); a missing mark rejects."""
    total = ZERO
    for symbol, exposure in sorted(ctx.account.account_exposure.items()):
        if symbol == ctx.symbol or ctx.limits.categories.get(symbol) != category:
            continue
        qty = exposure.worst_case(ctx.side) if net else exposure.gross()
        if qty == 0:
            continue
        mark = ctx.account.marks.get(symbol)
        if mark is None:
            return _reject(check, limit, MISSING, f"no mark for {symbol} in category {category}")
        total += qty * mark
    return total


def _category(ctx: CheckContext, check: Check, *, net: bool) -> Verdict | None:
    category = ctx.limits.categories.get(ctx.symbol)
    if category is None:
        return None
    limits = ctx.limits.max_category_net if net else ctx.limits.max_category_gross
    limit = limits.get(category)
    if limit is None:
        return None
    price = ctx.price()
    if price is None:
        return _reject(check, limit, MISSING, ctx.price_missing())
    others = _others_in_category(ctx, check, limit, category, net=net)
    if isinstance(others, Verdict):
        return others
    exposure = ctx.account.account_exposure.get(ctx.symbol, NO_EXPOSURE)
    along = exposure.worst_case(ctx.side) + ctx.qty
    after = others + (along if net else abs(along)) * price
    room = (limit - others) / price
    basis = f"category {category}"
    return _size(ctx, check, limit, after, _max_growth(exposure, ctx.side, room), basis)


def _category_gross(ctx: CheckContext) -> Verdict | None:
    return _category(ctx, Check.CATEGORY_GROSS, net=False)


def _category_net(ctx: CheckContext) -> Verdict | None:
    return _category(ctx, Check.CATEGORY_NET, net=True)


def _account_exposure(ctx: CheckContext) -> Verdict | None:
    limit = ctx.limits.max_account_exposure
    if limit is None:
        return None
    price = ctx.price()
    if price is None:
        return _reject(Check.ACCOUNT_EXPOSURE, limit, MISSING, ctx.price_missing())
    others = ZERO
    for symbol, exposure in sorted(ctx.account.account_exposure.items()):
        if symbol == ctx.symbol or exposure.gross() == 0:
            continue
        mark = ctx.account.marks.get(symbol)
        if mark is None:
            return _reject(
                Check.ACCOUNT_EXPOSURE,
                limit,
                MISSING,
                f"no mark for {symbol} to value the account's position",
            )
        others += exposure.gross() * mark
    exposure = ctx.account.account_exposure.get(ctx.symbol, NO_EXPOSURE)
    after = others + abs(exposure.worst_case(ctx.side) + ctx.qty) * price
    room = (limit - others) / price
    return _size(ctx, Check.ACCOUNT_EXPOSURE, limit, after, _max_growth(exposure, ctx.side, room))


CHECKS: Mapping[Check, Callable[[CheckContext], Verdict | None]] = MappingProxyType(
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
        Check.DEPTH_FRACTION: _depth_fraction,
        Check.POSITION_QTY: _position_qty,
        Check.POSITION_NOTIONAL: _position_notional,
        Check.SYMBOL_QTY: _symbol_qty,
        Check.SYMBOL_NOTIONAL: _symbol_notional,
        Check.POSITION_EQUITY: _position_equity,
        Check.CATEGORY_GROSS: _category_gross,
        Check.CATEGORY_NET: _category_net,
        Check.ACCOUNT_EXPOSURE: _account_exposure,
    }
)


def _category_limit(limits: Limits, symbol: Symbol, net: bool) -> object:
    category = limits.categories.get(symbol)
    if category is None:
        return None
    return (limits.max_category_net if net else limits.max_category_gross).get(category)


#: for each check, the limit whose absence makes it say nothing (return ``None``) for a symbol:
#: exactly the first test of each function above
_CONFIGURED: Mapping[Check, Callable[[Limits, Symbol], object]] = MappingProxyType(
    {
        Check.INPUT_AGE: lambda lim, sym: lim.max_input_age,
        Check.PRICE_AGE: lambda lim, sym: lim.max_price_age,
        Check.BALANCE_AGE: lambda lim, sym: lim.max_balance_age,
        Check.DAILY_LOSS: lambda lim, sym: lim.max_daily_loss,
        Check.DRAWDOWN: lambda lim, sym: lim.max_drawdown,
        Check.ORDER_RATE: lambda lim, sym: lim.max_orders_per_minute,
        Check.MIN_SPREAD: lambda lim, sym: lim.min_spread_bps,
        Check.MAX_SPREAD: lambda lim, sym: lim.max_spread_bps,
        Check.PRICE_BAND: lambda lim, sym: lim.price_band_bps,
        Check.FAT_FINGER: lambda lim, sym: lim.fat_finger_multiple,
        Check.ORDER_QTY: lambda lim, sym: lim.max_order_qty,
        Check.ORDER_NOTIONAL: lambda lim, sym: lim.max_order_notional,
        Check.VOLUME_FRACTION: lambda lim, sym: lim.max_volume_fraction,
        Check.DEPTH_FRACTION: lambda lim, sym: lim.max_depth_fraction,
        Check.POSITION_QTY: lambda lim, sym: lim.position_qty_limit(sym),
        Check.POSITION_NOTIONAL: lambda lim, sym: lim.position_notional_limit(sym),
        Check.SYMBOL_QTY: lambda lim, sym: lim.max_symbol_position.get(sym),
        Check.SYMBOL_NOTIONAL: lambda lim, sym: lim.max_symbol_notional.get(sym),
        Check.POSITION_EQUITY: lambda lim, sym: lim.max_position_equity_pct,
        Check.CATEGORY_GROSS: lambda lim, sym: _category_limit(lim, sym, net=False),
        Check.CATEGORY_NET: lambda lim, sym: _category_limit(lim, sym, net=True),
        Check.ACCOUNT_EXPOSURE: lambda lim, sym: lim.max_account_exposure,
    }
)


def applicable_checks(
    limits: Limits, symbol: Symbol, checks: Sequence[Check] = CHECK_ORDER
) -> tuple[Check, ...]:
    """``checks`` less those ``limits`` do not configure for ``symbol`` (which would say
    nothing): a caller that evaluates many orders of one symbol under the same limits computes
    this once and passes it to :func:`~engine.domain.risk.evaluator.evaluate`, instead of
    calling every unconfigured check for every order."""
    return tuple(c for c in checks if _CONFIGURED[c](limits, symbol) is not None)
