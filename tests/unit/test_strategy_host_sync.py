"""The host's synchronous bar decision (an in-memory replay's path) against the awaited one."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from types import MappingProxyType

import pytest

from engine.domain.intents import Buy, Hold, Intent, Sell
from engine.domain.types import StrategyId
from engine.marketdata.conflator import Conflator
from engine.strategy_host import (
    HostedStrategy,
    InMemoryPortfolio,
    StrategyFailed,
    StrategyHost,
    interval_key_of,
)
from strategies.base import UNRECORDED
from strategies.sma_cross import SmaCross
from tests.bars import BTC, T0
from tests.bars import flat_bar as bar

CLOSES = ["10", "10", "10", "12", "12", "9", "9", "13", "8", "8", "15"]


def host(sink: list[Intent], *, records_holds: bool = True) -> tuple[StrategyHost, HostedStrategy]:
    async def collect(intent: Intent) -> None:
        sink.append(intent)

    async def failed(sid: StrategyId, exc: BaseException) -> None:
        pass

    async def never(sid: StrategyId) -> bool:
        return False

    h = StrategyHost(
        conflator=Conflator(),
        portfolio=InMemoryPortfolio(),
        sink=collect,
        on_strategy_failure=failed,
        is_paused=never,
        clock=lambda: T0,
        records_holds=records_holds,
    )
    hosted = HostedStrategy(
        strategy=SmaCross(StrategyId("sma"), BTC, fast=2, slow=3, qty=Decimal(1)), version="1"
    )
    h.add(hosted)
    return h, hosted


async def test_the_synchronous_bar_decision_gives_what_the_awaited_one_sinks() -> None:
    awaited: list[Intent] = []
    slow, hosted = host(awaited)
    quick, quick_hosted = host([])
    decided: list[Intent] = []
    for minute, close in enumerate(CLOSES):
        b = bar(minute, close)
        await slow.handle_bar(hosted, b)
        decided.extend(
            quick.decide_bar_now(quick_hosted, b, {}, MappingProxyType({BTC: Decimal(0)}), ())
        )
    assert decided == awaited
    assert any(isinstance(i, Buy) for i in decided)
    assert all(isinstance(i, Buy | Sell) or i.reason for i in decided)
    assert quick.decisions == slow.decisions == {StrategyId("sma"): len(CLOSES)}


def test_a_host_that_records_no_holds_passes_the_unrecorded_hold() -> None:
    quick, hosted = host([], records_holds=False)
    (intent,) = quick.decide_bar_now(hosted, bar(0, "10"), {}, {}, ())
    assert isinstance(intent, Hold)
    assert intent.key.interval_key == UNRECORDED


def test_a_strategy_raising_in_the_synchronous_path_is_reported_for_the_failure_handler() -> None:
    quick, hosted = host([])

    def boom(snapshot: object) -> Intent:
        raise ZeroDivisionError("strategy bug")

    hosted.strategy.decide = boom  # type: ignore[method-assign]
    with pytest.raises(StrategyFailed) as failed:
        quick.decide_bar_now(hosted, bar(0, "10"), {}, {}, ())
    assert isinstance(failed.value.error, ZeroDivisionError)


@pytest.mark.parametrize(
    "at",
    [
        T0,
        datetime(1999, 1, 2, 3, 4, 5, tzinfo=UTC),
        datetime(2026, 1, 1, 0, 0, 0, 250, tzinfo=UTC),
        datetime(2026, 1, 1, 5, tzinfo=UTC).astimezone(),
    ],
)
def test_the_quick_interval_key_is_the_isoformat_it_replaces(at: datetime) -> None:
    assert interval_key_of(at) == at.isoformat()


def test_the_interval_key_of_consecutive_bars_across_days_is_their_isoformat() -> None:
    start = datetime(2024, 2, 28, 22, tzinfo=UTC)  # over a leap day and a month's end
    times = [start + timedelta(minutes=30 * n) for n in range(150)]
    assert [interval_key_of(at) for at in times] == [at.isoformat() for at in times]
    # back to an earlier day, as a second replay would
    assert interval_key_of(start) == start.isoformat()
