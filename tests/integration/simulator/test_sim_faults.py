"""Every fault kind fires when planned, does what it says, and is counted."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
import websockets

from engine.venues.simulator import (
    FaultKind,
    FaultPlan,
    FaultRule,
    SimulatorConfig,
    SimulatorHandle,
    run_simulator,
)

from .helpers import SignedClient, recv_events, recv_json, sign, subscribe_user

RESOURCES = Path(__file__).resolve().parents[2] / "resources" / "simulator"
ORDER = ("POST /api/v3/order",)


@contextlib.asynccontextmanager
async def faulty(
    kind: FaultKind, *, endpoints: tuple[str, ...] = (), max_count: int | None = 1, **params: Any
) -> AsyncIterator[tuple[SimulatorHandle, SignedClient]]:
    rule = FaultRule(
        kind=kind, probability=1.0, endpoints=endpoints, max_count=max_count, params=params
    )
    config = SimulatorConfig(seed=3, market_interval=None, faults=FaultPlan(rules=(rule,)))
    async with (
        run_simulator(config) as sim,
        httpx.AsyncClient(base_url=sim.rest_url, timeout=5.0) as http,
    ):
        yield sim, SignedClient(http)


def resting_buy(client: SignedClient, cid: str, qty: str = "0.01") -> Any:
    return client.limit("BTCUSDT", "BUY", qty, "29000.00", cid)


async def test_latency_fires_and_the_request_still_succeeds() -> None:
    async with faulty(FaultKind.LATENCY, endpoints=("GET /api/v3/ping",), seconds=0.05) as (
        sim,
        client,
    ):
        assert (await client.http.get("/api/v3/ping")).status_code == 200
        assert (await client.http.get("/api/v3/time")).status_code == 200
        assert sim.state.fault_counts()["latency"] == 1


async def test_drop_response_closes_the_connection_after_placing_the_order() -> None:
    async with faulty(FaultKind.DROP_RESPONSE, endpoints=ORDER, mode="close") as (sim, client):
        with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
            await resting_buy(client, "lost-1")
        found = await client.call(
            "GET", "/api/v3/order", symbol="BTCUSDT", origClientOrderId="lost-1"
        )
        assert found.json()["status"] == "NEW"
        assert sim.state.fault_counts()["drop_response"] == 1


async def test_drop_response_can_hang_past_the_client_timeout() -> None:
    async with faulty(FaultKind.DROP_RESPONSE, endpoints=ORDER, mode="hang") as (sim, client):
        with pytest.raises(httpx.ReadTimeout):
            await client.http.post(
                "/api/v3/order",
                timeout=0.3,
                **_signed_order_kwargs(client, "hang-1"),
            )
        assert sim.state.venue_orders_by_client_id() == {"hang-1": [1]}
        assert sim.state.fault_counts()["drop_response"] == 1


def _signed_order_kwargs(client: SignedClient, cid: str) -> dict[str, Any]:
    query = urlencode(
        {
            "symbol": "BTCUSDT",
            "side": "BUY",
            "type": "LIMIT",
            "timeInForce": "GTC",
            "quantity": "0.01",
            "price": "29000.00",
            "newClientOrderId": cid,
            "timestamp": client.now_ms(),
        }
    )
    return {
        "params": httpx.QueryParams(f"{query}&signature={sign(query)}"),
        "headers": {"X-MBX-APIKEY": client.api_key},
    }


async def test_5xx_before_processing_places_nothing() -> None:
    async with faulty(FaultKind.HTTP_5XX, endpoints=ORDER) as (sim, client):
        r = await resting_buy(client, "five-1")
        assert r.status_code == 503
        assert r.json()["code"] == -1000
        assert sim.state.venue_orders_by_client_id() == {}
        assert sim.state.submission_attempts() == {"five-1": 1}
        assert sim.state.fault_counts()["http_5xx"] == 1


async def test_5xx_after_accept_hides_a_placed_order() -> None:
    async with faulty(FaultKind.HTTP_5XX, endpoints=ORDER, status=500, after_accept=True) as (
        sim,
        client,
    ):
        r = await resting_buy(client, "five-2")
        assert r.status_code == 500
        assert sim.state.venue_orders_by_client_id() == {"five-2": [1]}


async def test_1007_is_execution_status_unknown_with_the_order_placed() -> None:
    async with faulty(FaultKind.ERROR_1007, endpoints=ORDER) as (sim, client):
        r = await resting_buy(client, "t-1")
        assert r.json() == {
            "code": -1007,
            "msg": "Timeout waiting for response from backend server. Send status unknown; "
            "execution status unknown.",
        }
        assert r.status_code >= 500
        assert sim.state.venue_orders_by_client_id() == {"t-1": [1]}
        assert sim.state.fault_counts()["error_1007"] == 1


@pytest.mark.parametrize(
    ("kind", "status"), [(FaultKind.RATE_LIMIT_429, 429), (FaultKind.IP_BAN_418, 418)]
)
async def test_rate_limit_faults_send_retry_after_and_hold_a_window(
    kind: FaultKind, status: int
) -> None:
    async with faulty(kind, endpoints=ORDER, retry_after=30) as (sim, client):
        r = await resting_buy(client, "rl-1")
        assert r.status_code == status
        assert r.headers["Retry-After"] == "30"
        assert r.json()["code"] == -1003
        # the window refuses every request, not only the rule's endpoint
        again = await client.http.get("/api/v3/ping")
        assert again.status_code == status
        assert int(again.headers["Retry-After"]) >= 1
        counts = sim.state.fault_counts()
        assert counts[kind.value] == 1
        assert counts[f"refused_in_{status}_window"] == 1
        assert sim.state.venue_orders_by_client_id() == {}


async def test_user_stream_disconnect_fault_closes_the_connection() -> None:
    async with faulty(FaultKind.WS_DISCONNECT_USER) as (sim, client):
        async with websockets.connect(sim.ws_api_url) as ws:
            await subscribe_user(ws)
            await resting_buy(client, "ws-1")
            with pytest.raises(websockets.ConnectionClosed):
                await recv_json(ws)
        assert sim.state.fault_counts()["ws_disconnect_user"] == 1


async def test_market_stream_disconnect_fault_closes_the_connection() -> None:
    async with faulty(FaultKind.WS_DISCONNECT_MARKET) as (sim, _):
        async with websockets.connect(f"{sim.stream_url}/ws/btcusdt@trade") as ws:
            sim.step()
            await recv_json(ws)  # this step's trade was queued before the fault struck
            with pytest.raises(websockets.ConnectionClosed):
                await recv_json(ws)
        assert sim.state.fault_counts()["ws_disconnect_market"] == 1


async def test_malformed_market_data_garbles_one_frame_and_keeps_the_connection() -> None:
    async with faulty(FaultKind.MALFORMED_MARKET_DATA) as (sim, _):
        async with websockets.connect(f"{sim.stream_url}/ws/btcusdt@trade") as ws:
            sim.step()
            garbled = await recv_json(ws)
            sim.step()
            after = await recv_json(ws)
        assert garbled["e"] == "trade"
        assert garbled["s"] == "BTCUSDT"
        assert garbled["p"] == garbled["t"] == "garbled"
        assert after["p"] != "garbled"
        assert sim.state.fault_counts()["malformed_market_data"] == 1


async def test_duplicated_execution_report() -> None:
    async with faulty(FaultKind.DUPLICATE_EXECUTION_REPORT) as (sim, client):
        async with websockets.connect(sim.ws_api_url) as ws:
            await subscribe_user(ws)
            await resting_buy(client, "dup-er")
            first, second, position = await recv_events(ws, 3)
        assert first == second
        assert first["x"] == "NEW"
        assert position["e"] == "outboundAccountPosition"
        assert sim.state.fault_counts()["duplicate_execution_report"] == 1


async def test_reordered_execution_report_arrives_after_the_next_event() -> None:
    async with faulty(FaultKind.REORDER_EXECUTION_REPORT) as (sim, client):
        async with websockets.connect(sim.ws_api_url) as ws:
            await subscribe_user(ws)
            await resting_buy(client, "late-er")
            first, second = await recv_events(ws, 2)
        assert (first["e"], second["e"], second["x"]) == (
            "outboundAccountPosition",
            "executionReport",
            "NEW",
        )
        assert sim.state.fault_counts()["reorder_execution_report"] == 1


async def test_lost_fill_report_leaves_the_fill_only_in_my_trades() -> None:
    async with faulty(FaultKind.DROP_FILL_REPORT) as (sim, client):
        async with websockets.connect(sim.ws_api_url) as ws:
            await subscribe_user(ws)
            ask = str(sim.state.engine.touch["BTCUSDT"].ask)
            await client.limit("BTCUSDT", "BUY", "0.01", ask, "lost-fill")
            new, position = await recv_events(ws, 2)
        assert (new["x"], position["e"]) == ("NEW", "outboundAccountPosition")
        trades = (await client.call("GET", "/api/v3/myTrades", symbol="BTCUSDT")).json()
        assert [t["id"] for t in trades] == [1]
        assert sim.state.fault_counts()["drop_fill_report"] == 1


async def test_cancel_race_fills_part_of_the_order_before_the_cancel() -> None:
    async with faulty(FaultKind.PARTIAL_FILL_CANCEL_RACE, fraction="0.5") as (sim, client):
        await resting_buy(client, "race-1", qty="0.02")
        r = await client.call(
            "DELETE", "/api/v3/order", symbol="BTCUSDT", origClientOrderId="race-1"
        )
        body = r.json()
        assert (body["status"], body["executedQty"]) == ("CANCELED", "0.01000000")
        trades = (await client.call("GET", "/api/v3/myTrades", symbol="BTCUSDT")).json()
        assert [(t["qty"], t["isMaker"]) for t in trades] == [("0.01000000", True)]
        assert sim.state.fault_counts()["partial_fill_cancel_race"] == 1


async def test_fault_plan_loads_from_toml_and_admin_endpoint_replaces_it() -> None:
    plan = FaultPlan.load(RESOURCES / "faults.toml")
    assert [r.kind for r in plan.rules] == [FaultKind.HTTP_5XX, FaultKind.LATENCY]
    config = SimulatorConfig(seed=5, market_interval=None, faults=plan)
    async with run_simulator(config) as sim, httpx.AsyncClient(base_url=sim.rest_url) as http:
        assert (await http.get("/api/v3/time")).status_code == 503
        replaced = await http.put(
            "/admin/faults",
            json={"faults": [{"kind": "http_5xx", "probability": 0.0}]},
        )
        assert replaced.status_code == 200
        assert (await http.get("/api/v3/time")).status_code == 200
        shown = (await http.get("/admin/faults")).json()
        assert shown["counters"]["http_5xx"] == 1
        assert shown["plan"]["faults"] == [{"kind": "http_5xx", "probability": 0.0}]


async def test_probabilistic_faults_fire_the_same_way_for_the_same_seed() -> None:
    rule = FaultRule(kind=FaultKind.HTTP_5XX, probability=0.5)

    async def statuses(seed: int) -> list[int]:
        config = SimulatorConfig(seed=seed, market_interval=None, faults=FaultPlan(rules=(rule,)))
        async with run_simulator(config) as sim, httpx.AsyncClient(base_url=sim.rest_url) as http:
            return [(await http.get("/api/v3/ping")).status_code for _ in range(20)]

    first = await statuses(42)
    assert first == await statuses(42)
    assert 503 in first
    assert 200 in first
