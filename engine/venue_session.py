"""The venue an engine trades on, opened from the settings: the paper venue, the built-in
Binance-protocol simulator (the demo exchange kept in the data dir), Binance itself, or Kalshi
(or its simulator), with the venue's metrics labelled by the account it trades for."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import structlog
from pydantic import SecretStr

from engine.config import Settings, VenueKind
from engine.database import Database
from engine.demo import simulator_config
from engine.domain.types import Symbol, VenueName
from engine.exceptions import Ambiguous, ConfigError, RateLimited
from engine.venue_guard import key_hint
from engine.venues.base import Venue
from engine.venues.metrics import VenueMetrics


@dataclass(slots=True)
class VenueSession:
    venue: Venue
    #: the venue's metrics, labelled with the account it trades for; also its streams' state
    metrics: VenueMetrics
    #: background work that produces market data for a local venue (paper), if any
    driver: Callable[[], Coroutine[Any, Any, None]] | None = None
    description: str = ""
    #: whether quote sequence numbers are per symbol, so a skipped number is a lost update
    #: (Binance's bookTicker ``u`` is one counter across symbols: gaps there mean nothing)
    per_symbol_sequences: bool = False
    extra_tasks: dict[str, Callable[[], Coroutine[Any, Any, None]]] = field(default_factory=dict)
    #: the ledger account to trade as, when the venue decides it (the demo exchange after a
    #: reset trades as a fresh account: engine/demo.py)
    account: str | None = None
    #: the key an auth failure tells the operator to check (never the key itself)
    credential: str = "the venue API key"
    #: how long after it was sent a request may still be accepted (ExecutionConfig.late_accept)
    late_accept: timedelta = timedelta(0)


@contextlib.asynccontextmanager
async def open_venue(
    settings: Settings,
    symbols: tuple[Symbol, ...],
    clock: Callable[[], datetime],
    *,
    db: Database | None = None,
) -> AsyncIterator[VenueSession]:
    """The venue of ``settings``; with ``db``, the built-in simulator is the demo exchange that
    persists in the data dir (without it, a fresh simulator that forgets everything)."""
    if settings.venue is VenueKind.PAPER:
        from engine.venues.paper.session import open_paper

        async with open_paper(settings, symbols, clock) as paper:
            yield paper
        return
    if settings.venue in (VenueKind.KALSHI, VenueKind.KALSHI_SIMULATOR):
        from engine.venues.kalshi.session import open_kalshi

        metrics = VenueMetrics(
            account=settings.account,
            venue="kalshi" if settings.venue is VenueKind.KALSHI else "kalshi-simulator",
        )
        secret = settings.kalshi_key_id
        key_id = None if secret is None else secret.get_secret_value()
        async with open_kalshi(settings, symbols, metrics) as kalshi:
            yield VenueSession(
                venue=kalshi.venue,
                metrics=metrics,
                driver=kalshi.driver,
                description=kalshi.description,
                credential=f"{key_hint('TRADECTL_KALSHI_KEY_ID', key_id)} and its private key",
                late_accept=kalshi.venue.late_accept,
            )
        return
    from engine.venues.binance import BinanceConfig, BinanceVenue

    if settings.venue is VenueKind.SIMULATOR:
        from engine.venues.simulator import run_simulator

        sim_config = simulator_config(symbols, seed=settings.seed)
        async with contextlib.AsyncExitStack() as stack:
            exchange = None
            if db is not None:
                # the demo exchange persists in the data dir with the ledger (engine/demo.py)
                from engine.demo import open_exchange

                exchange = await stack.enter_async_context(
                    open_exchange(settings, db.engine, sim_config)
                )
            sim = await stack.enter_async_context(
                run_simulator(sim_config, state=exchange.state if exchange else None)
            )
            if exchange is not None:
                await stack.enter_async_context(exchange.keeping(sim.state))
            metrics = VenueMetrics(
                account=exchange.account if exchange else settings.account, venue="simulator"
            )
            binance = BinanceVenue(
                BinanceConfig(
                    api_key=sim_config.api_key,
                    api_secret=SecretStr(sim_config.api_secret),
                    rest_url=sim.rest_url,
                    ws_api_url=sim.ws_api_url,
                    stream_url=sim.stream_url,
                    venue_name=VenueName("simulator"),
                ),
                metrics=metrics,
            )
            try:
                yield VenueSession(
                    venue=binance,
                    metrics=metrics,
                    description=f"the built-in Binance-protocol simulator at {sim.rest_url}",
                    account=exchange.account if exchange else None,
                    credential="the simulator's built-in API key",
                    late_accept=binance.late_accept,
                )
            finally:
                await binance.close()
        return
    if settings.binance_api_key is None or settings.binance_api_secret is None:
        raise ConfigError(
            "TRADECTL_VENUE=binance needs TRADECTL_BINANCE_API_KEY and TRADECTL_BINANCE_API_SECRET"
        )
    binance = BinanceVenue(
        BinanceConfig(
            api_key=settings.binance_api_key.get_secret_value(),
            api_secret=settings.binance_api_secret,
            rest_url=settings.binance_rest_url,
            ws_api_url=settings.binance_ws_api_url,
            stream_url=settings.binance_stream_url,
        ),
        metrics=VenueMetrics(account=settings.account, venue="binance"),
    )
    try:
        yield VenueSession(
            venue=binance,
            metrics=binance.metrics,
            description=f"Binance at {settings.binance_rest_url}",
            credential=key_hint(
                "TRADECTL_BINANCE_API_KEY", settings.binance_api_key.get_secret_value()
            ),
            late_accept=binance.late_accept,
        )
    finally:
        await binance.close()


log = structlog.get_logger("tradectl.runtime")

#: first and longest pause between attempts of a startup step the venue failed transiently
STARTUP_RETRY_S = 0.5
STARTUP_RETRY_MAX_S = 30.0


async def until_the_venue_answers(what: str, attempt: Callable[[], Awaitable[Any]]) -> None:
    """Retry a startup step through transient venue failures (5xx, timeouts, 429/418).

    Exiting instead would make a supervisor restart the engine straight into the same outage,
    and into a longer ban; strategies start only once the step has succeeded anyway.
    """
    delay = STARTUP_RETRY_S
    while True:
        try:
            await attempt()
            return
        except (Ambiguous, RateLimited) as exc:
            wait = max(delay, exc.retry_after if isinstance(exc, RateLimited) else 0.0)
            log.warning(
                "engine.startup_retry", step=what, error=str(exc), retry_in_s=round(wait, 3)
            )
            await asyncio.sleep(wait)
            delay = min(delay * 2, STARTUP_RETRY_MAX_S)
