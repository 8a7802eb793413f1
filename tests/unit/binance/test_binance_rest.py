from __future__ import annotations

import itertools
from datetime import timedelta
from decimal import Decimal
from urllib.parse import parse_qsl

import httpx
import pytest
import respx
import structlog

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
from engine.venues.base import OrderRequest, Venue
from engine.venues.binance import BinanceVenue, sign_hmac
from engine.venues.binance.parsing import MALFORMED_MESSAGES

from .conftest import API_KEY, API_SECRET, FIXED_NOW, payload

BTC = Symbol("BTCUSDT")
ORDER = "/api/v3/order"
#: the fake wall clock reads ...319000 ms and the server answered ...319559
SERVER_NOW_MS = "1499827319559"


def limit_buy(coid: str = "tc-1") -> OrderRequest:
    return OrderRequest(
        client_order_id=ClientOrderId(coid),
        symbol=BTC,
        side=Side.BUY,
        type=OrderType.LIMIT,
        quantity=Decimal("0.00100000"),
        limit_price=Decimal("43000.10"),
        time_in_force=TimeInForce.GTC,
    )


def full_answer(coid: str = "tc-1") -> dict[str, object]:
    """The documented FULL answer, for our order (the venue echoes the client order id)."""
    return {**payload("new_order_full.json"), "clientOrderId": coid}


def signed_params(request: httpx.Request) -> dict[str, str]:
    """The request's parameters, after checking its signature covers exactly what was sent."""
    text = request.content.decode() if request.method == "POST" else request.url.query.decode()
    payload_part, _, signature = text.rpartition("&signature=")
    assert sign_hmac(API_SECRET, payload_part) == signature
    assert request.headers["X-MBX-APIKEY"] == API_KEY
    return dict(parse_qsl(payload_part, keep_blank_values=True))


def test_binance_venue_implements_the_venue_port(venue: BinanceVenue) -> None:
    assert isinstance(venue, Venue)
    assert venue.name == "binance"


async def test_submit_sends_a_signed_limit_order_with_our_client_id(
    venue: BinanceVenue, api: respx.MockRouter
) -> None:
    route = api.post(ORDER).respond(json=full_answer())
    report = await venue.submit(limit_buy())
    params = signed_params(route.calls.last.request)
    assert params == {
        "symbol": "BTCUSDT",
        "side": "BUY",
        "type": "LIMIT",
        "timeInForce": "GTC",
        "quantity": "0.001",
        "price": "43000.1",
        "newClientOrderId": "tc-1",
        "newOrderRespType": "FULL",
        "recvWindow": "5000",
        "timestamp": SERVER_NOW_MS,
    }
    assert report.venue_order_id == "28"
    assert report.status is VenueOrderStatus.FILLED
    assert report.filled_quantity == Decimal("10")
    assert [f.trade_id for f in report.fills] == ["56", "57", "58", "59", "60"]
    assert report.fills[1].fee == Decimal("19.99500000")
    assert report.fills[1].liquidity is Liquidity.TAKER


async def test_market_order_sends_no_price_or_time_in_force(
    venue: BinanceVenue, api: respx.MockRouter
) -> None:
    route = api.post(ORDER).respond(json=full_answer("tc-2"))
    order = OrderRequest(
        client_order_id=ClientOrderId("tc-2"),
        symbol=BTC,
        side=Side.SELL,
        type=OrderType.MARKET,
        quantity=Decimal("1E-8"),
    )
    await venue.submit(order)
    params = signed_params(route.calls.last.request)
    assert params["quantity"] == "0.00000001"
    assert "price" not in params
    assert "timeInForce" not in params


async def test_find_order_queries_by_orig_client_order_id(
    venue: BinanceVenue, api: respx.MockRouter
) -> None:
    route = api.get(ORDER).respond(json=payload("query_order.json"))
    report = await venue.find_order(Symbol("LTCBTC"), ClientOrderId("myOrder1"))
    params = signed_params(route.calls.last.request)
    assert params["origClientOrderId"] == "myOrder1"
    assert params["symbol"] == "LTCBTC"
    assert report.client_order_id == "myOrder1"
    assert report.status is VenueOrderStatus.NEW
    assert report.limit_price == Decimal("0.1")


async def test_find_order_of_unknown_order_raises_not_found(
    venue: BinanceVenue, api: respx.MockRouter
) -> None:
    api.get(ORDER).respond(400, json=payload("error_order_does_not_exist.json"))
    with pytest.raises(NotFound) as caught:
        await venue.find_order(BTC, ClientOrderId("nope"))
    assert caught.value.code == -2013


