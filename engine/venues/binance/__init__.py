"""Binance Spot adapter: REST + WebSocket, errors translated at the boundary."""

from engine.venues.binance.signing import sign_hmac
from engine.venues.binance.venue import (
    PRODUCTION_REST_URL,
    PRODUCTION_STREAM_URL,
    PRODUCTION_WS_API_URL,
    TESTNET_REST_URL,
    TESTNET_STREAM_URL,
    TESTNET_WS_API_URL,
    BinanceConfig,
    BinanceVenue,
)

__all__ = [
    "PRODUCTION_REST_URL",
    "PRODUCTION_STREAM_URL",
    "PRODUCTION_WS_API_URL",
    "TESTNET_REST_URL",
    "TESTNET_STREAM_URL",
    "TESTNET_WS_API_URL",
    "BinanceConfig",
    "BinanceVenue",
    "sign_hmac",
]
