"""Two accounts on one ledger: the account is part of every identity (fills, controls,
incidents), so nothing one account records or sets reaches the other."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from engine.domain.types import (
    AccountId,
    ClientOrderId,
    ControlKind,
    ControlScope,
    DecisionId,
    OrderState,
    VenueOrderStatus,
)
from engine.ledger.ledger import Ledger
from engine.ledger.records import Reservation, ReserveStatus
from engine.status import all_accounts_status, ledger_status
from tests.integration.test_ledger import (
    HOLDER,
    T0,
    VENUE,
    Clock,
    fill,
    report,
    reservation,
    scalar,
)

A = AccountId("acct-a")
B = AccountId("acct-b")


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def ledgers(db_engine: AsyncEngine, clock: Clock) -> dict[AccountId, Ledger]:
    return {a: Ledger(db_engine, account=a, venue=VENUE, clock=clock) for a in (A, B)}


async def _epochs(ledgers: dict[AccountId, Ledger]) -> dict[AccountId, int]:
    epochs = {}
    for account, ledger in ledgers.items():
        epoch = await ledger.leases.acquire(HOLDER, timedelta(seconds=30))
        assert epoch is not None
        epochs[account] = epoch
    return epochs


async def rows(engine: AsyncEngine, sql: str, **params: Any) -> list[tuple[Any, ...]]:
    async with engine.connect() as conn:
        return [tuple(r) for r in (await conn.execute(text(sql), params)).all()]


def _reservation(account: AccountId, n: int = 1, **kwargs: object) -> Reservation:
    """The same decision in ``account``, under that account's own ids."""
    r = reservation(n, **kwargs)  # type: ignore[arg-type]
    d = replace(r.decision, account=account, decision_id=DecisionId(f"{account}-{n}"))
    return replace(r, decision=d, client_order_id=ClientOrderId(f"{account}-{r.client_order_id}"))


async def test_the_same_trade_id_in_two_accounts_is_two_fills_and_fills_each_order(
    ledgers: dict[AccountId, Ledger], db_engine: AsyncEngine
) -> None:
    epochs = await _epochs(ledgers)
    for account, ledger in ledgers.items():
        r = _reservation(account)
        [result] = await ledger.orders.reserve([r], holder=HOLDER, epoch=epochs[account])
        assert result.status is ReserveStatus.RESERVED
        # both venues (the simulator restarted, or two sub-accounts trading with each other)
        # report trade id 1
        new = await ledger.fills.append([fill(r.client_order_id, "1", "0.5")])
        assert len(new) == 1, f"account {account}'s fill was dropped"
        order = await ledger.orders.get(r.client_order_id)
        assert order is not None
        assert order.state is OrderState.FILLED
        assert order.filled_qty == r.quantity
        # a replay in the same account is still a duplicate
        assert await ledger.fills.append([fill(r.client_order_id, "1", "0.5")]) == []

    rows = await scalar(db_engine, "SELECT count(*) FROM fills WHERE trade_id = '1'")
    assert rows == 2
    # the views never mix the two accounts: one position per account, each of 0.5
    for account in (A, B):
        net = await scalar(
            db_engine, "SELECT sum(net_qty) FROM positions WHERE account = :a", a=account
        )
        assert net == r.quantity
        filled = await scalar(
            db_engine,
            "SELECT sum(filled_qty) FROM order_status WHERE account = :a",
            a=account,
        )
        assert filled == r.quantity