async def test_cancel_reports_the_order_and_the_cancel_request_id(
    venue: BinanceVenue, api: respx.MockRouter
) -> None:
    route = api.delete(ORDER).respond(json=payload("cancel_order.json"))
    report = await venue.cancel(Symbol("LTCBTC"), ClientOrderId("myOrder1"))
    assert signed_params(route.calls.last.request)["origClientOrderId"] == "myOrder1"
    assert report.client_order_id == "myOrder1"
    assert report.cancel_client_order_id == "cancelMyOrder1"
    assert report.status is VenueOrderStatus.CANCELED


async def test_cancel_of_unknown_order_raises_not_found(
    venue: BinanceVenue, api: respx.MockRouter
) -> None:
    api.delete(ORDER).respond(400, json=payload("error_cancel_unknown_order.json"))
    with pytest.raises(NotFound):
        await venue.cancel(BTC, ClientOrderId("nope"))


async def test_open_orders_with_and_without_symbol(
    venue: BinanceVenue, api: respx.MockRouter
) -> None:
    route = api.get("/api/v3/openOrders").respond(json=payload("open_orders.json"))
    [one] = await venue.open_orders(Symbol("LTCBTC"))
    assert signed_params(route.calls.last.request)["symbol"] == "LTCBTC"
    assert one.client_order_id == "myOrder1"
    await venue.open_orders()
    assert "symbol" not in signed_params(route.calls.last.request)


async def test_trades_since_asks_for_the_trade_after_the_last_known(
    venue: BinanceVenue, api: respx.MockRouter
) -> None:
    route = api.get("/api/v3/myTrades").respond(json=payload("my_trades.json"))
    # myTrades leaves the client order id out: the adapter finds it in allOrders
    order = {**payload("query_order.json"), "symbol": "BNBBTC", "orderId": 100234}
    orders = api.get("/api/v3/allOrders").respond(json=[order])
    [fill] = await venue.trades_since(Symbol("BNBBTC"), TradeId("28456"), limit=50)
    params = signed_params(route.calls.last.request)
    assert (params["fromId"], params["limit"]) == ("28457", "50")
    assert signed_params(orders.calls.last.request)["orderId"] == "100234"
    assert fill.trade_id == "28457"
    assert fill.venue_order_id == "100234"
    assert fill.client_order_id == "myOrder1"
    assert fill.side is Side.BUY
    assert fill.liquidity is Liquidity.TAKER
    assert (fill.quantity, fill.price, fill.fee) == (
        Decimal("12"),
        Decimal("4.000001"),
        Decimal("10.1"),
    )
    assert fill.fee_asset == "BNB"
    await venue.trades_since(Symbol("BNBBTC"), None)
    assert signed_params(route.calls.last.request)["fromId"] == "0"
    assert orders.call_count == 1, "a known order id is not looked up again"


async def test_balances_come_from_the_account(venue: BinanceVenue, api: respx.MockRouter) -> None:
    api.get("/api/v3/account").respond(json=payload("account.json"))
    balances = await venue.balances()
    assert [(b.asset, b.free, b.locked) for b in balances] == [
        ("BTC", Decimal("4723846.89208129"), Decimal(0)),
        ("LTC", Decimal("4763368.68006011"), Decimal(0)),
    ]


async def test_instrument_rules_are_fetched_once_per_symbol(
    venue: BinanceVenue, api: respx.MockRouter
) -> None:
    route = api.get("/api/v3/exchangeInfo").respond(json=payload("exchange_info.json"))
    rules = await venue.instrument_rules(Symbol("ETHBTC"))
    assert rules.tick_size == Decimal("0.000001")
    assert await venue.instrument_rules(Symbol("ETHBTC")) is rules
    assert route.call_count == 1
    assert route.calls.last.request.url.params["symbol"] == "ETHBTC"


async def test_invalid_timestamp_resyncs_the_clock_and_resends_once(
    venue: BinanceVenue, api: respx.MockRouter
) -> None:
    route = api.post(ORDER).mock(
        side_effect=[
            httpx.Response(400, json={"code": -1021, "msg": "Timestamp outside recvWindow."}),
            httpx.Response(200, json=full_answer()),
        ]
    )
    report = await venue.submit(limit_buy())
    assert report.venue_order_id == "28"
    assert route.call_count == 2
    assert api.routes[0].call_count == 2  # /api/v3/time: first sync and the re-sync
    for call in route.calls:
        signed_params(call.request)  # each attempt signed afresh


async def test_invalid_timestamp_twice_is_definitive(
    venue: BinanceVenue, api: respx.MockRouter
) -> None:
    route = api.post(ORDER).respond(400, json={"code": -1021, "msg": "Timestamp outside."})
    with pytest.raises(Definitive):
        await venue.submit(limit_buy())
    assert route.call_count == 2


