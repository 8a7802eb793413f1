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

Persisted (:func:`run_backtest_persisted`, ``tradectl backtest --persist``), the intents take the
live durable path instead of going straight to the venue: :class:`~engine.execution.Execution`
with the :class:`~engine.risk_gate.RiskGate`, the :class:`~engine.ledger.ledger.Ledger` under the
account's lease, and the venue's user stream applied by :class:`~engine.execution.FillPath`, all
on the simulated clock. Same market, same fills, same report; and the ledger can be queried with
the SQL used for live trading.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import dataclasses
import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from pathlib import Path
from types import MappingProxyType
from typing import Protocol

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from engine.controls import LeaseKeeper
from engine.domain.ids import client_order_id
from engine.domain.intents import Buy, Cancel, Hold, Intent, Sell
from engine.domain.market import Bar, Quote
from engine.domain.positions import Position, PositionFill, apply_fill, total_pnl, unrealized
from engine.domain.risk import Limits
from engine.domain.types import (
    AccountId,
    Asset,
    ClientOrderId,
    OrderState,
    OrderType,
    StrategyId,
    Symbol,
    VenueOrderStatus,
    utc_now,
)
from engine.exceptions import Definitive, NotFound, TradectlError
from engine.execution import Execution, ExecutionConfig, FillPath
from engine.ledger.ledger import Ledger
from engine.marketdata.bars import interval_name
from engine.marketdata.conflator import Conflator, Update
from engine.portfolio import Portfolio
from engine.risk_gate import LimitsBook, RiskGate
from engine.strategy_host import HostedStrategy, StrategyHost
from engine.venues.base import FillReport, InstrumentRules, OrderReport, OrderRequest
from engine.venues.paper import DEFAULT_RULES, PRES_YES, PaperVenue
from strategies.base import DecisionMode, OpenOrder, StrategyLimits
from strategies.registry import create_strategy

_ZERO = Decimal(0)
_BPS = Decimal(10_000)
_COLUMNS = ("date", "open", "high", "low", "close", "volume")
_MAX_REJECTION_SAMPLES = 5
_DEFAULT_SYMBOL = Symbol("BTCUSDT")
#: client order id prefix of backtest orders (ids are unique per run: the strategy id is)
ORDER_ID_PREFIX = "bt"
#: symbols whose fees the paper venue charges in the quote asset (prediction markets)
_FEES_IN_QUOTE = frozenset({PRES_YES})


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

    @classmethod
    def for_symbol(cls, symbol: Symbol) -> BacktestSettings:
        """Defaults for ``symbol``: fees in the quote asset on prediction markets, as the
        paper venue charges them there."""
        return cls(symbol=symbol, fees_in_quote=symbol in _FEES_IN_QUOTE)


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
    #: the ledger account the run was recorded under, when it was persisted
    account: AccountId | None = None


def _plain(value: Decimal) -> str:
    """A quantity for people: no exponent, no trailing zeros (``0E-8`` → ``0``, ``2.50`` →
    ``2.5``). Display only; the report keeps the exact values."""
    text = f"{value.normalize():f}"
    return "0" if text in ("-0", "0") else text


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
        f"  fill rate       {fill_rate}  "
        f"({_plain(report.filled_qty)} of {_plain(report.requested_qty)})",
        f"  avg slippage    {slip}",
        f"  fees            {money(report.fees)}",
        f"  realized P&L    {money(report.realized_pnl)}",
        f"  unrealized P&L  {money(report.unrealized_pnl)}"
        f"  (position {_plain(report.final_position)} @ {_plain(report.last_price)})",
        f"  total P&L       {money(report.pnl)}",
        f"  equity          {money(report.start_equity)} -> {money(report.end_equity)}",
        f"  max drawdown    {money(report.max_drawdown)} ({report.max_drawdown_pct:.2f}%)",
    ]
    lines.extend(f"  rejected: {reason}" for reason in report.rejections)
    if report.account is not None:
        lines.append(f"  ledger account  {report.account}")
    return "\n".join(lines)


def ledger_hint(account: str) -> str:
    """One SQL statement that shows a persisted run's decisions, orders and fills."""
    quoted = account.replace("'", "''")
    return (
        "SELECT decided_at, intent, side, quantity, outcome, state, fills, reason "
        f"FROM decision_trace WHERE account = '{quoted}' ORDER BY decided_at;"
    )


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


def default_account(strategy: str, seed: int, now: datetime | None = None) -> AccountId:
    """``backtest-<strategy>-<seed>-<UTC timestamp>``: a fresh ledger account per run."""
    stamp = (now or utc_now()).astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    return AccountId(f"backtest-{strategy}-{seed}-{stamp}")