async def test_a_report_of_another_accounts_order_id_does_not_move_it(
    ledgers: dict[AccountId, Ledger], db_engine: AsyncEngine
) -> None:
    epochs = await _epochs(ledgers)
    r = _reservation(A)
    await ledgers[A].orders.reserve([r], holder=HOLDER, epoch=epochs[A])
    coid = str(r.client_order_id)
    # account B's stream names A's client order id (B's own order with that id, say)
    answer = report(coid, VenueOrderStatus.FILLED, filled="0.5", fills=(fill(coid, "7", "0.5"),))
    assert await ledgers[B].orders.apply_report(answer, cause="stream") is None
    order = await ledgers[A].orders.get(r.client_order_id)
    assert order is not None
    assert order.state is OrderState.PENDING_SUBMIT
    assert order.filled_qty == 0
    assert await ledgers[B].orders.get(r.client_order_id) is None
    # B's fill is recorded (as B's) and is in no view row of A's order
    assert await scalar(db_engine, "SELECT account FROM fills WHERE trade_id = '7'") == B
    fills_of_a = await scalar(
        db_engine,
        "SELECT fill_count FROM order_status WHERE client_order_id = :c",
        c=coid,
    )
    assert fills_of_a == 0


async def test_two_accounts_reserving_the_same_decision_key_get_an_order_and_decision_each(
    ledgers: dict[AccountId, Ledger], db_engine: AsyncEngine
) -> None:
    # The same strategy over the same window with the same TRADECTL_ORDER_ID_PREFIX: the same
    # decision id and client order id in both accounts (ids derive from the decision key).
    epochs = await _epochs(ledgers)
    r = reservation()
    same = {a: replace(r, decision=replace(r.decision, account=a)) for a in (A, B)}
    results = {}
    for account in (A, B):
        [results[account]] = await ledgers[account].orders.reserve(
            [same[account]], holder=HOLDER, epoch=epochs[account]
        )
        assert results[account].status is ReserveStatus.RESERVED, results[account].blocked_by
        order = results[account].order
        assert order is not None
        assert order.account == account
        # a retry in the same account still continues from its own order
        [again] = await ledgers[account].orders.reserve(
            [same[account]], holder=HOLDER, epoch=epochs[account]
        )
        assert again.status is ReserveStatus.EXISTING
        assert again.order == order

    coid, decision_id = r.client_order_id, r.decision.decision_id
    orders = await rows(db_engine, "SELECT account, decision_id FROM orders ORDER BY 1")
    assert orders == [(A, decision_id), (B, decision_id)]
    decisions = await rows(db_engine, "SELECT account, outcome FROM decisions ORDER BY 1")
    assert decisions == [(A, "reserved"), (B, "reserved")]

    # each account moves, fills and reads only its own order
    ack = report(coid, VenueOrderStatus.NEW)
    await ledgers[A].orders.record_ack(coid, ack, submitted_at=T0)
    await ledgers[B].orders.transition(coid, OrderState.UNKNOWN, cause="submit_ambiguous")
    await ledgers[A].fills.append([fill(coid, "1", "0.2")])
    order_a, order_b = [await ledgers[a].orders.get(coid) for a in (A, B)]
    assert order_a is not None
    assert order_b is not None
    assert (order_a.state, order_a.filled_qty) == (OrderState.PARTIALLY_FILLED, Decimal("0.2"))
    assert (order_b.state, order_b.filled_qty) == (OrderState.UNKNOWN, 0)

    # decision_trace: one row per account, each with its own order's events and fills
    trace = await rows(
        db_engine,
        """SELECT account, state, jsonb_array_length(events), jsonb_array_length(fills)
        FROM decision_trace WHERE decision_id = :d ORDER BY account""",
        d=decision_id,
    )
    assert trace == [(A, "PARTIALLY_FILLED", 3, 1), (B, "UNKNOWN", 2, 0)]
    events = await rows(
        db_engine, "SELECT account, count(*) FROM order_events GROUP BY 1 ORDER BY 1"
    )
    assert events == [(A, 3), (B, 2)]


