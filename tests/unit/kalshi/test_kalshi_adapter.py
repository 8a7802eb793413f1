"""The Kalshi adapter against documented payloads over respx: signing, orders, the scan that
stands in for a lookup by client order id, fills, balances, rules and the error map."""

from __future__ import annotations

import base64
import json
from decimal import Decimal

import httpx
import pytest
import respx
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from engine.domain.types import (
    ClientOrderId,
    Liquidity,
    OrderType,
    Side,
    Symbol,
    TimeInForce,
    TradeId,
    VenueOrderStatus,
)
from engine.exceptions import Ambiguous, AuthFailed, Definitive, NotFound, RateLimited
from engine.venues.base import ListsOrders, OrderRequest, Venue
from engine.venues.kalshi import KalshiVenue
from engine.venues.kalshi.signing import signature_payload

from .conftest import FIXED_NOW, KEY_ID, payload

MARKET = Symbol("HIGHNY-24JAN01-T60")
COID = ClientOrderId("8c35ecb3-328f-4f52-8c7c-0f4b9862f8d1")
ORDER_ID = "3b23c1c7-f4ef-4f0d-8b9a-9e53c61f1a0d"


def bid(coid: str = COID, price: str = "0.56", tif: TimeInForce = TimeInForce.GTC) -> OrderRequest:
    return OrderRequest(
        client_order_id=ClientOrderId(coid),
        symbol=MARKET,
        side=Side.BUY,
        type=OrderType.LIMIT,
        quantity=Decimal("10"),
        limit_price=Decimal(price),
        time_in_force=tif,
    )


def assert_signed(request: httpx.Request, public_key: rsa.RSAPublicKey) -> None:
    """PSS over timestamp + METHOD + the path from the root, without the query."""
    assert request.headers["KALSHI-ACCESS-KEY"] == KEY_ID
    ts = int(request.headers["KALSHI-ACCESS-TIMESTAMP"])
    signed = signature_payload(ts, request.method, request.url.path)
    assert request.url.path.startswith("/trade-api/v2/")
    assert b"?" not in signed
    public_key.verify(
        base64.b64decode(request.headers["KALSHI-ACCESS-SIGNATURE"]),
        signed,
        padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.DIGEST_LENGTH),
        hashes.SHA256(),
    )


def test_kalshi_venue_implements_the_venue_port_and_lists_orders(venue: KalshiVenue) -> None:
    assert isinstance(venue, Venue)
    assert isinstance(venue, ListsOrders)
    assert venue.name == "kalshi"


def test_the_private_key_never_shows_in_repr(
    venue: KalshiVenue, key_pair: tuple[rsa.RSAPrivateKey, str]
) -> None:
    assert "PRIVATE" not in repr(venue.config)
    assert KEY_ID not in repr(venue.config)
    assert "PRIVATE" not in repr(venue)


async def test_submit_posts_a_signed_v2_create_and_reports_the_resting_order(
    venue: KalshiVenue, api: respx.MockRouter, key_pair: tuple[rsa.RSAPrivateKey, str]
) -> None:
    route = api.post("/portfolio/events/orders").respond(201, json=payload("create_order.json"))

    report = await venue.submit(bid())

    request = route.calls.last.request
    assert_signed(request, key_pair[0].public_key())
    assert json.loads(request.content) == {
        "ticker": "HIGHNY-24JAN01-T60",
        "side": "bid",
        "count": "10.00",
        "price": "0.56",
        "time_in_force": "good_till_canceled",
        "self_trade_prevention_type": "taker_at_cross",
        "client_order_id": COID,
    }
    assert (report.status, report.venue_order_id, report.client_order_id) == (
        VenueOrderStatus.NEW,
        ORDER_ID,
        COID,
    )
    assert (report.quantity, report.limit_price, report.filled_quantity) == (
        Decimal("10"),
        Decimal("0.56"),
        Decimal("0.00"),
    )


