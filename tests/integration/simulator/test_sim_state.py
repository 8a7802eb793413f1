"""Ground truth, snapshot/restore across a restart, determinism, replay, admin over HTTP."""

from __future__ import annotations

from decimal import Decimal as D
from pathlib import Path
from typing import Any

import httpx

from engine.venues.simulator import (
    ManualClock,
    SimulatorConfig,
    SymbolSpec,
    run_simulator,
)
from tests.helpers import eventually

from .helpers import SignedClient

RESOURCES = Path(__file__).resolve().parents[2] / "resources" / "simulator"


async def _trade_a_little(sim: Any, client: SignedClient) -> None:
    """A fixed script: a fill, a resting order, market steps that cross it, a cancel."""
    ask = str(sim.state.engine.touch["BTCUSDT"].ask)
    await client.limit("BTCUSDT", "BUY", "0.3", ask, "s-1")
    bid = sim.state.engine.touch["ETHUSDT"].bid
    await client.limit("ETHUSDT", "BUY", "1", str(bid), "s-2")
    await client.limit("ETHUSDT", "SELL", "0.5", str(bid + D("100")), "s-3")
    sim.step(25)
    await client.call("DELETE", "/api/v3/order", symbol="ETHUSDT", origClientOrderId="s-3")


def _manual_client(sim: Any, http: httpx.AsyncClient) -> SignedClient:
    return SignedClient(http, now_ms=sim.state.now_ms)


async def test_same_seed_same_script_same_ground_truth() -> None:
    async def run() -> dict[str, Any]:
        clock = ManualClock()
        config = SimulatorConfig(seed=99, market_interval=None)
        async with (
            run_simulator(config, clock=clock) as sim,
            httpx.AsyncClient(base_url=sim.rest_url) as http,
        ):
            await _trade_a_little(sim, _manual_client(sim, http))
            return sim.state.ground_truth()

    first, second = await run(), await run()
    assert first == second
    assert first["trades"], "the script should have produced fills"


async def test_different_seeds_walk_differently() -> None:
    mids = []
    for seed in (1, 2):
        async with run_simulator(SimulatorConfig(seed=seed, market_interval=None)) as sim:
            sim.step(20)
            mids.append(sim.state.touch("BTCUSDT"))
    assert mids[0] != mids[1]


async def test_snapshot_and_restore_survive_a_restart(tmp_path: Path) -> None:
    clock = ManualClock()
    config = SimulatorConfig(seed=5, market_interval=None)
    snapshot = tmp_path / "sim.json"
    async with (
        run_simulator(config, clock=clock) as sim,
        httpx.AsyncClient(base_url=sim.rest_url) as http,
    ):
        client = _manual_client(sim, http)
        await _trade_a_little(sim, client)
        await client.limit("BTCUSDT", "BUY", "0.01", "29000.00", "still-open")
        before = sim.state.ground_truth()
        r = await http.post("/admin/snapshot", json={"path": str(snapshot)})
        assert r.json() == {"path": str(snapshot)}
        sim.step(5)
        continued = sim.state.ground_truth()

    async with (
        run_simulator(config, clock=clock, restore_from=snapshot) as sim,
        httpx.AsyncClient(base_url=sim.rest_url) as http,
    ):
        assert sim.state.ground_truth() == before
        client = _manual_client(sim, http)
        found = await client.call(
            "GET", "/api/v3/order", symbol="BTCUSDT", origClientOrderId="still-open"
        )
        assert found.json()["status"] == "NEW"
        # the market picks up exactly where it was: same walk, same fills
        sim.step(5)
        assert sim.state.ground_truth() == continued
        # and a reused id after restart is still refused while open
        dup = await client.limit("BTCUSDT", "BUY", "0.01", "29000.00", "still-open")
        assert dup.json()["msg"] == "Duplicate order sent."


async def test_snapshot_file_keeps_decimals_as_strings(tmp_path: Path) -> None:
    async with run_simulator(SimulatorConfig(seed=1, market_interval=None)) as sim:
        path = sim.state.snapshot(tmp_path / "s.json")
    text = path.read_text()
    assert '"free": "100000"' in text
    assert "100000.0" not in text


async def test_admin_state_exposes_ground_truth_over_http(tmp_path: Path) -> None:
    async with (
        run_simulator(SimulatorConfig(seed=1, market_interval=None)) as sim,
        httpx.AsyncClient(base_url=sim.rest_url) as http,
    ):
        client = SignedClient(http)
        await client.limit("BTCUSDT", "BUY", "0.01", "29000.00", "adm-1")
        await client.limit("BTCUSDT", "BUY", "0.01", "29000.00", "adm-1")
        state = (await http.get("/admin/state")).json()
        assert state["venue_orders_by_client_id"] == {"adm-1": [1]}
        assert state["submission_attempts"] == {"adm-1": 2}
        assert [s["outcome"] for s in state["submissions"]] == ["accepted", "rejected"]
        assert D(state["balances"]["USDT"]["locked"]) == D("290.00") * D("1.001")
        assert "counters" in state["faults"]
        stepped = await http.post("/admin/step", json={"steps": 3})
        assert stepped.status_code == 200
        assert (await http.get("/admin/state")).json()["market_steps"]["BTCUSDT"] == 3
        full = (await http.get("/admin/snapshot")).json()
        assert full["version"] == 1


async def test_market_ticker_moves_the_market_by_itself() -> None:
    async with run_simulator(SimulatorConfig(seed=1, market_interval=0.01)) as sim:
        await eventually(lambda: sim.state.sources["BTCUSDT"].steps >= 3)


async def test_ohlcv_replay_drives_the_touch_from_closes() -> None:
    spec = SymbolSpec(
        symbol="BTCUSDT",
        base_asset="BTC",
        quote_asset="USDT",
        start_price=D("100"),
        tick_size=D("0.01"),
        step_size=D("0.001"),
        replay_csv=RESOURCES / "btcusdt_1m.csv",
    )
    config = SimulatorConfig(seed=1, market_interval=None, symbols=(spec,))
    async with run_simulator(config) as sim:
        closes = []
        for _ in range(4):
            sim.step()
            t = sim.state.engine.touch["BTCUSDT"]
            closes.append((t.bid + t.ask) / 2)
    assert closes == [D("30010.50"), D("29990.00"), D("30050.25"), D("30050.25")]


async def test_quotes_replay_and_config_file_loading() -> None:
    config = SimulatorConfig.load(RESOURCES / "quotes_sim.toml")
    assert config.seed == 17
    assert config.maker_fee == D("0.0005")
    async with run_simulator(config) as sim:
        sim.step()
        t = sim.state.engine.touch["ETHUSDT"]
        assert (t.bid, t.bid_size, t.ask, t.ask_size) == (
            D("2001.10"),
            D("3"),
            D("2001.20"),
            D("4"),
        )
