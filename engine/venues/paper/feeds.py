"""Where the paper venue's market comes from (``TRADECTL_PAPER_FEED``):

- ``random``: the seeded random walk of each symbol, a step every 0.25 s (the default; only the
  catalogue's symbols, BTCUSDT and PRES-YES, have a walk).
- ``binance``: Binance's public market streams (bookTicker and trade per symbol) at
  ``TRADECTL_BINANCE_STREAM_URL``, through the Binance adapter's market stream; no API key is
  needed. Production's public data is ``wss://stream.binance.com:9443``.
- ``kalshi``: Kalshi's public order book of each market (``GET /markets/{ticker}/orderbook``,
  no key; demo or production by ``TRADECTL_KALSHI_ENVIRONMENT``), polled once a second, as
  quotes.
- ``replay:PATH``: a recording (a ``.jsonl`` file or a directory of them, as
  ``TRADECTL_RECORD_MARKET_DATA`` writes) played at the pace it was recorded
  (``TRADECTL_PAPER_REPLAY_SPEED`` times faster), its times moved to now, so the engine sees it as
  live data. The run stops feeding at the recording's end.

Each feed is a coroutine that hands every event to the venue (:meth:`LivePaperVenue.apply`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import structlog

from engine.config import Settings
from engine.domain.market import Bar, MarketEvent, Quote, Trade
from engine.domain.types import Symbol, VenueName
from engine.exceptions import ConfigError
from engine.marketdata.random_walk import RandomWalk
from engine.marketdata.recording import read_recording, recording_files
from engine.venues.paper.defaults import DEFAULT_WALKS
from engine.venues.paper.live import LivePaperVenue

log = structlog.get_logger(__name__)

Driver = Callable[[], Coroutine[Any, Any, None]]
FEEDS = ("random", "binance", "kalshi", "replay:PATH")


@dataclass(frozen=True, slots=True)
class FeedSpec:
    kind: str
    path: Path | None = None

    @property
    def description(self) -> str:
        if self.kind == "replay":
            return f"a replay of {self.path}"
        if self.kind == "random":
            return "a seeded random walk"
        return f"{self.kind.capitalize()} public market data"


def parse_feed(text: str) -> FeedSpec:
    kind, sep, rest = text.strip().partition(":")
    kind = kind.lower()
    if kind == "replay":
        if not sep or not rest:
            raise ConfigError("TRADECTL_PAPER_FEED: replay needs a path: replay:DIR or replay:FILE")
        path = Path(rest)
        recording_files(path)  # a missing or empty recording fails here, before anything opens
        return FeedSpec("replay", path)
    if sep or kind not in ("random", "binance", "kalshi"):
        raise ConfigError(f"TRADECTL_PAPER_FEED: expected one of {', '.join(FEEDS)}, got {text!r}")
    return FeedSpec(kind)


def feed_driver(
    spec: FeedSpec,
    venue: LivePaperVenue,
    symbols: Sequence[Symbol],
    settings: Settings,
    clock: Callable[[], datetime],
) -> Driver:
    """The coroutine that runs the feed into ``venue``, as the session's driver task."""
    if spec.kind == "random":
        return _random(venue, symbols, settings.seed, clock)
    if spec.kind == "binance":
        return _binance(venue, symbols, settings, clock)
    if spec.kind == "kalshi":
        from engine.venues.kalshi.config import DEMO_REST_URL, PRODUCTION_REST_URL

        production = settings.kalshi_environment.value == "production"
        return _kalshi(venue, symbols, clock, PRODUCTION_REST_URL if production else DEMO_REST_URL)
    assert spec.path is not None
    return _replay(venue, spec.path, settings.paper_replay_speed, clock)