@pytest.mark.parametrize("scope", [ControlScope.STRATEGY, ControlScope.SYMBOL])
async def test_a_control_in_one_account_does_not_block_the_other(
    ledgers: dict[AccountId, Ledger], scope: ControlScope
) -> None:
    epochs = await _epochs(ledgers)
    target = "momo" if scope is ControlScope.STRATEGY else "BTCUSDT"
    await ledgers[A].controls.set(scope, target, ControlKind.PAUSE, reason="check", set_by="t")

    [blocked] = await ledgers[A].orders.reserve([_reservation(A)], holder=HOLDER, epoch=epochs[A])
    assert blocked.status is ReserveStatus.BLOCKED
    assert "in account acct-a" in blocked.blocked_by[0]
    [free] = await ledgers[B].orders.reserve([_reservation(B)], holder=HOLDER, epoch=epochs[B])
    assert free.status is ReserveStatus.RESERVED

    assert [c.account for c in await ledgers[A].controls.active()] == [A]
    assert await ledgers[B].controls.active() == []
    assert len(await ledgers[B].controls.active(all_accounts=True)) == 1
    # B cannot clear A's pause by naming the same strategy / symbol
    assert not await ledgers[B].controls.clear(scope, target, ControlKind.PAUSE, cleared_by="t")
    assert await ledgers[A].controls.clear(scope, target, ControlKind.PAUSE, cleared_by="t")


async def test_the_same_strategy_paused_in_both_accounts_is_two_controls(
    ledgers: dict[AccountId, Ledger],
) -> None:
    ids = {
        (await ledgers[a].controls.set(ControlScope.STRATEGY, "momo", ControlKind.PAUSE,
                                       reason="r", set_by="t")).id
        for a in (A, B)
        for _ in range(2)  # idempotent within an account
    }  # fmt: skip
    assert len(ids) == 2


async def test_a_global_control_blocks_every_account_and_is_set_once(
    ledgers: dict[AccountId, Ledger],
) -> None:
    epochs = await _epochs(ledgers)
    first = await ledgers[A].controls.set(
        ControlScope.GLOBAL, "*", ControlKind.HALT, reason="exchange down", set_by="t"
    )
    again = await ledgers[B].controls.set(
        ControlScope.GLOBAL, "*", ControlKind.HALT, reason="exchange down", set_by="t"
    )
    assert again.id == first.id
    assert first.account is None
    for account in (A, B):
        [result] = await ledgers[account].orders.reserve(
            [_reservation(account)], holder=HOLDER, epoch=epochs[account]
        )
        assert result.status is ReserveStatus.BLOCKED
        assert "all accounts" in result.blocked_by[0]
        assert [c.id for c in await ledgers[account].controls.active()] == [first.id]
    assert await ledgers[B].controls.clear(
        ControlScope.GLOBAL, "*", ControlKind.HALT, cleared_by="t"
    )
    [result] = await ledgers[A].orders.reserve([_reservation(A, 2)], holder=HOLDER, epoch=epochs[A])
    assert result.status is ReserveStatus.RESERVED


async def test_incidents_belong_to_their_account(
    ledgers: dict[AccountId, Ledger], db_engine: AsyncEngine
) -> None:
    opened = {
        a: await ledgers[a].incidents.open(
            kind="fills_missing",
            scope="symbol:BTCUSDT",
            severity="error",
            message="check the venue",
            details={},
            dedupe_key="fills_missing:tc-1",  # the same key in both: two incidents
        )
        for a in (A, B)
    }
    assert opened[A].id != opened[B].id
    assert [i.id for i in await ledgers[A].incidents.read()] == [opened[A].id]
    assert len(await ledgers[A].incidents.read(all_accounts=True)) == 2
    # B cannot resolve A's incident
    assert not await ledgers[B].incidents.resolve(opened[A].id, "not mine")
    assert await ledgers[B].incidents.resolve_by_key("fills_missing:tc-1", "done") == opened[B].id
    assert [i.id for i in await ledgers[A].incidents.read()] == [opened[A].id]

    assert "open incidents: 1" in await ledger_status(db_engine, A)
    assert "open incidents: 0" in await ledger_status(db_engine, B)
    # B has nothing left to show (no lease, no decisions, nothing open): only A's section
    everything = await all_accounts_status(db_engine)
    assert everything.startswith("account acct-a:")
    assert "acct-b" not in everything
