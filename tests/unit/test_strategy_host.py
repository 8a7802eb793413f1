from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from engine.domain.intents import Buy, DecisionKey, Hold, Intent, Sell, with_decision_price
from engine.domain.market import Bar, Quote
from engine.domain.types import Side, StrategyId, Symbol
from engine.marketdata.conflator import Conflator, Update
from engine.strategy_host import (
    HostedStrategy,
    InMemoryPortfolio,
    StrategyHost,
    assign_keys,
    seen_price,
)
from strategies.base import DecisionMode, Snapshot, StrategyLimits
from strategies.sma_cross import SmaCross
from tests.helpers import eventually

BTC = Symbol("BTCUSDT")
ETH = Symbol("ETHUSDT")
T0 = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def quote(at: datetime, price: str = "100", symbol: Symbol = BTC) -> Quote:
    p = Decimal(price)
    return Quote(
        symbol=symbol,
        bid=p - 1,
        bid_size=Decimal(1),
        ask=p + 1,
        ask_size=Decimal(1),
        venue_ts=at,
        received_at=at + timedelta(milliseconds=3),
    )


def bar(minute: int, close: str) -> Bar:
    open_time = T0 + timedelta(minutes=minute)
    c = Decimal(close)
    return Bar(
        symbol=BTC,
        interval="1m",
        open_time=open_time,
        close_time=open_time + timedelta(minutes=1),
        open=c,
        high=c,
        low=c,
        close=c,
        volume=Decimal(1),
        closed=True,
        received_at=open_time + timedelta(minutes=1, milliseconds=5),
    )


class Recorder:
    """A quote strategy that holds, and remembers what it was shown."""

    mode = DecisionMode.QUOTE
    bar_history = 0

    def __init__(self, sid: str, symbols: Iterable[Symbol] = (BTC,), *, boom: bool = False):
        self._sid = StrategyId(sid)
        self._symbols = tuple(symbols)
        self.boom = boom
        self.seen: list[Snapshot] = []

    @property
    def strategy_id(self) -> StrategyId:
        return self._sid

    @property
    def symbols(self) -> tuple[Symbol, ...]:
        return self._symbols

    def decide(self, snapshot: Snapshot) -> Intent:
        self.seen.append(snapshot)
        if self.boom:
            raise ZeroDivisionError("strategy bug")
        return Hold(
            key=snapshot.key(self._symbols[0], None), reason="watching", md_ts=snapshot.md_ts
        )


class Harness:
    def __init__(self) -> None:
        self.conflator = Conflator()
        self.portfolio = InMemoryPortfolio()
        self.intents: list[Intent] = []
        self.paused: set[StrategyId] = set()
        self.failures: list[tuple[StrategyId, BaseException]] = []
        self.host = StrategyHost(
            conflator=self.conflator,
            portfolio=self.portfolio,
            sink=self._sink,
            on_strategy_failure=self._on_failure,
            is_paused=self._is_paused,
            clock=lambda: NOW,
        )

    async def _sink(self, intent: Intent) -> None:
        self.intents.append(intent)

    async def _on_failure(self, sid: StrategyId, exc: BaseException) -> None:
        self.failures.append((sid, exc))
        self.paused.add(sid)

    async def _is_paused(self, sid: StrategyId) -> bool:
        return sid in self.paused

    def of(self, sid: str) -> list[Intent]:
        return [i for i in self.intents if i.strategy_id == sid]

    @asynccontextmanager
    async def running(self) -> AsyncIterator[Harness]:
        task = asyncio.create_task(self.host.run())
        await eventually(
            lambda: all(
                self.conflator.subscription(f"strategy:{sid}") for sid in self.host.strategy_ids
            )
        )
        try:
            yield self
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task


CLOSES = ["10", "10", "10", "12", "12", "9", "9", "13"]


