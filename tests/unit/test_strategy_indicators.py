from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal

import pytest

from engine.domain.intents import DecisionKey, Hold
from engine.domain.market import Bar, Quote
from engine.domain.types import StrategyId, Symbol
from strategies.base import UNEXPLAINED, UNRECORDED, QuotesOfBar, Snapshot
from strategies.indicators import RollingCloses, history_bars, sma_of
from tests.bars import BTC, T0
from tests.bars import flat_bar as bar

ETH = Symbol("ETHUSDT")
ONE = Decimal(1)

CLOSES = ["10.5", "11", "9.25", "12", "12.75", "8", "9.5", "13", "14.25", "10"]


def by_hand(closes: list[Decimal], n: int, ago: int) -> Decimal | None:
    window = closes[len(closes) - ago - n : len(closes) - ago]
    return sum(window, Decimal(0)) / n if len(closes) - ago >= n else None


def test_running_averages_equal_the_averages_of_the_closes_bar_by_bar() -> None:
    rolling = RollingCloses(depth=5)
    rolling.sma(3)  # tracked from the first bar
    seen: list[Decimal] = []
    for n, close in enumerate(CLOSES):
        rolling.append(bar(n, close))
        seen.append(Decimal(close))
        held = seen[-5:]
        for window in (1, 3, 5):
            for ago in range(5 - window + 1):
                assert rolling.sma(window, ago) == by_hand(held, window, ago), (n, window, ago)


def test_a_window_asked_for_late_is_seeded_from_the_bars_held() -> None:
    rolling = RollingCloses(depth=4)
    for n, close in enumerate(CLOSES[:6]):
        rolling.append(bar(n, close))
    held = [Decimal(c) for c in CLOSES[2:6]]
    assert rolling.sma(2, 1) == by_hand(held, 2, 1)
    rolling.append(bar(6, CLOSES[6]))
    assert rolling.sma(2) == by_hand([*held[1:], Decimal(CLOSES[6])], 2, 0)


def test_an_average_longer_than_the_history_is_refused() -> None:
    with pytest.raises(ValueError, match=r"1\.\.4 bars"):
        RollingCloses(depth=4).sma(5)
    with pytest.raises(ValueError, match="ago"):
        RollingCloses(depth=4).sma(2, -1)


def snapshot(bars: Mapping[Symbol, tuple[Bar, ...]], *, explain: bool = True) -> Snapshot:
    return Snapshot.assemble(
        StrategyId("s"),
        T0,
        T0,
        "w",
        {},
        bars,
        bars[BTC][-1],
        {},
        (),
        {},
        Snapshot(strategy_id=StrategyId("s"), now=T0, md_ts=T0, interval_key="w").limits,
        explain,
    )


def test_snapshot_sma_reads_the_hosts_averages_while_deciding_and_its_bars_after() -> None:
    rolling = RollingCloses(depth=4)
    for n, close in enumerate(CLOSES[:5]):
        rolling.append(bar(n, close))
    rolling.sma(3)
    snap = snapshot(history_bars({BTC: rolling}))
    expected = sma_of(snap.closes(BTC), 3, 1)
    assert expected is not None
    assert snap.sma(BTC, 3, 1) == expected
    assert snapshot({BTC: rolling.bars}).sma(BTC, 3, 1) == expected
    rolling.append(bar(5, CLOSES[5]))  # the decision is over; the host moves on
    assert snap.sma(BTC, 3, 1) == expected
    assert snap.sma(BTC, 4, 1) is None  # its own four bars hold no average one bar back


@pytest.mark.parametrize("symbols", [(BTC,), (BTC, ETH)])
def test_the_hosts_bars_view_keeps_the_bars_of_its_decision(symbols: tuple[Symbol, ...]) -> None:
    depth = 3
    history = {s: RollingCloses(depth) for s in symbols}
    seen: dict[Symbol, list[Bar]] = {s: [] for s in symbols}
    views = []
    for n in range(40):  # well past the host's trimming of its lists
        for s in symbols:
            b = bar(n, str(10 + n % 7), symbol=s)
            history[s].append(b)
            seen[s].append(b)
        views.append((history_bars(history), {s: tuple(seen[s][-depth:]) for s in symbols}))
    for view, expected in views:
        assert dict(view) == expected
        assert list(view) == list(symbols)
        assert len(view) == len(symbols)
        assert view.get(Symbol("XRPUSDT")) is None
    assert [view.current(BTC) for view, _ in views[:-1]] == [None] * 39
    assert views[-1][0].current(BTC) is history[BTC]


