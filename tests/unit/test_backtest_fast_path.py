"""The in-memory replay's own loop (Replay._run_at_close: equity marked a run of bars at a time,
one quote maker for the run, the usual hold recognised by identity) reports exactly what the
general loop (Replay._run_bars, which the persisted and next-open runs take) reports; the
report's shortcuts give the figures of the long way."""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import random
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from engine.backtest import BacktestReport, BacktestSettings, Replay, load_bars
from engine.backtest.equity import EquityCurve
from engine.backtest.metrics import _drawdowns
from engine.domain.intents import Buy, Cancel, Intent, Sell
from engine.domain.positions import Position, PositionFill, apply_fill
from engine.domain.types import Asset, Side, StrategyId, Symbol
from strategies.base import DecisionMode, Snapshot
from tests.bars import T0, flat_bar

FIXTURE = Path(__file__).resolve().parents[1] / "resources" / "ohlcv" / "btcusdt_1d.csv"
BTC = Symbol("BTCUSDT")
SMA = {"fast": "5", "slow": "20", "qty": "2"}
IDEAL = BacktestSettings(
    spread_bps=Decimal(0), latency_ms=Decimal(0), maker_fee=Decimal(0), taker_fee=Decimal(0)
)


class GeneralLoop(Replay):
    """The same run through the general loop."""

    async def _run_at_close(self) -> None:
        await self._run_bars(at_open=False, persisted=False, sync=True)


