"""Reading OHLCV history from CSV into closed :class:`~engine.domain.market.Bar` objects, with
errors that name the file, line and column."""

from __future__ import annotations

import csv
import itertools
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TextIO

from engine.backtest.errors import BacktestDataError
from engine.domain.market import Bar
from engine.domain.types import Symbol
from engine.marketdata.bars import interval_name

_COLUMNS = ("date", "open", "high", "low", "close", "volume")
_DATE_ALIASES = ("", "time", "datetime", "timestamp")


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


def _read_rows(path: Path, handle: TextIO) -> tuple[dict[str, int], list[tuple[int, list[str]]]]:
    """The header's column positions and the non-blank rows with their line numbers."""
    reader = csv.reader(handle)
    header = next(reader, None)
    if header is None:
        raise BacktestDataError(f"{path}: empty file; expected a header {_header()}")
    names = [h.strip().lower() for h in header]
    if "date" not in names:
        # pandas writes its index unnamed; other tools call it time, datetime or timestamp
        for i, name in enumerate(names):
            if name in _DATE_ALIASES:
                names[i] = "date"
                break
    missing = [c for c in _COLUMNS if c not in names]
    if missing:
        raise BacktestDataError(
            f"{path} line 1: missing column(s) {', '.join(m.title() for m in missing)}; "
            f"expected a header {_header()}"
        )
    index = {c: names.index(c) for c in _COLUMNS}
    return index, [(reader.line_num, row) for row in reader if any(cell.strip() for cell in row)]


@dataclass(frozen=True, slots=True, kw_only=True)
class BarSeries:
    """One file's bars and what their data says about the market: the bar interval (the
    median step between bars), the gaps (steps longer than the interval: weekends, halts,
    missing rows), and the precision prices and volumes are written with."""

    bars: list[Bar]
    interval: timedelta
    #: how many steps were longer than the interval, and the first few (opened at, length)
    gaps: int
    gap_samples: tuple[tuple[datetime, timedelta], ...]
    largest_gap: timedelta
    #: the most decimals any open/high/low/close (or volume) is written with
    price_decimals: int
    volume_decimals: int

    @property
    def tick_size(self) -> Decimal:
        """The finest price step the data shows (``1.0898`` has 4 decimals: 0.0001)."""
        return Decimal(1).scaleb(-self.price_decimals)

    @property
    def lot_step(self) -> Decimal:
        """The finest quantity step the volumes show."""
        return Decimal(1).scaleb(-self.volume_decimals)


#: how many gaps a report quotes
MAX_GAP_SAMPLES = 3


def read_ohlcv(path: Path, symbol: Symbol) -> list[Bar]:
    """The bars of :func:`load_bars`."""
    return load_bars(path, symbol).bars


def load_bars(path: Path, symbol: Symbol) -> BarSeries:
    """Read ``Date,Open,High,Low,Close,Volume`` (header names in any case, the date column may
    also be unnamed or called time/datetime/timestamp; extra columns are ignored). Dates or
    ISO datetimes (naive means UTC), strictly increasing. The interval is the median step;
    longer steps are gaps, reported, not errors."""
    try:
        handle = path.open(newline="", encoding="utf-8-sig")
    except OSError as exc:
        raise BacktestDataError(f"{path}: cannot read OHLCV data: {exc.strerror}") from None
    try:
        with handle:
            index, rows = _read_rows(path, handle)
    except UnicodeDecodeError:
        raise BacktestDataError(f"{path}: not UTF-8 text; expected an OHLCV CSV") from None
    except csv.Error as exc:  # e.g. a NUL byte: a binary file
        raise BacktestDataError(f"{path}: not a CSV file ({exc})") from None
    if len(rows) < 2:
        raise BacktestDataError(f"{path}: needs at least 2 bars to know the interval")

    parsed: list[tuple[datetime, Decimal, Decimal, Decimal, Decimal, Decimal]] = []
    price_decimals = volume_decimals = 0
    previous: datetime | None = None
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
        if previous is not None and opened <= previous:
            raise BacktestDataError(
                f"{path} line {line}, column Date: {raw_date} is not after the previous row"
            )
        previous = opened
        price_decimals = max(price_decimals, *(_decimals(x) for x in (o, h, lo, c)))
        volume_decimals = max(volume_decimals, _decimals(v))
        parsed.append((opened, o, h, lo, c, v))

    steps = sorted(b[0] - a[0] for a, b in itertools.pairwise(parsed))
    interval = steps[len(steps) // 2] if len(steps) % 2 else steps[len(steps) // 2 - 1]
    try:
        name = interval_name(interval)
    except ValueError as exc:
        raise BacktestDataError(f"{path}: {exc} (the median step between rows)") from None
    bars: list[Bar] = []
    gaps = 0
    largest = timedelta(0)
    samples: list[tuple[datetime, timedelta]] = []
    for i, (opened, o, h, lo, c, v) in enumerate(parsed):
        closes = opened + interval
        if i + 1 < len(parsed):
            step = parsed[i + 1][0] - opened
            # a shorter step (a clock change, an odd row) ends the bar early: time never runs back
            closes = min(closes, parsed[i + 1][0])
            if step > interval:
                gaps += 1
                largest = max(largest, step)
                if len(samples) < MAX_GAP_SAMPLES:
                    samples.append((closes, step - interval))
        bars.append(
            Bar(
                symbol=symbol,
                interval=name,
                open_time=opened,
                close_time=closes,
                open=o,
                high=h,
                low=lo,
                close=c,
                volume=v,
                closed=True,
                received_at=closes,
            )
        )
    return BarSeries(
        bars=bars,
        interval=interval,
        gaps=gaps,
        gap_samples=tuple(samples),
        largest_gap=largest - interval if gaps else timedelta(0),
        price_decimals=price_decimals,
        volume_decimals=volume_decimals,
    )


def _decimals(value: Decimal) -> int:
    exponent = value.as_tuple().exponent
    assert isinstance(exponent, int)  # finite: checked by the reader
    return max(0, -exponent)


def _header() -> str:
    return ",".join(c.title() for c in _COLUMNS)
