"""Setting the touch by hand (``SimulatorState.set_quote`` / ``POST /admin/quote``): the market a
test drives matches resting orders exactly as a market step does."""

from __future__ import annotations

import json
from decimal import Decimal as D

import httpx
import pytest
from websockets.asyncio.client import connect

from engine.venues.simulator import SimulatorHandle

from .helpers import SignedClient, recv_json


def _trades(sim: SimulatorHandle) -> list[tuple[str, D, D, bool]]:
    return [(t.client_order_id, t.price, t.qty, t.is_maker) for t in sim.state.trades("BTCUSDT")]


async def test_a_quote_fills_crossed_resting_orders_at_their_price_up_to_its_size(
    sim: SimulatorHandle, client: SignedClient
) -> None:
    sim.state.set_quote("BTCUSDT", bid=D("29000.00"), ask=D("29010.00"), size=D("5"))
    await client.limit("BTCUSDT", "BUY", "0.3", "29005.00", "q-best")
    await client.limit("BTCUSDT", "BUY", "0.3", "29004.00", "q-next")
    await client.limit("BTCUSDT", "BUY", "0.3", "29003.00", "q-below")

    sim.state.set_quote("BTCUSDT", bid=D("29002.00"), ask=D("29004.00"), size=D("0.4"))

    assert _trades(sim) == [
        ("q-best", D("29005.00"), D("0.3"), True),
        ("q-next", D("29004.00"), D("0.1"), True),
    ]
    status = {o.client_order_id: o.status.value for o in sim.state.orders()}
    assert status == {"q-best": "FILLED", "q-next": "PARTIALLY_FILLED", "q-below": "NEW"}


async def test_an_order_after_the_quote_takes_only_what_is_left_at_the_touch(
    sim: SimulatorHandle, client: SignedClient
) -> None:
    sim.state.set_quote("BTCUSDT", bid=D("29000.00"), ask=D("29010.00"), size=D("0.5"))
    await client.limit("BTCUSDT", "SELL", "0.2", "29000.00", "q-hit")

    answer = await client.limit("BTCUSDT", "SELL", "0.5", "29000.00", "q-rest", tif="IOC")

    assert answer.json()["status"] == "EXPIRED"
    assert answer.json()["executedQty"] == "0.30000000"


async def test_admin_quote_sets_the_touch_over_http(
    sim: SimulatorHandle, http: httpx.AsyncClient, client: SignedClient
) -> None:
    await client.limit("BTCUSDT", "BUY", "0.01", "29000.00", "q-http")

    r = await http.post(
        "/admin/quote",
        json={"symbol": "BTCUSDT", "bid": "28990.00", "ask": "29000.00", "size": "1"},
    )

    assert r.status_code == 200
    assert r.json()["market"]["BTCUSDT"]["ask"] == "29000.00"
    assert _trades(sim) == [("q-http", D("29000.00"), D("0.01"), True)]


@pytest.mark.parametrize(
    "quote",
    [
        {"symbol": "NOPEUSDT", "bid": "1.00", "ask": "2.00", "size": "1"},
        {"symbol": "BTCUSDT", "bid": "29000.00", "ask": "29000.00", "size": "1"},
        {"symbol": "BTCUSDT", "bid": "29000.005", "ask": "29001.00", "size": "1"},
        {"symbol": "BTCUSDT", "bid": "29000.00", "ask": "29001.00", "size": "-1"},
        {"symbol": "BTCUSDT", "bid": "x", "ask": "29001.00", "size": "1"},
        {"bid": "29000.00", "ask": "29001.00", "size": "1"},
    ],
)
async def test_admin_quote_refuses_a_quote_that_cannot_be_a_touch(
    sim: SimulatorHandle, http: httpx.AsyncClient, quote: dict[str, str]
) -> None:
    before = sim.state.touch("BTCUSDT")

    r = await http.post("/admin/quote", json=quote)

    assert r.status_code == 400
    assert r.json()["error"].startswith("bad quote")
    assert sim.state.touch("BTCUSDT") == before


async def test_a_quote_is_published_on_the_book_ticker_stream(sim: SimulatorHandle) -> None:
    async with connect(f"{sim.stream_url}/ws/btcusdt@bookTicker") as ws:
        # the answer to a control request proves the subscriber is registered
        await ws.send(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": 1}))
        assert (await recv_json(ws))["result"] == ["btcusdt@bookTicker"]
        sim.state.set_quote("BTCUSDT", bid=D("29000.00"), ask=D("29000.50"), size=D("2"))
        msg = await recv_json(ws)

    assert (msg["s"], D(msg["b"]), D(msg["a"]), D(msg["B"])) == (
        "BTCUSDT",
        D("29000.00"),
        D("29000.50"),
        D("2"),
    )
