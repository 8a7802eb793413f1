"""Kalshi settlements and market lifecycle messages → reports, from documentation-shaped
payloads: the settlements list over respx, the lifecycle channel's frames as they arrive."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import msgspec
import respx
from prometheus_client import REGISTRY

from engine.domain.types import Symbol, VenueName
from engine.venues.base import SettlesMarkets
from engine.venues.kalshi import KalshiVenue, schemas
from engine.venues.kalshi.settlements import parse_lifecycle

from .conftest import payload, raw

VENUE = VenueName("kalshi")
NOW = datetime(2024, 1, 2, 16, 0, tzinfo=UTC)


def lifecycle(name: str) -> schemas.WsMarketLifecycle:
    frame = msgspec.json.decode(raw(name), type=schemas.WsEnvelope)
    assert frame.type == "market_lifecycle_v2"
    return msgspec.json.decode(frame.msg, type=schemas.WsMarketLifecycle)


def test_the_kalshi_venue_settles_markets(venue: KalshiVenue) -> None:
    assert isinstance(venue, SettlesMarkets)


async def test_settlements_pay_one_for_yes_zero_for_no_and_skip_a_scalar_one(
    venue: KalshiVenue, api: respx.MockRouter
) -> None:
    route = api.get("/portfolio/settlements").respond(json=payload("settlements.json"))
    before = skipped(venue)
    reports = await venue.settlements_since(datetime(2024, 1, 1, tzinfo=UTC))

    assert route.calls.last.request.url.params["min_ts"] == "1704067200"
    assert [(r.symbol, r.result, r.payout, r.quantity) for r in reports] == [
        (Symbol("HIGHNY-24JAN01-T60"), "no", Decimal(0), Decimal(10)),
        (Symbol("HIGHNY-24JAN01-T50"), "yes", Decimal(1), Decimal(10)),  # net of the NO side
    ]
    assert reports[0].settled_at == datetime(2024, 1, 2, 15, 0, tzinfo=UTC)
    assert skipped(venue) == before + 1  # the scalar one: counted, never guessed at


def skipped(venue: KalshiVenue) -> float:
    labels = {"account": venue.metrics.account, "venue": venue.name, "source": "rest"}
    return REGISTRY.get_sample_value("tradectl_malformed_messages_total", labels) or 0.0


def test_the_documented_lifecycle_example_is_a_step_without_a_result() -> None:
    event = parse_lifecycle(lifecycle("ws_market_lifecycle.json"), venue=VENUE, received_at=NOW)
    assert (event.symbol, event.event, event.result, event.payout) == (
        "INXD-23SEP14-B4487",
        "created",
        None,
        None,
    )
    assert event.at == NOW


def test_a_determined_step_carries_the_result_and_the_payout() -> None:
    event = parse_lifecycle(lifecycle("ws_market_determined.json"), venue=VENUE, received_at=NOW)
    assert (event.event, event.result, event.payout) == ("determined", "yes", Decimal(1))
    assert event.at == datetime.fromtimestamp(1694722000, tz=UTC)
