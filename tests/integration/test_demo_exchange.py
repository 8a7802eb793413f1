"""The demo exchange survives restarts: ``tradectl run`` twice over one data dir continues the
same exchange (no incident, no pause, trading goes on, positions agree); a saved exchange behind
the ledger (a kill -9 between two saves) or a corrupt one starts a fresh exchange with a fresh
ledger account and says so in one line; the engine refuses symbols its venue does not list."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine

import engine.venues.simulator as simulator
from engine import demo, runtime
from engine.config import load_settings
from engine.domain.types import utc_now
from engine.exceptions import ConfigError
from engine.venues.simulator import SimulatorConfig, SimulatorHandle
from tests.helpers import ROOT, eventually

ACCOUNT = "demo"
#: fv-pres trading small and often, so every run of a few seconds adds fills
STRATEGIES = """
[[strategy]]
id = "fv-pres"
kind = "fair_value"
symbols = ["PRES-YES"]
decision_window = "1s"

[strategy.params]
fair = "0.55"
edge = "0.02"
qty = "1"
max_inventory = "10000"

[strategy.limits]
max_position = "10000"
max_order_qty = "25"
max_quote_age = "5s"
"""


@pytest.fixture
def data_dir(database_url: URL, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    strategies = tmp_path / "strategies.toml"
    strategies.write_text(STRATEGIES)
    env = {
        "DATABASE_URL": database_url.render_as_string(hide_password=False),
        "TRADECTL_DATA_DIR": str(tmp_path / "data"),
        "TRADECTL_ACCOUNT": ACCOUNT,
        "TRADECTL_VENUE": "simulator",
        "TRADECTL_STRATEGIES_FILE": str(strategies),
        "TRADECTL_STATUS_INTERVAL_S": "3600",
        # a drift would be confirmed and reported within a second or two
        "TRADECTL_BALANCE_SETTLE_S": "0.5",
        # (more often than this, the reconciler's requests exceed the venue's weight limit)
        "TRADECTL_RECONCILE_INTERVAL_S": "2",
        "TRADECTL_LEASE_TTL_S": "3",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


@pytest.fixture
def sims(monkeypatch: pytest.MonkeyPatch) -> list[SimulatorHandle]:
    """The handles of the simulators the engine starts, one per run."""
    handles: list[SimulatorHandle] = []
    start = simulator.run_simulator

    @contextlib.asynccontextmanager
    async def recorded(*args: Any, **kwargs: Any) -> AsyncIterator[SimulatorHandle]:
        async with start(*args, **kwargs) as handle:
            handles.append(handle)
            yield handle

    monkeypatch.setattr(simulator, "run_simulator", recorded)
    return handles


async def scalar(engine: AsyncEngine, sql: str, **params: Any) -> Any:
    async with engine.connect() as conn:
        return (await conn.execute(text(sql), params)).scalar_one()


async def fills_of(db: AsyncEngine, account: str) -> int:
    return int(await scalar(db, "SELECT count(*) FROM fills WHERE account = :a", a=account))


async def run_until_fills(db: AsyncEngine, account: str | None, at_least: int) -> datetime:
    """Run the engine until ``account`` (``None``: the one the run chose) has ``at_least`` fills
    and the balance check has compared the venue with them a few times; stop it cleanly.
    Returns when it started."""
    started = utc_now()
    chosen = account
    stop = asyncio.Event()
    task = asyncio.create_task(runtime.run(load_settings(), stop), name="engine-under-test")

    async def traded_and_compared() -> bool:
        nonlocal chosen
        if task.done():
            task.result()
        if account is None:
            # the run writes the account it trades as into the data dir as it starts
            chosen = demo.ledger_account(load_settings()).account
        assert chosen is not None
        if await fills_of(db, chosen) < at_least:
            return False
        # balance snapshots recorded by this run's reconciler: the comparison ran repeatedly
        # (and a drift would have been confirmed within the settle window)
        checks = await scalar(
            db,
            "SELECT count(DISTINCT received_at) FROM balances "
            "WHERE account = :a AND received_at > :t",
            a=chosen,
            t=started,
        )
        return int(checks) >= 3

    try:
        await eventually(traded_and_compared, timeout=60, message="the engine never traded")
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=30)
    return started


async def assert_clean(db: AsyncEngine) -> None:
    incidents = await scalar(db, "SELECT count(*) FROM incidents WHERE resolved_at IS NULL")
    pauses = await scalar(db, "SELECT count(*) FROM controls WHERE active")
    assert (incidents, pauses) == (0, 0)


async def assert_positions_agree(db: AsyncEngine, sim: SimulatorHandle, account: str) -> None:
    # PRES-YES starts at zero on the venue: its holding is exactly what the ledger's fills say
    ledger = await scalar(
        db,
        "SELECT COALESCE(sum(CASE WHEN side = 'BUY' THEN qty ELSE -qty END), 0) "
        "FROM fills WHERE account = :a AND symbol = 'PRES-YES'",
        a=account,
    )
    free, locked = sim.state.balances()["PRES-YES"]
    assert free + locked == Decimal(ledger)


async def test_a_second_run_continues_the_same_exchange(
    data_dir: dict[str, str], db_engine: AsyncEngine, sims: list[SimulatorHandle]
) -> None:
    await run_until_fills(db_engine, ACCOUNT, at_least=2)
    first = await fills_of(db_engine, ACCOUNT)
    assert (Path(data_dir["TRADECTL_DATA_DIR"]) / "exchange" / f"{ACCOUNT}.json").exists()

    await run_until_fills(db_engine, ACCOUNT, at_least=first + 2)

    await assert_clean(db_engine)
    await assert_positions_agree(db_engine, sims[1], ACCOUNT)
    # the second exchange continued the first one's trades rather than starting empty
    assert len(sims[1].state.trades()) >= first + 2
    accounts = await scalar(db_engine, "SELECT count(DISTINCT account) FROM fills")
    assert accounts == 1


async def test_a_saved_exchange_behind_the_ledger_resets_to_a_fresh_account(
    data_dir: dict[str, str],
    db_engine: AsyncEngine,
    sims: list[SimulatorHandle],
    capsys: pytest.CaptureFixture[str],
) -> None:
    # What a kill -9 between two saves leaves: the file from before the last fills.
    saved = Path(data_dir["TRADECTL_DATA_DIR"]) / "exchange" / f"{ACCOUNT}.json"
    await run_until_fills(db_engine, ACCOUNT, at_least=2)
    stale = saved.read_text()
    first = await fills_of(db_engine, ACCOUNT)
    await run_until_fills(db_engine, ACCOUNT, at_least=first + 2)
    saved.write_text(stale)
    capsys.readouterr()

    await run_until_fills(db_engine, f"{ACCOUNT}-2", at_least=2)

    out = capsys.readouterr().out
    [line] = [line for line in out.splitlines() if line.startswith("demo exchange reset")]
    assert "fill(s) in the ledger are not in the saved exchange" in line
    assert f"'{ACCOUNT}-2'" in line
    await assert_clean(db_engine)
    await assert_positions_agree(db_engine, sims[-1], f"{ACCOUNT}-2")
    # the old account's history stays as it was; the operations commands follow the new one
    assert await fills_of(db_engine, ACCOUNT) >= first + 2
    assert demo.ledger_account(load_settings()).account == f"{ACCOUNT}-2"


@pytest.mark.parametrize(
    "damage", [b'{"format": 1, "ledger_acc', b"\x00\xff garbage", b'{"format": 1}']
)
async def test_a_corrupt_saved_exchange_resets_with_one_line_not_a_traceback(
    data_dir: dict[str, str],
    db_engine: AsyncEngine,
    sims: list[SimulatorHandle],
    capsys: pytest.CaptureFixture[str],
    damage: bytes,
) -> None:
    await run_until_fills(db_engine, ACCOUNT, at_least=1)
    (Path(data_dir["TRADECTL_DATA_DIR"]) / "exchange" / f"{ACCOUNT}.json").write_bytes(damage)
    capsys.readouterr()

    await run_until_fills(db_engine, f"{ACCOUNT}-2", at_least=1)

    out = capsys.readouterr().out
    [line] = [line for line in out.splitlines() if line.startswith("demo exchange reset")]
    assert "saved exchange" in line
    assert f"'{ACCOUNT}-2'" in line
    await assert_clean(db_engine)
    await assert_positions_agree(db_engine, sims[-1], f"{ACCOUNT}-2")


async def test_kill_9_of_a_running_engine_restores_or_resets_then_trades_cleanly(
    data_dir: dict[str, str], db_engine: AsyncEngine, sims: list[SimulatorHandle]
) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "engine",
        "run",
        env={**os.environ, **data_dir},
        cwd=ROOT,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        await eventually(
            lambda: fills_of(db_engine, ACCOUNT), timeout=60, message="the engine never traded"
        )
        # kill it while it trades (a fill every second): the saved exchange lags by up to one
        # save interval, so either outcome below is possible
        before = await fills_of(db_engine, ACCOUNT)
        await eventually(
            lambda: _more(db_engine, before), timeout=30, message="the engine stopped trading"
        )
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGKILL)
        await proc.wait()
    assert proc.returncode == -signal.SIGKILL

    previous = await fills_of(db_engine, ACCOUNT)
    await run_until_fills(db_engine, None, at_least=1)
    account = demo.ledger_account(load_settings()).account
    assert account in (ACCOUNT, f"{ACCOUNT}-2")
    if account == ACCOUNT:
        await run_until_fills(db_engine, ACCOUNT, at_least=previous + 1)
    await assert_clean(db_engine)
    await assert_positions_agree(db_engine, sims[-1], account)


async def _more(db: AsyncEngine, than: int) -> bool:
    return await fills_of(db, ACCOUNT) > than


async def test_the_engine_refuses_symbols_its_venue_does_not_list(
    data_dir: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # a standalone simulator with its own config (BTCUSDT and ETHUSDT) and the example
    # strategies (BTCUSDT and PRES-YES), through the Binance adapter
    async with simulator.run_simulator(SimulatorConfig(seed=7)) as sim:
        for key, value in {
            "TRADECTL_VENUE": "binance",
            "TRADECTL_STRATEGIES_FILE": str(ROOT / "strategies" / "example.toml"),
            "TRADECTL_BINANCE_REST_URL": sim.rest_url,
            "TRADECTL_BINANCE_WS_API_URL": sim.ws_api_url,
            "TRADECTL_BINANCE_STREAM_URL": sim.stream_url,
            "TRADECTL_BINANCE_API_KEY": sim.state.config.api_key,
            "TRADECTL_BINANCE_API_SECRET": sim.state.config.api_secret,
        }.items():
            monkeypatch.setenv(key, value)
        with pytest.raises(ConfigError, match="does not list PRES-YES") as raised:
            await asyncio.wait_for(runtime.run(load_settings(), asyncio.Event()), timeout=30)
    assert "BTCUSDT" not in str(raised.value)


def test_the_standalone_simulator_serves_what_the_example_strategies_trade() -> None:
    served = {s.symbol for s in demo.standalone_config(7).symbols}
    assert {"BTCUSDT", "PRES-YES"} <= served


def test_the_saved_file_names_the_ledger_account(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path, account="x", venue="simulator")
    assert demo.ledger_account(settings).account == "x"
    demo.exchange_file(settings).parent.mkdir(parents=True)
    demo.exchange_file(settings).write_text(json.dumps({"ledger_account": "x-3"}))
    assert demo.ledger_account(settings).account == "x-3"
    demo.exchange_file(settings).write_text(json.dumps({"ledger_account": "not an account!"}))
    assert demo.ledger_account(settings).account == "x"
