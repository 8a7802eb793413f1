"""The simulator's in-memory world: the matching engine, the markets, the subscribers, the faults
and the ground truth the tests check. Synchronous: the asyncio server calls into it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol

from engine.exceptions import ConfigError
from engine.venues.simulator import wire
from engine.venues.simulator.account import Fees, SimulatedAccount, SymbolRules
from engine.venues.simulator.config import SimulatorConfig
from engine.venues.simulator.faults import FaultInjector, FaultKind, FaultPlan
from engine.venues.simulator.market import (
    INTERVAL_MS,
    KlineBuilder,
    PublicTape,
    QuoteSource,
    make_source,
)
from engine.venues.simulator.records import (
    ExecutionEvent,
    ExecutionType,
    NewOrder,
    PlaceResult,
    Rejection,
    SimOrder,
    SimTrade,
    UserEvent,
)

SNAPSHOT_VERSION = 1


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class ManualClock:
    """A clock tests move by hand."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2024, 1, 1, tzinfo=UTC)

    def now(self) -> datetime:
        return self._now

    def advance(self, seconds: float = 1.0) -> datetime:
        self._now += timedelta(seconds=seconds)
        return self._now

    def set(self, now: datetime) -> None:
        self._now = now


def to_ms(ts: datetime) -> int:
    return int(ts.timestamp() * 1000)


class UserSink(Protocol):
    """A user-data subscriber (one WebSocket API connection)."""

    def deliver(self, payload: dict[str, Any], *, hold: bool = False) -> None: ...

    def disconnect(self, reason: str) -> None: ...


class MarketSink(Protocol):
    """A market-stream subscriber; ``wants`` says which stream names it listens to."""

    def wants(self, stream: str) -> bool: ...

    def deliver(self, stream: str, payload: dict[str, Any]) -> None: ...

    def disconnect(self, reason: str) -> None: ...


@dataclass(slots=True, kw_only=True)
class Submission:
    """One ``POST /api/v3/order`` attempt as the venue saw it."""

    client_order_id: str
    symbol: str
    at_ms: int
    outcome: str  #: "accepted" / "rejected" / "refused_by_fault"
    order_id: int | None = None
    code: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "client_order_id": self.client_order_id,
            "symbol": self.symbol,
            "at_ms": self.at_ms,
            "outcome": self.outcome,
            "order_id": self.order_id,
            "code": self.code,
        }


@dataclass(slots=True)
class _Subscribers:
    user: dict[int, tuple[UserSink, int]] = field(default_factory=dict)
    market: dict[int, MarketSink] = field(default_factory=dict)
    next_token: int = 1