def _random(
    venue: LivePaperVenue, symbols: Sequence[Symbol], seed: int, clock: Callable[[], datetime]
) -> Driver:
    missing = [s for s in symbols if s not in DEFAULT_WALKS]
    if missing:
        raise ConfigError(
            f"TRADECTL_PAPER_FEED=random walks only {', '.join(sorted(DEFAULT_WALKS))}, not "
            f"{', '.join(missing)}: use binance, kalshi or replay:PATH for other symbols"
        )
    walks = [RandomWalk(s, DEFAULT_WALKS[s], seed=seed) for s in symbols]

    async def drive() -> None:
        while True:
            now = clock()
            for walk in walks:
                venue.apply(walk.next_quote(now))
            await asyncio.sleep(0.25)

    return drive


def _binance(
    venue: LivePaperVenue,
    symbols: Sequence[Symbol],
    settings: Settings,
    clock: Callable[[], datetime],
) -> Driver:
    from engine.venues.binance.stream import MarketStream

    async def drive() -> None:
        stream = MarketStream(
            stream_url=settings.binance_stream_url,
            symbols=symbols,
            channels=("bookTicker", "trade"),
            venue=VenueName("binance"),
            now=clock,
            metrics=venue.metrics,
        )
        async for event in stream.events():
            venue.apply(event)

    return drive


def _kalshi(
    venue: LivePaperVenue, symbols: Sequence[Symbol], clock: Callable[[], datetime], url: str
) -> Driver:
    async def drive() -> None:
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:
            while True:
                for symbol in symbols:
                    try:
                        quote = await kalshi_quote(client, symbol, clock)
                    except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
                        log.warning("paper.kalshi_poll_failed", symbol=symbol, error=str(exc))
                        continue
                    if quote is not None:
                        venue.apply(quote)
                await asyncio.sleep(1.0)

    return drive


async def kalshi_quote(
    client: httpx.AsyncClient, symbol: Symbol, clock: Callable[[], datetime]
) -> Quote | None:
    """The touch of a Kalshi market's YES side from its public order book (cents, levels
    ``[price, count]``): the best YES bid, and 100 minus the best NO bid as the ask."""
    answer = await client.get(f"/markets/{symbol}/orderbook", params={"depth": 1})
    answer.raise_for_status()
    book = answer.json()["orderbook"]
    yes, no = book.get("yes") or [], book.get("no") or []
    if not yes or not no:
        return None
    bid_c, bid_n = max(yes, key=lambda level: level[0])
    no_c, no_n = max(no, key=lambda level: level[0])
    now = clock()
    return Quote(
        symbol=symbol,
        bid=Decimal(bid_c) / 100,
        bid_size=Decimal(bid_n),
        ask=(100 - Decimal(no_c)) / 100,
        ask_size=Decimal(no_n),
        venue_ts=None,
        received_at=now,
    )


def _replay(
    venue: LivePaperVenue, path: Path, speed: float, clock: Callable[[], datetime]
) -> Driver:
    async def drive() -> None:
        events = read_recording(path)
        first = next(events, None)
        if first is None:
            return
        t0, start = first.received_at, clock()
        played = 0
        for event in itertools.chain((first,), events):
            at = start + (event.received_at - t0) / speed
            wait = (at - clock()).total_seconds()
            if wait > 0:
                await asyncio.sleep(wait)
            venue.apply(shifted(event, t0, start, speed))
            played += 1
        log.info("paper.replay_ended", path=str(path), events=played)
        await asyncio.Event().wait()  # the recording is over; the engine runs on until stopped

    return drive


def shifted(event: MarketEvent, t0: datetime, start: datetime, speed: float) -> MarketEvent:
    """``event`` with its times moved from the recording's clock (``t0``) to now's (``start``)."""

    def move(ts: datetime) -> datetime:
        return start + (ts - t0) / speed

    if isinstance(event, Quote):
        return dataclasses.replace(
            event,
            venue_ts=None if event.venue_ts is None else move(event.venue_ts),
            received_at=move(event.received_at),
        )
    if isinstance(event, Trade):
        return dataclasses.replace(
            event, venue_ts=move(event.venue_ts), received_at=move(event.received_at)
        )
    assert isinstance(event, Bar)
    return dataclasses.replace(
        event,
        open_time=move(event.open_time),
        close_time=move(event.close_time),
        received_at=move(event.received_at),
    )
