"""Fixtures for the Kalshi adapter tests: documented payloads, a key pair, a venue under respx."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import respx
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import SecretStr

from engine.venues.kalshi import KalshiConfig, KalshiVenue
from engine.venues.kalshi.signing import generate_key_pair

RESOURCES = Path(__file__).resolve().parents[2] / "resources" / "kalshi"
REST_URL = "https://kalshi.test/trade-api/v2"
KEY_ID = "a952bcbe-ec3b-4b5b-b8f9-11dae589608c"
FIXED_NOW = datetime(2024, 5, 15, 17, 20, 0, tzinfo=UTC)


def payload(name: str) -> Any:
    return json.loads((RESOURCES / name).read_text())


def raw(name: str) -> bytes:
    return (RESOURCES / name).read_bytes()


@pytest.fixture(scope="session")
def key_pair() -> tuple[rsa.RSAPrivateKey, str]:
    return generate_key_pair()


@pytest.fixture
def api() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=REST_URL, assert_all_called=False) as router:
        router.get("/markets/HIGHNY-24JAN01-T60").respond(json=payload("market.json"))
        router.get("/exchange/user_data_timestamp").respond(
            json=payload("user_data_timestamp.json")
        )
        yield router


@pytest.fixture
async def venue(
    api: respx.MockRouter, key_pair: tuple[rsa.RSAPrivateKey, str]
) -> AsyncIterator[KalshiVenue]:
    v = KalshiVenue(
        KalshiConfig(key_id=KEY_ID, private_key=SecretStr(key_pair[1]), rest_url=REST_URL),
        now=lambda: FIXED_NOW,
    )
    try:
        yield v
    finally:
        await v.close()
