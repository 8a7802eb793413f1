"""Balance reconciliation compares only against complete facts, and only drifts that stay.

A fill in flight (on the venue, not yet in the ledger) looks exactly like a drift. These pin the
three defences: the venue's recent trades are fetched again (a fill reported late, behind newer
trades, included), a failed fetch means "not compared" rather than "nothing missing", and a
drift must keep the same difference for the settle window before it pauses anyone.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from engine.domain.types import Asset, ClientOrderId, OrderType, Side, TimeInForce
from engine.exceptions import Ambiguous
from engine.venues.base import OrderRequest
from engine.venues.paper import BTCUSDT, PaperVenue
from tests.integration.test_execution import PREFIX, Clock
from tests.integration.test_risk_controls import SETTLE_S, A, clock, order, rig, venue

__all__ = ["clock", "venue"]  # fixtures

BTC = Asset("BTC")


async def _baseline(db_engine: AsyncEngine, venue: PaperVenue, clock: Clock) -> Any:
    r = await rig(db_engine, venue, clock)
    await r.execution.process([order(clock, A, "0.01", i="base")])
    report = await r.reconciler.reconcile(startup=True)
    assert report.balances_checked
    assert report.balance_drifts == []
    return r


async def test_a_drift_that_goes_away_within_the_settle_window_pauses_nothing(
    db_engine: AsyncEngine, venue: PaperVenue, clock: Clock
) -> None:
    r = await _baseline(db_engine, venue, clock)
    venue._wallets[BTC].free += Decimal("0.003")  # e.g. a fill the venue booked, still in flight
    seen = await r.reconciler.reconcile()
    assert seen.balance_drifts == []
    assert "not confirmed yet" in seen.balances_note
    venue._wallets[BTC].free -= Decimal("0.003")  # ... and its report arrives
    clock.advance(SETTLE_S)
    settled = await r.reconciler.reconcile()
    clock.advance(SETTLE_S)
    again = await r.reconciler.reconcile()
    assert settled.balance_drifts == again.balance_drifts == []
    assert await r.ledger.incidents.read() == []
    assert await r.ledger.controls.active() == []


async def test_a_drift_whose_difference_changes_waits_a_whole_window_again(
    db_engine: AsyncEngine, venue: PaperVenue, clock: Clock
) -> None:
    r = await _baseline(db_engine, venue, clock)
    venue._wallets[BTC].free += Decimal("0.003")
    await r.reconciler.reconcile()
    clock.advance(SETTLE_S)
    venue._wallets[BTC].free += Decimal("0.001")
    moved = await r.reconciler.reconcile()
    assert moved.balance_drifts == []
    clock.advance(SETTLE_S)
    confirmed = await r.reconciler.reconcile()
    assert [Decimal(d["difference"]) for d in confirmed.balance_drifts] == [Decimal("0.004")]
    assert [i.kind for i in await r.ledger.incidents.read()] == ["balance_drift"]


async def test_a_failed_fill_fetch_means_the_balances_are_not_compared(
    db_engine: AsyncEngine, venue: PaperVenue, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    r = await _baseline(db_engine, venue, clock)
    venue._wallets[BTC].free += Decimal("0.003")

    async def unavailable(*args: object, **kwargs: object) -> None:
        raise Ambiguous("HTTP 503 Service Unavailable")

    monkeypatch.setattr(venue, "trades_since", unavailable)
    for _ in range(3):
        report = await r.reconciler.reconcile()
        clock.advance(SETTLE_S)
        assert not report.balances_checked
        assert "could not be fetched" in report.balances_note
    assert await r.ledger.incidents.read() == []
    monkeypatch.undo()
    await r.reconciler.reconcile()  # the venue answers again: the real drift is seen ...
    clock.advance(SETTLE_S)
    report = await r.reconciler.reconcile()  # ... and confirmed once it stayed
    assert [d["asset"] for d in report.balance_drifts] == ["BTC"]


async def test_a_fill_reported_behind_newer_trades_is_fetched_before_comparing(
    db_engine: AsyncEngine, venue: PaperVenue, clock: Clock
) -> None:
    r = await _baseline(db_engine, venue, clock)
    for n in (1, 2):
        await venue.submit(
            OrderRequest(
                client_order_id=ClientOrderId(f"{PREFIX}-late{n}"),
                symbol=BTCUSDT,
                side=Side.BUY,
                type=OrderType.MARKET,
                quantity=Decimal("0.001"),
                limit_price=None,
                time_in_force=TimeInForce.GTC,
            )
        )
    older, newer = venue.all_fills()[-2:]
    assert int(older.trade_id) < int(newer.trade_id)
    # the stream delivered the newer fill; the older one's report is still on its way
    await r.ledger.fills.append([newer])
    assert await r.execution.sync_fills() == 0, "resuming after the newest trade misses it"
    report = await r.reconciler.reconcile()
    assert older.trade_id in await _trade_ids(db_engine)
    clock.advance(SETTLE_S)
    report = await r.reconciler.reconcile()
    assert report.balances_checked
    assert report.balance_drifts == []
    # placed on the venue directly, so they are (rightly) trades tradectl did not place
    assert {i.kind for i in await r.ledger.incidents.read()} == {"external_trade"}


async def _trade_ids(db_engine: AsyncEngine) -> set[str]:
    async with db_engine.connect() as conn:
        return set((await conn.execute(text("SELECT trade_id FROM fills"))).scalars())


async def test_a_trade_made_outside_tradectl_is_reported_once_and_pauses_its_traders(
    db_engine: AsyncEngine, venue: PaperVenue, clock: Clock
) -> None:
    r = await _baseline(db_engine, venue, clock)
    manual = await venue.submit(
        OrderRequest(
            client_order_id=ClientOrderId("web-1"),
            symbol=BTCUSDT,
            side=Side.SELL,
            type=OrderType.MARKET,
            quantity=Decimal("0.002"),
            limit_price=None,
            time_in_force=TimeInForce.GTC,
        )
    )
    await r.ledger.fills.append(manual.fills)  # as the user stream records every account fill
    report = await r.reconciler.reconcile()
    assert report.external_trades == ["BTCUSDT"]
    [incident] = await r.ledger.incidents.read()
    assert incident.kind == "external_trade"
    assert "strategy strat-a paused: 1 trade(s) on BTCUSDT that tradectl did not place" in (
        incident.message
    )
    assert report.balance_drifts == [], "the fill is recorded: the balances agree"
    assert [c.target for c in await r.ledger.controls.active()] == [A]
    # reported once: not again on the next pass, nor by a restarted engine, nor once resolved
    assert (await r.reconciler.reconcile()).external_trades == []
    assert await r.ledger.incidents.resolve(incident.id, "checked: my own trade")
    clock.advance(4)  # the first engine's lease expires: the restarted one takes over
    restarted = await rig(db_engine, venue, clock)
    assert (await restarted.reconciler.reconcile()).external_trades == []
    assert await r.ledger.incidents.read() == []
