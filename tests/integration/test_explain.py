"""``tradectl explain``: one decision's whole story, from the ledger alone.

The scenario is built through the ledger calls the execution path makes (reserve, the venue's
ack, a stream report with a partial fill, a cancel request and its answer, the re-priced order),
against a real database, and then told by the CLI.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from click.testing import Result
from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine
from typer.testing import CliRunner

from engine.cli import app
from engine.cli._app import console
from engine.domain.risk import Verdict
from engine.domain.types import (
    AccountId,
    Asset,
    ClientOrderId,
    DecisionId,
    DecisionOutcome,
    Liquidity,
    OrderState,
    OrderType,
    Side,
    StrategyId,
    Symbol,
    TimeInForce,
    TradeId,
    VenueName,
    VenueOrderId,
    VenueOrderStatus,
    VerdictResult,
)
from engine.ledger.ledger import Ledger
from engine.ledger.records import DecisionRecord, Reservation, ReserveStatus
from engine.venues.base import FillReport, OrderReport

ACCOUNT = "acct-x"
VENUE = VenueName("binance")
T0 = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
FIRST = ClientOrderId("tc-churn-1")
SECOND = ClientOrderId("tc-churn-2")


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def at(self, ms: int) -> datetime:
        self.now = T0 + timedelta(milliseconds=ms)
        return self.now


@pytest.fixture
def cli_env(database_url: URL, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url.render_as_string(hide_password=False))
    monkeypatch.setenv("TRADECTL_ACCOUNT", ACCOUNT)
    monkeypatch.setenv("TRADECTL_VENUE", "paper")


@pytest.fixture(autouse=True)
def wide_console() -> Iterator[None]:
    saved = console._width
    console.width = 250
    yield
    console._width = saved


async def invoke(*args: str) -> Result:
    return await asyncio.to_thread(CliRunner().invoke, app, list(args))


def reservation(
    n: int, coid: ClientOrderId, qty: str, price: str, verdicts: tuple[Verdict, ...]
) -> Reservation:
    decision = DecisionRecord(
        decision_id=DecisionId(f"dec-churn-{n}"),
        strategy_id=StrategyId("churn"),
        account=AccountId(ACCOUNT),
        symbol=Symbol("BTCUSDT"),
        intent="buy",
        side=Side.BUY,
        quantity=Decimal("0.8"),
        limit_price=Decimal(price),
        reason=f"churn: BUY at {price} (near touch, resting)",
        md_ts=T0 + timedelta(seconds=10 * n) - timedelta(milliseconds=250),
        decided_at=T0 + timedelta(seconds=10 * n),
        interval_key=f"2026-11-30T09:00:{10 * n:02d}",
        sequence=0,
        verdicts=verdicts,
        outcome=DecisionOutcome.RESERVED,
    )
    return Reservation(
        decision=decision,
        client_order_id=coid,
        venue=VENUE,
        type=OrderType.LIMIT,
        time_in_force=TimeInForce.GTC,
        quantity=Decimal(qty),
        limit_price=Decimal(price),
        expires_at=decision.decided_at + timedelta(seconds=30),
    )


def fill(trade_id: str, qty: str, price: str, at: datetime) -> FillReport:
    return FillReport(
        venue=VENUE, symbol=Symbol("BTCUSDT"), trade_id=TradeId(trade_id),
        client_order_id=FIRST, venue_order_id=VenueOrderId("v-1"), side=Side.BUY,
        quantity=Decimal(qty), price=Decimal(price), fee=Decimal("0.012"),
        fee_asset=Asset("USDT"), liquidity=Liquidity.MAKER, venue_ts=at,
        received_at=at + timedelta(milliseconds=4),
    )  # fmt: skip


def report(coid: ClientOrderId, status: VenueOrderStatus, filled: str, price: str, at: datetime,
           fills: tuple[FillReport, ...] = ()) -> OrderReport:  # fmt: skip
    return OrderReport(
        venue=VENUE, symbol=Symbol("BTCUSDT"), client_order_id=coid,
        venue_order_id=VenueOrderId("v-1" if coid == FIRST else "v-2"), side=Side.BUY,
        type=OrderType.LIMIT, status=status, quantity=Decimal("0.5"), limit_price=Decimal(price),
        filled_quantity=Decimal(filled), cumulative_quote=None, venue_ts=at, received_at=at,
        fills=fills,
    )  # fmt: skip


@pytest.fixture
async def partially_filled_canceled_repriced(db_engine: AsyncEngine) -> Ledger:
    """A resting buy, resized by risk, partly filled, canceled by the strategy's next window,
    and placed again at a new price: what the churn strategy does every window."""
    clock = Clock()
    ledger = Ledger(db_engine, account=AccountId(ACCOUNT), venue=VENUE, clock=clock)
    epoch = await ledger.leases.acquire("engine-a", timedelta(seconds=60))
    assert epoch is not None
    verdicts = (
        Verdict(check="max_order_qty", result=VerdictResult.PASS, limit="2", observed="0.8"),
        Verdict(
            check="max_position", result=VerdictResult.RESIZE, limit="1", observed="0.5 + 0.8",
            message="resized to fit the position limit", resized_qty=Decimal("0.5"),
        ),
        Verdict(check="price_band", result=VerdictResult.PASS, limit="2%", observed="0.01%"),
    )  # fmt: skip
    clock.at(10_005)
    [first] = await ledger.orders.reserve(
        [reservation(1, FIRST, "0.5", "30000.10", verdicts)], holder="engine-a", epoch=epoch
    )
    assert first.status is ReserveStatus.RESERVED
    sent = clock.at(10_012)
    clock.at(10_040)
    await ledger.orders.record_ack(
        FIRST, report(FIRST, VenueOrderStatus.NEW, "0", "30000.10", sent), submitted_at=sent
    )
    at = clock.at(11_500)
    partial = report(FIRST, VenueOrderStatus.PARTIALLY_FILLED, "0.2", "30000.10", at,
                     (fill("7001", "0.2", "30000.05", at),))  # fmt: skip
    await ledger.orders.apply_report(partial, cause="stream")
    clock.at(20_003)
    await ledger.orders.request_cancel(FIRST, "cancel intent: churn: replace resting BUY 0.3")
    at = clock.at(20_030)
    await ledger.orders.apply_report(
        report(FIRST, VenueOrderStatus.CANCELED, "0.2", "30000.10", at), cause="cancel acknowledged"
    )
    clock.at(20_060)
    [second] = await ledger.orders.reserve(
        [reservation(2, SECOND, "0.3", "30012.50", verdicts[:1])], holder="engine-a", epoch=epoch
    )
    assert second.status is ReserveStatus.RESERVED
    await ledger.incidents.open(
        kind="fills_missing", scope="symbol:BTCUSDT", severity="warning",
        message=f"order {FIRST} reported more fills than the ledger holds; fetched them",
        details={"client_order_id": FIRST}, dedupe_key=f"fills_missing:{FIRST}",
    )  # fmt: skip
    await ledger.incidents.open(
        kind="fills_missing", scope="symbol:BTCUSDT", severity="warning",
        message="order tc-churn-10 (another order: its id only starts like the first's)",
        details={}, dedupe_key="fills_missing:tc-churn-10",
    )  # fmt: skip
    order = await ledger.orders.get(FIRST)
    assert order is not None
    assert order.state is OrderState.CANCELED
    return ledger


async def test_explain_tells_a_partly_filled_canceled_and_repriced_order_in_one_screen(
    cli_env: None, partially_filled_canceled_repriced: Ledger
) -> None:
    result = await invoke("explain", FIRST)
    assert result.exit_code == 0, result.output
    out = result.output
    lines = out.splitlines()
    assert len(lines) <= 40, out  # one screen

    # the decision: strategy, reason, market data and its age
    assert "strategy churn" in out
    assert "UTC: BUY 0.8 @ 30000.1 limit" in out
    assert "reason: churn: BUY at 30000.10 (near touch, resting)" in out
    assert "250 ms old at the decision" in out
    # every verdict, with limit, observed value and the resize
    assert "max_order_qty" in out
    assert "resize max_position     limit 1  observed 0.5 + 0.8  -> resized to 0.5" in out
    assert "price_band" in out
    # the reservation, the submit and the venue's answer
    assert "reserved 09:00:10.005 (5 ms after the decision), lease epoch 1" in out
    assert "acked 09:00:10.040 (28 ms), venue order v-1" in out
    assert "submit attempts: 1 (venue answers: ack -> OPEN)" in out
    # state changes with their causes, in order
    changes = [line.split(None, 1)[1] for line in lines if " -> " in line and "    " in line[:4]]
    assert [c.split()[:3] for c in changes if not c.startswith("->")] == [
        ["PENDING_SUBMIT", "->", "OPEN"],
        ["OPEN", "->", "PARTIALLY_FILLED"],
        ["PARTIALLY_FILLED", "->", "PENDING_CANCEL"],
        ["PENDING_CANCEL", "->", "CANCELED"],
    ]
    assert "cancel intent: churn: replace resting BUY 0.3" in out
    assert "cancel acknowledged (venue CANCELED, venue filled 0.2)" in out
    # the fill: fee, slippage against the decision's limit, latency
    assert "fills (1), slippage against the decision limit price:" in out
    assert "trade 7001  BUY 0.2 @ 30000.05  fee 0.012 USDT maker" in out
    assert "slippage -0.05 (-0.02 bps, cost -0.01)" in out
    assert "1.5 s after the decision" in out
    assert "reported +4 ms" in out
    # the current state, the re-priced order, and the incident that names it
    assert "now CANCELED" in out
    assert "filled 0.2 of 0.5 in 1 fill(s), avg 30000.05, fees 0.012 USDT" in out
    assert f"next order of the strategy on BTCUSDT: {SECOND} BUY 0.3 @ 30012.5" in out
    assert "fills_missing (open)" in out
    assert "incidents mentioning it (1)" in out


async def test_explain_by_decision_id_as_json(
    cli_env: None, partially_filled_canceled_repriced: Ledger
) -> None:
    result = await invoke("explain", "dec-churn-1", "--json")
    assert result.exit_code == 0, result.output
    story = json.loads(result.output)
    assert story["decision"]["strategy_id"] == "churn"
    assert story["decision"]["md_age_s"] == "0.250000"
    assert [v["result"] for v in story["decision"]["verdicts"]] == ["pass", "resize", "pass"]
    [order] = story["orders"]
    assert order["order"]["state"] == "CANCELED"
    assert [e["to_state"] for e in order["events"]] == [
        "PENDING_SUBMIT", "OPEN", "PARTIALLY_FILLED", "PENDING_CANCEL", "CANCELED",
    ]  # fmt: skip
    [f] = order["fills"]
    assert (f["trade_id"], f["fee"], f["slippage"]) == ("7001", "0.012", "-0.05")
    assert order["next_order"]["client_order_id"] == SECOND
    assert [i["kind"] for i in story["incidents"]] == ["fills_missing"]


async def test_explain_knows_only_the_accounts_own_orders(
    cli_env: None, partially_filled_canceled_repriced: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = await invoke("explain", "tc-nothing")
    assert missing.exit_code == 1
    assert "no decision or order 'tc-nothing' in account 'acct-x'" in missing.output
    monkeypatch.setenv("TRADECTL_ACCOUNT", "acct-other")
    assert (await invoke("explain", FIRST)).exit_code == 1
    assert (await invoke("explain", FIRST, "--account", ACCOUNT)).exit_code == 0


async def test_explain_lists_alerts_that_mention_the_order(
    cli_env: None, partially_filled_canceled_repriced: Ledger, db_engine: AsyncEngine
) -> None:
    async with db_engine.begin() as conn:
        if (await conn.execute(text("SELECT to_regclass('public.alerts')"))).scalar():
            pytest.skip("the alerts table exists: give this test a row in its real columns")
        # the shape helper C's revision 0007 will give it: any columns, one of them account
        await conn.execute(
            text("CREATE TABLE alerts (id bigint, account text, level text, message text)")
        )
        await conn.execute(
            text(
                "INSERT INTO alerts VALUES (1, :a, 'HIGH', :m), (2, :a, 'LOW', 'other'), "
                "(3, 'acct-y', 'HIGH', :m)"
            ),
            {"a": ACCOUNT, "m": f"incident opened for {FIRST}"},
        )
    out = (await invoke("explain", FIRST)).output
    assert "alerts mentioning it: 1" in out
    assert f"  HIGH: incident opened for {FIRST}" in out


async def test_explain_a_denied_decision_shows_its_verdicts_and_no_order(
    cli_env: None, db_engine: AsyncEngine
) -> None:
    ledger = Ledger(db_engine, account=AccountId(ACCOUNT), venue=VENUE)
    refused = Verdict(
        check="max_notional", result=VerdictResult.REJECT, limit="1000", observed="24000.08",
        message="order notional over the strategy's limit",
    )  # fmt: skip
    denied = reservation(3, ClientOrderId("tc-never"), "0.8", "30000.10", (refused,)).decision
    await ledger.decisions.record(replace(denied, outcome=DecisionOutcome.DENIED))
    out = (await invoke("explain", "dec-churn-3")).output
    assert "reject max_notional     limit 1000  observed 24000.08" in out
    assert "no order: the decision was denied" in out