async def run_backtest_persisted(
    data: Path,
    strategy: str,
    params: dict[str, str],
    seed: int,
    *,
    engine: AsyncEngine,
    account: str | None = None,
    settings: BacktestSettings | None = None,
) -> BacktestReport:
    """:func:`run_backtest`, with every decision, order, event and fill written to the ledger
    at ``engine`` (at the migrations' head) under ``account`` (default
    :func:`default_account`), which must not hold anything yet. Await it on a running loop."""
    settings = settings or BacktestSettings()
    bars = read_ohlcv(data, settings.symbol)
    target = LedgerTarget(
        engine=engine, account=AccountId(account or default_account(strategy, seed))
    )
    replay = Replay(
        bars, strategy, params, seed, settings=settings, data_name=str(data), ledger=target
    )
    return await replay.run()


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


@dataclass(frozen=True, slots=True, kw_only=True)
class LedgerTarget:
    """Where a persisted replay is recorded: a database at the migrations' head, and an account
    that holds nothing yet (the strategy is recorded under the account's name, so that every
    decision and client order id is unique to the run)."""

    engine: AsyncEngine
    account: AccountId


class _ExecutionPath(Protocol):
    """What becomes of the strategy's intents. The market model around it is the same."""

    async def start(self) -> None: ...

    async def heartbeat(self) -> None:
        """Simulated time moved on (a new bar)."""
        ...

    async def decided(self, intent: Hold | Cancel) -> None:
        """A hold or a cancel, acted on at the decision time."""
        ...

    async def submit(self, orders: Sequence[tuple[Buy | Sell, ClientOrderId]]) -> None:
        """Orders reaching the venue, at the arrival quote."""
        ...

    async def settle(self) -> None:
        """The venue moved (quotes, fills): take in what it reported."""
        ...

    async def rejections(self) -> tuple[int, list[str]]:
        """How many orders were refused (risk, controls, venue), and why."""
        ...

    async def close(self) -> None: ...


class _PaperPath:
    """Orders straight to the paper venue: the execution coroutine's outcome, without its
    ledger. Quantities and prices are rounded to the instrument's grid first."""

    def __init__(self, venue: PaperVenue, rules: InstrumentRules, clock: Callable[[], datetime]):
        self.venue = venue
        self.rules = rules
        self.clock = clock
        self._rejected: list[str] = []

    async def start(self) -> None:
        pass

    async def heartbeat(self) -> None:
        pass

    async def decided(self, intent: Hold | Cancel) -> None:
        if isinstance(intent, Cancel):
            # NotFound means already closed: the same answer the live path accepts.
            with contextlib.suppress(NotFound):
                await self.venue.cancel(intent.symbol, intent.client_order_id)

    async def submit(self, orders: Sequence[tuple[Buy | Sell, ClientOrderId]]) -> None:
        for intent, coid in orders:
            request = _request(intent, coid, self.rules)
            if request.quantity <= 0:
                self._reject(request, "quantity rounds to zero at the step size")
                continue
            try:
                await self.venue.submit(request)
            except Definitive as exc:
                self._reject(request, str(exc))

    def _reject(self, request: OrderRequest, reason: str) -> None:
        self._rejected.append(
            f"{self.clock().isoformat()} {request.side} {request.quantity} {request.symbol}: "
            f"{reason}"
        )

    async def settle(self) -> None:
        pass

    async def rejections(self) -> tuple[int, list[str]]:
        return len(self._rejected), self._rejected[:_MAX_REJECTION_SAMPLES]

    async def close(self) -> None:
        pass


_ACCOUNT_IN_USE = text(
    "SELECT EXISTS (SELECT 1 FROM decisions WHERE account = :account)"
    " OR EXISTS (SELECT 1 FROM orders WHERE account = :account)"
)
# Every buy/sell decision that did not become an order on the venue: denied by a risk check or
# a control, refused by the venue, or stopped by the final gate before the wire.
_REFUSED = text(
    """
    SELECT d.decided_at, d.side, d.quantity, d.symbol, d.outcome, d.verdicts,
           o.state, o.last_error
    FROM decisions d
    LEFT JOIN orders o ON o.decision_id = d.decision_id
    WHERE d.account = :account AND d.intent IN ('buy', 'sell')
      AND (d.outcome = 'denied' OR o.state = 'REJECTED'
           OR (o.state = 'EXPIRED' AND o.venue_order_id IS NULL))
    ORDER BY d.decided_at, d.decision_id
    """
)