async def test_a_market_order_goes_as_ioc_at_the_far_end_of_the_grid(
    venue: KalshiVenue, api: respx.MockRouter
) -> None:
    route = api.post("/portfolio/events/orders").respond(
        201,
        json={**payload("create_order.json"), "fill_count": "10.00", "remaining_count": "0.00"},
    )
    api.get("/portfolio/fills").respond(json={"fills": [], "cursor": ""})
    order = OrderRequest(
        client_order_id=COID,
        symbol=MARKET,
        side=Side.SELL,
        type=OrderType.MARKET,
        quantity=Decimal("10"),
    )

    report = await venue.submit(order)

    sent = json.loads(route.calls.last.request.content)
    assert (sent["side"], sent["price"], sent["time_in_force"]) == (
        "ask",
        "0.001",
        "immediate_or_cancel",
    )
    assert (report.status, report.type) == (VenueOrderStatus.FILLED, OrderType.MARKET)


async def test_an_off_grid_price_is_definitive_and_nothing_is_sent(
    venue: KalshiVenue, api: respx.MockRouter
) -> None:
    route = api.post("/portfolio/events/orders").respond(201, json=payload("create_order.json"))
    with pytest.raises(Definitive):
        await venue.submit(bid(price="0.565"))  # 0.1..0.9 steps by a cent
    assert not route.called


@pytest.mark.parametrize(
    ("status", "body", "outcome"),
    [
        (409, "error_409.json", Ambiguous),  # maybe our own first attempt: look it up
        (429, "error_429.json", RateLimited),
        (503, None, Ambiguous),
        (401, None, AuthFailed),
        (400, None, Definitive),
    ],
)
async def test_create_errors_map_to_one_outcome_each(
    venue: KalshiVenue,
    api: respx.MockRouter,
    status: int,
    body: str | None,
    outcome: type[Exception],
) -> None:
    json_body = payload(body) if body else {"code": "bad", "message": "no", "details": ""}
    api.post("/portfolio/events/orders").respond(status, json=json_body)
    with pytest.raises(outcome):
        await venue.submit(bid())


async def test_a_429_empties_the_write_bucket_so_the_next_write_waits(
    venue: KalshiVenue, api: respx.MockRouter
) -> None:
    api.post("/portfolio/events/orders").respond(429, json=payload("error_429.json"))
    with pytest.raises(RateLimited) as raised:
        await venue.submit(bid())
    assert raised.value.retry_after > 0
    assert venue.rest.budget.write.tokens < 10


async def test_a_timeout_after_sending_a_create_is_ambiguous(
    venue: KalshiVenue, api: respx.MockRouter
) -> None:
    api.post("/portfolio/events/orders").mock(side_effect=httpx.ReadTimeout("lost"))
    with pytest.raises(Ambiguous):
        await venue.submit(bid())


async def test_find_order_scans_the_market_from_the_submit_time_and_matches_the_client_id(
    venue: KalshiVenue, api: respx.MockRouter
) -> None:
    api.post("/portfolio/events/orders").mock(side_effect=httpx.ReadTimeout("lost"))
    listing = api.get("/portfolio/orders").respond(json=payload("orders.json"))
    with pytest.raises(Ambiguous):
        await venue.submit(bid())

    found = await venue.find_order(MARKET, COID)

    params = dict(listing.calls.last.request.url.params)
    assert params["ticker"] == MARKET
    assert int(params["min_ts"]) == int(FIXED_NOW.timestamp()) - 30
    assert (found.venue_order_id, found.status, found.side) == (
        ORDER_ID,
        VenueOrderStatus.NEW,
        Side.BUY,
    )


async def test_find_order_follows_the_cursor_through_every_page(
    venue: KalshiVenue, api: respx.MockRouter
) -> None:
    other = {**payload("orders.json")["orders"][0], "client_order_id": "someone-else"}
    api.get("/portfolio/orders", params={"cursor": "p2"}).respond(json=payload("orders.json"))
    api.get("/portfolio/orders").respond(json={"orders": [other], "cursor": "p2"})

    found = await venue.find_order(MARKET, COID)

    assert found.client_order_id == COID


