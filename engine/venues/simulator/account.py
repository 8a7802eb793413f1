"""The simulated Binance account: the matching core behind Binance's validation, error codes,
``executionReport``/``outboundAccountPosition`` events and snapshot format.

Pure like the core: no I/O, no clock (every call receives ``now_ms``), no randomness.
Binance specifics kept here, on top of the core's model:

- A symbol with no quote yet refuses every order (``-1112``); LIMIT needs price and timeInForce,
  MARKET takes neither; filters are checked in Binance's order, the first failure named.
- Commission is charged in the quote asset on both sides, and every accepted order reserves what
  it may spend (a BUY ``price * qty * (1 + max(maker, taker))``), so ``locked`` shows on every
  order the simulator reports (:attr:`ReservePolicy.EVERY_ORDER`).
- Each call ends with one ``outboundAccountPosition`` for the assets of the symbol it touched.
- Trade ids are consecutive integers per symbol, shared with the public trades of that symbol.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict
from decimal import Decimal
from typing import Any

from engine.domain.types import OrderType, TimeInForce, VenueOrderStatus
from engine.venues.matching import (
    Accepted,
    Balance,
    Closed,
    Event,
    Filled,
    InstrumentSpec,
    MatchingCore,
    Order,
    RateFees,
    RefusalKind,
    Refused,
    ReservePolicy,
    Touch,
    Violation,
)
from engine.venues.matching import NewOrder as CoreOrder
from engine.venues.simulator.records import (
    DUPLICATE_ORDER,
    INSUFFICIENT_BALANCE,
    UNKNOWN_ORDER,
    AccountPositionEvent,
    BalanceUpdateEvent,
    ExecutionEvent,
    ExecutionType,
    NewOrder,
    PlaceResult,
    Rejection,
    SimOrder,
    SimTrade,
    UserEvent,
)

#: Binance's rules for one symbol are the core's instrument spec (fees in quote, raw steps).
SymbolRules = InstrumentSpec
Fees = RateFees

_FILTER_NAMES = {
    Violation.PRICE: "PRICE_FILTER",
    Violation.QUANTITY: "LOT_SIZE",
    Violation.NOTIONAL: "NOTIONAL",
}


def _missing(name: str) -> Rejection:
    return Rejection(
        -1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed."
    )


class SimulatedAccount:
    """One account on a venue with several symbols."""

    def __init__(
        self, rules: Iterable[InstrumentSpec], balances: Mapping[str, Decimal], fees: RateFees
    ) -> None:
        self.fees = fees
        self.core: MatchingCore[int] = MatchingCore(
            rules, balances, fees, reserve=ReservePolicy.EVERY_ORDER
        )
        self.update_ms = 0
        self._views: dict[int, SimOrder] = {}
        self._trades: dict[str, list[SimTrade]] = {}

    # ---- queries -------------------------------------------------------------------------

    @property
    def rules(self) -> dict[str, InstrumentSpec]:
        return self.core.instruments

    @property
    def balances(self) -> dict[str, Balance]:
        return self.core.balances

    @property
    def touch(self) -> dict[str, Touch]:
        return self.core.touch

    @property
    def orders(self) -> dict[int, SimOrder]:
        return {oid: self._view(o) for oid, o in self.core.orders.items()}

    @property
    def trades(self) -> dict[str, list[SimTrade]]:
        for symbol, fills in self.core.fills.items():
            done = self._trades.setdefault(symbol, [])
            done.extend(SimTrade.of(f) for f in fills[len(done) :])
        return self._trades

    def symbol_rules(self, symbol: str) -> InstrumentSpec:
        try:
            return self.core.instruments[symbol]
        except KeyError:
            raise Rejection(-1121, "Invalid symbol.") from None

    def find(
        self, symbol: str, *, order_id: int | None = None, client_order_id: str | None = None
    ) -> SimOrder | None:
        """By order id, or by client id (the open order with it, else the latest one)."""
        if order_id is not None:
            o = self.core.orders.get(order_id)
            if o is None or o.symbol != symbol:
                return None
            if client_order_id is not None and o.client_order_id != client_order_id:
                return None
            return self._view(o)
        if client_order_id is None:
            return None
        found = self.core.latest_order(symbol, client_order_id)
        return None if found is None else self._view(found)

    def open_orders(self, symbol: str | None = None) -> list[SimOrder]:
        return [self._view(o) for o in self.core.open_orders(symbol)]

    def next_trade_id(self, symbol: str) -> int:
        return self.core.next_trade_id(symbol)

    # ---- commands ------------------------------------------------------------------------

    def on_quote(
        self,
        symbol: str,
        *,
        bid: Decimal,
        bid_size: Decimal,
        ask: Decimal,
        ask_size: Decimal,
        now_ms: int,
    ) -> list[UserEvent]:
        """A new touch: resting orders it crosses fill, best price first, then oldest first."""
        rules = self.symbol_rules(symbol)
        events = self.core.on_quote(
            symbol, bid=bid, bid_size=bid_size, ask=ask, ask_size=ask_size, clock=lambda: now_ms
        )
        filled = any(isinstance(ev, Filled) for ev in events)
        assets = (rules.base_asset, rules.quote_asset) if filled else ()
        return self._translate(events, now_ms, assets)

    def place(self, req: NewOrder, *, now_ms: int) -> PlaceResult:
        """Validate, reserve funds, match against the touch; raise :class:`Rejection` if refused."""
        rules = self.symbol_rules(req.symbol)
        touch = self.core.touch.get(req.symbol)
        if touch is None:
            raise Rejection(-1112, "No orders on book for symbol.")
        if req.type is OrderType.LIMIT:
            if req.price is None:
                raise _missing("price")
            if req.time_in_force is None:
                raise _missing("timeInForce")
        elif req.price is not None:
            raise Rejection(-1106, "Parameter 'price' sent when not required.")
        elif req.time_in_force is not None:
            raise Rejection(-1106, "Parameter 'timeInForce' sent when not required.")
        if req.quantity <= 0:
            raise Rejection(-1013, "Invalid quantity.")
        violation = rules.violation(req.quantity, req.price, ref_price=touch.price_for(req.side))
        if violation is not None:
            raise Rejection(-1013, f"Filter failure: {_FILTER_NAMES[violation]}")
        order = CoreOrder(
            symbol=req.symbol,
            client_order_id=req.client_order_id,
            side=req.side,
            type=req.type,
            quantity=req.quantity,
            price=req.price,
            time_in_force=req.time_in_force or TimeInForce.GTC,
        )
        try:
            placed, events = self.core.place(order, clock=lambda: now_ms)
        except Refused as exc:
            if exc.kind is RefusalKind.DUPLICATE:
                raise Rejection(-2010, DUPLICATE_ORDER) from None
            raise Rejection(-2010, INSUFFICIENT_BALANCE) from None
        trades = tuple(SimTrade.of(ev.fill) for ev in events if isinstance(ev, Filled))
        out = self._translate(events, now_ms, (rules.base_asset, rules.quote_asset))
        return PlaceResult(order=self._view(placed).copy(), trades=trades, events=tuple(out))

    def cancel(
        self,
        symbol: str,
        *,
        order_id: int | None,
        client_order_id: str | None,
        cancel_client_order_id: str | None,
        now_ms: int,
    ) -> tuple[SimOrder, list[UserEvent]]:
        rules = self.symbol_rules(symbol)
        order = self.find(symbol, order_id=order_id, client_order_id=client_order_id)
        if order is None or not order.is_open:
            raise Rejection(-2011, UNKNOWN_ORDER)
        events = self.core.cancel(order.order_id, clock=lambda: now_ms)
        out = self._translate(
            events,
            now_ms,
            (rules.base_asset, rules.quote_asset),
            cancel_client_order_id=cancel_client_order_id,
        )
        return order.copy(), out

    def fill_resting(self, order_id: int, qty: Decimal, *, now_ms: int) -> list[UserEvent]:
        """A counterparty hits a resting order at its price (used for the cancel race fault)."""
        events = self.core.fill_resting(order_id, qty, clock=lambda: now_ms)
        if not events:
            return []
        rules = self.core.instruments[self.core.orders[order_id].symbol]
        return self._translate(events, now_ms, (rules.base_asset, rules.quote_asset))

    def deposit(self, asset: str, delta: Decimal, *, now_ms: int) -> list[UserEvent]:
        """A deposit (positive) or withdrawal (negative) of free balance."""
        try:
            self.core.adjust(asset, delta)
        except Refused:
            raise Rejection(-2010, INSUFFICIENT_BALANCE) from None
        update = BalanceUpdateEvent(asset=asset, delta=delta, event_ms=now_ms)
        return [update, *self._translate([], now_ms, (asset,))]

    # ---- internals -----------------------------------------------------------------------

    def _view(self, order: Order[int]) -> SimOrder:
        view = self._views.get(order.order_id)
        if view is None or view.core is not order:
            view = self._views[order.order_id] = SimOrder(order)
        return view

    def _translate(
        self,
        events: Sequence[Event[int]],
        now_ms: int,
        assets: tuple[str, ...],
        *,
        cancel_client_order_id: str | None = None,
    ) -> list[UserEvent]:
        """Core events as ``executionReport``s, then one ``outboundAccountPosition``."""
        out: list[UserEvent] = []
        for ev in events:
            if isinstance(ev, Accepted):
                out.append(_report(ExecutionType.NEW, ev.order, now_ms))
            elif isinstance(ev, Filled):
                out.append(
                    ExecutionEvent(
                        execution_type=ExecutionType.TRADE,
                        order=SimOrder(ev.order),
                        trade=SimTrade.of(ev.fill),
                        event_ms=now_ms,
                    )
                )
            elif isinstance(ev, Closed):
                kind = (
                    ExecutionType.CANCELED
                    if ev.order.status is VenueOrderStatus.CANCELED
                    else ExecutionType.EXPIRED
                )
                out.append(_report(kind, ev.order, now_ms, cancel_client_order_id))
        if assets:
            self.update_ms = now_ms
            balances = self.core.balances
            out.append(
                AccountPositionEvent(
                    balances=tuple(
                        (a, balances[a].free, balances[a].locked) for a in dict.fromkeys(assets)
                    ),
                    event_ms=now_ms,
                )
            )
        return out

    # ---- persistence ---------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        return {
            "balances": {
                a: {"free": str(b.free), "locked": str(b.locked)} for a, b in self.balances.items()
            },
            "orders": [o.to_json() for o in self.orders.values()],
            "trades": {s: [t.to_json() for t in ts] for s, ts in self.trades.items()},
            "touch": {s: {k: str(v) for k, v in asdict(t).items()} for s, t in self.touch.items()},
            "next_trade_id": dict(self.core.next_trade_ids),
            "next_order_id": self.core.next_order_id,
            "seq": self.core.seq,
            "update_ms": self.update_ms,
        }

    def restore(self, d: Mapping[str, Any]) -> None:
        self.core.restore(
            balances={
                a: Balance(free=Decimal(b["free"]), locked=Decimal(b["locked"]))
                for a, b in d["balances"].items()
            },
            orders=[SimOrder.core_from_json(o) for o in d["orders"]],
            fills={
                s: [SimTrade.from_json(t).to_fill() for t in ts] for s, ts in d["trades"].items()
            },
            touch={
                s: Touch(**{k: Decimal(v) for k, v in t.items()}) for s, t in d["touch"].items()
            },
            next_trade_ids={s: int(v) for s, v in d["next_trade_id"].items()},
            next_order_id=int(d["next_order_id"]),
            seq=int(d["seq"]),
        )
        self.update_ms = int(d["update_ms"])
        self._views, self._trades = {}, {}


def _report(
    kind: str, order: Order[int], now_ms: int, cancel_client_order_id: str | None = None
) -> ExecutionEvent:
    return ExecutionEvent(
        execution_type=kind,
        order=SimOrder(order),
        trade=None,
        event_ms=now_ms,
        cancel_client_order_id=cancel_client_order_id,
    )


__all__ = ["Fees", "SimulatedAccount", "SymbolRules"]
