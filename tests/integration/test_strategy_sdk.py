"""A user's strategy, in a package outside the repo, from config to backtest to a running engine.

The package is written to a temporary directory and reaches tradectl only through PYTHONPATH and
``kind = "userpkg.momentum:BuyOnce"``: no file of tradectl's is touched. It is listed by
``tradectl strategies``, backtested by ``tradectl backtest``, and run by ``tradectl run`` on the
built-in simulator until it has decided and traded, each decision carrying its declared version
and the config's hash.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.helpers import ROOT, eventually, tradectl

KIND = "userpkg.momentum:BuyOnce"
ACCOUNT = "sdk-user"

MODULE = '''
"""Buys once when flat, then holds: the smallest strategy that trades."""

from collections.abc import Sequence
from decimal import Decimal

from pydantic import BaseModel, ConfigDict, Field

from engine.domain.intents import Buy, Hold, Intent
from engine.domain.types import Side, StrategyId, Symbol
from strategies.base import DecisionMode, Snapshot


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")

    qty: Decimal = Field(Decimal("0.001"), gt=0, description="base units to buy")
    warmup: int = Field(1, ge=1, description="closed bars before the first buy")


class BuyOnce:
    """Buys qty once when flat; holds after."""

    Params = Params
    version = "7.3"
    mode = DecisionMode.BAR

    def __init__(self, strategy_id: StrategyId, symbols: Sequence[Symbol], params: Params):
        self.strategy_id = strategy_id
        self.symbols = tuple(symbols)
        self.params = params
        self.bar_history = params.warmup

    def decide(self, snapshot: Snapshot) -> Intent:
        symbol = self.symbols[0]
        bought = snapshot.position(symbol) > 0 or snapshot.pending(symbol, Side.BUY) > 0
        if len(snapshot.closes(symbol)) < self.params.warmup or bought:
            return Hold(key=snapshot.key(symbol, None), reason="waiting", md_ts=snapshot.md_ts)
        return Buy(
            key=snapshot.key(symbol, Side.BUY),
            reason="flat: buy once",
            md_ts=snapshot.md_ts,
            quantity=self.params.qty,
        )
'''

CONFIG = f"""
[[strategy]]
id = "buy-once"
kind = "{KIND}"
symbols = ["BTCUSDT"]
bar_interval = "1s"

[strategy.params]
qty = "0.001"

[strategy.limits]
max_position = "0.01"
max_quote_age = "5s"
"""


@pytest.fixture
def user_env(database_url: URL, tmp_path: Path) -> dict[str, str]:
    package = tmp_path / "site" / "userpkg"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "momentum.py").write_text(MODULE)
    config = tmp_path / "strategies.toml"
    config.write_text(CONFIG)
    return {
        "PYTHONPATH": str(tmp_path / "site"),
        "DATABASE_URL": database_url.render_as_string(hide_password=False),
        "TRADECTL_DATA_DIR": str(tmp_path / "data"),
        "TRADECTL_ACCOUNT": ACCOUNT,
        "TRADECTL_VENUE": "simulator",
        "TRADECTL_STRATEGIES_FILE": str(config),
        "TRADECTL_STATUS_INTERVAL_S": "3600",
    }


async def scalar(engine: AsyncEngine, sql: str, **params: Any) -> Any:
    async with engine.connect() as conn:
        return (await conn.execute(text(sql), params)).scalar_one()


async def test_a_strategy_outside_the_repo_is_listed_backtested_and_run(
    user_env: dict[str, str], db_engine: AsyncEngine
) -> None:
    assert not (ROOT / "userpkg").exists()

    listed = await tradectl(user_env, "strategies", "--json")
    assert listed.returncode == 0, listed.stderr
    kinds = {k["kind"]: k for k in json.loads(listed.stdout)}
    assert kinds[KIND]["version"] == "7.3"
    assert [(p["name"], p["default"]) for p in kinds[KIND]["params"]] == [
        ("qty", "0.001"),
        ("warmup", "1"),
    ]

    data = ROOT / "tests" / "resources" / "ohlcv" / "btcusdt_1d.csv"
    tested = await tradectl(user_env, "backtest", "--data", str(data), "--strategy", KIND)
    assert tested.returncode == 0, tested.stderr
    assert f"Backtest  {KIND} on BTCUSDT" in tested.stdout
    assert "orders          1 accepted" in tested.stdout

    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "engine",
        "run",
        env={**os.environ, **user_env},
        cwd=ROOT,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:

        async def bought() -> int:
            if proc.returncode is not None:
                raise AssertionError(f"the engine exited {proc.returncode}")
            return int(
                await scalar(
                    db_engine,
                    "SELECT count(*) FROM fills f JOIN orders o USING (account, client_order_id) "
                    "WHERE f.account = :a AND o.strategy_id = 'buy-once'",
                    a=ACCOUNT,
                )
            )

        await eventually(bought, timeout=60, message="the user's strategy never traded")
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), timeout=30)
        except TimeoutError:
            proc.kill()
            await proc.wait()

    async with db_engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    "SELECT intent, strategy_version, config_hash FROM decisions "
                    "WHERE account = :a AND strategy_id = 'buy-once'"
                ),
                {"a": ACCOUNT},
            )
        ).all()
    assert {r.intent for r in rows} >= {"buy"}
    assert {r.strategy_version for r in rows} == {"7.3"}
    hashes = {r.config_hash for r in rows}
    assert len(hashes) == 1
    assert next(iter(hashes)).startswith("sha256:")
