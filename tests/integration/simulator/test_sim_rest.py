"""The REST surface over real HTTP on loopback."""

from __future__ import annotations

import time
from decimal import Decimal as D
from urllib.parse import urlencode

import httpx

from engine.venues.simulator import SimulatorHandle

from .helpers import SignedClient, sign


def ask(sim: SimulatorHandle, symbol: str = "BTCUSDT") -> str:
    return str(sim.state.engine.touch[symbol].ask)


def bid(sim: SimulatorHandle, symbol: str = "BTCUSDT") -> str:
    return str(sim.state.engine.touch[symbol].bid)


async def test_public_endpoints_answer_with_binance_shapes(http: httpx.AsyncClient) -> None:
    assert (await http.get("/api/v3/ping")).json() == {}
    server_time = (await http.get("/api/v3/time")).json()["serverTime"]
    assert abs(server_time - time.time() * 1000) < 60_000
    info = (await http.get("/api/v3/exchangeInfo", params={"symbol": "BTCUSDT"})).json()
    (symbol,) = info["symbols"]
    filters = {f["filterType"]: f for f in symbol["filters"]}
    assert filters["PRICE_FILTER"]["tickSize"] == "0.01000000"
    assert filters["LOT_SIZE"]["stepSize"] == "0.00001000"
    assert filters["NOTIONAL"]["minNotional"] == "5.00000000"
    assert (symbol["baseAsset"], symbol["quoteAsset"]) == ("BTC", "USDT")
    bad = await http.get("/api/v3/exchangeInfo", params={"symbol": "NOPE"})
    assert (bad.status_code, bad.json()["code"]) == (400, -1121)


async def test_bad_signature_is_refused_with_1022(http: httpx.AsyncClient) -> None:
    query = urlencode({"timestamp": int(time.time() * 1000)})
    r = await http.get(
        f"/api/v3/account?{query}&signature={sign(query, 'wrong-secret')}",
        headers={"X-MBX-APIKEY": "sim-api-key"},
    )
    assert r.status_code == 400
    assert r.json() == {"code": -1022, "msg": "Signature for this request is not valid."}


async def test_signature_covers_query_and_body_as_sent(http: httpx.AsyncClient) -> None:
    query = "symbol=BTCUSDT"
    body = urlencode({"timestamp": int(time.time() * 1000), "recvWindow": 5000})
    r = await http.request(
        "GET",
        f"/api/v3/openOrders?{query}",
        content=f"{body}&signature={sign(query + body)}",
        headers={
            "X-MBX-APIKEY": "sim-api-key",
            "Content-Type": "application/x-www-form-urlencoded",
        },
    )
    assert r.status_code == 200, r.text
    assert r.json() == []


async def test_unknown_key_missing_key_and_stale_timestamp(http: httpx.AsyncClient) -> None:
    unknown = SignedClient(http, api_key="someone-else")
    r = await unknown.call("GET", "/api/v3/account")
    assert (r.status_code, r.json()["code"]) == (401, -2015)
    r = await http.get("/api/v3/account", params={"timestamp": 1, "signature": "00"})
    assert (r.status_code, r.json()["code"]) == (401, -2014)
    stale = SignedClient(http, now_ms=lambda: int(time.time() * 1000) - 10_000)
    r = await stale.call("GET", "/api/v3/account")
    assert r.json() == {
        "code": -1021,
        "msg": "Timestamp for this request is outside of the recvWindow.",
    }
    ahead = SignedClient(http, now_ms=lambda: int(time.time() * 1000) + 5_000)
    assert (await ahead.call("GET", "/api/v3/account")).json()["code"] == -1021


async def test_order_lifecycle_over_rest(sim: SimulatorHandle, client: SignedClient) -> None:
    r = await client.limit("BTCUSDT", "BUY", "0.01", "29000.00", "life-1", newOrderRespType="ACK")
    assert r.status_code == 200, r.text
    ack = r.json()
    assert set(ack) == {"symbol", "orderId", "orderListId", "clientOrderId", "transactTime"}
    assert r.headers["X-MBX-ORDER-COUNT-10S"] == "1"
    assert int(r.headers["X-MBX-USED-WEIGHT-1M"]) >= 1

    by_id = (
        await client.call("GET", "/api/v3/order", symbol="BTCUSDT", orderId=ack["orderId"])
    ).json()
    by_cid = (
        await client.call("GET", "/api/v3/order", symbol="BTCUSDT", origClientOrderId="life-1")
    ).json()
    assert by_id == by_cid
    assert (by_id["status"], by_id["price"], by_id["origQty"]) == (
        "NEW",
        "29000.00000000",
        "0.01000000",
    )
    assert by_id["isWorking"] is True

    opened = (await client.call("GET", "/api/v3/openOrders", symbol="BTCUSDT")).json()
    assert [o["clientOrderId"] for o in opened] == ["life-1"]

    cancel = await client.call(
        "DELETE",
        "/api/v3/order",
        symbol="BTCUSDT",
        origClientOrderId="life-1",
        newClientOrderId="cx-1",
    )
    body = cancel.json()
    assert (body["status"], body["origClientOrderId"], body["clientOrderId"]) == (
        "CANCELED",
        "life-1",
        "cx-1",
    )
    again = await client.call("DELETE", "/api/v3/order", symbol="BTCUSDT", orderId=ack["orderId"])
    assert again.json() == {"code": -2011, "msg": "Unknown order sent."}
    all_orders = (await client.call("GET", "/api/v3/allOrders", symbol="BTCUSDT")).json()
    assert [o["status"] for o in all_orders] == ["CANCELED"]