async def run_sma_over_bars() -> list[Intent]:
    h = Harness()
    h.host.add(
        HostedStrategy(
            strategy=SmaCross(StrategyId("sma"), BTC, fast=2, slow=3, qty=Decimal(1)),
            bar_interval="1m",
        )
    )
    async with h.running():
        for minute, close in enumerate(CLOSES):
            h.conflator.publish(bar(minute, close))
            if minute == 4:
                h.portfolio.set_position(StrategyId("sma"), BTC, Decimal(1))
                await eventually(lambda: len(h.intents) == 5)
        await eventually(lambda: len(h.intents) == len(CLOSES))
    return h.intents


async def test_bar_decisions_get_the_same_keys_after_a_restart() -> None:
    first = await run_sma_over_bars()
    second = await run_sma_over_bars()
    assert [i.key for i in first] == [i.key for i in second]
    assert [i.key.interval_key for i in first] == [
        (T0 + timedelta(minutes=m)).isoformat() for m in range(len(CLOSES))
    ]
    assert [type(i).__name__ for i in first] == [
        "Hold", "Hold", "Hold", "Buy", "Hold", "Sell", "Hold", "Buy",
    ]  # fmt: skip
    assert all(i.md_ts == bar(m, "1").close_time for m, i in enumerate(first))


async def test_every_closed_bar_is_decided_on_even_when_published_in_a_burst() -> None:
    h = Harness()
    sma = SmaCross(StrategyId("sma"), BTC, fast=2, slow=3, qty=Decimal(1))
    h.host.add(HostedStrategy(strategy=sma))
    async with h.running():
        for minute, close in enumerate(CLOSES):
            h.conflator.publish(bar(minute, close))
            h.conflator.publish(quote(T0 + timedelta(minutes=minute, seconds=30)))
        await eventually(lambda: len(h.intents) == len(CLOSES))
    assert h.host.decisions[StrategyId("sma")] == len(CLOSES)


async def test_quote_decisions_in_one_window_share_their_keys() -> None:
    h = Harness()
    recorder = Recorder("rec")
    h.host.add(HostedStrategy(strategy=recorder, decision_window=timedelta(seconds=1)))
    async with h.running():
        for n, ms in enumerate((200, 700, 1100), start=1):
            h.conflator.publish(quote(T0 + timedelta(milliseconds=ms)))
            await eventually(lambda n=n: len(h.intents) == n)  # type: ignore[misc]
    keys = [i.key for i in h.intents]
    assert keys[0] == keys[1] != keys[2]
    assert keys[0].interval_key == T0.isoformat()
    assert keys[2].interval_key == (T0 + timedelta(seconds=1)).isoformat()
    assert h.intents[1].md_ts == T0 + timedelta(milliseconds=700)  # venue time, not receipt
    snap = recorder.seen[-1]
    assert snap.now == NOW
    assert snap.quotes[BTC] == quote(T0 + timedelta(milliseconds=1100))


async def test_snapshot_carries_inventory_open_orders_params_and_limits() -> None:
    h = Harness()
    recorder = Recorder("rec")
    h.portfolio.set_position(StrategyId("rec"), BTC, Decimal("0.25"))
    h.host.add(HostedStrategy(strategy=recorder, params={"edge": "0.1"}))
    async with h.running():
        h.conflator.publish(quote(T0))
        await eventually(lambda: recorder.seen)
    snap = recorder.seen[0]
    assert snap.position(BTC) == Decimal("0.25")
    assert snap.params == {"edge": "0.1"}
    assert snap.strategy_id == "rec"


async def test_a_raising_strategy_is_paused_and_the_others_go_on() -> None:
    h = Harness()
    bad = Recorder("bad", boom=True)
    good = Recorder("good")
    h.host.add(HostedStrategy(strategy=bad))
    h.host.add(HostedStrategy(strategy=good))
    async with h.running():
        for s in range(5):
            h.conflator.publish(quote(T0 + timedelta(seconds=s)))
            await eventually(lambda s=s: len(good.seen) == s + 1)  # type: ignore[misc]
    assert len(bad.seen) == 1
    assert [(sid, type(exc)) for sid, exc in h.failures] == [("bad", ZeroDivisionError)]
    assert len(h.of("good")) == 5
    assert h.of("bad") == []
    assert h.host.failures[StrategyId("bad")] == 1


