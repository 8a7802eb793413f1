"""The WebSocket API user-data stream and the market streams over real sockets."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest
import websockets

from engine.venues.simulator import SimulatorHandle

from .helpers import SignedClient, recv_events, recv_json, subscribe_user, ws_subscribe_params


async def test_user_stream_reports_a_fill_in_the_documented_envelope(
    sim: SimulatorHandle, client: SignedClient
) -> None:
    async with websockets.connect(sim.ws_api_url) as ws:
        ack = await subscribe_user(ws)
        assert ack["status"] == 200
        assert ack["result"] == {"subscriptionId": 0}
        ask = str(sim.state.engine.touch["BTCUSDT"].ask)
        r = await client.limit("BTCUSDT", "BUY", "0.01", ask, "ws-fill-1")
        assert r.status_code == 200
        raw = await recv_json(ws)
        assert raw["subscriptionId"] == 0
        new, trade, position = [raw["event"], *await recv_events(ws, 2)]
        assert (new["e"], new["x"], new["X"], new["c"]) == (
            "executionReport",
            "NEW",
            "NEW",
            "ws-fill-1",
        )
        assert (trade["x"], trade["X"], trade["l"], trade["t"]) == (
            "TRADE",
            "FILLED",
            "0.01000000",
            1,
        )
        assert trade["N"] == "USDT"
        assert trade["i"] == r.json()["orderId"]
        assert position["e"] == "outboundAccountPosition"
        assert {b["a"] for b in position["B"]} == {"BTC", "USDT"}


async def test_cancel_report_carries_original_id_in_big_c(
    sim: SimulatorHandle, client: SignedClient
) -> None:
    async with websockets.connect(sim.ws_api_url) as ws:
        await subscribe_user(ws)
        await client.limit("BTCUSDT", "BUY", "0.01", "29000.00", "to-cancel")
        new, _ = await recv_events(ws, 2)
        assert new["w"] is True  # resting on the book
        assert new["W"] == new["O"]
        await client.call(
            "DELETE",
            "/api/v3/order",
            symbol="BTCUSDT",
            origClientOrderId="to-cancel",
            newClientOrderId="cancel-req",
        )
        report, _ = await recv_events(ws, 2)
        assert (report["x"], report["X"], report["c"], report["C"]) == (
            "CANCELED",
            "CANCELED",
            "cancel-req",
            "to-cancel",
        )


async def test_deposit_sends_balance_update(sim: SimulatorHandle, http: httpx.AsyncClient) -> None:
    async with websockets.connect(sim.ws_api_url) as ws:
        await subscribe_user(ws)
        r = await http.post("/admin/deposit", json={"asset": "USDT", "amount": "250"})
        assert r.status_code == 200
        update, position = await recv_events(ws, 2)
        assert (update["e"], update["a"], update["d"]) == ("balanceUpdate", "USDT", "250.00000000")
        assert position["B"] == [{"a": "USDT", "f": "100250.00000000", "l": "0.00000000"}]


async def test_unsubscribe_stops_events_and_ping_answers(
    sim: SimulatorHandle, client: SignedClient
) -> None:
    async with websockets.connect(sim.ws_api_url) as ws:
        await subscribe_user(ws)
        await ws.send(
            json.dumps(
                {"id": "u", "method": "userDataStream.unsubscribe", "params": {"subscriptionId": 0}}
            )
        )
        assert (await recv_json(ws))["status"] == 200
        await client.limit("BTCUSDT", "BUY", "0.01", "29000.00", "quiet")
        await ws.send(json.dumps({"id": "p", "method": "ping"}))
        # the ping answer is the very next message: no event slipped in after unsubscribing
        answer = await recv_json(ws)
        assert (answer["id"], answer["status"], answer["result"]) == ("p", 200, {})
        assert answer["rateLimits"][0]["rateLimitType"] == "REQUEST_WEIGHT"
        # protocol-level ping/pong is answered too
        pong = await ws.ping()
        await asyncio.wait_for(pong, 5)


async def test_subscribe_with_a_bad_signature_is_refused(sim: SimulatorHandle) -> None:
    async with websockets.connect(sim.ws_api_url) as ws:
        params = ws_subscribe_params(int(time.time() * 1000), secret="nope")
        await ws.send(
            json.dumps({"id": 9, "method": "userDataStream.subscribe.signature", "params": params})
        )
        answer = await recv_json(ws)
        assert answer["status"] == 400
        assert answer["error"] == {"code": -1022, "msg": "Signature for this request is not valid."}
        params = ws_subscribe_params(int(time.time() * 1000), api_key="other")
        await ws.send(
            json.dumps({"id": 10, "method": "userDataStream.subscribe.signature", "params": params})
        )
        assert (await recv_json(ws))["error"]["code"] == -2015


async def test_raw_market_stream_sends_book_tickers(sim: SimulatorHandle) -> None:
    async with websockets.connect(f"{sim.stream_url}/ws/btcusdt@bookTicker") as ws:
        sim.step()
        msg = await recv_json(ws)
        touch = sim.state.engine.touch["BTCUSDT"]
        assert msg == {
            "u": 1,
            "s": "BTCUSDT",
            "b": f"{touch.bid:.8f}",
            "B": f"{touch.bid_size:.8f}",
            "a": f"{touch.ask:.8f}",
            "A": f"{touch.ask_size:.8f}",
        }


async def test_combined_stream_wraps_trades_and_klines(sim: SimulatorHandle) -> None:
    url = f"{sim.stream_url}/stream?streams=ethusdt@trade/ethusdt@kline_1m"
    async with websockets.connect(url) as ws:
        sim.step(2)
        messages = [await recv_json(ws) for _ in range(4)]
    streams = [m["stream"] for m in messages]
    assert streams == ["ethusdt@trade", "ethusdt@kline_1m"] * 2
    trade, bar = messages[2]["data"], messages[3]["data"]
    assert trade["e"] == "trade"
    assert trade["t"] > messages[0]["data"]["t"]
    assert bar["e"] == "kline"
    assert bar["k"]["i"] == "1m"
    assert bar["k"]["c"] == trade["p"]
    assert bar["k"]["L"] == trade["t"]


async def test_live_subscribe_on_a_market_connection(sim: SimulatorHandle) -> None:
    async with websockets.connect(f"{sim.stream_url}/ws") as ws:
        await ws.send(json.dumps({"method": "SUBSCRIBE", "params": ["btcusdt@trade"], "id": 1}))
        assert await recv_json(ws) == {"result": None, "id": 1}
        await ws.send(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": 2}))
        assert await recv_json(ws) == {"result": ["btcusdt@trade"], "id": 2}
        sim.step()
        assert (await recv_json(ws))["e"] == "trade"


async def test_unknown_stream_is_refused_with_a_close(sim: SimulatorHandle) -> None:
    async with websockets.connect(f"{sim.stream_url}/ws/nopeusdt@trade") as ws:
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await recv_json(ws)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1008