async def test_an_order_the_scan_lacks_is_not_found_only_once_reads_cover_its_submit(
    venue: KalshiVenue, api: respx.MockRouter
) -> None:
    api.get("/portfolio/orders").respond(json={"orders": [], "cursor": ""})
    stale = api.get("/exchange/user_data_timestamp").respond(
        json={"as_of_time": "2024-05-15T17:19:59Z"}
    )
    with pytest.raises(Ambiguous):
        await venue.find_order(MARKET, COID)  # reads end before this process started

    stale.respond(json=payload("user_data_timestamp.json"))
    with pytest.raises(NotFound):
        await venue.find_order(MARKET, COID)


async def test_a_filled_order_comes_back_with_its_fills_oldest_first(
    venue: KalshiVenue, api: respx.MockRouter
) -> None:
    executed = {**payload("order.json")["order"]}
    api.get("/portfolio/orders").respond(json={"orders": [executed], "cursor": ""})
    by_order = api.get("/portfolio/fills").respond(json=payload("fills.json"))

    found = await venue.find_order(MARKET, COID)

    assert dict(by_order.calls.last.request.url.params)["order_id"] == ORDER_ID
    assert found.status is VenueOrderStatus.FILLED
    assert [f.quantity for f in found.fills] == [Decimal("4.00"), Decimal("6.00")]
    assert {f.client_order_id for f in found.fills} == {COID}
    assert found.fills[0].fee == Decimal("0.0600")
    assert found.fills[0].liquidity is Liquidity.TAKER


async def test_trades_since_returns_what_the_listing_shows_after_the_anchor_with_client_ids(
    venue: KalshiVenue, api: respx.MockRouter
) -> None:
    page = payload("fills.json")
    newest, older = page["fills"]
    api.get("/portfolio/fills").respond(json=page)
    lookup = api.get(f"/portfolio/orders/{ORDER_ID}").respond(json=payload("order.json"))

    everything = await venue.trades_since(MARKET, None)
    later = await venue.trades_since(MARKET, TradeId(older["fill_id"]))

    assert [f.trade_id for f in everything] == [older["fill_id"], newest["fill_id"]]
    assert [f.trade_id for f in later] == [newest["fill_id"]]
    assert {f.client_order_id for f in everything} == {COID}
    assert lookup.call_count == 1  # the order's client id is remembered after one read


async def test_cancel_deletes_by_venue_order_id_and_reports_canceled(
    venue: KalshiVenue, api: respx.MockRouter
) -> None:
    api.get("/portfolio/orders").respond(json=payload("orders.json"))
    route = api.delete(f"/portfolio/events/orders/{ORDER_ID}").respond(
        json=payload("cancel_order.json")
    )

    canceled = await venue.cancel(MARKET, COID)

    assert route.called
    assert (canceled.status, canceled.filled_quantity) == (VenueOrderStatus.CANCELED, 0)


async def test_balances_are_cents_to_dollars_and_positions_per_market(
    venue: KalshiVenue, api: respx.MockRouter
) -> None:
    api.get("/portfolio/balance").respond(json=payload("balance.json"))
    api.get("/portfolio/positions").respond(json=payload("positions.json"))
    api.get("/portfolio/orders").respond(json=payload("orders.json"))

    balances = {b.asset: b for b in await venue.balances()}

    assert (balances["USD"].free, balances["USD"].locked) == (Decimal(100), Decimal("5.6"))
    assert balances[MARKET].total == Decimal("10.00")


async def test_instrument_rules_come_from_the_price_ranges(venue: KalshiVenue) -> None:
    rules = await venue.instrument_rules(MARKET)

    assert (rules.base_asset, rules.quote_asset) == (MARKET, "USD")
    assert (rules.tick_size, rules.step_size, rules.min_qty) == (
        Decimal("0.001"),
        Decimal("0.01"),
        Decimal("0.01"),
    )
    assert (rules.min_price, rules.max_price) == (Decimal("0.001"), Decimal("0.999"))
    assert rules.extra["status"] == "active"


async def test_a_non_finite_count_in_a_listing_is_skipped_and_counted(
    venue: KalshiVenue, api: respx.MockRouter
) -> None:
    bad = {**payload("orders.json")["orders"][0], "fill_count_fp": "NaN"}
    api.get("/portfolio/orders").respond(json={"orders": [bad], "cursor": ""})
    assert await venue.open_orders(MARKET) == []
