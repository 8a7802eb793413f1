"""Logs around decisions: ``TRADECTL_LOG_FORMAT=json tradectl run`` writes JSON lines only, and
every line about an order, from its reservation to its fills, names its account, strategy,
decision and client order id, with one INFO line per step."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import structlog
from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine

from engine.domain.types import OrderState
from engine.venues.paper import BTCUSDT, PaperVenue, default_paper_venue
from tests.helpers import ROOT, eventually, tradectl
from tests.integration.test_execution import Clock, buy, coid_of, make_rig, quote

ACCOUNT = "logs"
#: fv-pres trading small and often: a run of a few seconds makes orders and fills
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
ORDER_IDS = ("account", "strategy", "decision_id", "client_order_id")


@pytest.fixture
def engine_env(database_url: URL, tmp_path: Path) -> dict[str, str]:
    strategies = tmp_path / "strategies.toml"
    strategies.write_text(STRATEGIES)
    return {
        "DATABASE_URL": database_url.render_as_string(hide_password=False),
        "TRADECTL_DATA_DIR": str(tmp_path / "data"),
        "TRADECTL_ACCOUNT": ACCOUNT,
        "TRADECTL_VENUE": "simulator",
        "TRADECTL_STRATEGIES_FILE": str(strategies),
        "TRADECTL_LOG_FORMAT": "json",
        # a status event or two while it runs: the status block must be JSON too
        "TRADECTL_STATUS_INTERVAL_S": "0.5",
    }


async def _scalar(db: AsyncEngine, sql: str, **params: Any) -> Any:
    async with db.connect() as conn:
        return (await conn.execute(text(sql), params)).scalar_one()


async def _run_until_filled(env: dict[str, str], db: AsyncEngine, out: Path, err: Path) -> int:
    """``tradectl run`` until it has 3 fills and has written a status event; then SIGINT.
    Returns its exit code."""
    with out.open("wb") as stdout, err.open("wb") as stderr:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "engine", "run",
            env={**os.environ, **env}, cwd=ROOT, stdout=stdout, stderr=stderr,
        )  # fmt: skip
        try:

            async def traded() -> bool:
                written = await asyncio.to_thread(err.read_text)
                if proc.returncode is not None:
                    raise AssertionError(f"the engine exited: {written[-2000:]}")
                fills = await _scalar(
                    db, "SELECT count(*) FROM fills WHERE account = :a", a=ACCOUNT
                )
                return fills >= 3 and '"event": "status"' in written

            await eventually(traded, timeout=60, message="the engine never traded")
            proc.send_signal(signal.SIGINT)
            return await asyncio.wait_for(proc.wait(), timeout=30)
        finally:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()


def _json_lines(path: Path) -> list[dict[str, Any]]:
    entries = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        try:
            entry = json.loads(line)
        except ValueError:
            raise AssertionError(f"{path.name} line {number} is not JSON: {line!r}") from None
        assert isinstance(entry, dict), f"{path.name} line {number} is not an object: {line!r}"
        entries.append(entry)
    return entries


async def test_json_run_writes_only_json_and_every_order_line_names_its_decision(
    engine_env: dict[str, str], db_engine: AsyncEngine, database_url: URL, tmp_path: Path
) -> None:
    out, err = tmp_path / "stdout", tmp_path / "stderr"
    # DEBUG: the routine steps of an order (reserved, submitted, acknowledged) log there
    env = {**engine_env, "TRADECTL_LOG_LEVEL": "DEBUG"}
    code = await _run_until_filled(env, db_engine, out, err)
    assert code == 0, err.read_text()[-2000:]

    entries = _json_lines(out) + _json_lines(err)
    events = collections.Counter(e["event"] for e in entries)
    # the banner and the stop are events, not text; the status block is an event with fields
    assert events["engine.started"] == 1
    assert events["engine.stopped"] == 1
    status = next(e for e in entries if e["event"] == "status")
    assert status["account"] == ACCOUNT
    assert {"orders", "positions", "decisions", "open_incidents"} <= set(status)
    if database_url.password:
        assert not any(database_url.password in json.dumps(e) for e in entries)

    # one order that filled: each of its lines names it, its decision, strategy and account
    first_fill = next(e for e in entries if e["event"] == "fill.recorded")
    coid = first_fill["client_order_id"]
    decision = await _scalar(
        db_engine, "SELECT decision_id FROM orders WHERE client_order_id = :c", c=coid
    )
    expected = {
        "account": ACCOUNT,
        "strategy": "fv-pres",
        "decision_id": decision,
        "client_order_id": coid,
    }
    lines = [e for e in entries if coid in (e.get("client_order_id"), e.get("coid"))]
    lines += [e for e in entries if e.get("decision_id") == decision and e not in lines]
    for line in lines:
        assert {key: line.get(key) for key in ORDER_IDS} == expected, line
    steps = collections.Counter(e["event"] for e in lines if e["level"] == "debug")
    assert steps["order.reserved"] == 1
    assert steps["order.submitted"] == 1
    assert steps["order.acknowledged"] == 1
    # at INFO an order that fills says so once per fill, and nothing routine
    assert not any(e["level"] == "info" and e["event"].startswith("order.") for e in lines)
    fills = await _scalar(
        db_engine, "SELECT count(*) FROM fills WHERE client_order_id = :c", c=coid
    )
    trade_ids = [e["trade_id"] for e in lines if e["event"] == "fill.recorded"]
    assert len(trade_ids) == len(set(trade_ids)) == fills >= 1


# -- in process: the cancel steps, and the stdlib / scrubber path ------------------------------


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def venue(clock: Clock) -> PaperVenue:
    v = default_paper_venue((BTCUSDT,), seed=3, clock=clock)
    v.set_quote(quote(clock, "50000", "50001", size="1"))
    return v


async def test_a_canceled_order_logs_each_step_once_with_its_ids(
    db_engine: AsyncEngine, venue: PaperVenue, clock: Clock
) -> None:
    rig = await make_rig(db_engine, venue, clock)
    intent = buy(clock, price="40000")  # far below the market: it rests
    merge = structlog.contextvars.merge_contextvars
    with structlog.testing.capture_logs(processors=[merge]) as logs:
        await rig.execution.process([intent])
        order = await rig.ledger.orders.get(coid_of(intent))
        assert order is not None
        assert order.state is OrderState.OPEN
        await rig.execution.cancel_order(order, cause="test cancel")
    expected = {
        "account": order.account,
        "strategy": order.strategy_id,
        "decision_id": order.decision_id,
        "client_order_id": order.client_order_id,
    }
    assert [entry["event"] for entry in logs] == [
        "order.reserved",
        "order.submitted",
        "order.acknowledged",
        "order.cancel_requested",
        "order.canceled",
    ]
    levels = [entry["log_level"] for entry in logs]
    # the routine steps at DEBUG (the ledger holds them), what an operator acts on at INFO
    assert levels == ["debug", "debug", "debug", "info", "info"]
    for entry in logs:
        assert {key: entry.get(key) for key in ORDER_IDS} == expected, entry


def test_json_mode_renders_library_logs_and_warnings_as_json_with_secrets_scrubbed() -> None:
    script = """