def _risk_limits(limits: StrategyLimits) -> Limits:
    # The same mapping the engine applies to a strategy's configured limits.
    return Limits(
        max_order_qty=limits.max_order_qty,
        max_order_notional=limits.max_order_notional,
        max_position_qty=limits.max_position,
        max_price_age=limits.max_quote_age,
    )


class _LedgerPath:
    """The live durable path: risk gate, reserve, final gate, submit, ack, and the venue's
    user stream applied by :class:`~engine.execution.FillPath`, under the account's lease,
    all on the replay's simulated clock."""

    def __init__(
        self,
        target: LedgerTarget,
        *,
        venue: PaperVenue,
        conflator: Conflator,
        strategy_id: StrategyId,
        rules: InstrumentRules,
        limits: StrategyLimits,
        bar_interval: timedelta,
        clock: Callable[[], datetime],
    ) -> None:
        self.target = target
        self.account = target.account
        self.ledger = Ledger(target.engine, account=self.account, venue=venue.name, clock=clock)
        # Renewed at every bar: two bars and a minute cover a bar's walk, decision and latency.
        self.lease = LeaseKeeper(self.ledger, ttl=bar_interval * 2 + timedelta(minutes=1))
        self.portfolio = Portfolio(target.engine, self.account)
        self.gate = RiskGate(
            limits=LimitsBook(strategies={strategy_id: _risk_limits(limits)}),
            market=conflator,
            portfolio=self.portfolio,
            clock=clock,
        )
        self.execution = Execution(
            ledger=self.ledger,
            venue=venue,
            gate=self.gate,
            lease=self.lease,
            config=ExecutionConfig(account=self.account, order_id_prefix=ORDER_ID_PREFIX),
            clock=clock,
            on_fills=lambda fills: self.portfolio.mark_dirty(),
        )
        self.fill_path = FillPath(ledger=self.ledger, execution=self.execution)
        self.rules = rules
        # Subscribed now, so no venue event is missed; the paper venue publishes inline.
        self.events = venue.user_stream()

    async def start(self) -> None:
        async with self.target.engine.connect() as conn:
            used = (await conn.execute(_ACCOUNT_IN_USE, {"account": self.account})).scalar()
        if used:
            raise BacktestError(
                f"ledger account {self.account!r} already holds decisions or orders; a "
                "backtest records into a fresh account: choose another --account"
            )
        await self.lease.acquire()
        await self.portfolio.refresh()

    async def heartbeat(self) -> None:
        await self.ledger.leases.renew(self.lease.holder, self.lease.epoch, self.lease.ttl)

    async def decided(self, intent: Hold | Cancel) -> None:
        await self.execution.process([intent])
        await self.settle()

    async def submit(self, orders: Sequence[tuple[Buy | Sell, ClientOrderId]]) -> None:
        # One batch, as the execution coroutine takes what is queued; it derives the same
        # client order ids from the decision keys.
        await self.execution.process([_on_grid(intent, self.rules) for intent, _ in orders])
        await self.settle()

    async def settle(self) -> None:
        for event in self.events.drain():
            await self.fill_path.apply(event)

    async def rejections(self) -> tuple[int, list[str]]:
        async with self.target.engine.connect() as conn:
            rows = (await conn.execute(_REFUSED, {"account": self.account})).all()
        samples = []
        for decided_at, side, qty, symbol, outcome, verdicts, state, last_error in rows[
            :_MAX_REJECTION_SAMPLES
        ]:
            if outcome == "denied":
                failed = [v for v in verdicts or () if v.get("result") != "pass"]
                why = "; ".join(
                    f"{v['check']}: {v.get('message') or v.get('observed')}" for v in failed
                )
                why = f"denied ({why or 'no verdict'})"
            else:
                why = f"{state}: {last_error}"
            samples.append(f"{decided_at.isoformat()} {side} {_plain(qty)} {symbol}: {why}")
        return len(rows), samples

    async def close(self) -> None:
        try:
            await self.events.aclose()
        finally:
            if not self.lease.lost:
                with contextlib.suppress(TradectlError):
                    await self.lease.release()