class SimulatorState:
    """Ground truth and behaviour of one simulated Binance account."""

    def __init__(self, config: SimulatorConfig, *, clock: Clock | None = None) -> None:
        self.config = config
        self.clock: Clock = clock or SystemClock()
        self.faults = FaultInjector(config.faults, seed=config.seed)
        self.engine = SimulatedAccount(
            (
                SymbolRules(
                    symbol=s.symbol,
                    base_asset=s.base_asset,
                    quote_asset=s.quote_asset,
                    tick_size=s.tick_size,
                    step_size=s.step_size,
                    min_qty=s.effective_min_qty,
                    max_qty=s.max_qty,
                    min_price=s.effective_min_price,
                    max_price=s.max_price,
                    min_notional=s.min_notional,
                    max_notional=s.max_notional,
                )
                for s in config.symbols
            ),
            config.balances,
            Fees(maker=config.maker_fee, taker=config.taker_fee),
        )
        self.sources: dict[str, QuoteSource] = {
            s.symbol: make_source(s, seed=config.seed) for s in config.symbols
        }
        self.tapes: dict[str, PublicTape] = {
            s.symbol: PublicTape(s, seed=config.seed) for s in config.symbols
        }
        self.klines: dict[tuple[str, str], KlineBuilder] = {}
        self.book_update_id = 0
        self.submissions: list[Submission] = []
        self._subs = _Subscribers()
        self._generated_ids = 0
        now = self.clock.now()
        for symbol, source in self.sources.items():
            q = source.current(now)
            self.engine.on_quote(
                symbol,
                bid=q.bid,
                bid_size=q.bid_size,
                ask=q.ask,
                ask_size=q.ask_size,
                now_ms=to_ms(now),
            )
        #: called after every market step (the server wakes waiters with it)
        self.on_step: Callable[[], None] | None = None

    # ---- time ----------------------------------------------------------------------------

    def now_ms(self) -> int:
        return to_ms(self.clock.now())

    # ---- orders --------------------------------------------------------------------------

    def generate_client_order_id(self) -> str:
        self._generated_ids += 1
        return f"sim-{self._generated_ids:016d}"

    def record_refused_submission(self, client_order_id: str, symbol: str, code: int) -> None:
        self.submissions.append(
            Submission(
                client_order_id=client_order_id,
                symbol=symbol,
                at_ms=self.now_ms(),
                outcome="refused_by_fault",
                code=code,
            )
        )

    def place_order(self, req: NewOrder) -> PlaceResult:
        now_ms = self.now_ms()
        sub = Submission(
            client_order_id=req.client_order_id, symbol=req.symbol, at_ms=now_ms, outcome="accepted"
        )
        self.submissions.append(sub)
        try:
            result = self.engine.place(req, now_ms=now_ms)
        except Rejection as exc:
            sub.outcome = "rejected"
            sub.code = exc.code
            raise
        sub.order_id = result.order.order_id
        self.publish_user(result.events)
        return result

    def cancel_order(
        self,
        symbol: str,
        *,
        order_id: int | None,
        client_order_id: str | None,
        cancel_client_order_id: str,
        race: FaultKind | None = None,
        race_fraction: Decimal = Decimal("0.5"),
    ) -> SimOrder:
        now_ms = self.now_ms()
        if race is not None:
            # the cancel race: part of the open remainder trades just before the cancel lands
            target = self.engine.find(symbol, order_id=order_id, client_order_id=client_order_id)
            if target is not None and target.is_open:
                rules = self.engine.rules[symbol]
                qty = rules.floor_to_step(target.remaining * race_fraction)
                if qty <= 0 or qty >= target.remaining:
                    qty = rules.step_size if target.remaining > rules.step_size else Decimal(0)
                if qty > 0:
                    self.publish_user(self.engine.fill_resting(target.order_id, qty, now_ms=now_ms))
        order, events = self.engine.cancel(
            symbol,
            order_id=order_id,
            client_order_id=client_order_id,
            cancel_client_order_id=cancel_client_order_id,
            now_ms=now_ms,
        )
        self.publish_user(events)
        return order

    def deposit(self, asset: str, delta: Decimal) -> None:
        self.publish_user(self.engine.deposit(asset, delta, now_ms=self.now_ms()))

    # ---- market --------------------------------------------------------------------------

    def step(self) -> None:
        """Advance every symbol's market by one step, fill what it crosses, publish it all."""
        now = self.clock.now()
        now_ms = to_ms(now)
        for symbol, source in self.sources.items():
            q = source.next_quote(now)
            self.publish_user(
                self.engine.on_quote(
                    symbol,
                    bid=q.bid,
                    bid_size=q.bid_size,
                    ask=q.ask,
                    ask_size=q.ask_size,
                    now_ms=now_ms,
                )
            )
            self.book_update_id += 1
            lower = symbol.lower()
            self._publish_market(
                f"{lower}@bookTicker",
                wire.book_ticker(symbol, self.book_update_id, q.bid, q.bid_size, q.ask, q.ask_size),
            )
            price, qty, buyer_is_maker = self.tapes[symbol].next_trade(q)
            trade_id = self.engine.next_trade_id(symbol)
            self._publish_market(
                f"{lower}@trade",
                wire.public_trade(symbol, trade_id, price, qty, buyer_is_maker, now_ms),
            )
            for (ksym, interval), builder in self.klines.items():
                if ksym != symbol:
                    continue
                for bar in builder.add(
                    price=price,
                    qty=qty,
                    buyer_is_maker=buyer_is_maker,
                    trade_id=trade_id,
                    now_ms=now_ms,
                ):
                    self._publish_market(
                        f"{lower}@kline_{interval}", wire.kline(symbol, bar, now_ms)
                    )
        self._roll_market_disconnects()
        if self.on_step is not None:
            self.on_step()

    def set_quote(self, symbol: str, *, bid: Decimal, ask: Decimal, size: Decimal) -> None:
        """Make ``bid``/``ask`` the touch of ``symbol`` with ``size`` at each side, now.

        It matches exactly as a market step does: resting orders the quote crosses fill at their
        own price (maker), best price first, up to ``size`` in total per side; an order placed
        afterwards takes at most what is left. The walk is not moved: a later :meth:`step`
        continues from the walk's own price (tests that set quotes run with no ticker).
        """
        rules = self.engine.rules.get(symbol)
        if rules is None:
            raise ValueError(f"unknown symbol {symbol!r}; known: {sorted(self.engine.rules)}")
        if not 0 < bid < ask:
            raise ValueError(f"a quote needs 0 < bid < ask, got bid {bid} ask {ask}")
        for name, price in (("bid", bid), ("ask", ask)):
            if (price - rules.min_price) % rules.tick_size != 0:
                raise ValueError(f"{name} {price} is not on the tick grid {rules.tick_size}")
        if size < 0:
            raise ValueError(f"size must be >= 0, got {size}")
        self.publish_user(
            self.engine.on_quote(
                symbol, bid=bid, bid_size=size, ask=ask, ask_size=size, now_ms=self.now_ms()
            )
        )
        self.book_update_id += 1
        self._publish_market(
            f"{symbol.lower()}@bookTicker",
            wire.book_ticker(symbol, self.book_update_id, bid, size, ask, size),
        )
        if self.on_step is not None:
            self.on_step()

    def ensure_kline(self, symbol: str, interval: str) -> None:
        if interval not in INTERVAL_MS:
            raise ValueError(f"unsupported kline interval {interval!r}")
        self.klines.setdefault((symbol, interval), KlineBuilder(interval))

    def touch(self, symbol: str) -> dict[str, str]:
        t = self.engine.touch[symbol]
        return {
            "bid": str(t.bid),
            "bid_size": str(t.bid_size),
            "ask": str(t.ask),
            "ask_size": str(t.ask_size),
        }

    # ---- subscribers ---------------------------------------------------------------------

    def add_user_sink(self, sink: UserSink, subscription_id: int) -> int:
        token = self._subs.next_token
        self._subs.next_token += 1
        self._subs.user[token] = (sink, subscription_id)
        return token

    def remove_user_sink(self, token: int) -> None:
        self._subs.user.pop(token, None)

    def user_subscriptions(self) -> int:
        """How many user-data subscriptions are live (tests wait on it before trading)."""
        return len(self._subs.user)

    def add_market_sink(self, sink: MarketSink) -> int:
        token = self._subs.next_token
        self._subs.next_token += 1
        self._subs.market[token] = sink
        return token

    def remove_market_sink(self, token: int) -> None:
        self._subs.market.pop(token, None)

    def publish_user(self, events: list[UserEvent] | tuple[UserEvent, ...]) -> None:
        for ev in events:
            if not self._subs.user:
                continue
            if self.faults.roll(FaultKind.WS_DISCONNECT_USER):
                for token, (sink, _) in list(self._subs.user.items()):
                    self._subs.user.pop(token, None)
                    sink.disconnect("fault: ws_disconnect_user")
                continue
            payload = wire.user_event(ev)
            copies, hold = 1, False
            if isinstance(ev, ExecutionEvent):
                if ev.execution_type == ExecutionType.TRADE and self.faults.roll(
                    FaultKind.DROP_FILL_REPORT
                ):
                    continue
                if self.faults.roll(FaultKind.DUPLICATE_EXECUTION_REPORT):
                    copies = 2
                if self.faults.roll(FaultKind.REORDER_EXECUTION_REPORT):
                    hold = True
            for sink, sub_id in list(self._subs.user.values()):
                for _ in range(copies):
                    sink.deliver({"subscriptionId": sub_id, "event": payload}, hold=hold)

    def _publish_market(self, stream: str, payload: dict[str, Any]) -> None:
        sinks = [sink for sink in self._subs.market.values() if sink.wants(stream)]
        if sinks and self.faults.roll(FaultKind.MALFORMED_MARKET_DATA):
            # every value text but the event type and symbol: a frame a client must recognize
            # as a malformed event, not mistake for some other message
            payload = {k: v if k in ("e", "s") else "garbled" for k, v in payload.items()}
        for sink in sinks:
            sink.deliver(stream, payload)

    def _roll_market_disconnects(self) -> None:
        for token, sink in list(self._subs.market.items()):
            if self.faults.roll(FaultKind.WS_DISCONNECT_MARKET):
                self._subs.market.pop(token, None)
                sink.disconnect("fault: ws_disconnect_market")

    # ---- ground truth --------------------------------------------------------------------

    def orders(self) -> list[SimOrder]:
        return [o.copy() for o in self.engine.orders.values()]

    def trades(self, symbol: str | None = None) -> list[SimTrade]:
        if symbol is not None:
            return list(self.engine.trades.get(symbol, []))
        return [t for ts in self.engine.trades.values() for t in ts]

    def balances(self) -> dict[str, tuple[Decimal, Decimal]]:
        return {a: (b.free, b.locked) for a, b in self.engine.balances.items()}

    def venue_orders_by_client_id(self) -> dict[str, list[int]]:
        """Every venue order per client order id (the chaos invariant: at most one each)."""
        out: dict[str, list[int]] = {}
        for o in sorted(self.engine.orders.values(), key=lambda o: o.order_id):
            out.setdefault(o.client_order_id, []).append(o.order_id)
        return out

    def submission_attempts(self) -> dict[str, int]:
        """How many times each client order id was submitted (accepted or not)."""
        out: dict[str, int] = {}
        for s in self.submissions:
            out[s.client_order_id] = out.get(s.client_order_id, 0) + 1
        return out

    def fault_counts(self) -> dict[str, int]:
        return dict(self.faults.counters)

    def set_faults(self, plan: FaultPlan) -> None:
        self.faults.set_plan(plan)

    def ground_truth(self) -> dict[str, Any]:
        """Everything a test may assert on, JSON-ready (decimals as strings)."""
        return {
            "orders": [o.to_json() for o in sorted(self.engine.orders.values(), key=_oid)],
            "trades": [t.to_json() for t in self.trades()],
            "balances": {
                a: {"free": str(free), "locked": str(locked)}
                for a, (free, locked) in self.balances().items()
            },
            "venue_orders_by_client_id": self.venue_orders_by_client_id(),
            "submission_attempts": self.submission_attempts(),
            "submissions": [s.to_json() for s in self.submissions],
            "faults": {"plan": self.faults.plan.to_mapping(), "counters": self.fault_counts()},
            "market": {s: self.touch(s) for s in self.sources},
            "market_steps": {s: src.steps for s, src in self.sources.items()},
        }

    # ---- persistence ---------------------------------------------------------------------

    def snapshot_data(self) -> dict[str, Any]:
        return {
            "version": SNAPSHOT_VERSION,
            "seed": self.config.seed,
            "engine": self.engine.to_json(),
            "market_steps": {s: src.steps for s, src in self.sources.items()},
            "tapes": {s: t.getstate() for s, t in self.tapes.items()},
            "book_update_id": self.book_update_id,
            "submissions": [s.to_json() for s in self.submissions],
            "generated_ids": self._generated_ids,
            "faults": self.faults.snapshot(),
            "klines": sorted([list(k) for k in self.klines]),
        }

    def snapshot(self, path: str | Path) -> Path:
        """Write the whole state to a JSON file (atomically: a crash never leaves half a file)."""
        target = Path(path)
        tmp = target.with_suffix(target.suffix + ".tmp")
        tmp.write_text(json.dumps(self.snapshot_data(), indent=1, sort_keys=True), "utf-8")
        tmp.replace(target)
        return target

    def restore_data(self, data: dict[str, Any]) -> None:
        if data.get("version") != SNAPSHOT_VERSION:
            raise ValueError(f"snapshot version {data.get('version')!r} is not {SNAPSHOT_VERSION}")
        if data.get("seed") != self.config.seed:
            raise ValueError(
                f"snapshot was taken with seed {data.get('seed')!r}, this simulator has "
                f"seed {self.config.seed}: restore into a simulator with the same config"
            )
        now = self.clock.now()
        # the market is replayed from its seed rather than pickled: same steps, same walk
        self.sources = {
            s.symbol: make_source(s, seed=self.config.seed) for s in self.config.symbols
        }
        for symbol, steps in data["market_steps"].items():
            self.sources[symbol].fast_forward(int(steps), now)
        for symbol, state in data["tapes"].items():
            self.tapes[symbol].setstate(state)
        self.engine.restore(data["engine"])
        self.book_update_id = int(data["book_update_id"])
        self.submissions = [
            Submission(
                client_order_id=s["client_order_id"],
                symbol=s["symbol"],
                at_ms=int(s["at_ms"]),
                outcome=s["outcome"],
                order_id=s["order_id"],
                code=s["code"],
            )
            for s in data["submissions"]
        ]
        self._generated_ids = int(data["generated_ids"])
        self.faults.restore(data["faults"])
        self.klines = {}
        for symbol, interval in data["klines"]:
            self.ensure_kline(symbol, interval)

    def restore(self, path: str | Path) -> None:
        try:
            data = json.loads(Path(path).read_text("utf-8"))
        except OSError as exc:
            raise ConfigError(f"cannot read snapshot {path}: {exc.strerror}") from None
        except ValueError:  # UnicodeDecodeError and JSONDecodeError both are
            raise ConfigError(f"{path} is not a JSON state snapshot") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path} is not a JSON state snapshot")
        try:
            self.restore_data(data)
        except (TypeError, AttributeError, KeyError, ValueError) as exc:
            raise ConfigError(f"{path}: cannot restore this snapshot ({exc})") from None


def _oid(o: SimOrder) -> int:
    return o.order_id
