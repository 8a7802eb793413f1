"""Kalshi event-market adapter: REST + WebSocket, RSA-PSS signed, errors translated once."""

from engine.venues.kalshi.config import (
    DEMO_REST_URL,
    DEMO_WS_URL,
    PRODUCTION_REST_URL,
    PRODUCTION_WS_URL,
    KalshiConfig,
)
from engine.venues.kalshi.signing import KalshiSigner, load_private_key
from engine.venues.kalshi.venue import KalshiVenue

__all__ = [
    "DEMO_REST_URL",
    "DEMO_WS_URL",
    "PRODUCTION_REST_URL",
    "PRODUCTION_WS_URL",
    "KalshiConfig",
    "KalshiSigner",
    "KalshiVenue",
    "load_private_key",
]
