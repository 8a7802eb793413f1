"""One Kalshi account's connection settings: endpoints (demo unless told otherwise), key,
timeouts, clock skew and read margin, rate tier, stream settings."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from pydantic import SecretStr

from engine.domain.types import VenueName
from engine.exceptions import ConfigError
from engine.venues.binance.stream import StreamSettings
from engine.venues.kalshi.ratelimit import Tier

PRODUCTION_REST_URL = "https://external-api.kalshi.com/trade-api/v2"
PRODUCTION_WS_URL = "wss://external-api-ws.kalshi.com/trade-api/ws/v2"
DEMO_REST_URL = "https://external-api.demo.kalshi.co/trade-api/v2"
DEMO_WS_URL = "wss://external-api-ws.demo.kalshi.co/trade-api/ws/v2"
DEFAULT_VENUE_NAME = VenueName("kalshi")


@dataclass(frozen=True, slots=True, kw_only=True)
class KalshiConfig:
    """One Kalshi account. Demo endpoints unless told otherwise; secrets stay out of ``repr``."""

    key_id: str = field(repr=False)
    private_key: SecretStr | None = field(default=None, repr=False)
    private_key_path: Path | None = None
    rest_url: str = DEMO_REST_URL
    ws_url: str = DEMO_WS_URL
    venue_name: VenueName = DEFAULT_VENUE_NAME
    connect_timeout_s: float = 5.0
    request_timeout_s: float = 10.0
    #: how far our clock may be from the venue's: scans start this much before a submit
    clock_skew: timedelta = timedelta(seconds=30)
    #: an order this process sent counts as visible to reads only once the venue's
    #: ``user_data_timestamp`` is this far past its send time (our clock may run behind)
    read_margin: timedelta = timedelta(milliseconds=500)
    #: how long a balance read waits for the venue's other reads (fills, orders) to cover it;
    #: past this the balance check skips the pass instead of comparing an uncovered snapshot
    balance_read_wait: timedelta = timedelta(seconds=5)
    tier: Tier = field(default_factory=Tier)
    stream: StreamSettings = field(default_factory=StreamSettings)

    def __post_init__(self) -> None:
        for name in ("rest_url", "ws_url"):
            if not getattr(self, name):
                raise ConfigError(f"kalshi {name} is empty")
