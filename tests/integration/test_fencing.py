"""The epoch fence on every execution write (engine/ledger/fence.py), against a real Postgres:
once a second engine has taken the account over, the first one's cancels, acks, reports,
fills, operator requests and controls are refused and nothing of them lands."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import asyncpg
import pytest
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine

from engine.controls import LeaseKeeper
from engine.domain.types import ControlKind, ControlScope, OrderState, VenueOrderStatus
from engine.exceptions import LeaseLost
from engine.ledger.controls import CONTROLS_LOCK_KEY
from engine.ledger.db import asyncpg_connect_kwargs
from engine.ledger.leases import SQL_ACQUIRE_LEASE
from engine.ledger.ledger import Ledger
from engine.ledger.records import OperatorRequestKind, ReserveStatus
from engine.ledger.reservations import SQL_FENCE
from tests.helpers import eventually
from tests.integration.test_ledger import (
    ACCOUNT,
    HOLDER,
    VENUE,
    Clock,
    advisory_waiters,
    fill,
    report,
    reservation,
    reserve_one,
    scalar,
)

TTL = timedelta(seconds=30)


@pytest.fixture
def clock() -> Clock:
    return Clock()


async def _taken_over(db_engine: AsyncEngine, clock: Clock) -> tuple[Ledger, Ledger, str]:
    """The old owner's ledger (fenced on epoch 1, with one acknowledged order), the new
    owner's (epoch 2), and that order's id."""
    old = Ledger(db_engine, account=ACCOUNT, venue=VENUE, clock=clock)
    epoch = await old.leases.acquire(HOLDER, TTL)
    assert epoch == 1
    old.fence.hold(HOLDER, epoch)
    coid = await reserve_one(old, epoch)
    await old.orders.record_ack(coid, report(coid, VenueOrderStatus.NEW), submitted_at=clock.now)
    clock.advance(seconds=31)  # the old owner stalled past its TTL
    new = Ledger(db_engine, account=ACCOUNT, venue=VENUE, clock=clock)
    assert await new.leases.acquire("engine-b", TTL) == 2
    new.fence.hold("engine-b", 2)
    return old, new, coid


async def _footprint(db_engine: AsyncEngine) -> tuple[Any, ...]:
    """Everything an execution write could change."""
    return (
        await scalar(db_engine, "SELECT count(*) FROM order_events"),
        await scalar(db_engine, "SELECT count(*) FROM fills"),
        await scalar(db_engine, "SELECT string_agg(state, ',') FROM orders"),
        await scalar(db_engine, "SELECT count(*) FROM controls"),
        await scalar(
            db_engine, "SELECT count(*) FROM operator_requests WHERE handled_by IS NOT NULL"
        ),
    )


def _stale_writes(old: Ledger, coid: Any, clock: Clock) -> dict[str, Callable[[], Awaitable[Any]]]:
    return {
        "cancel": lambda: old.orders.request_cancel(coid, "strategy cancel"),
        "ack": lambda: old.orders.record_ack(
            coid, report(coid, VenueOrderStatus.NEW), submitted_at=clock.now
        ),
        "report with fills": lambda: old.orders.apply_report(
            report(
                coid,
                VenueOrderStatus.PARTIALLY_FILLED,
                filled="0.2",
                fills=(fill(coid, "t-1", "0.2"),),
            ),
            cause="lookup",
        ),
        "stream fills": lambda: old.fills.append([fill(coid, "t-2", "0.1")]),
        "unknown": lambda: old.orders.mark_unknown(coid, "timeout", submitted_at=clock.now),
        "rejected": lambda: old.orders.mark_rejected(coid, "refused", submitted_at=clock.now),
        "expire": lambda: old.orders.expire(coid, "final gate"),
        "halt": lambda: old.controls.set(
            ControlScope.ACCOUNT, ACCOUNT, ControlKind.HALT, reason="loss", set_by="risk"
        ),
        "claim a request": lambda: old.operations.claim(HOLDER),
        "resolve from a listing": lambda: old.orders.apply_listed(
            [report(coid, VenueOrderStatus.CANCELED)], cause="lookup (listing)"
        ),
    }


@pytest.mark.parametrize(
    "write",
    [
        "cancel",
        "ack",
        "report with fills",
        "stream fills",
        "unknown",
        "rejected",
        "expire",
        "halt",
        "claim a request",
        "resolve from a listing",
    ],
)
async def test_a_write_of_the_engine_that_lost_the_lease_is_refused_and_lands_nothing(
    db_engine: AsyncEngine, clock: Clock, write: str
) -> None:
    old, new, coid = await _taken_over(db_engine, clock)
    await new.operations.request(
        OperatorRequestKind.CANCEL_ALL, requested_by="cli:ops", reason="flatten"
    )
    before = await _footprint(db_engine)
    with pytest.raises(LeaseLost, match="no longer holds lease epoch 1"):
        await _stale_writes(old, coid, clock)[write]()
    assert await _footprint(db_engine) == before


async def test_the_new_owner_writes_what_the_old_one_was_refused(
    db_engine: AsyncEngine, clock: Clock
) -> None:
    old, new, coid = await _taken_over(db_engine, clock)
    with pytest.raises(LeaseLost):
        await old.orders.request_cancel(coid, "stale")
    order = await new.orders.request_cancel(coid, "the new owner's cancel")
    assert order.state is OrderState.PENDING_CANCEL
    assert await new.fills.append([fill(coid, "t-9", "0.1")])


async def test_a_ledger_nobody_fenced_writes_as_before(
    db_engine: AsyncEngine, clock: Clock
) -> None:
    # the CLI's own ledger and tools: no epoch to fence on
    ledger = Ledger(db_engine, account=ACCOUNT, venue=VENUE, clock=clock)
    epoch = await ledger.leases.acquire(HOLDER, TTL)
    assert epoch is not None
    coid = await reserve_one(ledger, epoch, reservation(2))
    assert (await ledger.orders.request_cancel(coid, "c")).state is OrderState.PENDING_CANCEL


async def test_a_takeover_waits_for_a_fenced_write_in_flight(
    db_engine: AsyncEngine, database_url: URL, clock: Clock
) -> None:
    """The ordering the fence rests on: a fenced write holds the lease row (FOR KEY SHARE) until
    it commits, and the takeover's epoch increment waits for it."""
    old = Ledger(db_engine, account=ACCOUNT, venue=VENUE, clock=clock)
    epoch = await old.leases.acquire(HOLDER, timedelta(seconds=-1))  # already expired
    assert epoch is not None
    old.fence.hold(HOLDER, epoch)
    writer = await asyncpg.connect(**asyncpg_connect_kwargs(database_url))  # type: ignore[arg-type]
    taker = await asyncpg.connect(**asyncpg_connect_kwargs(database_url))  # type: ignore[arg-type]
    try:
        tx = writer.transaction()
        await tx.start()
        await old.fence.check(writer, "a write in flight")
        await taker.execute("SET lock_timeout = '200ms'")
        taker_ledger = Ledger(db_engine, account=ACCOUNT, venue=VENUE, clock=clock)
        params = {
            "account": ACCOUNT,
            "holder": "b",
            "now": clock.now,
            "expires_at": clock.now + TTL,
        }
        with pytest.raises(asyncpg.LockNotAvailableError):
            await SQL_ACQUIRE_LEASE.run(taker, params)
        await tx.commit()
        assert await taker_ledger.leases.acquire("b", TTL) == epoch + 1
    finally:
        await writer.close()
        await taker.close()


