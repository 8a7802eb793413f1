"""Paper trading on recorded live market data, recorded again as the engine received it, and
`tradectl compare --paper ACCOUNT --backtest` reporting the same trades as a backtest of the same
period, within the documented tolerance."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine

from engine import runtime
from engine.config import load_settings
from engine.domain.market import Trade
from engine.marketdata.recording import read_recording
from tests.helpers import ROOT, eventually, tradectl

RESOURCES = ROOT / "tests" / "resources" / "marketdata"
RECORDING = RESOURCES / "binance-sim"
STRATEGIES = RESOURCES / "paper_sma.toml"
ACCOUNT = "paper-rec"
SPEED = "3"


def _env(database_url: URL, recorded: Path) -> dict[str, str]:
    return {
        "DATABASE_URL": database_url.render_as_string(hide_password=False),
        "TRADECTL_ACCOUNT": ACCOUNT,
        "TRADECTL_VENUE": "paper",
        "TRADECTL_STRATEGIES_FILE": str(STRATEGIES),
        "TRADECTL_PAPER_FEED": f"replay:{RECORDING}",
        "TRADECTL_PAPER_REPLAY_SPEED": SPEED,
        "TRADECTL_PAPER_LATENCY_MS": "20",
        "TRADECTL_PAPER_SLIPPAGE_BPS": "0.5",
        "TRADECTL_PAPER_PARTICIPATION": "0.5",
        "TRADECTL_RECORD_MARKET_DATA": str(recorded),
        "TRADECTL_SEED": "11",
        "TRADECTL_LOG_LEVEL": "WARNING",
    }


async def _scalar(db: AsyncEngine, sql: str) -> Any:
    async with db.connect() as conn:
        return (await conn.execute(text(sql), {"a": ACCOUNT})).scalar_one()


async def test_a_paper_run_on_recorded_data_and_its_backtest_report_the_same_trades(
    database_url: URL, db_engine: AsyncEngine, tmp_path: Path, monkeypatch: Any
) -> None:
    recorded = tmp_path / "recorded"
    env = _env(database_url, recorded)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    # trades reach the engine in order (quotes are conflated): the last one ends the replay
    last = [e for e in read_recording(RECORDING) if isinstance(e, Trade)][-1].trade_id
    stop = asyncio.Event()
    engine = asyncio.create_task(runtime.run(load_settings(), stop))
    try:

        async def replayed() -> bool:
            if engine.done():
                engine.result()
            if not recorded.exists():
                return False
            return any(
                isinstance(e, Trade) and e.trade_id == last for e in read_recording(recorded)
            )

        await eventually(replayed, timeout=120, interval=0.5, message="the replay never ended")
    finally:
        stop.set()
        await engine

    trades = await _scalar(
        db_engine, "SELECT count(DISTINCT client_order_id) FROM fills WHERE account = :a"
    )
    assert trades >= 2, "the recording should make the strategy trade"
    # every event the engine received was recorded, with the venue's time and ours
    first = next(iter((recorded / "BTCUSDT").glob("*.jsonl"))).read_text().splitlines()[0]
    assert {"received_at", "venue_ts"} <= json.loads(first).keys()

    compared = await tradectl(env, "compare", "--paper", ACCOUNT, "--backtest", "--json")
    assert compared.returncode == 0, compared.stdout + compared.stderr
    report = json.loads(compared.stdout)
    assert report["agree"]
    assert report["matched"] == trades
    for row in report["trades"]:
        assert row["paper"]["client_order_id"] == row["backtest"]["client_order_id"]

    # no tolerance at all: the paper orders met the market later than the replay's
    strict = await tradectl(env, "compare", "--paper", ACCOUNT, "--backtest", "--time-s", "0")
    assert strict.returncode == 1
    assert "DIFFERS" in strict.stdout
