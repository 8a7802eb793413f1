"""ACKs of orders completing together: one transaction for the batch, the same facts as one
ACK at a time, and a refused or unknown ACK failing alone."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from engine.domain.types import ClientOrderId, OrderState, VenueOrderId, VenueOrderStatus
from engine.exceptions import LedgerError
from engine.execution.group_commit import GroupCommit
from engine.ledger.ledger import Ledger
from engine.ledger.reports import Ack
from engine.venues.paper import BTCUSDT, default_paper_venue
from tests.helpers import eventually
from tests.integration.test_execution import Clock as ExecClock
from tests.integration.test_execution import buy, coid_of, make_rig, quote
from tests.integration.test_ledger import (
    ACCOUNT,
    HOLDER,
    T0,
    VENUE,
    Clock,
    fill,
    report,
    reservation,
    scalar,
)


@pytest.fixture
def ledger(db_engine: AsyncEngine) -> Ledger:
    return Ledger(db_engine, account=ACCOUNT, venue=VENUE, clock=Clock())


@pytest.fixture
async def epoch(ledger: Ledger) -> int:
    got = await ledger.leases.acquire(HOLDER, timedelta(seconds=30))
    assert got is not None
    return got


async def _reserve(ledger: Ledger, epoch: int, n: int) -> list[ClientOrderId]:
    rs = [reservation(i) for i in range(1, n + 1)]
    await ledger.orders.reserve(rs, holder=HOLDER, epoch=epoch)
    return [r.client_order_id for r in rs]


def _ack(coid: ClientOrderId, status: VenueOrderStatus, **kwargs: Any) -> Ack:
    r = replace(report(coid, status, **kwargs), venue_order_id=VenueOrderId(f"v-{coid}"))
    return Ack(coid, r, T0)


async def test_a_batch_of_acks_records_each_order_its_fills_and_events(
    ledger: Ledger, epoch: int, db_engine: AsyncEngine
) -> None:
    a, b, c = await _reserve(ledger, epoch, 3)
    filled = fill(c, "t-1", "0.5")
    acks = [
        _ack(a, VenueOrderStatus.NEW),
        _ack(b, VenueOrderStatus.NEW),
        _ack(c, VenueOrderStatus.FILLED, filled="0.5", fills=(filled,)),
    ]
    results = await ledger.orders.record_acks(acks)
    states = [r.state for r in results if not isinstance(r, Exception)]
    assert states == [OrderState.OPEN, OrderState.OPEN, OrderState.FILLED]
    assert [r.venue_order_id for r in results if not isinstance(r, Exception)] == [
        f"v-{a}",
        f"v-{b}",
        f"v-{c}",
    ]
    assert await scalar(db_engine, "SELECT count(*) FROM fills") == 1
    assert await scalar(db_engine, "SELECT count(*) FROM order_events WHERE cause = 'ack'") == 3
    assert await scalar(db_engine, "SELECT count(*) FROM orders WHERE acked_at IS NULL") == 0


async def test_an_ack_of_an_unknown_order_fails_alone_and_the_others_are_recorded(
    ledger: Ledger, epoch: int
) -> None:
    [a] = await _reserve(ledger, epoch, 1)
    stray = ClientOrderId("not-ours")
    results = await ledger.orders.record_acks(
        [_ack(stray, VenueOrderStatus.NEW), _ack(a, VenueOrderStatus.NEW)]
    )
    assert isinstance(results[0], LedgerError)
    order = results[1]
    assert not isinstance(order, Exception)
    assert order.state is OrderState.OPEN


async def test_a_batched_ack_after_a_stream_fill_derives_the_state_from_both(
    ledger: Ledger, epoch: int
) -> None:
    a, b = await _reserve(ledger, epoch, 2)
    await ledger.fills.append([fill(a, "t-1", "0.2")])
    results = await ledger.orders.record_acks(
        [_ack(a, VenueOrderStatus.NEW), _ack(b, VenueOrderStatus.NEW)]
    )
    first = results[0]
    assert not isinstance(first, Exception)
    assert first.state is OrderState.PARTIALLY_FILLED


async def test_writes_arriving_during_a_commit_share_the_next_one() -> None:
    batches: list[list[int]] = []
    started, release = asyncio.Event(), asyncio.Event()

    async def write(items: Sequence[int]) -> list[int | Exception]:
        batches.append(list(items))
        started.set()
        if len(batches) == 1:
            await release.wait()
        return [i * 10 if i != 3 else ValueError("refused") for i in items]

    group: GroupCommit[int, int] = GroupCommit(write)
    first = asyncio.create_task(group.submit(1))
    await started.wait()  # the first batch is committing
    later = [asyncio.create_task(group.submit(i)) for i in (2, 3, 4)]
    await asyncio.sleep(0)
    release.set()
    assert await first == 10
    results = await asyncio.gather(*later, return_exceptions=True)
    assert results[0] == 20
    assert results[2] == 40
    assert isinstance(results[1], ValueError)
    assert batches == [[1], [2, 3, 4]]


async def test_a_stream_report_of_an_order_in_flight_waits_for_its_ack_and_writes_nothing(
    db_engine: AsyncEngine,
) -> None:
    clock = ExecClock()
    venue = default_paper_venue((BTCUSDT,), seed=3, clock=clock)
    venue.set_quote(quote(clock, "50000", "50001"))
    rig = await make_rig(db_engine, venue, clock)
    stream = asyncio.create_task(rig.fills.run())
    try:
        intent = buy(clock)  # a market buy: filled on submit, its reports on the stream at once
        await rig.execution.process([intent])

        async def stream_drained() -> bool:
            return all(s._queue.empty() for s in venue._user_streams)

        await eventually(stream_drained)
    finally:
        stream.cancel()
        await asyncio.gather(stream, return_exceptions=True)
    order = await rig.ledger.orders.get(coid_of(intent))
    assert order is not None
    assert order.state is OrderState.FILLED
    async with db_engine.connect() as conn:
        causes = (
            (
                await conn.execute(
                    text("SELECT cause FROM order_events WHERE client_order_id = :c ORDER BY id"),
                    {"c": order.client_order_id},
                )
            )
            .scalars()
            .all()
        )
    # the ACK carried the fill; the stream's copies of it found it committed and wrote nothing
    assert causes == ["reserved", "ack"]