class Replay:
    """One backtest run. ``run`` may be awaited once.

    With ``ledger`` the strategy's intents take the live durable path (see
    :class:`LedgerTarget`); without, they go straight to the paper venue. The market, the
    latency, the fills and the report are the same either way."""

    def __init__(
        self,
        bars: Sequence[Bar],
        strategy: str,
        params: Mapping[str, str],
        seed: int,
        *,
        settings: BacktestSettings,
        data_name: str = "<bars>",
        ledger: LedgerTarget | None = None,
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
        self.account = ledger.account if ledger is not None else None
        self.rules = settings.rules or DEFAULT_RULES.get(self.symbol) or _generic_rules(self.symbol)
        self._rng = random.Random(f"backtest:{seed}")
        self._now = self.bars[0].open_time
        self.venue = PaperVenue(
            rules={self.symbol: self.rules},
            balances={self.rules.quote_asset: settings.capital},
            seed=seed,
            clock=self._clock,
            maker_fee=settings.maker_fee,
            taker_fee=settings.taker_fee,
            fees_in_quote=[self.symbol] if settings.fees_in_quote else [],
        )
        strategy_id = StrategyId(ledger.account if ledger is not None else f"bt-{strategy}")
        try:
            built = create_strategy(strategy, strategy_id, [self.symbol], params)
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
            clock=self._clock,
        )
        self.host.add(self.hosted)
        self._path: _ExecutionPath
        if ledger is None:
            self._path = _PaperPath(self.venue, self.rules, self._clock)
        else:
            interval = self.bars[0].close_time - self.bars[0].open_time
            self._path = _LedgerPath(
                ledger,
                venue=self.venue,
                conflator=self.conflator,
                strategy_id=strategy_id,
                rules=self.rules,
                limits=settings.limits,
                bar_interval=interval,
                clock=self._clock,
            )

        self._position = Position(
            base_asset=self.rules.base_asset, quote_asset=self.rules.quote_asset, symbol=self.symbol
        )
        self._fills_seen = 0
        self._decision_price: dict[ClientOrderId, Decimal] = {}
        self._submitted: set[ClientOrderId] = set()
        self._pending: list[tuple[Buy | Sell, ClientOrderId]] = []
        self._decision_mid = _ZERO
        self._holds = 0
        self._equity_peak = settings.capital
        self._max_drawdown = _ZERO
        self._max_drawdown_pct = _ZERO
        self._fees = _ZERO

    def _clock(self) -> datetime:
        return self._now

    # -- PortfolioProvider: what the strategy holds, from the venue's fills ----------------
    # The same in both modes, so that a persisted run decides exactly as an in-memory one.
    # (The ledger's ``positions`` view counts fills only; this also takes out fees paid in
    # the base asset, which the venue really kept.)

    async def inventory(self, strategy_id: StrategyId) -> Mapping[Symbol, Decimal]:
        self._fold_fills()
        return {self.symbol: self._position.quantity}

    async def open_orders(self, strategy_id: StrategyId) -> Sequence[OpenOrder]:
        return tuple(_open_order(r) for r in await self.venue.open_orders(self.symbol))

    # -- the run ---------------------------------------------------------------------------

    async def run(self) -> BacktestReport:
        try:
            await self._path.start()
            for bar in self.bars:
                self._now = bar.open_time
                await self._path.heartbeat()
                self._walk_bar(bar)
                await self._path.settle()
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
            try:
                await self._path.close()
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
        await self._path.settle()
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
        arrival = self._quote(bar.close + step, bar)
        self.venue.set_quote(arrival)
        # The engine's market view moves too: the final gate before the wire checks this one.
        self.conflator.publish(arrival)

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
        """The host's sink. Orders wait for the latency; holds and cancels act at once."""
        if isinstance(intent, Hold | Cancel):
            if isinstance(intent, Hold):
                self._holds += 1
            await self._path.decided(intent)
            return
        coid = client_order_id(ORDER_ID_PREFIX, intent.key)
        if coid in self._submitted:
            return  # the same decision key again: reserved once, as the ledger would
        self._submitted.add(coid)
        self._decision_price[coid] = self._decision_mid
        self._pending.append((intent, coid))

    async def _submit_pending(self) -> None:
        pending, self._pending = self._pending, []
        if pending:
            await self._path.submit(pending)

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
        rejected, rejections = await self._path.rejections()
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
            rejected=rejected,
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
            rejections=tuple(rejections),
            account=self.account,
        )


def _to_tick(price: Decimal, tick: Decimal) -> Decimal:
    return (price / tick).to_integral_value(rounding=ROUND_HALF_EVEN) * tick


def _on_grid(intent: Buy | Sell, rules: InstrumentRules) -> Buy | Sell:
    """The intent with its quantity rounded down to the step and its price to the tick
    (towards the passive side), as both paths send it. A quantity below one step is left as
    it is, for the venue to refuse and the ledger to record why."""
    quantity = rules.round_quantity(intent.quantity)
    price = (
        None if intent.limit_price is None else rules.round_price(intent.limit_price, intent.side)
    )
    if quantity <= 0:
        return intent
    if quantity == intent.quantity and price == intent.limit_price:
        return intent
    return dataclasses.replace(intent, quantity=quantity, limit_price=price)


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
