"""A real engine (the built-in simulator, a real ledger) read over HTTP as Prometheus would: the
metrics move while it trades, and an operator's halt and an incident show up in them."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import pytest
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine

from engine import runtime
from engine.config import load_settings
from engine.domain.intents import Intent
from engine.domain.types import (
    AccountId,
    ControlKind,
    ControlScope,
    StrategyId,
    Symbol,
    VenueName,
)
from engine.ledger.ledger import Ledger
from strategies.base import DecisionMode, Snapshot
from tests.helpers import ROOT, eventually
from tests.metrics_http import Scrape, metrics_server, scrape

STRATEGIES = ROOT / "tests/resources/engine/metrics_strategies.toml"
#: the registry is process-global: this account label keeps this test's series apart
ACCOUNT = "metrics-engine"


@pytest.fixture
def metrics_url() -> Iterator[str]:
    with metrics_server() as url:
        yield url


async def test_a_trading_engine_moves_its_metrics_and_shows_halts_and_incidents(
    database_url: URL, db_engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch, metrics_url: str
) -> None:
    for key, value in {
        "DATABASE_URL": database_url.render_as_string(hide_password=False),
        "TRADECTL_ACCOUNT": ACCOUNT,
        "TRADECTL_VENUE": "simulator",
        "TRADECTL_SEED": "7",
        "TRADECTL_STRATEGIES_FILE": str(STRATEGIES),
        "TRADECTL_STATUS_INTERVAL_S": "3600",
        "TRADECTL_LEASE_TTL_S": "3",
    }.items():
        monkeypatch.setenv(key, value)
    before = await scrape(metrics_url)
    stop = asyncio.Event()
    task = asyncio.create_task(runtime.run(load_settings(), stop), name="engine-metrics")
    a = {"account": ACCOUNT}
    fv = {"account": ACCOUNT, "strategy": "fv-fast"}

    async def when(check: str, condition: Callable[[Scrape], object]) -> Scrape:
        last: list[Scrape] = []

        async def probe() -> Scrape | None:
            if task.done():
                task.result()  # the engine's own error, not a timeout
            last[:] = [await scrape(metrics_url)]
            return last[0] if condition(last[0]) else None

        try:
            return await eventually(probe, timeout=90, interval=0.2, message=check)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; last scrape:\n{last[0].describe(ACCOUNT)}") from None

    try:
        trading = await when(
            "fills, decisions, acks and working orders should be counted",
            lambda m: (
                m.total("tradectl_fills_total", **fv) >= 3
                and m.total("tradectl_decisions_total", **fv, outcome="order") > 0
                and m.total("tradectl_marketdata_to_ack_seconds_count", **fv) > 0
                and (m.value("tradectl_orders", **a, state="FILLED") or 0) > 0
            ),
        )
        assert before.total("tradectl_fills_total", **a) == 0
        assert trading.value("tradectl_lease_held", **a) == 1
        # how long its startup took, step by step: the steps add up to no more than the whole
        steps = trading.labels("tradectl_startup_seconds", "step", **a)
        assert steps == {"symbols", "lease", "recover", "reconcile", "load", "total"}
        step_s = {s: trading.value("tradectl_startup_seconds", **a, step=s) or 0 for s in steps}
        assert 0 < sum(v for s, v in step_s.items() if s != "total") <= step_s["total"]
        # a fill's symbol, its fee and how it compares with its limit price
        assert trading.labels("tradectl_fills_total", "symbol", **fv) == {"PRES-YES"}
        assert trading.total("tradectl_fees_total", **fv) > 0
        assert trading.total("tradectl_fee_bps_count", **fv) >= 3
        assert trading.total("tradectl_slippage_bps_count", **fv) >= 3
        assert trading.value("tradectl_assumed_fee_bps", **fv) == 10
        assert trading.value("tradectl_assumed_slippage_bps", **fv) == 2.5
        # every state is reported, unresolved ones with their oldest order's age
        assert trading.labels("tradectl_orders", "state", **a) >= {"PENDING_SUBMIT", "OPEN"}
        assert trading.value("tradectl_oldest_order_age_seconds", **a, state="UNKNOWN") == 0

        held = await when(
            "P&L, risk utilization and the balance comparison should be reported",
            lambda m: (
                m.value("tradectl_pnl_realized", **fv, symbol="PRES-YES") is not None
                and (m.value("tradectl_risk_utilization", **fv, limit="max_position_qty") or 0) > 0
                and m.labels("tradectl_balance_difference", "asset", **a)
            ),
        )
        # its fills paid fees in the quote asset: realized P&L has moved off zero
        assert held.value("tradectl_pnl_realized", **fv, symbol="PRES-YES") != 0
        assert held.value("tradectl_pnl_unrealized", **fv, symbol="PRES-YES") is not None
        rate = held.value("tradectl_risk_utilization", **fv, limit="orders_per_minute")
        assert rate is not None
        assert 0 <= rate <= 1
        # the simulator and the ledger agree: nothing expected differs from the venue
        assert all(
            held.value("tradectl_balance_difference", **a, asset=asset) == 0
            for asset in held.labels("tradectl_balance_difference", "asset", **a)
        )
        assert held.value("tradectl_controls_active", **a, kind="halt") == 0
        assert held.value("tradectl_incidents_open", **a, severity="error") == 0

        # an operator halts the account and the reconciler opens an incident
        ledger = Ledger(db_engine, account=AccountId(ACCOUNT), venue=VenueName("simulator"))
        await ledger.controls.set(
            ControlScope.ACCOUNT, ACCOUNT, ControlKind.HALT, reason="checking", set_by="test"
        )
        await ledger.incidents.open(
            kind="fills_missing",
            scope="symbol:PRES-YES",
            severity="error",
            message="check the venue",
            details={},
            dedupe_key="fills_missing:metrics",
        )
        await when(
            "the halt and the incident should be reported",
            lambda m: (
                m.value("tradectl_controls_active", **a, kind="halt") == 1
                and m.value("tradectl_incidents_open", **a, severity="error") == 1
            ),
        )
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=30)
    after = await scrape(metrics_url)
    # a clean stop releases the lease
    assert after.value("tradectl_lease_held", **a) == 0


class Explodes:
    """A strategy whose every decision raises."""

    mode = DecisionMode.QUOTE
    bar_history = 0

    def __init__(
        self, strategy_id: StrategyId, symbols: Sequence[Symbol], params: Mapping[str, str]
    ) -> None:
        self.strategy_id = strategy_id
        self.symbols = tuple(symbols)

    def decide(self, snapshot: Snapshot) -> list[Intent]:
        raise ZeroDivisionError("a bug in the strategy")


async def test_a_failing_strategy_counts_an_error_and_shows_its_pause_and_incident(
    database_url: URL, monkeypatch: pytest.MonkeyPatch, metrics_url: str, tmp_path: Path
) -> None:
    strategies = tmp_path / "strategies.toml"
    # configured by module path, as a user's own strategy is (docs/strategies.md)
    kind = f"{__name__}:Explodes"
    strategies.write_text(f'[[strategy]]\nid = "boom"\nkind = "{kind}"\nsymbols = ["BTCUSDT"]\n')
    account = "metrics-failing"
    for key, value in {
        "DATABASE_URL": database_url.render_as_string(hide_password=False),
        "TRADECTL_ACCOUNT": account,
        "TRADECTL_VENUE": "paper",
        "TRADECTL_STRATEGIES_FILE": str(strategies),
        "TRADECTL_STATUS_INTERVAL_S": "3600",
    }.items():
        monkeypatch.setenv(key, value)
    stop = asyncio.Event()
    task = asyncio.create_task(runtime.run(load_settings(), stop), name="engine-failing")
    a = {"account": account}

    async def reported() -> bool:
        if task.done():
            task.result()
        m = await scrape(metrics_url)
        return (
            m.value("tradectl_errors_total", **a, component="strategy") == 1
            and m.value("tradectl_controls_active", **a, kind="pause") == 1
            and m.value("tradectl_incidents_open", **a, severity="error") == 1
        )

    try:
        await eventually(reported, timeout=60, interval=0.2, message="the failure in the metrics")
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=30)
