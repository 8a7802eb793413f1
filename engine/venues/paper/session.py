"""The paper venue of ``TRADECTL_VENUE=paper``: the matching core fed by ``TRADECTL_PAPER_FEED``,
filled by the seeded fill model of the ``TRADECTL_PAPER_*`` settings."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from datetime import datetime

from engine.config import Settings
from engine.domain.types import Symbol
from engine.venue_session import VenueSession
from engine.venues.metrics import VenueMetrics
from engine.venues.paper.feeds import feed_driver, parse_feed
from engine.venues.paper.fill_model import FillModel
from engine.venues.paper.live import live_paper_venue


def fill_model_of(settings: Settings) -> FillModel:
    return FillModel(
        latency_ms=settings.paper_latency_ms,
        slippage_bps=settings.paper_slippage_bps,
        participation=settings.paper_participation,
        seed=settings.seed,
    )


@contextlib.asynccontextmanager
async def open_paper(
    settings: Settings, symbols: tuple[Symbol, ...], clock: Callable[[], datetime]
) -> AsyncIterator[VenueSession]:
    feed = parse_feed(settings.paper_feed)
    metrics = VenueMetrics(account=settings.account, venue="paper")
    venue = live_paper_venue(
        symbols, fill_model=fill_model_of(settings), seed=settings.seed, clock=clock,
        metrics=metrics,
    )  # fmt: skip
    try:
        yield VenueSession(
            venue=venue,
            metrics=metrics,
            driver=feed_driver(feed, venue, symbols, settings, clock),
            description=f"in-process paper venue on {feed.description}",
            per_symbol_sequences=feed.kind == "random",
        )
    finally:
        await venue.close()
