"""Replay OHLCV bars through a strategy and the paper venue, and report how it would have done.

The strategy code is the live code, run by the live :class:`~engine.strategy_host.StrategyHost`
(same snapshots, same decision keys, same isolation), and its orders go to the same
:class:`~engine.venues.paper.PaperVenue` that paper trading uses. Only the market is replayed.

The execution model, seeded by ``seed`` so that a run repeats exactly:

- Each bar is walked as quotes open → low/high (the nearer extreme first, by the bar's
  direction) → close, each ``spread_bps`` wide, so resting limit orders fill when the bar's
  range crosses them (as maker, at their price).
- At the bar's close the strategy decides (bar strategies on the closed bar, quote strategies on
  the closing quote). Its orders reach the venue after a latency drawn from an exponential
  distribution of mean ``latency_ms``; meanwhile the price moves by a Gaussian step scaled by the
  bar's range and the square root of the latency's share of the bar (a random walk's scaling).
  That *arrival quote* is what the orders meet.
- The size shown at each quote is ``participation × bar volume × U(0.25, 1)``: an order larger
  than that fills partially, and the rest expires (market / IOC) or rests (GTC).

Slippage is measured per fill against the mid price the decision was made on (the bar's close),
in basis points, positive when it cost us. P&L is folded from the fills with
:mod:`engine.domain.positions` (average cost, fees included) and marked at each bar's close for
the equity curve and its maximum drawdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from pathlib import Path
from types import MappingProxyType

from engine.domain.ids import client_order_id
from engine.domain.intents import Buy, Cancel, Hold, Intent, Sell
from engine.domain.market import Bar, Quote
from engine.domain.positions import Position, PositionFill, apply_fill, total_pnl, unrealized
from engine.domain.types import (
    Asset,
    ClientOrderId,
    OrderState,
    OrderType,
    StrategyId,
    Symbol,
    VenueOrderStatus,
)
from engine.exceptions import Definitive, NotFound, TradectlError
from engine.marketdata.bars import interval_name
from engine.marketdata.conflator import Conflator, Update
from engine.strategy_host import HostedStrategy, StrategyHost
from engine.venues.base import FillReport, InstrumentRules, OrderReport, OrderRequest
from engine.venues.paper import DEFAULT_RULES, PaperVenue
from strategies.base import DecisionMode, OpenOrder, StrategyLimits
from strategies.registry import create_strategy

_ZERO = Decimal(0)
_BPS = Decimal(10_000)
_COLUMNS = ("date", "open", "high", "low", "close", "volume")
_MAX_REJECTION_SAMPLES = 5
_DEFAULT_SYMBOL = Symbol("BTCUSDT")


class BacktestDataError(TradectlError):
    """The OHLCV file cannot be used; the message names the file, line and column."""


class BacktestError(TradectlError):
    """The backtest could not run (bad settings, unknown strategy, a strategy that raised)."""


# --- reading OHLCV -----------------------------------------------------------------------------


def _parse_time(text: str) -> datetime:
    value = text.strip()
    if value.endswith("Z"):
        value = value[:-1] + "+00:00"
    parsed = datetime.fromisoformat(value)
    if len(value) == 10:  # a bare date: the bar opens at midnight UTC
        return datetime.combine(parsed.date(), time(0), tzinfo=UTC)
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def read_ohlcv(path: Path, symbol: Symbol) -> list[Bar]:
    """Read ``Date,Open,High,Low,Close,Volume`` (header names in any case; extra columns are
    ignored). Dates or ISO datetimes (naive means UTC), strictly increasing and evenly spaced
    by the first step, which is the bar interval."""
    try:
        handle = path.open(newline="", encoding="utf-8-sig")
    except OSError as exc:
        raise BacktestDataError(f"{path}: cannot read OHLCV data: {exc.strerror}") from None
    with handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None:
            raise BacktestDataError(f"{path}: empty file; expected a header {_header()}")
        names = [h.strip().lower() for h in header]
        missing = [c for c in _COLUMNS if c not in names]
        if missing:
            raise BacktestDataError(
                f"{path} line 1: missing column(s) {', '.join(m.title() for m in missing)}; "
                f"expected a header {_header()}"
            )
        index = {c: names.index(c) for c in _COLUMNS}
        rows = [(reader.line_num, row) for row in reader if any(cell.strip() for cell in row)]
    if len(rows) < 2:
        raise BacktestDataError(f"{path}: needs at least 2 bars to know the interval")

    bars: list[Bar] = []
    interval: timedelta | None = None
    name = ""
    for line, row in rows:

        def cell(column: str, line: int = line, row: list[str] = row) -> str:
            i = index[column]
            if i >= len(row) or not row[i].strip():
                raise BacktestDataError(f"{path} line {line}, column {column.title()}: empty")
            return row[i].strip()

        def number(column: str, line: int = line) -> Decimal:
            raw = cell(column)
            try:
                value = Decimal(raw)
            except InvalidOperation:
                value = Decimal("NaN")
            if not value.is_finite() or value < 0 or (column != "volume" and value == 0):
                kind = "a number >= 0" if column == "volume" else "a positive number"
                raise BacktestDataError(
                    f"{path} line {line}, column {column.title()}: expected {kind}, got {raw!r}"
                )
            return value

        raw_date = cell("date")
        try:
            opened = _parse_time(raw_date)
        except ValueError:
            raise BacktestDataError(
                f"{path} line {line}, column Date: expected a date (2024-01-31) or an ISO "
                f"datetime (2024-01-31T14:00:00Z), got {raw_date!r}"
            ) from None
        o, h, lo, c, v = (number(col) for col in ("open", "high", "low", "close", "volume"))
        if h < max(o, c, lo) or lo > min(o, c):
            raise BacktestDataError(
                f"{path} line {line}, column High/Low: high {h} / low {lo} do not bound "
                f"open {o} and close {c}"
            )
        if bars:
            step = opened - bars[-1].open_time
            if step <= timedelta(0):
                raise BacktestDataError(
                    f"{path} line {line}, column Date: {raw_date} is not after the previous row"
                )
            if interval is None:
                interval = step
                try:
                    name = interval_name(interval)
                except ValueError as exc:
                    raise BacktestDataError(f"{path} line {line}, column Date: {exc}") from None
                bars[0] = _with_interval(bars[0], interval, name)
        span = interval or timedelta(0)
        bars.append(
            Bar(
                symbol=symbol,
                interval=name,
                open_time=opened,
                close_time=opened + span,
                open=o,
                high=h,
                low=lo,
                close=c,
                volume=v,
                closed=True,
                received_at=opened + span,
            )
        )
    return bars


def _with_interval(bar: Bar, interval: timedelta, name: str) -> Bar:
    return Bar(
        symbol=bar.symbol,
        interval=name,
        open_time=bar.open_time,
        close_time=bar.open_time + interval,
        open=bar.open,
        high=bar.high,
        low=bar.low,
        close=bar.close,
        volume=bar.volume,
        closed=True,
        received_at=bar.open_time + interval,
    )


def _header() -> str:
    return ",".join(c.title() for c in _COLUMNS)


# --- settings and report -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class BacktestSettings:
    symbol: Symbol = _DEFAULT_SYMBOL
    #: quote-asset cash at the start; the base asset starts at zero
    capital: Decimal = Decimal(100_000)
    spread_bps: Decimal = Decimal(2)
    latency_ms: Decimal = Decimal(50)
    participation: Decimal = Decimal("0.0001")
    maker_fee: Decimal = Decimal("0.001")
    taker_fee: Decimal = Decimal("0.001")
    limits: StrategyLimits = field(default_factory=StrategyLimits)
    #: trading rules; ``None`` uses the paper venue's defaults for the symbol, else generic ones
    rules: InstrumentRules | None = None
    #: charge every fee in the quote asset (prediction markets), not in the asset received
    fees_in_quote: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class BacktestReport:
    strategy: str
    params: Mapping[str, str]
    symbol: Symbol
    seed: int
    data: str
    bars: int
    start: datetime
    end: datetime
    decisions: int
    holds: int
    orders: int
    rejected: int
    #: orders that filled only in part (the rest expired, was canceled, or still rests)
    partially_filled: int
    trades: tuple[FillReport, ...]
    requested_qty: Decimal
    filled_qty: Decimal
    #: filled / requested quantity over every accepted order
    fill_rate: Decimal | None
    #: every fee valued in the quote asset (base-asset fees at their fill price)
    fees: Decimal
    realized_pnl: Decimal
    unrealized_pnl: Decimal
    #: realized + unrealized at the last close: equals the cash-flow P&L of the fills
    pnl: Decimal
    final_position: Decimal
    last_price: Decimal
    #: quantity-weighted, against the decision's mid; positive = cost
    avg_slippage_bps: Decimal | None
    start_equity: Decimal
    end_equity: Decimal
    max_drawdown: Decimal
    max_drawdown_pct: Decimal
    rejections: tuple[str, ...] = ()


def render_report(report: BacktestReport) -> str:
    def money(value: Decimal) -> str:
        return f"{value.quantize(Decimal('0.01'), rounding=ROUND_HALF_EVEN):,}"

    params = " ".join(f"{k}={v}" for k, v in sorted(report.params.items())) or "(defaults)"
    fill_rate = "n/a" if report.fill_rate is None else f"{report.fill_rate * 100:.2f}%"
    slip = "n/a" if report.avg_slippage_bps is None else f"{report.avg_slippage_bps:.2f} bps"
    lines = [
        f"Backtest  {report.strategy} on {report.symbol}  seed {report.seed}",
        f"  data            {report.data}",
        f"  params          {params}",
        f"  period          {report.start.isoformat()} .. {report.end.isoformat()}"
        f"  ({report.bars} bars)",
        f"  decisions       {report.decisions} ({report.holds} holds)",
        f"  orders          {report.orders} accepted, {report.rejected} rejected, "
        f"{report.partially_filled} partially filled",
        f"  trades (fills)  {len(report.trades)}",
        f"  fill rate       {fill_rate}  ({report.filled_qty} of {report.requested_qty})",
        f"  avg slippage    {slip}",
        f"  fees            {money(report.fees)}",
        f"  realized P&L    {money(report.realized_pnl)}",
        f"  unrealized P&L  {money(report.unrealized_pnl)}"
        f"  (position {report.final_position} @ {report.last_price})",
        f"  total P&L       {money(report.pnl)}",
        f"  equity          {money(report.start_equity)} -> {money(report.end_equity)}",
        f"  max drawdown    {money(report.max_drawdown)} ({report.max_drawdown_pct:.2f}%)",
    ]
    lines.extend(f"  rejected: {reason}" for reason in report.rejections)
    return "\n".join(lines)


# --- the replay --------------------------------------------------------------------------------


def run_backtest(
    data: Path,
    strategy: str,
    params: dict[str, str],
    seed: int,
    *,
    settings: BacktestSettings | None = None,
) -> BacktestReport:
    """Replay ``data`` (an OHLCV CSV) through the strategy kind ``strategy`` with ``params``.

    Runs its own event loop: call it from synchronous code (the CLI), not from a coroutine;
    there, ``await Replay(...).run()``."""
    settings = settings or BacktestSettings()
    bars = read_ohlcv(data, settings.symbol)
    replay = Replay(bars, strategy, params, seed, settings=settings, data_name=str(data))
    return asyncio.run(replay.run())


def _generic_rules(symbol: Symbol) -> InstrumentRules:
    base, quote = (symbol[:-4], symbol[-4:]) if symbol.endswith("USDT") else (symbol, "USD")
    return InstrumentRules(
        symbol=symbol,
        base_asset=Asset(base or symbol),
        quote_asset=Asset(quote),
        tick_size=Decimal("0.01"),
        step_size=Decimal("0.00001"),
        min_qty=Decimal("0.00001"),
        max_qty=Decimal(1_000_000),
    )


class Replay:
    """One backtest run. ``run`` may be awaited once."""

    def __init__(
        self,
        bars: Sequence[Bar],
        strategy: str,
        params: Mapping[str, str],
        seed: int,
        *,
        settings: BacktestSettings,
        data_name: str = "<bars>",
    ) -> None:
        if not bars:
            raise BacktestError("no bars to replay")
        for what, value in (
            ("capital", settings.capital),
            ("participation", settings.participation),
        ):
            if value <= 0:
                raise BacktestError(f"backtest setting {what} must be > 0, got {value}")
        if settings.spread_bps < 0 or settings.latency_ms < 0:
            raise BacktestError("backtest settings spread_bps and latency_ms must be >= 0")
        self.bars = list(bars)
        self.kind = strategy
        self.params = MappingProxyType(dict(params))
        self.seed = seed
        self.settings = settings
        self.data_name = data_name
        self.symbol = settings.symbol
        self.rules = settings.rules or DEFAULT_RULES.get(self.symbol) or _generic_rules(self.symbol)
        self._rng = random.Random(f"backtest:{seed}")
        self._now = self.bars[0].open_time
        self.venue = PaperVenue(
            rules={self.symbol: self.rules},
            balances={self.rules.quote_asset: settings.capital},
            seed=seed,
            clock=lambda: self._now,
            maker_fee=settings.maker_fee,
            taker_fee=settings.taker_fee,
            fees_in_quote=[self.symbol] if settings.fees_in_quote else [],
        )
        try:
            built = create_strategy(strategy, StrategyId(f"bt-{strategy}"), [self.symbol], params)
        except (KeyError, ValueError) as exc:
            raise BacktestError(f"strategy {strategy!r}: {exc}") from None
        self.hosted = HostedStrategy(
            strategy=built,
            params=self.params,
            limits=settings.limits,
            bar_interval=self.bars[0].interval,
        )
        self.conflator = Conflator()
        self.host = StrategyHost(
            conflator=self.conflator,
            portfolio=self,
            sink=self._execute,
            on_strategy_failure=self._strategy_failed,
            is_paused=self._never_paused,
            clock=lambda: self._now,
        )
        self.host.add(self.hosted)

        self._position = Position(
            base_asset=self.rules.base_asset, quote_asset=self.rules.quote_asset, symbol=self.symbol
        )
        self._fills_seen = 0
        self._decision_price: dict[ClientOrderId, Decimal] = {}
        self._submitted: set[ClientOrderId] = set()
        self._pending: list[OrderRequest] = []
        self._decision_mid = _ZERO
        self._holds = 0
        self._rejected: list[str] = []
        self._equity_peak = settings.capital
        self._max_drawdown = _ZERO
        self._max_drawdown_pct = _ZERO
        self._fees = _ZERO

    # -- PortfolioProvider: what the strategy holds, from the venue's fills ----------------

    async def inventory(self, strategy_id: StrategyId) -> Mapping[Symbol, Decimal]:
        self._fold_fills()
        return {self.symbol: self._position.quantity}

    async def open_orders(self, strategy_id: StrategyId) -> Sequence[OpenOrder]:
        return tuple(_open_order(r) for r in await self.venue.open_orders(self.symbol))

    # -- the run ---------------------------------------------------------------------------

    async def run(self) -> BacktestReport:
        try:
            for bar in self.bars:
                self._walk_bar(bar)
                self._now = bar.close_time
                self._fold_fills()
                self._mark(bar.close)
                await self._decide(bar)
                self._arrive(bar)
                await self._submit_pending()
            self._fold_fills()
            self._mark(self.bars[-1].close)
            return await self._report()
        finally:
            await self.venue.close()

    def _walk_bar(self, bar: Bar) -> None:
        """Quotes along the bar's path, so resting orders meet its whole range."""
        extremes = (bar.low, bar.high) if bar.close >= bar.open else (bar.high, bar.low)
        third = (bar.close_time - bar.open_time) / 3
        for n, price in enumerate((bar.open, *extremes)):
            self._now = bar.open_time + n * third
            self.venue.set_quote(self._quote(price, bar))

    async def _decide(self, bar: Bar) -> None:
        closing = self._quote(bar.close, bar)
        self._decision_mid = closing.mid
        self.venue.set_quote(closing)
        self.conflator.publish(closing)
        self.conflator.publish(bar)
        mode = self.hosted.strategy.mode
        update = Update(
            quotes=frozenset({self.symbol}) if mode is DecisionMode.QUOTE else frozenset(),
            closed_bars=(bar,) if mode is DecisionMode.BAR else (),
        )
        await self.host.handle(self.hosted, update)

    def _arrive(self, bar: Bar) -> None:
        """The quote the decided orders meet after the latency."""
        if not self._pending:
            return
        mean = float(self.settings.latency_ms)
        latency_ms = self._rng.expovariate(1.0 / mean) if mean > 0 else 0.0
        bar_ms = (bar.close_time - bar.open_time) / timedelta(milliseconds=1)
        share = math.sqrt(latency_ms / bar_ms) if bar_ms > 0 else 0.0
        z = self._rng.gauss(0.0, 1.0)
        rel_range = (bar.high - bar.low) / bar.close
        # The float only sizes the step; the price itself stays Decimal on the tick grid.
        step = Decimal(repr(round(z * share, 12))) * rel_range * bar.close
        self._now = bar.close_time + timedelta(milliseconds=latency_ms)
        self.venue.set_quote(self._quote(bar.close + step, bar))

    def _quote(self, mid: Decimal, bar: Bar) -> Quote:
        tick = self.rules.tick_size
        half = max(mid * self.settings.spread_bps / _BPS / 2, tick)
        bid = _to_tick(mid - half, tick)
        ask = _to_tick(mid + half, tick)
        if ask <= bid:
            ask = bid + tick
        bid = max(bid, tick)
        size_factor = Decimal(repr(round(self._rng.uniform(0.25, 1.0), 6)))
        size = self.rules.round_quantity(bar.volume * self.settings.participation * size_factor)
        return Quote(
            symbol=self.symbol,
            bid=bid,
            bid_size=size,
            ask=ask,
            ask_size=size,
            venue_ts=self._now,
            received_at=self._now,
        )

    # -- execution -------------------------------------------------------------------------

    async def _execute(self, intent: Intent) -> None:
        """The sink: what the execution coroutine does live, minus the ledger."""
        if isinstance(intent, Hold):
            self._holds += 1
            return
        if isinstance(intent, Cancel):
            # NotFound means already closed: the same answer the live path accepts.
            with contextlib.suppress(NotFound):
                await self.venue.cancel(self.symbol, intent.client_order_id)
            return
        coid = client_order_id("bt", intent.key)
        if coid in self._submitted:
            return  # the same decision key again: reserved once, as the ledger would
        self._submitted.add(coid)
        self._decision_price[coid] = self._decision_mid
        self._pending.append(_request(intent, coid, self.rules))

    async def _submit_pending(self) -> None:
        pending, self._pending = self._pending, []
        for request in pending:
            if request.quantity <= 0:
                self._reject(request, "quantity rounds to zero at the step size")
                continue
            try:
                await self.venue.submit(request)
            except Definitive as exc:
                self._reject(request, str(exc))

    def _reject(self, request: OrderRequest, reason: str) -> None:
        self._rejected.append(
            f"{self._now.isoformat()} {request.side} {request.quantity} {request.symbol}: {reason}"
        )

    async def _strategy_failed(self, strategy_id: StrategyId, exc: BaseException) -> None:
        raise BacktestError(
            f"strategy {self.kind!r} raised at {self._now.isoformat()}: {type(exc).__name__}: {exc}"
        ) from exc

    async def _never_paused(self, strategy_id: StrategyId) -> bool:
        return False

    # -- accounting ------------------------------------------------------------------------

    def _fold_fills(self) -> None:
        fills = self.venue.all_fills()
        for fill in fills[self._fills_seen :]:
            self._position = apply_fill(
                self._position,
                PositionFill(
                    side=fill.side,
                    qty=fill.quantity,
                    price=fill.price,
                    fee=fill.fee,
                    fee_asset=fill.fee_asset,
                ),
            )
            self._fees += (
                fill.fee if fill.fee_asset == self.rules.quote_asset else fill.fee * fill.price
            )
        self._fills_seen = len(fills)

    def _mark(self, price: Decimal) -> None:
        equity = self.settings.capital + total_pnl(self._position, price)
        self._equity_peak = max(self._equity_peak, equity)
        drawdown = self._equity_peak - equity
        if drawdown > self._max_drawdown:
            self._max_drawdown = drawdown
            self._max_drawdown_pct = drawdown / self._equity_peak * 100

    async def _report(self) -> BacktestReport:
        orders = [o for o in self.venue.all_orders().orders if o.symbol == self.symbol]
        fills = self.venue.all_fills()
        requested = sum((o.quantity for o in orders), _ZERO)
        filled = sum((o.filled_quantity for o in orders), _ZERO)
        slip_weighted = _ZERO
        for fill in fills:
            assert fill.client_order_id is not None
            ref = self._decision_price[fill.client_order_id]
            slip_weighted += fill.side.sign * (fill.price - ref) / ref * _BPS * fill.quantity
        fill_qty = sum((f.quantity for f in fills), _ZERO)
        last = self.bars[-1].close
        pnl = total_pnl(self._position, last)
        return BacktestReport(
            strategy=self.kind,
            params=self.params,
            symbol=self.symbol,
            seed=self.seed,
            data=self.data_name,
            bars=len(self.bars),
            start=self.bars[0].open_time,
            end=self.bars[-1].close_time,
            decisions=self.host.decisions[self.hosted.strategy_id],
            holds=self._holds,
            orders=len(orders),
            rejected=len(self._rejected),
            partially_filled=sum(1 for o in orders if _ZERO < o.filled_quantity < o.quantity),
            trades=fills,
            requested_qty=requested,
            filled_qty=filled,
            fill_rate=(filled / requested) if requested else None,
            fees=self._fees,
            realized_pnl=self._position.realized_pnl,
            unrealized_pnl=unrealized(self._position, last),
            pnl=pnl,
            final_position=self._position.quantity,
            last_price=last,
            avg_slippage_bps=(slip_weighted / fill_qty) if fill_qty else None,
            start_equity=self.settings.capital,
            end_equity=self.settings.capital + pnl,
            max_drawdown=self._max_drawdown,
            max_drawdown_pct=self._max_drawdown_pct,
            rejections=tuple(self._rejected[:_MAX_REJECTION_SAMPLES]),
        )


def _to_tick(price: Decimal, tick: Decimal) -> Decimal:
    return (price / tick).to_integral_value(rounding=ROUND_HALF_EVEN) * tick


def _request(intent: Buy | Sell, coid: ClientOrderId, rules: InstrumentRules) -> OrderRequest:
    price = (
        None if intent.limit_price is None else rules.round_price(intent.limit_price, intent.side)
    )
    return OrderRequest(
        client_order_id=coid,
        symbol=intent.symbol,
        side=intent.side,
        type=OrderType.MARKET if price is None else OrderType.LIMIT,
        quantity=rules.round_quantity(intent.quantity),
        limit_price=price,
        time_in_force=intent.time_in_force,
    )


def _open_order(report: OrderReport) -> OpenOrder:
    state = (
        OrderState.PARTIALLY_FILLED
        if report.status is VenueOrderStatus.PARTIALLY_FILLED
        else OrderState.OPEN
    )
    return OpenOrder(
        client_order_id=report.client_order_id,
        symbol=report.symbol,
        side=report.side,
        quantity=report.quantity,
        filled_quantity=report.filled_quantity,
        limit_price=report.limit_price,
        state=state,
    )
