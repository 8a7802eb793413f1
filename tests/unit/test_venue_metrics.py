"""Venue metrics as Prometheus scrapes them: the paper venue's streams, per account."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from engine.domain.types import Symbol
from engine.ops_http import serving
from engine.readiness import Readiness
from engine.venues.binance import BinanceConfig, BinanceVenue
from engine.venues.binance.ratelimit import ACCOUNT
from engine.venues.metrics import VenueMetrics
from engine.venues.paper import default_paper_venue
from tests.helpers import eventually

BTC = Symbol("BTCUSDT")


@pytest.fixture
async def scrape() -> AsyncIterator[httpx.AsyncClient]:
    async with (
        serving("127.0.0.1", 0, Readiness()) as server,
        httpx.AsyncClient(base_url=server.url) as client,
    ):
        yield client


async def value(client: httpx.AsyncClient, name: str, **labels: str) -> float | None:
    text = (await client.get("/metrics")).text
    found = [
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and sample.labels == labels
    ]
    return found[0] if found else None


async def test_paper_streams_are_connected_while_subscribed_and_reconnects_counted(
    scrape: httpx.AsyncClient,
) -> None:
    labels = {"account": "paper-metrics", "venue": "paper"}
    venue = default_paper_venue(
        (BTC,), metrics=VenueMetrics(account="paper-metrics", venue="paper")
    )
    connected = "tradectl_stream_connected"
    reconnects = "tradectl_stream_reconnects_total"
    assert await value(scrape, connected, **labels, stream="market") is None

    market = venue.market_stream((BTC,))
    user = venue.user_stream()
    assert await value(scrape, connected, **labels, stream="market") == 1
    assert await value(scrape, connected, **labels, stream="user") == 1
    assert await value(scrape, reconnects, **labels, stream="market") is None

    await market.aclose()
    assert await value(scrape, connected, **labels, stream="market") == 0
    assert await value(scrape, connected, **labels, stream="user") == 1

    venue.market_stream((BTC,))  # subscribed again: a reconnect
    assert await value(scrape, connected, **labels, stream="market") == 1
    assert await value(scrape, reconnects, **labels, stream="market") == 1

    await venue.close()
    assert await value(scrape, connected, **labels, stream="market") == 0
    assert await value(scrape, connected, **labels, stream="user") == 0
    del user


async def test_two_accounts_on_one_venue_never_share_a_series(
    scrape: httpx.AsyncClient,
) -> None:
    # fresh names: the registry is the process's, shared with every other test
    name_a, name_b = f"a-{uuid.uuid4().hex[:8]}", f"b-{uuid.uuid4().hex[:8]}"
    a = VenueMetrics(account=name_a, venue="simulator")
    b = VenueMetrics(account=name_b, venue="simulator")
    a.malformed("rest")
    a.malformed("rest")
    b.malformed("rest")
    name = "tradectl_malformed_messages_total"
    mine = {"venue": "simulator", "source": "rest"}
    assert await value(scrape, name, account=name_a, **mine) == 2
    assert await value(scrape, name, account=name_b, **mine) == 1


async def test_a_request_the_binance_budget_holds_is_counted_per_account(
    scrape: httpx.AsyncClient,
) -> None:
    metrics = VenueMetrics(account="acct-budget-wait", venue="binance")
    venue = BinanceVenue(BinanceConfig(api_key="k", api_secret=SecretStr("s")), metrics=metrics)
    name = "tradectl_venue_rate_limit_waits_total"
    labels = {"account": "acct-budget-wait", "venue": "binance", "limit": "request_weight_1m"}
    held = None
    try:
        budget = venue.rest.budget
        budget.observe({"x-mbx-used-weight-1m": "5999"})  # the venue says: nearly spent
        assert await value(scrape, name, **labels) is None
        held = asyncio.create_task(budget.acquire(ACCOUNT))  # waits for the next minute

        async def counted() -> bool:
            return await value(scrape, name, **labels) == 1

        await eventually(counted)
        # the live headroom reaches the reconciler through the same metrics object
        assert metrics.read_headroom() < 0.01
    finally:
        if held is not None:
            held.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await held
        await venue.close()