@pytest.mark.parametrize(
    "failure",
    [
        httpx.ReadTimeout("no answer"),
        httpx.RemoteProtocolError("peer closed"),
        httpx.Response(502, text="Bad Gateway"),
        httpx.Response(503, json={"code": -1007, "msg": "Timeout waiting for response."}),
        httpx.Response(400, json={"code": -1007, "msg": "Timeout waiting for response."}),
    ],
)
async def test_ambiguous_submit_is_raised_and_never_retried(
    venue: BinanceVenue, api: respx.MockRouter, failure: Exception | httpx.Response
) -> None:
    route = api.post(ORDER).mock(side_effect=[failure])
    with pytest.raises(Ambiguous):
        await venue.submit(limit_buy())
    assert route.call_count == 1


async def test_connect_error_before_sending_is_definitive(
    venue: BinanceVenue, api: respx.MockRouter
) -> None:
    api.post(ORDER).mock(side_effect=httpx.ConnectError("refused"))
    with pytest.raises(Definitive, match="not sent"):
        await venue.submit(limit_buy())


async def test_filter_failure_is_definitive(venue: BinanceVenue, api: respx.MockRouter) -> None:
    api.post(ORDER).respond(400, json={"code": -1013, "msg": "Filter failure: LOT_SIZE"})
    with pytest.raises(Definitive) as caught:
        await venue.submit(limit_buy())
    assert caught.value.code == -1013


async def test_bad_signature_is_auth_failed(venue: BinanceVenue, api: respx.MockRouter) -> None:
    api.get("/api/v3/account").respond(
        400, json={"code": -1022, "msg": "Signature for this request is not valid."}
    )
    with pytest.raises(AuthFailed):
        await venue.balances()


async def test_after_429_the_adapter_refuses_without_sending(
    venue: BinanceVenue, api: respx.MockRouter
) -> None:
    route = api.post(ORDER).respond(
        429,
        json={"code": -1003, "msg": "Too much request weight used."},
        headers={"Retry-After": "30"},
    )
    with pytest.raises(RateLimited) as first:
        await venue.submit(limit_buy())
    assert first.value.retry_after == 30.0
    account = api.get("/api/v3/account").respond(json=payload("account.json"))
    with pytest.raises(RateLimited) as second:
        await venue.balances()
    assert 0 < second.value.retry_after <= 30.0
    assert route.call_count == 1
    assert account.call_count == 0


async def test_used_weight_header_feeds_the_budget(
    venue: BinanceVenue, api: respx.MockRouter
) -> None:
    api.get("/api/v3/account").respond(
        json=payload("account.json"), headers={"X-MBX-USED-WEIGHT-1M": "4321"}
    )
    await venue.balances()
    assert venue.rest.budget.weight_used == 4321


async def test_undecodable_success_on_submit_is_ambiguous_and_counted(
    venue: BinanceVenue, api: respx.MockRouter
) -> None:
    api.post(ORDER).respond(200, text="<html>oops</html>")
    before = MALFORMED_MESSAGES.labels(venue="binance")._value.get()
    with pytest.raises(Ambiguous):
        await venue.submit(limit_buy())
    assert MALFORMED_MESSAGES.labels(venue="binance")._value.get() == before + 1


async def test_secrets_never_reach_logs_or_exception_texts(
    venue: BinanceVenue, api: respx.MockRouter
) -> None:
    api.post(ORDER).respond(400, json={"code": -2010, "msg": "insufficient balance"})
    with structlog.testing.capture_logs() as logs, pytest.raises(Definitive) as caught:
        await venue.submit(limit_buy())
    texts = [str(caught.value), repr(caught.value), *(repr(entry) for entry in logs)]
    assert logs  # the refusal was logged
    for text in texts:
        assert API_SECRET not in text
        assert API_KEY not in text
        assert "signature" not in text


# -- answers about something else than asked, or with hostile values -----------------------


async def test_an_order_id_only_another_symbol_has_lends_no_client_id(
    venue: BinanceVenue, api: respx.MockRouter
) -> None:
    """allOrders rows of another symbol were remembered under that symbol, then looked up
    under ours: a KeyError out of trades_since."""
    api.get("/api/v3/myTrades").respond(json=payload("my_trades.json"))
    order = {**payload("query_order.json"), "symbol": "ETHBTC", "orderId": 100234}
    api.get("/api/v3/allOrders").respond(json=[order])
    before = MALFORMED_MESSAGES.labels(venue="binance")._value.get()
    with pytest.raises(Ambiguous, match="client order ids are unknown"):
        await venue.trades_since(Symbol("BNBBTC"), None)
    assert MALFORMED_MESSAGES.labels(venue="binance")._value.get() == before + 1


