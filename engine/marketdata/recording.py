"""Market data recorded to files, and read back.

``TRADECTL_RECORD_MARKET_DATA=DIR`` makes the engine write every market event it receives (what
the feed hands the conflator) to ``DIR/<SYMBOL>/<YYYY-MM-DD>.jsonl``, one JSON object a line, the
day being the receipt time's UTC day. Each line keeps the venue's time and our receipt time::

    {"type": "quote", "symbol": "BTCUSDT", "bid": "30000.10", "bid_size": "0.5", "ask": "30000.11",
     "ask_size": "0.4", "sequence": 81, "venue_ts": null, "received_at": "2026-11-30T11:02:03.1Z"}
    {"type": "trade", "symbol": "BTCUSDT", "trade_id": "17", "price": "30000.11", "qty": "0.2",
     "aggressor": "BUY", "venue_ts": "…", "received_at": "…"}
    {"type": "bar", "symbol": "BTCUSDT", "interval": "1m", "open_time": "…", "close_time": "…",
     "open": "…", "high": "…", "low": "…", "close": "…", "volume": "…", "closed": true,
     "received_at": "…"}

Numbers are strings (Decimal, exact). The recordings are what ``TRADECTL_PAPER_FEED=replay:PATH``
plays and ``tradectl compare`` replays through the backtest. Writing is buffered and flushed about
once a second (a crash loses at most that much); a line that cannot be read back is a one-line
error naming the file and line.
"""

from __future__ import annotations

import heapq
import io
import json
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.domain.market import Bar, MarketEvent, Quote, Trade
from engine.domain.types import Side, Symbol, TradeId
from engine.exceptions import ConfigError

if TYPE_CHECKING:
    from engine.config import Settings


def encode(event: MarketEvent) -> dict[str, Any]:
    if isinstance(event, Quote):
        return {
            "type": "quote",
            "symbol": event.symbol,
            "bid": str(event.bid),
            "bid_size": str(event.bid_size),
            "ask": str(event.ask),
            "ask_size": str(event.ask_size),
            "sequence": event.sequence,
            "venue_ts": _iso(event.venue_ts),
            "received_at": _iso(event.received_at),
        }
    if isinstance(event, Trade):
        return {
            "type": "trade",
            "symbol": event.symbol,
            "trade_id": event.trade_id,
            "price": str(event.price),
            "qty": str(event.quantity),
            "aggressor": None if event.aggressor is None else event.aggressor.value,
            "venue_ts": _iso(event.venue_ts),
            "received_at": _iso(event.received_at),
        }
    return {
        "type": "bar",
        "symbol": event.symbol,
        "interval": event.interval,
        "open_time": _iso(event.open_time),
        "close_time": _iso(event.close_time),
        "open": str(event.open),
        "high": str(event.high),
        "low": str(event.low),
        "close": str(event.close),
        "volume": str(event.volume),
        "closed": event.closed,
        "received_at": _iso(event.received_at),
    }


def decode(line: dict[str, Any]) -> MarketEvent:
    """One recorded line as the event it was; ``ValueError``/``KeyError`` on a bad line."""
    kind = line["type"]
    symbol = Symbol(str(line["symbol"]))
    if kind == "quote":
        return Quote(
            symbol=symbol,
            bid=_dec(line["bid"]),
            bid_size=_dec(line["bid_size"]),
            ask=_dec(line["ask"]),
            ask_size=_dec(line["ask_size"]),
            sequence=line.get("sequence"),
            venue_ts=_time(line.get("venue_ts")),
            received_at=_required_time(line["received_at"]),
        )
    if kind == "trade":
        aggressor = line.get("aggressor")
        return Trade(
            symbol=symbol,
            trade_id=TradeId(str(line["trade_id"])),
            price=_dec(line["price"]),
            quantity=_dec(line["qty"]),
            aggressor=None if aggressor is None else Side(aggressor),
            venue_ts=_required_time(line["venue_ts"]),
            received_at=_required_time(line["received_at"]),
        )
    if kind == "bar":
        return Bar(
            symbol=symbol,
            interval=str(line["interval"]),
            open_time=_required_time(line["open_time"]),
            close_time=_required_time(line["close_time"]),
            open=_dec(line["open"]),
            high=_dec(line["high"]),
            low=_dec(line["low"]),
            close=_dec(line["close"]),
            volume=_dec(line["volume"]),
            closed=bool(line["closed"]),
            received_at=_required_time(line["received_at"]),
        )
    raise ValueError(f"unknown event type {kind!r}")


class MarketRecorder:
    """Appends each event to its symbol's file of the day; files stay open until :meth:`close`."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._files: dict[tuple[str, str], io.TextIOWrapper] = {}
        self.events = 0

    def write(self, event: MarketEvent) -> None:
        day = event.received_at.astimezone(UTC).date().isoformat()
        key = (event.symbol, day)
        out = self._files.get(key)
        if out is None:
            folder = self.directory / _safe(event.symbol)
            folder.mkdir(parents=True, exist_ok=True)
            out = (folder / f"{day}.jsonl").open("a", encoding="utf-8")
            self._files[key] = out
        out.write(json.dumps(encode(event), separators=(",", ":")) + "\n")
        self.events += 1

    def flush(self) -> None:
        for out in self._files.values():
            out.flush()

    def close(self) -> None:
        for out in self._files.values():
            out.close()
        self._files.clear()


def recording_files(path: Path) -> list[Path]:
    """``path`` itself (a ``.jsonl`` file) or every ``.jsonl`` under it (a directory)."""
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted(path.rglob("*.jsonl"))
        if files:
            return files
        raise ConfigError(f"no recorded market data (*.jsonl) under {path}")
    raise ConfigError(f"no recorded market data at {path}: no such file or directory")


def read_file(path: Path) -> Iterator[MarketEvent]:
    with path.open(encoding="utf-8") as lines:
        for number, text in enumerate(lines, 1):
            if not text.strip():
                continue
            try:
                yield decode(json.loads(text))
            except (ValueError, KeyError, TypeError, InvalidOperation) as exc:
                raise ConfigError(
                    f"{path}:{number}: not a recorded market event ({type(exc).__name__}: {exc})"
                ) from None


def read_recording(path: Path) -> Iterator[MarketEvent]:
    """Every event recorded under ``path``, all symbols merged in order of receipt."""
    streams: Iterable[Iterator[MarketEvent]] = [read_file(p) for p in recording_files(path)]
    return heapq.merge(*streams, key=lambda e: e.received_at)


def _iso(ts: datetime | None) -> str | None:
    return None if ts is None else ts.astimezone(UTC).isoformat()


def _time(value: Any) -> datetime | None:
    return None if value is None else _required_time(value)


def _required_time(value: Any) -> datetime:
    ts = datetime.fromisoformat(str(value))
    if ts.tzinfo is None:
        raise ValueError(f"timestamp without a time zone: {value!r}")
    return ts


def _dec(value: Any) -> Decimal:
    number = Decimal(str(value))
    if not number.is_finite():
        raise ValueError(f"not a finite number: {value!r}")
    return number


def _safe(symbol: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in symbol)


def recorder_for(settings: Settings) -> MarketRecorder | None:
    """The recorder ``TRADECTL_RECORD_MARKET_DATA`` asks for, if any."""
    directory = settings.record_market_data
    return None if directory is None else MarketRecorder(directory)
