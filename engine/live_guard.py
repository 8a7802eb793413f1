"""The stage an engine runs in, and the guard in front of real money.

``TRADECTL_STAGE`` names the stage (engine/domain/stage.py); its capital fraction scales every
order. A production venue (Binance outside its testnet, Kalshi's production environment) trades
real money: it needs the stage named (``small_live`` or ``live``) and an explicit confirmation
(``TRADECTL_CONFIRM_LIVE=yes`` or ``tradectl run --i-understand``), and the engine prints what it
is about to do (account, venue, environment, stage, capital fraction, strategies) before it
starts, confirmed or not.
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import urlsplit

from engine.config import KalshiEnvironment, Settings, VenueKind
from engine.domain.stage import Stage, Staging
from engine.exceptions import ConfigError
from engine.observability import for_humans

#: what a production venue may run as
LIVE_STAGES = frozenset({Stage.SMALL_LIVE, Stage.LIVE})


#: hosts that are this machine: what runs there is a simulator, not an exchange
_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})


def environment(settings: Settings) -> str:
    """``production`` for real money, else what the venue is (testnet, demo, simulated)."""
    if settings.venue is VenueKind.BINANCE:
        host = urlsplit(settings.binance_rest_url).hostname or ""
        if host in _LOOPBACK:
            # the built-in simulator (or a test's); a proxy to the real exchange on this host
            # would pass as local too, which the README's live-trading section warns about
            return "local"
        return "testnet" if "testnet" in host else "production"
    if settings.venue is VenueKind.KALSHI:
        return settings.kalshi_environment.value
    return "simulated"


def is_production(settings: Settings) -> bool:
    return environment(settings) == KalshiEnvironment.PRODUCTION.value


def staging(settings: Settings) -> Staging:
    """The stage and capital fraction of ``tradectl run`` under ``settings``; a stage that does
    not fit the venue is a ``ConfigError`` naming the setting."""
    production = is_production(settings)
    stage = settings.stage
    if stage is None:
        if production:
            raise ConfigError(
                f"TRADECTL_STAGE: {_venue(settings)} trades real money: set small_live or live"
            )
        stage = Stage.PAPER
    if stage is Stage.BACKTEST:
        raise ConfigError("TRADECTL_STAGE: backtest is the stage of `tradectl backtest`, not run")
    if production and stage not in LIVE_STAGES:
        raise ConfigError(
            f"TRADECTL_STAGE={stage.value}: {_venue(settings)} trades real money: "
            "set small_live or live"
        )
    return Staging.of(stage, settings.capital_fraction)


def confirm_live(settings: Settings, strategies: Sequence[str]) -> Staging:
    """The staging to run with. On a production venue, print what is about to happen, then go
    on only with the explicit confirmation (else a ``ConfigError`` naming how to give it)."""
    staged = staging(settings)
    if not is_production(settings):
        return staged
    summary = about_to(settings, staged, strategies)
    for_humans(
        summary,
        "engine.live_start",
        account=settings.account,
        venue=_venue(settings),
        environment=environment(settings),
        stage=staged.stage.value,
        capital_fraction=str(staged.capital_fraction),
        strategies=list(strategies),
        confirmed=settings.confirm_live,
    )
    if not settings.confirm_live:
        raise ConfigError(
            "live trading on a production venue needs an explicit confirmation: "
            "TRADECTL_CONFIRM_LIVE=yes or `tradectl run --i-understand`"
        )
    return staged


def about_to(settings: Settings, staged: Staging, strategies: Sequence[str]) -> str:
    return (
        f"about to trade REAL MONEY: account {settings.account} on {_venue(settings)} "
        f"({environment(settings)}), stage {staged.stage.value}, capital fraction "
        f"{staged.capital_fraction} of every order, strategies {', '.join(strategies) or 'none'}"
    )


def _venue(settings: Settings) -> str:
    if settings.venue is VenueKind.BINANCE:
        return f"Binance at {settings.binance_rest_url}"
    if settings.venue is VenueKind.KALSHI:
        return "Kalshi"
    return settings.venue.value