async def test_a_lease_taken_over_while_a_reservation_waits_refuses_that_reservation(
    db_engine: AsyncEngine, database_url: URL, clock: Clock
) -> None:
    """The reservation's fence takes the lease row after the controls lock: a takeover that
    commits while it waits for that lock is seen (the row's newest version is re-checked), and
    the reservation writes nothing."""
    old = Ledger(db_engine, account=ACCOUNT, venue=VENUE, clock=clock)
    epoch = await old.leases.acquire(HOLDER, TTL)
    assert epoch == 1
    before = await _footprint(db_engine)
    conn = await asyncpg.connect(**asyncpg_connect_kwargs(database_url))  # type: ignore[arg-type]
    try:
        tx = conn.transaction()
        await tx.start()
        await conn.execute("SELECT pg_advisory_xact_lock($1)", CONTROLS_LOCK_KEY)
        task = asyncio.create_task(old.orders.reserve([reservation(7)], holder=HOLDER, epoch=epoch))
        await eventually(
            lambda: advisory_waiters(conn), message="the reservation never waited for the lock"
        )
        later = Clock(clock.now + timedelta(seconds=31))  # the old owner stalled past its TTL
        taker = Ledger(db_engine, account=ACCOUNT, venue=VENUE, clock=later)
        assert await taker.leases.acquire("engine-b", TTL) == 2
        await tx.commit()
        with pytest.raises(LeaseLost, match="no longer holds lease epoch 1"):
            await task
    finally:
        await conn.close()
    assert await _footprint(db_engine) == before
    assert await scalar(db_engine, "SELECT count(*) FROM decisions") == 0


