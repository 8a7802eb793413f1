"""An exchange simulator speaking the Binance Spot protocol subset over real HTTP and WebSocket.

Public surface::

    from engine.venues.simulator import SimulatorConfig, SymbolSpec, FaultPlan, run_simulator

    async with run_simulator(SimulatorConfig(seed=7)) as sim:
        sim.rest_url, sim.ws_api_url, sim.stream_url, sim.admin_url
        sim.state.ground_truth()          # orders, trades, balances, submissions, fault counters
        sim.step()                        # move the market by hand
        sim.state.set_quote("BTCUSDT", bid=..., ask=..., size=...)  # or POST /admin/quote

``serve_forever(config, host=..., port=...)`` runs one standalone (``tradectl simulator``).
"""

from engine.venues.simulator.config import (
    DEFAULT_API_KEY,
    DEFAULT_API_SECRET,
    SimulatorConfig,
    SymbolSpec,
)
from engine.venues.simulator.faults import FaultInjector, FaultKind, FaultPlan, FaultRule
from engine.venues.simulator.server import SimulatorHandle, run_simulator, serve_forever
from engine.venues.simulator.state import ManualClock, SimulatorState, SystemClock

__all__ = [
    "DEFAULT_API_KEY",
    "DEFAULT_API_SECRET",
    "FaultInjector",
    "FaultKind",
    "FaultPlan",
    "FaultRule",
    "ManualClock",
    "SimulatorConfig",
    "SimulatorHandle",
    "SimulatorState",
    "SymbolSpec",
    "SystemClock",
    "run_simulator",
    "serve_forever",
]