import logging, warnings, structlog
from engine.observability import configure_logging
configure_logging(json=True)
logging.getLogger("some.library").warning("connecting to postgresql://u:hunter2@db/x")
warnings.warn("deprecated thing")
from decimal import Decimal
structlog.get_logger("t").info("order.submitted", api_key="hunter2", qty=Decimal("1E+1"))
raise RuntimeError("boom")
"""
    proc = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.stdout == ""
    entries = [json.loads(line) for line in proc.stderr.splitlines()]
    assert [e["event"] for e in entries][-1] == "process.crashed"
    assert entries[0]["logger"] == "some.library"
    assert any("deprecated thing" in e["event"] for e in entries)
    assert entries[2]["qty"] == "10"
    assert "RuntimeError: boom" in entries[-1]["exception"]
    assert "hunter2" not in proc.stderr


async def test_a_failed_json_run_is_one_json_line(engine_env: dict[str, str]) -> None:
    proc = await tradectl({**engine_env, "TRADECTL_METRICS_PORT": "70000"}, "run")
    assert proc.returncode == 2
    assert proc.stdout == ""
    [entry] = [json.loads(line) for line in proc.stderr.splitlines()]
    assert entry["event"] == "engine.failed"
    assert "TRADECTL_METRICS_PORT" in entry["error"]
