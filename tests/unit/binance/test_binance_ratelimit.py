from __future__ import annotations

import pytest
import structlog

from engine.exceptions import RateLimited
from engine.venues.binance.ratelimit import (
    ACCOUNT,
    NEW_ORDER,
    QUERY_ORDER,
    Limits,
    RateBudget,
)
from engine.venues.metrics import VenueMetrics

from .conftest import FakeTime


def budget(fake_time: FakeTime, **limits: float) -> RateBudget:
    return RateBudget(Limits(**limits), clock=fake_time, sleep=fake_time.sleep)  # type: ignore[arg-type]


async def test_requests_under_the_margin_go_without_waiting(fake_time: FakeTime) -> None:
    b = budget(fake_time)
    for _ in range(10):
        await b.acquire(ACCOUNT)
    assert fake_time.slept == []
    assert b.weight_used == 200


async def test_waits_for_the_next_minute_before_crossing_the_weight_limit(
    fake_time: FakeTime,
) -> None:
    fake_time.now = 1_000_040.0  # 20 s into a wall-clock minute
    b = budget(fake_time, weight_per_minute=100, headroom=0.9)
    for _ in range(4):
        await b.acquire(ACCOUNT)  # 80 of the 90 allowed
    await b.acquire(ACCOUNT)
    assert fake_time.slept == [40.0]
    assert b.weight_used == 20


async def test_venue_reported_weight_is_taken_into_account(fake_time: FakeTime) -> None:
    fake_time.now = 1_000_040.0
    b = budget(fake_time, weight_per_minute=1000, headroom=0.9)
    await b.acquire(QUERY_ORDER)
    b.observe({"x-mbx-used-weight-1m": "899"})  # other processes on our IP
    assert b.weight_used == 899
    await b.acquire(QUERY_ORDER)
    assert fake_time.slept == [40.0]


async def test_order_count_waits_for_the_next_ten_seconds(fake_time: FakeTime) -> None:
    fake_time.now = 1_000_003.0
    b = budget(fake_time, orders_per_10s=10, headroom=0.9)
    b.observe({"x-mbx-order-count-10s": "9"})
    await b.acquire(NEW_ORDER)
    assert fake_time.slept == [7.0]
    assert b.orders_used == 1


async def test_after_a_429_nothing_is_sent_until_retry_after_passes(fake_time: FakeTime) -> None:
    b = budget(fake_time)
    b.back_off(30.0)
    with pytest.raises(RateLimited) as caught:
        await b.acquire(QUERY_ORDER)
    assert caught.value.retry_after == pytest.approx(30.0)
    assert fake_time.slept == []  # refused at once, never waited into the ban
    fake_time.now += 29.0
    with pytest.raises(RateLimited):
        await b.acquire(NEW_ORDER)
    fake_time.now += 1.0
    await b.acquire(QUERY_ORDER)


async def test_429_without_retry_after_only_holds_orders(fake_time: FakeTime) -> None:
    fake_time.now = 1_000_004.0
    b = budget(fake_time)
    assert b.back_off(None) == 6.0
    await b.acquire(QUERY_ORDER)
    with pytest.raises(RateLimited):
        await b.acquire(NEW_ORDER)
    fake_time.now += 6.0
    await b.acquire(NEW_ORDER)


async def test_counters_reset_with_the_window(fake_time: FakeTime) -> None:
    fake_time.now = 1_000_070.0
    b = budget(fake_time)
    await b.acquire(ACCOUNT)
    assert b.weight_used == 20
    fake_time.now += 10.0  # 1_000_080 starts the next wall-clock minute
    assert b.weight_used == 0


async def test_headroom_is_the_fraction_of_each_venue_limit_left_in_its_window(
    fake_time: FakeTime,
) -> None:
    fake_time.now = 1_000_040.0
    b = budget(fake_time, weight_per_minute=1000, orders_per_10s=10)
    assert b.headroom() == {"request_weight_1m": 1.0, "orders_10s": 1.0}
    b.observe({"x-mbx-used-weight-1m": "250", "x-mbx-order-count-10s": "4"})
    assert b.headroom() == {"request_weight_1m": 0.75, "orders_10s": 0.6}
    fake_time.now += 40  # the next minute: both windows start afresh
    assert b.headroom() == {"request_weight_1m": 1.0, "orders_10s": 1.0}


def test_headroom_is_zero_while_the_venue_back_off_is_in_force(fake_time: FakeTime) -> None:
    b = budget(fake_time)
    b.back_off(None)  # the order-count 429: only orders wait
    assert b.headroom() == {"request_weight_1m": 1.0, "orders_10s": 0.0}
    b.back_off(5.0)
    assert b.headroom() == {"request_weight_1m": 0.0, "orders_10s": 0.0}
    fake_time.now += 10
    assert b.headroom() == {"request_weight_1m": 1.0, "orders_10s": 1.0}


async def test_a_request_held_to_the_next_window_is_logged_and_counted(
    fake_time: FakeTime,
) -> None:
    fake_time.now = 1_000_040.0
    b = budget(fake_time, weight_per_minute=100, headroom=0.9)
    waits: list[str] = []
    b.on_wait = waits.append
    for _ in range(4):
        await b.acquire(ACCOUNT)
    assert waits == []
    with structlog.testing.capture_logs() as logs:
        await b.acquire(ACCOUNT)
    assert waits == ["request_weight_1m"]
    [line] = [e for e in logs if e["event"] == "binance.rate_budget_wait"]
    assert line["wait_s"] == 40.0
    assert line["weight_used"] == 80


async def test_the_read_headroom_is_read_live_as_the_window_rolls_over(
    fake_time: FakeTime,
) -> None:
    fake_time.now = 1_000_040.0
    b = budget(fake_time, weight_per_minute=1000)
    metrics = VenueMetrics(account="acct-headroom", venue="binance")
    assert metrics.read_headroom() == 1.0  # no budget: nothing holds a pass back
    metrics.budget = b.headroom
    b.observe({"x-mbx-used-weight-1m": "700"})
    assert metrics.read_headroom() == pytest.approx(0.3)
    fake_time.now += 40  # the next minute: the venue's count starts again
    assert metrics.read_headroom() == 1.0
