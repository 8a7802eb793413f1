"""Hold runs: a hold is a row when its reason changes to one without a row in the last window;
identical ones are counted on that row."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from engine.domain.holds import HoldRuns, RepeatCount, reason_kind
from engine.domain.types import DecisionId, StrategyId, Symbol

S = StrategyId("fv")
X = Symbol("PRES-YES")
T0 = datetime(2026, 11, 30, 12, tzinfo=UTC)
HOUR = timedelta(hours=1)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_reasons_that_differ_only_in_numbers_are_the_same_kind() -> None:
    assert reason_kind("no edge: bid 0.54 ask 0.56 inside [0.53, 0.57]") == reason_kind(
        "no edge: bid 0.5 ask 1E-3 inside [-2, .57]"
    )
    assert reason_kind("no edge: bid 0.54") != reason_kind("quote is stale: 0.54")


def test_identical_holds_are_counted_on_the_first_and_written_when_its_run_ends() -> None:
    runs = HoldRuns(window=HOUR, flush_every=HOUR)
    first = runs.hold(S, X, "no edge: bid 0.54", DecisionId("d1"), at(0))
    assert first.record
    assert first.counts == ()
    for i in range(1, 4):
        step = runs.hold(S, X, f"no edge: bid 0.5{i}", DecisionId(f"d{i + 1}"), at(i))
        assert not step.record
        assert step.counts == ()
    assert runs.hold(S, X, "quote is stale: 6s", DecisionId("d9"), at(10)).record
    # an hour after its row, the reason gets a new row and the old run's count is written
    renewed = runs.hold(S, X, "no edge: bid 0.55", DecisionId("d10"), at(3600))
    assert renewed.record
    assert RepeatCount(DecisionId("d1"), 3, at(3)) in renewed.counts


def test_a_reason_that_comes_and_goes_costs_one_row_per_window() -> None:
    runs = HoldRuns(window=HOUR, flush_every=HOUR)
    recorded = [
        runs.hold(S, X, reason, DecisionId(f"d{i}"), at(i)).record
        for i, reason in enumerate(["no edge", "nothing held", "no edge", "nothing held"] * 50)
    ]
    assert recorded.count(True) == 2
    assert runs.flush(at(500)) == (
        RepeatCount(DecisionId("d0"), 99, at(198)),
        RepeatCount(DecisionId("d1"), 99, at(199)),
    )


def test_a_long_run_writes_its_count_every_flush_interval() -> None:
    runs = HoldRuns(window=HOUR, flush_every=timedelta(seconds=60))
    runs.hold(S, X, "no edge", DecisionId("d0"), at(0))
    assert runs.hold(S, X, "no edge", DecisionId("d1"), at(30)).counts == ()
    due = runs.hold(S, X, "no edge", DecisionId("d2"), at(61))
    assert due.counts == (RepeatCount(DecisionId("d0"), 2, at(61)),)
    assert runs.hold(S, X, "no edge", DecisionId("d3"), at(62)).counts == ()
    assert runs.flush(at(63)) == (RepeatCount(DecisionId("d0"), 3, at(62)),)
    assert runs.flush(at(64)) == ()


def test_each_strategy_and_symbol_has_its_own_runs() -> None:
    runs = HoldRuns()
    assert runs.hold(S, X, "no edge", DecisionId("a"), at(0)).record
    assert runs.hold(S, Symbol("BTCUSDT"), "no edge", DecisionId("b"), at(0)).record
    assert runs.hold(StrategyId("other"), X, "no edge", DecisionId("c"), at(0)).record
    assert not runs.hold(S, X, "no edge", DecisionId("d"), at(1)).record
