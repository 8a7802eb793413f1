"""Market data for the simulator: a seeded random walk or a CSV replay, plus kline building.

No I/O except reading the replay file once at construction; time is passed in.
"""

from __future__ import annotations

import csv
import random
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Protocol

from engine.domain.market import Quote
from engine.domain.types import Symbol
from engine.exceptions import ConfigError
from engine.marketdata.random_walk import RandomWalk, WalkParams
from engine.venues.simulator.config import SymbolSpec


class QuoteSource(Protocol):
    @property
    def steps(self) -> int: ...

    def current(self, now: datetime) -> Quote:
        """The touch before any step (used once, to open the market)."""
        ...

    def next_quote(self, now: datetime) -> Quote: ...

    def fast_forward(self, steps: int, now: datetime) -> None:
        """Advance ``steps`` steps (restore replays the walk rather than pickling its RNG)."""
        ...


class WalkSource:
    def __init__(self, spec: SymbolSpec, *, seed: int) -> None:
        self._spec = spec
        self._walk = RandomWalk(
            Symbol(spec.symbol),
            WalkParams(
                start=spec.start_price,
                tick=spec.tick_size,
                step_bps=spec.step_bps,
                spread_ticks=spec.spread_ticks,
                size=spec.touch_size,
                # keep the walk inside the instrument's price filter (prediction markets: 0..1)
                floor=spec.effective_min_price,
                cap=spec.max_price,
            ),
            seed=seed,
        )
        self._steps = 0

    @property
    def steps(self) -> int:
        return self._steps

    def current(self, now: datetime) -> Quote:
        half = self._spec.tick_size * self._spec.spread_ticks
        mid = self._walk.mid
        size = self._spec.touch_size
        return Quote(
            symbol=Symbol(self._spec.symbol),
            bid=mid - half,
            bid_size=size,
            ask=mid + half,
            ask_size=size,
            venue_ts=now,
            received_at=now,
            sequence=0,
        )

    def next_quote(self, now: datetime) -> Quote:
        self._steps += 1
        return self._walk.next_quote(now)

    def fast_forward(self, steps: int, now: datetime) -> None:
        for _ in range(steps):
            self.next_quote(now)


@dataclass(frozen=True, slots=True, kw_only=True)
class _Row:
    bid: Decimal
    bid_size: Decimal
    ask: Decimal
    ask_size: Decimal


class ReplaySource:
    """Replays a CSV: OHLCV (``Date,Open,High,Low,Close,Volume``: the close becomes the mid) or
    quotes (``bid,ask`` and optional ``bid_size,ask_size``). Holds the last row once exhausted."""

    def __init__(self, spec: SymbolSpec, path: Path) -> None:
        self._spec = spec
        self._rows = _read_rows(spec, path)
        if not self._rows:
            raise ConfigError(f"replay file {path} for {spec.symbol} has no rows")
        self._steps = 0

    @property
    def steps(self) -> int:
        return self._steps

    def _quote(self, row: _Row, now: datetime) -> Quote:
        return Quote(
            symbol=Symbol(self._spec.symbol),
            bid=row.bid,
            bid_size=row.bid_size,
            ask=row.ask,
            ask_size=row.ask_size,
            venue_ts=now,
            received_at=now,
            sequence=self._steps,
        )

    def current(self, now: datetime) -> Quote:
        return self._quote(self._rows[0], now)

    def next_quote(self, now: datetime) -> Quote:
        self._steps += 1
        return self._quote(self._rows[min(self._steps, len(self._rows) - 1)], now)

    def fast_forward(self, steps: int, now: datetime) -> None:
        self._steps += steps


def _read_rows(spec: SymbolSpec, path: Path) -> list[_Row]:
    try:
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            fields = {(n or "").strip().lower(): n for n in reader.fieldnames or []}
            rows = list(reader)
    except OSError as exc:
        raise ConfigError(f"cannot read replay file {path}: {exc.strerror}") from exc
    tick = spec.tick_size
    half = tick * spec.spread_ticks
    out: list[_Row] = []
    try:
        if "close" in fields:
            for r in rows:
                close = Decimal(r[fields["close"]].strip())
                mid = (close / tick).to_integral_value(rounding=ROUND_HALF_EVEN) * tick
                mid = max(mid, half + tick)
                out.append(
                    _Row(
                        bid=mid - half,
                        bid_size=spec.touch_size,
                        ask=mid + half,
                        ask_size=spec.touch_size,
                    )
                )
        elif "bid" in fields and "ask" in fields:
            for r in rows:
                bs = fields.get("bid_size")
                asz = fields.get("ask_size")
                out.append(
                    _Row(
                        bid=Decimal(r[fields["bid"]].strip()),
                        bid_size=Decimal(r[bs].strip()) if bs else spec.touch_size,
                        ask=Decimal(r[fields["ask"]].strip()),
                        ask_size=Decimal(r[asz].strip()) if asz else spec.touch_size,
                    )
                )
        else:
            raise ConfigError(
                f"replay file {path}: expected OHLCV columns (Date,Open,High,Low,Close,Volume) "
                f"or quote columns (bid,ask[,bid_size,ask_size]); got {sorted(fields)}"
            )
    except (InvalidOperation, AttributeError) as exc:
        raise ConfigError(f"replay file {path}: a price is not a decimal ({exc})") from exc
    return out


