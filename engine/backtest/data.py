"""Reading OHLCV history from CSV into closed :class:`~engine.domain.market.Bar` objects, with
errors that name the file, line and column."""

from __future__ import annotations

import csv
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TextIO

from engine.backtest.errors import BacktestDataError
from engine.domain.market import Bar
from engine.domain.types import Symbol
from engine.marketdata.bars import interval_name

_COLUMNS = ("date", "open", "high", "low", "close", "volume")


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
    missing = [c for c in _COLUMNS if c not in names]
    if missing:
        raise BacktestDataError(
            f"{path} line 1: missing column(s) {', '.join(m.title() for m in missing)}; "
            f"expected a header {_header()}"
        )
    index = {c: names.index(c) for c in _COLUMNS}
    return index, [(reader.line_num, row) for row in reader if any(cell.strip() for cell in row)]


def read_ohlcv(path: Path, symbol: Symbol) -> list[Bar]:
    """Read ``Date,Open,High,Low,Close,Volume`` (header names in any case; extra columns are
    ignored). Dates or ISO datetimes (naive means UTC), strictly increasing and evenly spaced
    by the first step, which is the bar interval."""
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
