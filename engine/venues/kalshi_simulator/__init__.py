"""A simulator speaking the Kalshi Trade API v2 subset tradectl uses (REST + WebSocket), on the
shared matching core, with a test RSA key pair generated at start and seeded faults.

    async with run_kalshi_simulator(KalshiSimConfig(read_lag_s=2)) as sim:
        sim.rest_url, sim.ws_url, sim.key_id, sim.private_key_pem
        sim.state.set_quote("KXSIM-26DEC31-T50", bid=..., ask=..., size=...)  # or POST /admin/quote
        sim.state.ground_truth()
"""

from engine.venues.kalshi_simulator.config import KalshiFees, KalshiSimConfig, MarketSpec
from engine.venues.kalshi_simulator.server import (
    KalshiSimHandle,
    run_kalshi_simulator,
    serve_forever,
)
from engine.venues.kalshi_simulator.state import KalshiSimState

__all__ = [
    "KalshiFees",
    "KalshiSimConfig",
    "KalshiSimHandle",
    "KalshiSimState",
    "MarketSpec",
    "run_kalshi_simulator",
    "serve_forever",
]
