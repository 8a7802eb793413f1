from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from engine.venues.simulator import SimulatorConfig, SimulatorHandle, run_simulator

from .helpers import SignedClient


@pytest.fixture
async def sim() -> AsyncIterator[SimulatorHandle]:
    """A simulator whose market only moves when a test calls ``sim.step()``."""
    async with run_simulator(SimulatorConfig(seed=11, market_interval=None)) as handle:
        yield handle


@pytest.fixture
async def http(sim: SimulatorHandle) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=sim.rest_url, timeout=5.0) as client:
        yield client


@pytest.fixture
def client(http: httpx.AsyncClient) -> SignedClient:
    return SignedClient(http)