async def test_a_takeover_waits_for_a_reservation_in_flight(
    db_engine: AsyncEngine, database_url: URL, clock: Clock
) -> None:
    """A reservation holds the lease row from its fence to its commit: a takeover cannot raise
    the epoch under it, so an order is never reserved under an epoch already replaced."""
    old = Ledger(db_engine, account=ACCOUNT, venue=VENUE, clock=clock)
    epoch = await old.leases.acquire(HOLDER, TTL)
    assert epoch == 1
    r = reservation(8)
    blocker = await asyncpg.connect(**asyncpg_connect_kwargs(database_url))  # type: ignore[arg-type]
    taker = await asyncpg.connect(**asyncpg_connect_kwargs(database_url))  # type: ignore[arg-type]
    try:
        # An uncommitted decision with the reservation's key: its insert waits on it, after
        # the fence (inserts run once the fence has answered).
        tx = blocker.transaction()
        await tx.start()
        await blocker.execute(
            "INSERT INTO decisions (decision_id, strategy_id, account, symbol, intent, reason,"
            " md_ts, decided_at, interval_key, sequence, verdicts, outcome)"
            " VALUES ($1, 's', $2, 'BTCUSDT', 'buy', 'blocker', now(), now(), 'k', 0, '[]',"
            " 'denied')",
            r.decision.decision_id,
            ACCOUNT,
        )
        task = asyncio.create_task(old.orders.reserve([r], holder=HOLDER, epoch=epoch))

        async def reservation_waits() -> bool:
            return bool(
                await taker.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                    " AND wait_event_type = 'Lock' AND query LIKE '%reservation_gate%'"
                )
            )

        await eventually(reservation_waits, message="the reservation never waited")
        await taker.execute("SET lock_timeout = '200ms'")
        params = {
            "account": ACCOUNT,
            "holder": "engine-b",
            "now": clock.now + timedelta(seconds=31),
            "expires_at": clock.now + timedelta(seconds=61),
        }
        with pytest.raises(asyncpg.LockNotAvailableError):
            await SQL_ACQUIRE_LEASE.run(taker, params)
        await tx.rollback()
        [result] = await task
        assert result.status is ReserveStatus.RESERVED
        await taker.execute("SET lock_timeout = 0")
        assert (await SQL_ACQUIRE_LEASE.run(taker, params)).scalar() == 2
    finally:
        await blocker.close()
        await taker.close()
    assert await scalar(db_engine, "SELECT lease_epoch FROM orders") == 1


async def test_controlled_reservations_of_one_account_run_one_after_the_other(
    db_engine: AsyncEngine, database_url: URL, clock: Clock
) -> None:
    """The per-reservation path (a control covers the batch) judges reduce-only against the
    position: its fence locks the lease row so that a second one waits, while the usual
    one-statement reservation (FOR KEY SHARE) does not."""
    ledger = Ledger(db_engine, account=ACCOUNT, venue=VENUE, clock=clock)
    epoch = await ledger.leases.acquire(HOLDER, TTL)
    assert epoch == 1
    fence = {
        "lock_key": CONTROLS_LOCK_KEY,
        "holder": HOLDER,
        "epoch": epoch,
        "now": clock.now,
        "account": ACCOUNT,
    }
    first = await asyncpg.connect(**asyncpg_connect_kwargs(database_url))  # type: ignore[arg-type]
    second = await asyncpg.connect(**asyncpg_connect_kwargs(database_url))  # type: ignore[arg-type]
    try:
        tx = first.transaction()
        await tx.start()
        assert (await SQL_FENCE.run(first, fence)).scalar() == epoch
        await second.execute("SET lock_timeout = '200ms'")
        with pytest.raises(asyncpg.LockNotAvailableError):
            async with second.transaction():
                await SQL_FENCE.run(second, fence)
        [result] = await ledger.orders.reserve([reservation(9)], holder=HOLDER, epoch=epoch)
        assert result.status is ReserveStatus.RESERVED
        await tx.commit()
        async with second.transaction():
            assert (await SQL_FENCE.run(second, fence)).scalar() == epoch
    finally:
        await first.close()
        await second.close()


async def test_a_refused_write_stops_the_lease_keeper(db_engine: AsyncEngine, clock: Clock) -> None:
    old = Ledger(db_engine, account=ACCOUNT, venue=VENUE, clock=clock)
    keeper = LeaseKeeper(old, ttl=TTL, holder=HOLDER)
    epoch = await keeper.acquire()
    coid = await reserve_one(old, epoch)
    keep = asyncio.create_task(keeper.keep())
    clock.advance(seconds=31)
    new = Ledger(db_engine, account=ACCOUNT, venue=VENUE, clock=clock)
    assert await new.leases.acquire("engine-b", TTL) == epoch + 1
    with pytest.raises(LeaseLost):
        await old.orders.request_cancel(coid, "stale")
    await asyncio.wait_for(keep, timeout=10)  # keep() returned: the engine stops the account
    assert keeper.lost
    alerts = await scalar(db_engine, "SELECT count(*) FROM alerts WHERE kind = 'lease_lost'")
    assert alerts == 1
