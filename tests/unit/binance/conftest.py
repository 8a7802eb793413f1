"""Fixtures for the Binance adapter tests: recorded doc payloads and a venue on a fake clock."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import respx
from pydantic import SecretStr

from engine.venues.binance import BinanceConfig, BinanceVenue
from engine.venues.binance.ratelimit import RateBudget
from engine.venues.binance.signing import ServerClock

RESOURCES = Path(__file__).resolve().parents[2] / "resources" / "binance"
REST_URL = "https://api.binance.test"
API_KEY = "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A"
API_SECRET = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"
#: the fake wall clock all venue tests run on (seconds)
WALL = 1_499_827_319.0
FIXED_NOW = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)


def payload(name: str) -> Any:
    return json.loads((RESOURCES / name).read_text())


def raw(name: str) -> bytes:
    return (RESOURCES / name).read_bytes()


class FakeTime:
    """A wall clock that only moves when told to, and a sleep that moves it."""

    def __init__(self, start: float = WALL) -> None:
        self.now = start
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


def make_config(**overrides: Any) -> BinanceConfig:
    values: dict[str, Any] = {
        "api_key": API_KEY,
        "api_secret": SecretStr(API_SECRET),
        "rest_url": REST_URL,
        "ws_api_url": "ws://127.0.0.1:1/ws-api/v3",
        "stream_url": "ws://127.0.0.1:1",
    }
    values.update(overrides)
    return BinanceConfig(**values)


@pytest.fixture
def api() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=REST_URL, assert_all_called=False) as router:
        router.get("/api/v3/time").respond(json=payload("server_time.json"))
        yield router


@pytest.fixture
async def venue(api: respx.MockRouter, fake_time: FakeTime) -> AsyncIterator[BinanceVenue]:
    v = BinanceVenue(
        make_config(),
        budget=RateBudget(clock=fake_time, sleep=fake_time.sleep),
        clock=ServerClock(wall=fake_time),
        now=lambda: FIXED_NOW,
    )
    try:
        yield v
    finally:
        await v.close()