async def test_trades_of_another_symbol_or_with_hostile_values_are_skipped(
    venue: BinanceVenue, api: respx.MockRouter
) -> None:
    [row] = payload("my_trades.json")
    rows = [
        {**row, "id": 1, "symbol": "ETHBTC"},
        {**row, "id": 2, "qty": "NaN"},
        {**row, "id": 3, "time": 10**20},
        {**row, "id": 4},
    ]
    api.get("/api/v3/myTrades").respond(json=rows)
    order = {**payload("query_order.json"), "symbol": "BNBBTC", "orderId": 100234}
    api.get("/api/v3/allOrders").respond(json=[order])
    fills = await venue.trades_since(Symbol("BNBBTC"), None)
    assert [f.trade_id for f in fills] == ["4"]
    assert fills[0].client_order_id == "myOrder1"


async def test_find_order_takes_only_the_orders_own_trades(
    venue: BinanceVenue, api: respx.MockRouter
) -> None:
    order = {**payload("query_order.json"), "executedQty": "12.0"}
    api.get(ORDER).respond(json=order)
    [row] = payload("my_trades.json")
    mine = {**row, "symbol": "LTCBTC", "orderId": 1, "id": 10}
    api.get("/api/v3/myTrades").respond(json=[mine, {**mine, "orderId": 2, "id": 11}])
    report = await venue.find_order(Symbol("LTCBTC"), ClientOrderId("myOrder1"))
    assert [f.trade_id for f in report.fills] == ["10"]


async def test_an_answer_about_another_symbol_is_ambiguous(
    venue: BinanceVenue, api: respx.MockRouter
) -> None:
    api.get(ORDER).respond(json=payload("query_order.json"))  # LTCBTC's
    with pytest.raises(Ambiguous):
        await venue.find_order(BTC, ClientOrderId("myOrder1"))


async def test_an_order_answer_with_a_nan_quantity_is_ambiguous(
    venue: BinanceVenue, api: respx.MockRouter
) -> None:
    api.post(ORDER).respond(json={**full_answer(), "executedQty": "NaN"})
    with pytest.raises(Ambiguous):
        await venue.submit(limit_buy())


async def test_open_orders_skip_rows_of_other_symbols(
    venue: BinanceVenue, api: respx.MockRouter
) -> None:
    [row] = payload("open_orders.json")
    api.get("/api/v3/openOrders").respond(json=[{**row, "symbol": "ETHBTC"}, row])
    assert [o.symbol for o in await venue.open_orders(Symbol("LTCBTC"))] == ["LTCBTC"]


async def test_an_unreadable_balance_makes_the_account_answer_ambiguous(
    venue: BinanceVenue, api: respx.MockRouter
) -> None:
    account = payload("account.json")
    account["balances"][1]["free"] = "-Infinity"
    api.get("/api/v3/account").respond(json=account)
    with pytest.raises(Ambiguous):
        await venue.balances()


async def test_an_absurd_server_time_is_not_used_for_signing(
    venue: BinanceVenue, api: respx.MockRouter
) -> None:
    api.get("/api/v3/time").respond(json={"serverTime": 10**20})
    with pytest.raises(Ambiguous):
        await venue.rest.sync_time()
    assert not venue.rest.clock.synced


async def test_orders_since_walks_day_windows_up_to_now(
    venue: BinanceVenue, api: respx.MockRouter
) -> None:
    route = api.get("/api/v3/allOrders").respond(json=[])
    since = FIXED_NOW - timedelta(hours=50)

    assert await venue.orders_since(Symbol("LTCBTC"), since) == []

    windows = [signed_params(c.request) for c in route.calls]
    assert len(windows) == 3
    assert int(windows[0]["startTime"]) == int(since.timestamp() * 1000)
    for window in windows:
        assert "orderId" not in window
        # the venue refuses more than 24 hours between startTime and endTime
        assert int(window["endTime"]) - int(window["startTime"]) < 24 * 3600 * 1000
    for earlier, later in itertools.pairwise(windows):
        assert int(later["startTime"]) == int(earlier["endTime"]) + 1
    assert int(windows[-1]["endTime"]) >= int(FIXED_NOW.timestamp() * 1000)


async def test_orders_since_pages_by_order_id_after_a_full_page(
    venue: BinanceVenue, api: respx.MockRouter
) -> None:
    def orders(first: int, last: int) -> list[dict[str, object]]:
        return [
            {**payload("query_order.json"), "orderId": i, "clientOrderId": f"c{i}"}
            for i in range(first, last + 1)
        ]

    def answer(request: httpx.Request) -> httpx.Response:
        params = signed_params(request)
        if "startTime" in params:
            return httpx.Response(200, json=orders(1, 1000))
        assert params["orderId"] == "1001"
        return httpx.Response(200, json=orders(1001, 1500))

    route = api.get("/api/v3/allOrders").mock(side_effect=answer)

    listed = await venue.orders_since(Symbol("LTCBTC"), FIXED_NOW - timedelta(minutes=5))

    assert route.call_count == 2
    assert [r.client_order_id for r in listed] == [f"c{i}" for i in range(1, 1501)]