QUOTE_UPDATE = Update(quotes=frozenset({BTC}), closed_bars=())


async def test_a_paused_strategy_is_not_called_and_resumes_when_unpaused() -> None:
    h = Harness()
    recorder = Recorder("rec")
    hosted = HostedStrategy(strategy=recorder)
    h.host.add(hosted)
    h.conflator.publish(quote(T0))
    h.paused.add(StrategyId("rec"))
    await h.host.handle(hosted, QUOTE_UPDATE)
    assert recorder.seen == []
    h.paused.clear()
    await h.host.handle(hosted, QUOTE_UPDATE)
    assert len(recorder.seen) == 1


async def test_a_failed_strategy_stays_paused_if_the_persistent_pause_never_landed() -> None:
    h = Harness()
    recorder = Recorder("rec", boom=True)

    async def forgetful(sid: StrategyId, exc: BaseException) -> None:
        h.failures.append((sid, exc))  # records the incident but does not pause

    h.host._on_failure = forgetful
    hosted = HostedStrategy(strategy=recorder)
    h.host.add(hosted)
    h.conflator.publish(quote(T0))
    for _ in range(3):
        await h.host.handle(hosted, QUOTE_UPDATE)
    assert len(recorder.seen) == 1
    # once the persistent pause is seen and then lifted by an operator, it runs again
    h.paused.add(StrategyId("rec"))
    await h.host.handle(hosted, QUOTE_UPDATE)
    h.paused.clear()
    await h.host.handle(hosted, QUOTE_UPDATE)
    assert len(recorder.seen) == 2


def test_assign_keys_numbers_intents_per_symbol_and_side() -> None:
    sid = StrategyId("s")
    wrong = DecisionKey(
        strategy_id=StrategyId("other"), symbol=BTC, interval_key="x", side=Side.BUY
    )
    intents: list[Intent] = [
        Buy(key=wrong, reason="a", md_ts=T0, quantity=Decimal(1)),
        Buy(key=wrong, reason="b", md_ts=T0, quantity=Decimal(2)),
        Hold(
            key=DecisionKey(strategy_id=sid, symbol=ETH, interval_key="x", side=None),
            reason="c",
            md_ts=T0,
        ),
    ]
    keyed = assign_keys(intents, strategy_id=sid, interval_key="w", symbols=[BTC, ETH])
    assert [(k.key.strategy_id, k.key.symbol, k.key.side, k.key.sequence) for k in keyed] == [
        ("s", BTC, Side.BUY, 0),
        ("s", BTC, Side.BUY, 1),
        ("s", ETH, None, 0),
    ]
    assert all(k.key.interval_key == "w" for k in keyed)
    assert [k.reason for k in keyed] == ["a", "b", "c"]
    with pytest.raises(ValueError, match="not one of"):
        assign_keys(intents, strategy_id=sid, interval_key="w", symbols=[ETH])


def test_a_single_intent_is_kept_only_when_its_key_and_stamp_are_already_canonical() -> None:
    sid = StrategyId("s")
    hold = Hold.of(DecisionKey.of(sid, BTC, "w", None, 0), "flat", T0)
    args = {"strategy_id": sid, "symbols": (BTC,)}
    assert assign_keys((hold,), interval_key="w", stamp_holds=False, **args)[0] is hold
    stamped = assign_keys((hold,), interval_key="w", version="7", **args)[0]
    assert (stamped.key, stamped.strategy_version) == (hold.key, "7")
    rekeyed = assign_keys((hold,), interval_key="v", stamp_holds=False, **args)[0]
    assert (rekeyed.key.interval_key, rekeyed.reason) == ("v", "flat")
    second = Hold.of(DecisionKey.of(sid, BTC, "w", None, 1), "flat", T0)
    assert assign_keys((second,), interval_key="w", stamp_holds=False, **args)[0].key == hold.key
    with pytest.raises(ValueError, match="not one of"):
        assign_keys((hold,), strategy_id=sid, interval_key="w", symbols=(ETH,))
    with pytest.raises(ValueError, match="not an intent"):
        assign_keys(("hold",), interval_key="w", **args)  # type: ignore[arg-type]