def make_source(spec: SymbolSpec, *, seed: int) -> QuoteSource:
    if spec.replay_csv is not None:
        return ReplaySource(spec, spec.replay_csv)
    return WalkSource(spec, seed=seed)


class PublicTape:
    """Synthetic public trades: one per market step, at the touch, side drawn from a seeded RNG."""

    def __init__(self, spec: SymbolSpec, *, seed: int) -> None:
        self._spec = spec
        self._rng = random.Random(f"{seed}:{spec.symbol}:tape")

    def next_trade(self, quote: Quote) -> tuple[Decimal, Decimal, bool]:
        """(price, quantity, buyer_is_maker)."""
        buyer_aggressor = self._rng.random() < 0.5
        step = self._spec.step_size
        lots = self._rng.randint(1, 10)
        qty = max(step, (self._spec.touch_size / 10 / step).to_integral_value(ROUND_DOWN) * step)
        qty = qty * lots
        price = quote.ask if buyer_aggressor else quote.bid
        return price, qty, not buyer_aggressor

    def getstate(self) -> Any:
        version, internal, gauss = self._rng.getstate()
        return [version, list(internal), gauss]

    def setstate(self, data: Any) -> None:
        version, internal, gauss = data
        self._rng.setstate((version, tuple(internal), gauss))


INTERVAL_MS: dict[str, int] = {
    "1s": 1_000,
    "1m": 60_000,
    "3m": 180_000,
    "5m": 300_000,
    "15m": 900_000,
    "30m": 1_800_000,
    "1h": 3_600_000,
    "2h": 7_200_000,
    "4h": 14_400_000,
    "6h": 21_600_000,
    "8h": 28_800_000,
    "12h": 43_200_000,
    "1d": 86_400_000,
    "3d": 259_200_000,
    "1w": 604_800_000,
}


@dataclass(slots=True, kw_only=True)
class Kline:
    interval: str
    open_ms: int
    close_ms: int
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    quote_volume: Decimal
    taker_buy_volume: Decimal
    taker_buy_quote: Decimal
    trades: int
    first_trade_id: int
    last_trade_id: int
    closed: bool = False


class KlineBuilder:
    """Bars of one interval from the public tape, bucketed by (clock) time."""

    def __init__(self, interval: str) -> None:
        if interval not in INTERVAL_MS:
            raise ValueError(f"unsupported kline interval {interval!r}")
        self.interval = interval
        self._ms = INTERVAL_MS[interval]
        self.current: Kline | None = None

    def add(
        self, *, price: Decimal, qty: Decimal, buyer_is_maker: bool, trade_id: int, now_ms: int
    ) -> list[Kline]:
        """Add a trade; returns the bars to publish (a closed one first when the bucket rolled)."""
        out: list[Kline] = []
        open_ms = now_ms - now_ms % self._ms
        cur = self.current
        if cur is not None and cur.open_ms != open_ms:
            cur.closed = True
            out.append(cur)
            cur = None
        taker_buy = not buyer_is_maker
        if cur is None:
            cur = Kline(
                interval=self.interval,
                open_ms=open_ms,
                close_ms=open_ms + self._ms - 1,
                open=price,
                high=price,
                low=price,
                close=price,
                volume=Decimal(0),
                quote_volume=Decimal(0),
                taker_buy_volume=Decimal(0),
                taker_buy_quote=Decimal(0),
                trades=0,
                first_trade_id=trade_id,
                last_trade_id=trade_id,
            )
        cur.high = max(cur.high, price)
        cur.low = min(cur.low, price)
        cur.close = price
        cur.volume += qty
        cur.quote_volume += qty * price
        if taker_buy:
            cur.taker_buy_volume += qty
            cur.taker_buy_quote += qty * price
        cur.trades += 1
        cur.last_trade_id = trade_id
        self.current = cur
        out.append(cur)
        return out
