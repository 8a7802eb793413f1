"""``tradectl backtest --persist``: a replay recorded by the live durable path, read with SQL."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import os
import re
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine

from engine.backtest import (
    BacktestError,
    BacktestReport,
    BacktestSettings,
    run_backtest,
    run_backtest_persisted,
)
from engine.backtest.settings import FillAt
from engine.domain.types import AccountId, ControlKind, ControlScope, Symbol, VenueName
from engine.ledger.ledger import Ledger

OHLCV = Path(__file__).resolve().parents[1] / "resources" / "ohlcv"
BTC_DATA = OHLCV / "btcusdt_1d.csv"
PRES_DATA = OHLCV / "pres_yes_1d.csv"
SMA = {"fast": "5", "slow": "20", "qty": "2"}
FAIR = {"fair": "0.55", "edge": "0.03", "qty": "20", "max_inventory": "200"}
PRES = BacktestSettings.for_symbol(Symbol("PRES-YES"))


async def rows(engine: AsyncEngine, sql: str, **params: Any) -> list[Any]:
    async with engine.connect() as conn:
        return list(await conn.execute(text(sql), params))


async def scalar(engine: AsyncEngine, sql: str, **params: Any) -> Any:
    (row,) = await rows(engine, sql, **params)
    return row[0]


async def one(engine: AsyncEngine, sql: str, **params: Any) -> Any:
    (row,) = await rows(engine, sql, **params)
    return row


async def assert_report_matches_ledger(
    engine: AsyncEngine, report: BacktestReport, base: str, quote: str
) -> None:
    account = report.account
    assert account is not None
    ledger_fills = await rows(
        engine,
        "SELECT trade_id, client_order_id, side, qty, price, fee, fee_asset, venue_ts"
        " FROM fills WHERE account = :a ORDER BY venue_ts, id",
        a=account,
    )
    assert [tuple(r) for r in ledger_fills] == [
        (
            f.trade_id,
            f.client_order_id,
            f.side.value,
            f.quantity,
            f.price,
            f.fee,
            f.fee_asset,
            f.venue_ts,
        )
        for f in report.fills
    ]
    # P&L from SQL alone: cash flows of the fills, the position net of fees paid in the base
    # asset, marked at the last close.
    cash, held = await one(
        engine,
        """
        SELECT sum(CASE side WHEN 'BUY' THEN -qty * price ELSE qty * price END)
                 - COALESCE(sum(fee) FILTER (WHERE fee_asset = :quote), 0),
               sum(CASE side WHEN 'BUY' THEN qty ELSE -qty END)
                 - COALESCE(sum(fee) FILTER (WHERE fee_asset = :base), 0)
        FROM fills WHERE account = :a
        """,
        a=account,
        base=base,
        quote=quote,
    )
    assert held == report.final_position
    assert cash + held * report.last_price == report.pnl
    net_qty, fill_count = await one(
        engine, "SELECT net_qty, fill_count FROM positions WHERE account = :a", a=account
    )
    assert fill_count == len(report.fills)
    # the positions view nets out fees paid in the base asset: it is the holding
    assert net_qty == report.final_position

    decisions, holds = await one(
        engine,
        # a hold row stands for itself and the identical holds after it (its repeats)
        "SELECT sum(1 + repeats), sum(1 + repeats) FILTER (WHERE outcome = 'hold')"
        " FROM decisions WHERE account = :a",
        a=account,
    )
    assert (decisions, holds) == (report.decisions, report.holds)
    placed, requested, filled = await one(
        engine,
        "SELECT count(*), sum(requested_qty), sum(filled_qty) FROM order_status"
        " WHERE account = :a AND client_order_id IN"
        " (SELECT client_order_id FROM orders WHERE account = :a AND venue_order_id IS NOT NULL)",
        a=account,
    )
    assert (placed, requested, filled) == (
        report.orders,
        report.requested_qty,
        report.filled_qty,
    )
    # Nothing is left in a state only a lookup could settle.
    assert not await rows(
        engine,
        "SELECT 1 FROM orders WHERE account = :a AND state IN ('PENDING_SUBMIT', 'UNKNOWN')",
        a=account,
    )


def anonymous(report: BacktestReport) -> BacktestReport:
    return dataclasses.replace(
        report,
        account=None,
        rejections=(),
        fills=tuple(dataclasses.replace(f, client_order_id=None) for f in report.fills),
    )


async def test_persisted_sma_run_is_the_in_memory_run_and_sql_agrees(
    db_engine: AsyncEngine,
) -> None:
    report = await run_backtest_persisted(
        BTC_DATA, "sma_cross", dict(SMA), 7, engine=db_engine, account="bt-sma-7"
    )
    in_memory = await asyncio.to_thread(run_backtest, BTC_DATA, "sma_cross", dict(SMA), 7)
    # Same market, same decisions, same fills: only the path to the venue was durable. (The
    # client order ids differ: a persisted run's strategy id is its account, unique per run.)
    assert report.account == "bt-sma-7"
    assert anonymous(report) == anonymous(in_memory)
    assert report.fills
    assert report.rejected > 0
    await assert_report_matches_ledger(db_engine, report, "BTC", "USDT")

    # Every refusal is in the ledger with its reason: the venue's for orders it refused, the
    # check's for orders execution denied before the wire (a quantity under one step, say).
    refused = await rows(
        db_engine,
        "SELECT last_error FROM orders WHERE account = :a AND state = 'REJECTED'",
        a="bt-sma-7",
    )
    denied = await rows(
        db_engine,
        "SELECT verdicts FROM decisions WHERE account = :a AND outcome = 'denied'",
        a="bt-sma-7",
    )
    assert len(refused) + len(denied) == report.rejected
    assert all(r.last_error.startswith("Definitive: ") for r in refused)
    assert any("insufficient balance" in r.last_error for r in refused)
    for d in denied:
        assert any(v["result"] == "reject" and v["message"] for v in d.verdicts)


async def test_decision_trace_shows_each_order_from_decision_to_fills(
    db_engine: AsyncEngine,
) -> None:
    report = await run_backtest_persisted(
        BTC_DATA, "sma_cross", dict(SMA), 3, engine=db_engine, account="bt-trace"
    )
    traced = await rows(
        db_engine,
        "SELECT client_order_id, reason, md_ts, decided_at, verdicts, events, fills, state"
        " FROM decision_trace WHERE account = :a AND client_order_id IS NOT NULL",
        a="bt-trace",
    )
    denied = await rows(
        db_engine,
        "SELECT decision_id FROM decisions WHERE account = :a AND outcome = 'denied'",
        a="bt-trace",
    )
    # every order the venue saw or refused has a row; denied decisions never had an order
    assert len(traced) == report.orders + report.rejected - len(denied)
    by_coid = {t.client_order_id: t for t in traced}
    for fill in report.fills:
        trace = by_coid[fill.client_order_id]
        assert fill.trade_id in {f["trade_id"] for f in trace.fills}
        assert trace.reason.startswith("fast crossed")
        # decided on the bar's close, recorded on the simulated clock after the latency
        assert trace.md_ts <= trace.decided_at
        assert "price_age" in {v["check"] for v in trace.verdicts}
        assert trace.events[0]["to_state"] == "PENDING_SUBMIT"
        assert trace.state in {"FILLED", "EXPIRED", "CANCELED", "PARTIALLY_FILLED", "OPEN"}


async def test_fair_value_persists_on_a_prediction_market(db_engine: AsyncEngine) -> None:
    report = await run_backtest_persisted(
        PRES_DATA, "fair_value", dict(FAIR), 7, engine=db_engine, account="bt-pres", settings=PRES
    )
    assert report.fills
    assert {f.fee_asset for f in report.fills} == {"USD"}
    assert 0 < report.final_position <= 200
    await assert_report_matches_ledger(db_engine, report, "PRES-YES", "USD")


async def test_a_halted_account_records_every_order_decision_as_denied(
    db_engine: AsyncEngine,
) -> None:
    ledger = Ledger(db_engine, account=AccountId("bt-halted"), venue=VenueName("paper"))
    await ledger.controls.set(
        ControlScope.ACCOUNT, "bt-halted", ControlKind.HALT, reason="no trading", set_by="test"
    )
    report = await run_backtest_persisted(
        BTC_DATA, "sma_cross", dict(SMA), 7, engine=db_engine, account="bt-halted"
    )
    assert report.orders == 0
    assert not report.fills
    assert report.rejected == report.decisions - report.holds > 0
    assert all("no trading" in reason for reason in report.rejections)
    denied = await scalar(
        db_engine,
        "SELECT count(*) FROM decisions WHERE account = :a AND outcome = 'denied'",
        a="bt-halted",
    )
    assert denied == report.rejected


async def test_an_account_that_already_holds_decisions_is_refused(db_engine: AsyncEngine) -> None:
    await run_backtest_persisted(
        PRES_DATA, "fair_value", dict(FAIR), 1, engine=db_engine, account="bt-once", settings=PRES
    )
    with pytest.raises(BacktestError, match="'bt-once' already holds decisions"):
        await run_backtest_persisted(
            PRES_DATA, "fair_value", dict(FAIR), 1, engine=db_engine, account="bt-once",
            settings=PRES,
        )  # fmt: skip


async def test_cli_persist_prints_the_report_account_and_sql_hint(
    database_url: URL, db_engine: AsyncEngine
) -> None:
    args = ["backtest", "--data", str(PRES_DATA), "--strategy", "fair_value", "--symbol"]
    args += ["PRES-YES", "--seed", "7", "--persist"]
    for key, value in FAIR.items():
        args += ["--param", f"{key}={value}"]
    env = {**os.environ, "DATABASE_URL": database_url.render_as_string(hide_password=False)}
    proc = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "engine", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "Backtest  fair_value on PRES-YES  seed 7"  # nothing but the report
    account = next(line.split()[-1] for line in lines if line.startswith("  ledger account"))
    assert account.startswith("backtest-fair_value-7-")
    assert re.match(r"inspect it: /\S+/psql -X .* 'postgresql://", lines[-1])
    assert f"FROM decision_trace WHERE account = '{account}' ORDER BY decided_at;" in lines[-1]
    total = await scalar(
        db_engine, "SELECT sum(1 + repeats) FROM decisions WHERE account = :a", a=account
    )
    assert f"  decisions       {total} (" in proc.stdout


async def test_next_open_fills_persisted_are_the_in_memory_ones(db_engine: AsyncEngine) -> None:
    settings = BacktestSettings(fill=FillAt.OPEN, latency_ms=Decimal(200))
    report = await run_backtest_persisted(
        BTC_DATA, "sma_cross", dict(SMA), 3, engine=db_engine, account="bt-open", settings=settings
    )
    in_memory = await asyncio.to_thread(
        functools.partial(run_backtest, BTC_DATA, "sma_cross", dict(SMA), 3, settings=settings)
    )
    assert report.fills
    assert anonymous(report) == anonymous(in_memory)
    await assert_report_matches_ledger(db_engine, report, "BTC", "USDT")