async def test_unknown_order_lookup_is_2013(client: SignedClient) -> None:
    r = await client.call("GET", "/api/v3/order", symbol="BTCUSDT", origClientOrderId="never")
    assert (r.status_code, r.json()) == (400, {"code": -2013, "msg": "Order does not exist."})


async def test_full_response_carries_fills_and_my_trades_pages_by_from_id(
    sim: SimulatorHandle, client: SignedClient
) -> None:
    fills = []
    for i in range(3):
        r = await client.order(
            symbol="BTCUSDT", side="BUY", type="MARKET", quantity="0.01", newClientOrderId=f"m-{i}"
        )
        full = r.json()
        assert full["status"] == "FILLED", full
        fills += full["fills"]
    assert [f["tradeId"] for f in fills] == [1, 2, 3]
    assert all(f["commissionAsset"] == "USDT" for f in fills)

    page = (
        await client.call("GET", "/api/v3/myTrades", symbol="BTCUSDT", fromId=2, limit=1)
    ).json()
    assert [t["id"] for t in page] == [2]
    everything = (await client.call("GET", "/api/v3/myTrades", symbol="BTCUSDT")).json()
    assert [t["id"] for t in everything] == [1, 2, 3]
    assert everything[0]["isBuyer"] is True
    assert everything[0]["isMaker"] is False
    assert D(everything[0]["quoteQty"]) == D(everything[0]["price"]) * D("0.01")


async def test_result_response_and_account_balances_move_with_fills(
    sim: SimulatorHandle, client: SignedClient
) -> None:
    r = await client.limit("BTCUSDT", "SELL", "0.1", bid(sim), "sell-1", newOrderRespType="RESULT")
    result = r.json()
    assert "fills" not in result
    assert (result["status"], result["executedQty"]) == ("FILLED", "0.10000000")
    balances = {
        b["asset"]: b for b in (await client.call("GET", "/api/v3/account")).json()["balances"]
    }
    assert balances["BTC"] == {"asset": "BTC", "free": "0.90000000", "locked": "0.00000000"}
    proceeds = D(result["cummulativeQuoteQty"])
    assert D(balances["USDT"]["free"]) == D(100_000) + proceeds - proceeds * D("0.001")


async def test_duplicate_open_client_id_refused_then_reusable_after_cancel_and_fill(
    sim: SimulatorHandle, client: SignedClient
) -> None:
    first = await client.limit("BTCUSDT", "BUY", "0.01", "29000.00", "dup-1")
    assert first.status_code == 200
    dup = await client.limit("BTCUSDT", "BUY", "0.01", "29000.00", "dup-1")
    assert (dup.status_code, dup.json()) == (400, {"code": -2010, "msg": "Duplicate order sent."})
    await client.call("DELETE", "/api/v3/order", symbol="BTCUSDT", origClientOrderId="dup-1")
    reused = await client.limit("BTCUSDT", "BUY", "0.01", ask(sim), "dup-1")
    assert reused.json()["status"] == "FILLED"
    once_more = await client.limit("BTCUSDT", "BUY", "0.01", "29000.00", "dup-1")
    assert once_more.status_code == 200
    truth = sim.state.ground_truth()
    assert len(truth["venue_orders_by_client_id"]["dup-1"]) == 3
    assert truth["submission_attempts"]["dup-1"] == 4


async def test_partial_fill_then_rest_over_rest(sim: SimulatorHandle, client: SignedClient) -> None:
    # the touch holds 0.5 BTC: a 0.8 BTC marketable GTC buy fills 0.5 and rests 0.3
    r = (await client.limit("BTCUSDT", "BUY", "0.8", ask(sim), "part-1")).json()
    assert (r["status"], r["executedQty"]) == ("PARTIALLY_FILLED", "0.50000000")
    assert len(r["fills"]) == 1


async def test_insufficient_balance_and_filter_failures(client: SignedClient) -> None:
    broke = await client.limit("BTCUSDT", "BUY", "10", "29000.00", "big-1")
    assert broke.json() == {
        "code": -2010,
        "msg": "Account has insufficient balance for requested action.",
    }
    tick = await client.limit("BTCUSDT", "BUY", "0.01", "29000.001", "f-1")
    assert tick.json() == {"code": -1013, "msg": "Filter failure: PRICE_FILTER"}
    lot = await client.limit("BTCUSDT", "BUY", "0.000001", "29000.00", "f-2")
    assert lot.json() == {"code": -1013, "msg": "Filter failure: LOT_SIZE"}
    step = await client.limit("BTCUSDT", "BUY", "0.000015", "29000.00", "f-3")
    assert step.json() == {"code": -1013, "msg": "Filter failure: LOT_SIZE"}
    notional = await client.limit("BTCUSDT", "BUY", "0.0001", "29000.00", "f-4")
    assert notional.json() == {"code": -1013, "msg": "Filter failure: NOTIONAL"}
