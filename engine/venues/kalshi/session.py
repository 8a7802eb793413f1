"""Opening Kalshi for the engine from settings: the demo or production API with keys from the
environment, or the built-in Kalshi simulator (with a market that moves by itself)."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from pydantic import SecretStr

from engine.config import KalshiEnvironment, Settings, VenueKind
from engine.domain.types import Side, VenueName
from engine.exceptions import ConfigError
from engine.venues.kalshi.config import (
    DEMO_REST_URL,
    DEMO_WS_URL,
    PRODUCTION_REST_URL,
    PRODUCTION_WS_URL,
    KalshiConfig,
)
from engine.venues.kalshi.venue import KalshiVenue
from engine.venues.metrics import VenueMetrics

_CENT = Decimal("0.01")


@dataclass(slots=True)
class KalshiSession:
    venue: KalshiVenue
    description: str
    driver: Callable[[], Coroutine[Any, Any, None]] | None = None


def kalshi_config(settings: Settings) -> KalshiConfig:
    """The real venue's config; a clear error names what is missing (never a key's value)."""
    if settings.kalshi_key_id is None:
        raise ConfigError("TRADECTL_VENUE=kalshi needs TRADECTL_KALSHI_KEY_ID")
    if settings.kalshi_private_key is None and settings.kalshi_private_key_path is None:
        raise ConfigError(
            "TRADECTL_VENUE=kalshi needs TRADECTL_KALSHI_PRIVATE_KEY (PEM) or "
            "TRADECTL_KALSHI_PRIVATE_KEY_PATH"
        )
    production = settings.kalshi_environment is KalshiEnvironment.PRODUCTION
    if (settings.kalshi_rest_url is None) != (settings.kalshi_ws_url is None):
        raise ConfigError(
            "set both TRADECTL_KALSHI_REST_URL and TRADECTL_KALSHI_WS_URL, or neither"
        )
    return KalshiConfig(
        key_id=settings.kalshi_key_id.get_secret_value(),
        private_key=settings.kalshi_private_key,
        private_key_path=settings.kalshi_private_key_path,
        rest_url=settings.kalshi_rest_url or (PRODUCTION_REST_URL if production else DEMO_REST_URL),
        ws_url=settings.kalshi_ws_url or (PRODUCTION_WS_URL if production else DEMO_WS_URL),
    )


@contextlib.asynccontextmanager
async def open_kalshi(
    settings: Settings, symbols: Sequence[str], metrics: VenueMetrics
) -> AsyncIterator[KalshiSession]:
    if settings.venue is VenueKind.KALSHI:
        config = kalshi_config(settings)
        venue = KalshiVenue(config, metrics=metrics)
        try:
            yield KalshiSession(
                venue=venue,
                description=f"Kalshi {settings.kalshi_environment.value} at {config.rest_url}",
            )
        finally:
            await venue.close()
        return
    from engine.venues.kalshi_simulator import KalshiSimConfig, MarketSpec, run_kalshi_simulator

    markets = tuple(MarketSpec(ticker=s) for s in symbols) or KalshiSimConfig().markets
    sim_config = KalshiSimConfig(
        seed=settings.seed, markets=markets, read_lag_s=settings.kalshi_read_lag_s
    )
    async with run_kalshi_simulator(sim_config) as sim:
        venue = KalshiVenue(
            KalshiConfig(
                key_id=sim.key_id,
                private_key=SecretStr(sim.private_key_pem),
                rest_url=sim.rest_url,
                ws_url=sim.ws_url,
                venue_name=VenueName("kalshi-simulator"),
            ),
            metrics=metrics,
        )
        rng = random.Random(settings.seed)

        settle_at = (
            None
            if settings.kalshi_settle_after_s is None
            else asyncio.get_running_loop().time() + settings.kalshi_settle_after_s
        )

        async def drive() -> None:
            # a one-cent random walk of each market's touch, pulled back towards where it
            # opened (the price crosses a fair value both ways, so fair_value buys and sells),
            # and a public trade at the touch each step
            nonlocal settle_at
            while True:
                await asyncio.sleep(0.5)
                if settle_at is not None and asyncio.get_running_loop().time() >= settle_at:
                    settle_at = None  # the demo's settlement: every market, once
                    for spec in markets:
                        sim.state.settle_market(spec.ticker, rng.choice(("yes", "no")))
                for spec in markets:
                    touch = sim.state.core.touch[spec.ticker]
                    pull = (spec.bid > touch.bid) - (spec.bid < touch.bid)
                    step = _CENT * (rng.choice((-1, 0, 1)) + (pull if rng.random() < 0.3 else 0))
                    bid = min(max(touch.bid + step, _CENT), Decimal("0.97"))
                    sim.state.set_quote(spec.ticker, bid=bid, ask=bid + 2 * _CENT, size=spec.size)
                    # others trade too (the volume the liquidity check measures against)
                    taker = rng.choice((Side.BUY, Side.SELL))
                    sim.state.public_trade(
                        spec.ticker,
                        price=bid + 2 * _CENT if taker is Side.BUY else bid,
                        quantity=Decimal(rng.randint(1, 50)),
                        taker=taker,
                    )

        try:
            yield KalshiSession(
                venue=venue,
                description=f"the built-in Kalshi-protocol simulator at {sim.rest_url}",
                driver=drive,
            )
        finally:
            await venue.close()