def test_the_quick_snapshot_constructor_and_its_hold_build_the_same_objects() -> None:
    bar = Bar(
        symbol=BTC,
        interval="1m",
        open_time=T0,
        close_time=T0 + timedelta(minutes=1),
        open=Decimal(1),
        high=Decimal(2),
        low=Decimal(1),
        close=Decimal(2),
        volume=Decimal(5),
        closed=True,
        received_at=T0,
    )
    fields = {
        "strategy_id": StrategyId("s"),
        "now": T0,
        "md_ts": T0,
        "interval_key": "w",
        "quotes": {},
        "bars": {BTC: (bar,)},
        "closed_bar": bar,
        "inventory": {BTC: Decimal(3)},
        "open_orders": (),
        "params": {"fast": "2"},
        "limits": StrategyLimits(max_position=Decimal(4)),
    }
    assert Snapshot.assemble(**fields) == Snapshot(**fields)  # type: ignore[arg-type]
    snapshot = Snapshot(**fields)  # type: ignore[arg-type]
    assert snapshot.hold(BTC, "why") == Hold(key=snapshot.key(BTC, None), reason="why", md_ts=T0)


def test_holds_stay_unstamped_only_for_a_sink_that_records_none() -> None:
    sid = StrategyId("s")
    hold = Hold(
        key=DecisionKey(strategy_id=sid, symbol=BTC, interval_key="w", side=None),
        reason="no cross",
        md_ts=T0,
    )
    buy = Buy(
        key=DecisionKey(strategy_id=sid, symbol=BTC, interval_key="w", side=Side.BUY),
        reason="cross",
        md_ts=T0,
        quantity=Decimal(1),
    )
    stamped = assign_keys(
        [hold, buy], strategy_id=sid, interval_key="w", symbols=[BTC], version="7"
    )
    assert [i.strategy_version for i in stamped] == ["7", "7"]
    counted = assign_keys(
        [hold, buy],
        strategy_id=sid,
        interval_key="w",
        symbols=[BTC],
        version="7",
        stamp_holds=False,
    )
    assert counted[0] is hold
    assert counted[1].strategy_version == "7"


async def test_order_intents_carry_the_close_the_bar_strategy_saw_as_decision_price() -> None:
    intents = await run_sma_over_bars()
    orders = [(i, CLOSES[n]) for n, i in enumerate(intents) if isinstance(i, Buy | Sell)]
    assert orders
    assert all(i.decision_price == Decimal(close) for i, close in orders)


def test_the_decision_price_is_the_mid_seen_unless_the_strategy_set_its_own() -> None:
    key = DecisionKey(strategy_id=StrategyId("s"), symbol=BTC, interval_key="k", side=Side.BUY)
    seen = seen_price(BTC, {BTC: quote(T0, "100")}, bar(0, "90"))
    assert seen == Decimal(100)  # the quote's mid wins over the bar
    assert seen_price(BTC, {}, bar(0, "90")) == Decimal(90)
    assert seen_price(ETH, {}, bar(0, "90")) is None
    buy = Buy(key=key, reason="r", md_ts=T0, quantity=Decimal(1))
    assert with_decision_price(buy, seen) == replace(buy, decision_price=Decimal(100))
    target = replace(buy, decision_price=Decimal("99.5"))
    assert with_decision_price(target, seen) == target
    hold = Hold(key=replace(key, side=None), reason="r", md_ts=T0)
    assert with_decision_price(hold, seen) is hold
    with pytest.raises(ValueError, match="decision_price must be a finite Decimal"):
        replace(buy, decision_price=Decimal("NaN"))
