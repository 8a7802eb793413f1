"""The graceful hand-off between two engine processes on one account (engine/handoff.py):
`tradectl release` makes the owner settle its in-flight orders, record the result and release
its lease; the standby takes the account over at once (not after the TTL) and reconciles
before it trades."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine

from engine.demo import simulator_config
from engine.venues.simulator import run_simulator
from tests.chaos.harness import SYMBOLS, EngineProcess, engine_env
from tests.helpers import eventually, tradectl

#: long: a takeover that waited for the lease to expire would fail every wait below
TTL_S = "120"


async def _one(db_engine: AsyncEngine, sql: str) -> object:
    async with db_engine.connect() as conn:
        return (await conn.execute(text(sql))).scalar()


def _log(log: Path) -> str:
    return log.read_text("utf-8", errors="replace")


async def test_a_released_account_is_taken_over_at_once_and_reconciled_before_trading(
    database_url: URL, db_engine: AsyncEngine, tmp_path: Path
) -> None:
    async with run_simulator(simulator_config(SYMBOLS, seed=5)) as sim:
        env = engine_env(sim, database_url, None) | {
            "TRADECTL_LEASE_TTL_S": TTL_S,
        }
        first = EngineProcess(env, tmp_path / "first.log")
        second = EngineProcess(env, tmp_path / "second.log")
        try:
            await first.start()
            await first.wait_ready()
            await eventually(
                lambda: _one(db_engine, "SELECT count(*) >= 2 FROM orders WHERE lease_epoch = 1"),
                timeout=60,
                message="the first engine never traded",
            )
            await second.start()
            await eventually(
                lambda: "lease.standby" in _log(second.log),
                timeout=60,
                message="the second engine never stood by",
            )

            proc = await tradectl(env, "release", "--reason", "rebalancing onto the second")
            assert proc.returncode == 0, proc.stdout + proc.stderr
            assert "handed the account off" in proc.stdout

            assert await first.wait(timeout=60) == 0  # a clean stop, not a failure
            await second.wait_ready()
            assert await _one(db_engine, "SELECT epoch FROM leases") == 2
            await eventually(
                lambda: _one(db_engine, "SELECT count(*) > 0 FROM orders WHERE lease_epoch = 2"),
                timeout=60,
                message="the second engine never traded",
            )
        finally:
            await first.close()
            await second.close()

    # the first engine left nothing in flight: every order of its epoch has a definite state
    # (or a recorded UNKNOWN the next owner looks up)
    pending = await _one(
        db_engine,
        "SELECT count(*) FROM orders WHERE lease_epoch = 1 AND state = 'PENDING_SUBMIT'",
    )
    assert pending == 0
    # the second reconciled (its startup) before its first order went out
    log = _log(second.log)
    assert "tradectl running" in log
    if "order.submitted" in log:
        assert log.index("tradectl running") < log.index("order.submitted")
    # the journal records the hand-off with its reason and what came of it
    proc = await tradectl(env, "journal", "--json")
    assert proc.returncode == 0, proc.stderr
    [entry] = [e for e in map(json.loads, proc.stdout.splitlines()) if e["action"] == "release"]
    assert entry["reason"] == "rebalancing onto the second"
    assert entry["request"].startswith("ok"), entry