class RestingLimits:
    """A bar strategy whose limit orders rest, fill along later bars, and get cancelled: the
    in-memory loop's resting-order branches."""

    mode = DecisionMode.BAR
    bar_history = 2

    def __init__(self, strategy_id: StrategyId, symbol: Symbol) -> None:
        self.strategy_id = strategy_id
        self.symbols = (symbol,)
        self._symbol = symbol

    def decide(self, snapshot: Snapshot) -> Intent | Sequence[Intent]:
        symbol, bar = self._symbol, snapshot.closed_bar
        assert bar is not None
        n = int(bar.open_time.timestamp() // 86_400)
        if snapshot.open_orders:
            if n % 4 == 0:
                return [
                    Cancel(
                        key=snapshot.key(symbol, None, i + 1),
                        reason="stale",
                        md_ts=snapshot.md_ts,
                        client_order_id=o.client_order_id,
                    )
                    for i, o in enumerate(snapshot.open_orders)
                ]
            return snapshot.hold(symbol, "waiting")
        held = snapshot.position(symbol)
        if held <= 0:
            price = (bar.close * Decimal("0.99")).quantize(Decimal("0.01"))
            return Buy(
                key=snapshot.key(symbol, Side.BUY),
                reason="dip",
                md_ts=snapshot.md_ts,
                quantity=Decimal(1),
                limit_price=price,
            )
        return Sell(
            key=snapshot.key(symbol, Side.SELL),
            reason="pop",
            md_ts=snapshot.md_ts,
            quantity=held,
            limit_price=(bar.close * Decimal("1.01")).quantize(Decimal("0.01")),
        )


def resting_limits(
    strategy_id: StrategyId, symbols: Sequence[Symbol], params: Mapping[str, str]
) -> RestingLimits:
    return RestingLimits(strategy_id, symbols[0])


def both_loops(
    strategy: str, params: dict[str, str], settings: BacktestSettings
) -> tuple[BacktestReport, BacktestReport]:
    series = load_bars(FIXTURE, BTC)
    ours, general = (
        asyncio.run(kind(series, strategy, params, 3, settings=settings).run())
        for kind in (Replay, GeneralLoop)
    )
    # repr: the same values written the same way (a Decimal's exponent included)
    assert repr(ours) == repr(general)
    return ours, general


@pytest.mark.parametrize(
    "settings",
    [
        IDEAL,
        BacktestSettings(),  # spread, latency, fees in the asset received
        dataclasses.replace(IDEAL, participation=Decimal("0.0001")),
        dataclasses.replace(IDEAL, fees_in_quote=True, taker_fee=Decimal("0.002")),
    ],
    ids=["ideal", "costs", "participation", "quote-fees"],
)
def test_the_in_memory_loop_reports_what_the_general_loop_reports(
    settings: BacktestSettings,
) -> None:
    ours, _ = both_loops("sma_cross", dict(SMA), settings)
    assert ours.fills


def test_resting_orders_in_the_in_memory_loop_report_what_the_general_loop_reports() -> None:
    ours, _ = both_loops(f"{__name__}:resting_limits", {}, BacktestSettings())
    assert ours.fills
    assert ours.orders > len(ours.fills)  # some rested and were cancelled unfilled


def test_equity_marked_a_run_at_a_time_equals_marking_each_bar() -> None:
    closes = ["100", "101.5", "99.25", "103", "103", "98.125", "97", "105.5", "104", "110"]
    bars = [flat_bar(n, c) for n, c in enumerate(closes)]
    position = Position(base_asset=Asset("BTC"), quote_asset=Asset("USDT"), symbol=BTC)
    # the position changes (a fill folded) before bars 2, 5 and 7: held, flat, held again
    changes = {
        2: PositionFill(side=Side.BUY, qty=Decimal("1.5"), price=Decimal("101.5")),
        5: PositionFill(side=Side.SELL, qty=Decimal("1.5"), price=Decimal("98.125")),
        7: PositionFill(side=Side.BUY, qty=Decimal("0.25"), price=Decimal("97")),
    }
    by_bar, by_run = EquityCurve(Decimal(1000)), EquityCurve(Decimal(1000))
    fills, run_from, run_position = 0, 0, position
    for n, bar in enumerate(bars):
        if n in changes:
            position = apply_fill(position, changes[n])
            fills += 1
            by_run.extend(run_position, bars, run_from, n)
            run_from, run_position = n, position
        by_bar.mark(position, bar.close, fills)
    by_run.extend(run_position, bars, run_from, len(bars))
    for curve in (by_bar, by_run):
        curve.remark(position, Decimal("90"))
    assert repr(by_run.values) == repr(by_bar.values)
    assert (by_run.exposed, by_run.peak, by_run.max_drawdown, by_run.max_drawdown_pct) == (
        by_bar.exposed,
        by_bar.peak,
        by_bar.max_drawdown,
        by_bar.max_drawdown_pct,
    )
    assert by_run.exposed == 6  # bars 2-4 and 7-9
    assert by_run.max_drawdown > 0


def test_a_held_run_with_a_bad_close_is_refused_as_a_single_mark_is() -> None:
    bars = [flat_bar(0, "100"), flat_bar(1, "NaN")]
    position = apply_fill(
        Position(base_asset=Asset("BTC"), quote_asset=Asset("USDT"), symbol=BTC),
        PositionFill(side=Side.BUY, qty=Decimal(1), price=Decimal(100)),
    )
    with pytest.raises(ValueError, match="mark must be a finite Decimal"):
        EquityCurve(Decimal(1000)).extend(position, bars, 0, 2)
    with pytest.raises(ValueError, match="mark must be a finite Decimal"):
        EquityCurve(Decimal(1000)).mark(position, bars[1].close, 1)


def test_a_replay_thaws_the_heap_it_froze_and_leaves_a_frozen_heap_frozen() -> None:
    series = load_bars(FIXTURE, BTC)
    asyncio.run(Replay(series, "sma_cross", dict(SMA), 1, settings=IDEAL).run())
    assert gc.get_freeze_count() == 0
    gc.freeze()
    try:
        asyncio.run(Replay(series, "sma_cross", dict(SMA), 1, settings=IDEAL).run())
        assert gc.get_freeze_count() > 0  # not thawed by the replay: its owner thaws it
    finally:
        gc.unfreeze()


def drawdowns_bar_by_bar(
    times: Sequence[datetime], values: Sequence[float]
) -> tuple[float, timedelta, list[timedelta]]:
    """metrics._drawdowns as it was: the depth computed on every bar under water."""
    peak, peak_at, deepest, durations, under = values[0], times[0], 0.0, [], False
    for t, v in zip(times, values, strict=True):
        if v >= peak:
            if under:
                durations.append(t - peak_at)
                under = False
            peak, peak_at = v, t
        else:
            under = True
            deepest = max(deepest, (1 - v / peak) * 100)
    if under:
        durations.append(times[-1] - peak_at)
    return deepest, max(durations, default=timedelta(0)), durations


@pytest.mark.parametrize("seed", range(20))
def test_drawdowns_computed_at_new_lows_only_are_the_bar_by_bar_ones(seed: int) -> None:
    rng = random.Random(seed)
    values = [1000.0]
    for _ in range(400):
        step = rng.choice([0.0, 0.0, rng.gauss(0, 5)])  # flat stretches, as a long/flat curve
        values.append(values[-1] + step)
    if seed % 5 == 0:  # below zero too (where a depth is negative)
        values = [v - 1010.0 for v in values]
    times = [T0 + timedelta(hours=n) for n in range(len(values))]
    assert _drawdowns(times, values) == drawdowns_bar_by_bar(times, values)