def test_a_callable_hold_reason_is_formatted_only_when_holds_are_recorded() -> None:
    bars = (bar(0, "10"),)
    calls: list[int] = []

    def reason() -> str:
        calls.append(1)
        return "no cross"

    recorded = snapshot({BTC: bars}).hold(BTC, reason)
    assert recorded == Hold(
        key=DecisionKey(strategy_id=StrategyId("s"), symbol=BTC, interval_key="w", side=None),
        reason="no cross",
        md_ts=T0,
    )
    assert calls == [1]
    counted = snapshot({BTC: bars}, explain=False).hold(BTC, reason)
    assert calls == [1]
    assert (counted.key.interval_key, counted.reason) == (UNRECORDED, UNEXPLAINED)
    assert snapshot({BTC: bars}, explain=False).hold(BTC, "x") is counted  # built once


def test_a_hold_reason_function_gets_its_arguments_only_when_recorded() -> None:
    bars = {BTC: (bar(0, "10"),)}
    calls: list[tuple[int, str]] = []

    def reason(n: int, word: str) -> str:
        calls.append((n, word))
        return f"{word} {n}"

    assert snapshot(bars, explain=False).hold(BTC, reason, 3, "seen").reason == UNEXPLAINED
    assert calls == []
    assert snapshot(bars).hold(BTC, reason, 3, "seen").reason == "seen 3"
    assert calls == [(3, "seen")]


def test_a_snapshot_given_the_bar_open_time_reads_its_interval_key_as_text() -> None:
    bars = {BTC: (bar(0, "10"),)}
    snap = Snapshot.assemble(
        StrategyId("s"), T0, T0, T0, {}, bars, None, {}, (), {}, snapshot(bars).limits, True
    )
    assert snap.interval_key == T0.isoformat()
    assert snap.hold(BTC, "x").key.interval_key == T0.isoformat()
    assert snap == Snapshot.assemble(
        StrategyId("s"), T0, T0, T0.isoformat(), {}, bars, None, {}, (), {}, snap.limits, True
    )


def test_sma_pair_is_the_newest_and_the_previous_average_with_or_without_the_host() -> None:
    rolling = RollingCloses(depth=5)
    rolling.sma(3)
    for n, close in enumerate(CLOSES):
        rolling.append(bar(n, close))
        hosts = snapshot(history_bars({BTC: rolling}))
        plain = snapshot({BTC: rolling.bars})
        for window in (3, 4):  # 3 tracked by the host, 4 not
            expected = (hosts.sma(BTC, window), hosts.sma(BTC, window, 1))
            assert hosts.sma_pair(BTC, window) == expected, (n, window)
            assert plain.sma_pair(BTC, window) == expected, (n, window)
    warming = RollingCloses(depth=5)
    for n, close in enumerate(CLOSES[:3]):
        warming.append(bar(n, close))
    warming.sma(3)
    pair = snapshot(history_bars({BTC: warming})).sma_pair(BTC, 3)
    assert pair == (by_hand([Decimal(c) for c in CLOSES[:3]], 3, 0), None)


class CountingQuotes(QuotesOfBar):
    def __init__(self) -> None:
        self.asked: list[Bar] = []

    def of(self, bar: Bar) -> Mapping[Symbol, Quote]:
        self.asked.append(bar)
        return {
            BTC: Quote(
                symbol=BTC,
                bid=bar.close,
                bid_size=ONE,
                ask=bar.close,
                ask_size=ONE,
                venue_ts=bar.close_time,
                received_at=bar.close_time,
            )
        }


def test_a_quotes_maker_is_asked_for_the_closed_bars_quotes_once_when_first_read() -> None:
    maker = CountingQuotes()
    closed = bar(3, "12")
    snap = Snapshot.assemble(
        StrategyId("s"),
        T0,
        T0,
        "w",
        maker,
        {BTC: (closed,)},
        closed,
        {},
        (),
        {},
        Snapshot(strategy_id=StrategyId("s"), now=T0, md_ts=T0, interval_key="w").limits,
    )
    assert maker.asked == []
    quotes = snap.quotes
    assert maker.asked == [closed]
    assert quotes[BTC].mid == Decimal("12")
    assert snap.quotes is quotes  # kept: asked once
    assert maker.asked == [closed]
