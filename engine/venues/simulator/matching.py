"""The simulator's exchange core: filters, balances, our orders against the market's touch.

Pure: no I/O, no clock (every call receives ``now_ms``), no randomness. The market is a quote
(best bid/ask with a size at each) fed in by :meth:`MatchingEngine.on_quote`; the size at the
touch is the liquidity our orders can take until the next quote.

- An incoming order that crosses the touch takes liquidity at the touch price (taker fee).
  GTC rests the rest; IOC and MARKET expire it; FOK expires whole unless the touch can fill it.
- A resting order fills (maker fee, at its own price) when a later quote crosses it, in
  price-time priority among our resting orders, limited by the size at the new touch.
- Our orders never trade with each other (no self-matching).
- Commission is charged in the quote asset on both sides. A BUY locks
  ``price * qty * (1 + max(maker, taker))`` of quote so that its fees are always covered.
- Trade ids are consecutive integers per symbol, shared with the public trades of that symbol.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, Decimal
from typing import Any

from engine.domain.types import OrderType, Side, TimeInForce, VenueOrderStatus

ZERO = Decimal(0)
_FEE_PLACES = Decimal("0.00000001")


class ExecutionType:
    NEW = "NEW"
    TRADE = "TRADE"
    CANCELED = "CANCELED"
    EXPIRED = "EXPIRED"
    REJECTED = "REJECTED"


class Rejection(Exception):
    """A request the venue refuses, with the Binance error code, message and HTTP status."""

    def __init__(self, code: int, msg: str, *, http_status: int = 400) -> None:
        super().__init__(f"{code}: {msg}")
        self.code = code
        self.msg = msg
        self.http_status = http_status


INSUFFICIENT_BALANCE = "Account has insufficient balance for requested action."
DUPLICATE_ORDER = "Duplicate order sent."
UNKNOWN_ORDER = "Unknown order sent."


@dataclass(frozen=True, slots=True, kw_only=True)
class SymbolRules:
    symbol: str
    base_asset: str
    quote_asset: str
    tick_size: Decimal
    step_size: Decimal
    min_qty: Decimal
    max_qty: Decimal
    min_price: Decimal
    max_price: Decimal
    min_notional: Decimal = ZERO
    max_notional: Decimal | None = None

    def filter_failure(
        self, *, order_type: OrderType, quantity: Decimal, price: Decimal | None, ref_price: Decimal
    ) -> str | None:
        """The first Binance filter this order breaks (PRICE_FILTER, LOT_SIZE, NOTIONAL)."""
        if order_type is OrderType.LIMIT:
            assert price is not None
            if price < self.min_price or price > self.max_price:
                return "PRICE_FILTER"
            if (price - self.min_price) % self.tick_size != 0:
                return "PRICE_FILTER"
        if quantity < self.min_qty or quantity > self.max_qty:
            return "LOT_SIZE"
        if (quantity - self.min_qty) % self.step_size != 0:
            return "LOT_SIZE"
        # MARKET orders are checked at the reference (touch) price, as Binance applies the
        # notional filter to market orders at an average price
        notional = quantity * (price if price is not None else ref_price)
        if notional < self.min_notional:
            return "NOTIONAL"
        if self.max_notional is not None and notional > self.max_notional:
            return "NOTIONAL"
        return None

    def floor_to_step(self, qty: Decimal) -> Decimal:
        return (qty / self.step_size).to_integral_value(rounding=ROUND_DOWN) * self.step_size


@dataclass(frozen=True, slots=True, kw_only=True)
class Fees:
    maker: Decimal
    taker: Decimal

    @property
    def reserve_rate(self) -> Decimal:
        return max(self.maker, self.taker)


@dataclass(slots=True, kw_only=True)
class Balance:
    free: Decimal = ZERO
    locked: Decimal = ZERO


@dataclass(slots=True, kw_only=True)
class SimOrder:
    """One order as the venue holds it (mutable inside the engine; callers get copies)."""

    order_id: int
    symbol: str
    client_order_id: str
    side: Side
    type: OrderType
    time_in_force: TimeInForce
    price: Decimal  #: zero for MARKET, as Binance reports it
    orig_qty: Decimal
    executed_qty: Decimal = ZERO
    cumulative_quote: Decimal = ZERO
    status: VenueOrderStatus = VenueOrderStatus.NEW
    time_ms: int = 0
    update_ms: int = 0
    working_ms: int = -1
    #: quote (BUY) or base (SELL) still reserved for the open remainder
    locked: Decimal = ZERO
    #: arrival sequence, for time priority among resting orders
    seq: int = 0

    @property
    def remaining(self) -> Decimal:
        return self.orig_qty - self.executed_qty

    @property
    def is_open(self) -> bool:
        return self.status in (VenueOrderStatus.NEW, VenueOrderStatus.PARTIALLY_FILLED)

    def copy(self) -> SimOrder:
        return replace(self)

    def to_json(self) -> dict[str, Any]:
        return {
            "order_id": self.order_id,
            "symbol": self.symbol,
            "client_order_id": self.client_order_id,
            "side": self.side.value,
            "type": self.type.value,
            "time_in_force": self.time_in_force.value,
            "price": str(self.price),
            "orig_qty": str(self.orig_qty),
            "executed_qty": str(self.executed_qty),
            "cumulative_quote": str(self.cumulative_quote),
            "status": self.status.value,
            "time_ms": self.time_ms,
            "update_ms": self.update_ms,
            "working_ms": self.working_ms,
            "locked": str(self.locked),
            "seq": self.seq,
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> SimOrder:
        return cls(
            order_id=int(d["order_id"]),
            symbol=str(d["symbol"]),
            client_order_id=str(d["client_order_id"]),
            side=Side(d["side"]),
            type=OrderType(d["type"]),
            time_in_force=TimeInForce(d["time_in_force"]),
            price=Decimal(d["price"]),
            orig_qty=Decimal(d["orig_qty"]),
            executed_qty=Decimal(d["executed_qty"]),
            cumulative_quote=Decimal(d["cumulative_quote"]),
            status=VenueOrderStatus(d["status"]),
            time_ms=int(d["time_ms"]),
            update_ms=int(d["update_ms"]),
            working_ms=int(d["working_ms"]),
            locked=Decimal(d["locked"]),
            seq=int(d["seq"]),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class SimTrade:
    """One of our fills."""

    trade_id: int
    symbol: str
    order_id: int
    client_order_id: str
    side: Side
    price: Decimal
    qty: Decimal
    quote_qty: Decimal
    commission: Decimal
    commission_asset: str
    time_ms: int
    is_maker: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "trade_id": self.trade_id,
            "symbol": self.symbol,
            "order_id": self.order_id,
            "client_order_id": self.client_order_id,
            "side": self.side.value,
            "price": str(self.price),
            "qty": str(self.qty),
            "quote_qty": str(self.quote_qty),
            "commission": str(self.commission),
            "commission_asset": self.commission_asset,
            "time_ms": self.time_ms,
            "is_maker": self.is_maker,
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> SimTrade:
        return cls(
            trade_id=int(d["trade_id"]),
            symbol=str(d["symbol"]),
            order_id=int(d["order_id"]),
            client_order_id=str(d["client_order_id"]),
            side=Side(d["side"]),
            price=Decimal(d["price"]),
            qty=Decimal(d["qty"]),
            quote_qty=Decimal(d["quote_qty"]),
            commission=Decimal(d["commission"]),
            commission_asset=str(d["commission_asset"]),
            time_ms=int(d["time_ms"]),
            is_maker=bool(d["is_maker"]),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class ExecutionEvent:
    """What an ``executionReport`` carries: the order after the event, and the fill if any."""

    execution_type: str
    order: SimOrder
    trade: SimTrade | None
    event_ms: int
    #: the cancel request's own client id (Binance puts the original id in ``C``)
    cancel_client_order_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class AccountPositionEvent:
    """``outboundAccountPosition``: the balances an event touched."""

    balances: tuple[tuple[str, Decimal, Decimal], ...]
    event_ms: int


@dataclass(frozen=True, slots=True, kw_only=True)
class BalanceUpdateEvent:
    """``balanceUpdate``: a deposit or withdrawal."""

    asset: str
    delta: Decimal
    event_ms: int


UserEvent = ExecutionEvent | AccountPositionEvent | BalanceUpdateEvent


@dataclass(frozen=True, slots=True, kw_only=True)
class NewOrder:
    symbol: str
    side: Side
    type: OrderType
    quantity: Decimal
    client_order_id: str
    price: Decimal | None = None
    time_in_force: TimeInForce | None = None


@dataclass(slots=True, kw_only=True)
class Touch:
    bid: Decimal
    bid_size: Decimal
    ask: Decimal
    ask_size: Decimal
    #: what is left at the touch after our orders took from it since the quote arrived
    bid_left: Decimal
    ask_left: Decimal


@dataclass(frozen=True, slots=True, kw_only=True)
class PlaceResult:
    order: SimOrder
    trades: tuple[SimTrade, ...]
    events: tuple[UserEvent, ...]


@dataclass(slots=True)
class _Changes:
    """Collects the events of one engine call and the assets whose balances moved."""

    events: list[UserEvent] = field(default_factory=list)
    assets: list[str] = field(default_factory=list)

    def touch(self, *assets: str) -> None:
        for a in assets:
            if a not in self.assets:
                self.assets.append(a)


class MatchingEngine:
    """One account on a venue with several symbols."""

    def __init__(
        self,
        rules: Iterable[SymbolRules],
        balances: Mapping[str, Decimal],
        fees: Fees,
    ) -> None:
        self.rules: dict[str, SymbolRules] = {r.symbol: r for r in rules}
        self.fees = fees
        self.balances: dict[str, Balance] = {a: Balance(free=v) for a, v in balances.items()}
        for r in self.rules.values():
            self.balances.setdefault(r.base_asset, Balance())
            self.balances.setdefault(r.quote_asset, Balance())
        self.orders: dict[int, SimOrder] = {}
        self.trades: dict[str, list[SimTrade]] = {s: [] for s in self.rules}
        self.touch: dict[str, Touch] = {}
        self._next_trade_id: dict[str, int] = {s: 1 for s in self.rules}
        self._next_order_id = 1
        self._seq = 0
        self.update_ms = 0

    # ---- queries -------------------------------------------------------------------------

    def symbol_rules(self, symbol: str) -> SymbolRules:
        try:
            return self.rules[symbol]
        except KeyError:
            raise Rejection(-1121, "Invalid symbol.") from None

    def find(
        self, symbol: str, *, order_id: int | None = None, client_order_id: str | None = None
    ) -> SimOrder | None:
        """By order id, or by client id (the open order with it, else the latest one)."""
        if order_id is not None:
            o = self.orders.get(order_id)
            if o is None or o.symbol != symbol:
                return None
            if client_order_id is not None and o.client_order_id != client_order_id:
                return None
            return o
        found: SimOrder | None = None
        for o in self.orders.values():
            if o.symbol == symbol and o.client_order_id == client_order_id:
                if o.is_open:
                    return o
                if found is None or o.order_id > found.order_id:
                    found = o
        return found

    def open_orders(self, symbol: str | None = None) -> list[SimOrder]:
        return [
            o for o in self.orders.values() if o.is_open and (symbol is None or o.symbol == symbol)
        ]

    def next_trade_id(self, symbol: str) -> int:
        tid = self._next_trade_id[symbol]
        self._next_trade_id[symbol] = tid + 1
        return tid

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
        self.touch[symbol] = Touch(
            bid=bid,
            bid_size=bid_size,
            ask=ask,
            ask_size=ask_size,
            bid_left=rules.floor_to_step(bid_size),
            ask_left=rules.floor_to_step(ask_size),
        )
        ch = _Changes()
        touch = self.touch[symbol]
        resting = self.open_orders(symbol)
        buys = sorted(
            (o for o in resting if o.side is Side.BUY and o.price >= ask),
            key=lambda o: (-o.price, o.seq),
        )
        for o in buys:
            qty = min(o.remaining, touch.ask_left)
            if qty <= 0:
                break
            touch.ask_left -= qty
            self._fill(o, qty, o.price, maker=True, now_ms=now_ms, ch=ch)
        sells = sorted(
            (o for o in resting if o.side is Side.SELL and o.price <= bid),
            key=lambda o: (o.price, o.seq),
        )
        for o in sells:
            qty = min(o.remaining, touch.bid_left)
            if qty <= 0:
                break
            touch.bid_left -= qty
            self._fill(o, qty, o.price, maker=True, now_ms=now_ms, ch=ch)
        return self._finish(ch, now_ms)

    def place(self, req: NewOrder, *, now_ms: int) -> PlaceResult:
        """Validate, reserve funds, match against the touch; raise :class:`Rejection` if refused."""
        rules = self.symbol_rules(req.symbol)
        touch = self.touch.get(req.symbol)
        if touch is None:
            raise Rejection(-1112, "No orders on book for symbol.")
        if req.type is OrderType.LIMIT:
            if req.price is None:
                raise Rejection(
                    -1102,
                    "Mandatory parameter 'price' was not sent, was empty/null, or malformed.",
                )
            if req.time_in_force is None:
                raise Rejection(
                    -1102,
                    "Mandatory parameter 'timeInForce' was not sent, was empty/null, or malformed.",
                )
        elif req.price is not None:
            raise Rejection(-1106, "Parameter 'price' sent when not required.")
        elif req.time_in_force is not None:
            raise Rejection(-1106, "Parameter 'timeInForce' sent when not required.")
        if req.quantity <= 0:
            raise Rejection(-1013, "Invalid quantity.")
        ref = touch.ask if req.side is Side.BUY else touch.bid
        failure = rules.filter_failure(
            order_type=req.type, quantity=req.quantity, price=req.price, ref_price=ref
        )
        if failure is not None:
            raise Rejection(-1013, f"Filter failure: {failure}")
        if any(o.client_order_id == req.client_order_id for o in self.open_orders(req.symbol)):
            raise Rejection(-2010, DUPLICATE_ORDER)

        reserve_rate = self.fees.reserve_rate
        if req.side is Side.BUY:
            unit = req.price if req.price is not None else touch.ask
            need = unit * req.quantity * (1 + reserve_rate)
            asset = rules.quote_asset
        else:
            need = req.quantity
            asset = rules.base_asset
        bal = self.balances[asset]
        if bal.free < need:
            raise Rejection(-2010, INSUFFICIENT_BALANCE)

        self._seq += 1
        order = SimOrder(
            order_id=self._next_order_id,
            symbol=req.symbol,
            client_order_id=req.client_order_id,
            side=req.side,
            type=req.type,
            time_in_force=req.time_in_force or TimeInForce.GTC,
            price=req.price if req.price is not None else ZERO,
            orig_qty=req.quantity,
            time_ms=now_ms,
            update_ms=now_ms,
            # a GTC limit order is working from acceptance (it rests unless it fills at once)
            working_ms=now_ms
            if req.type is OrderType.LIMIT and req.time_in_force is TimeInForce.GTC
            else -1,
            seq=self._seq,
        )
        self._next_order_id += 1
        self.orders[order.order_id] = order
        bal.free -= need
        bal.locked += need
        order.locked = need

        ch = _Changes()
        ch.touch(rules.base_asset, rules.quote_asset)
        trades_before = len(self.trades[req.symbol])
        ch.events.append(
            ExecutionEvent(
                execution_type=ExecutionType.NEW, order=order.copy(), trade=None, event_ms=now_ms
            )
        )

        if req.side is Side.BUY:
            crosses = req.type is OrderType.MARKET or order.price >= touch.ask
            available, touch_price = touch.ask_left, touch.ask
        else:
            crosses = req.type is OrderType.MARKET or order.price <= touch.bid
            available, touch_price = touch.bid_left, touch.bid
        fok_short = order.time_in_force is TimeInForce.FOK and available < order.orig_qty
        if crosses and not fok_short:
            qty = min(order.orig_qty, available)
            if qty > 0:
                if req.side is Side.BUY:
                    touch.ask_left -= qty
                else:
                    touch.bid_left -= qty
                self._fill(order, qty, touch_price, maker=False, now_ms=now_ms, ch=ch)

        rests = req.type is OrderType.LIMIT and order.time_in_force is TimeInForce.GTC
        if order.is_open and not rests:
            self._close(order, VenueOrderStatus.EXPIRED, ExecutionType.EXPIRED, now_ms, ch)
        events = self._finish(ch, now_ms)
        trades = tuple(self.trades[req.symbol][trades_before:])
        return PlaceResult(order=order.copy(), trades=trades, events=tuple(events))

    def cancel(
        self,
        symbol: str,
        *,
        order_id: int | None,
        client_order_id: str | None,
        cancel_client_order_id: str | None,
        now_ms: int,
    ) -> tuple[SimOrder, list[UserEvent]]:
        self.symbol_rules(symbol)
        order = self.find(symbol, order_id=order_id, client_order_id=client_order_id)
        if order is None or not order.is_open:
            raise Rejection(-2011, UNKNOWN_ORDER)
        ch = _Changes()
        rules = self.rules[symbol]
        ch.touch(rules.base_asset, rules.quote_asset)
        self._close(
            order,
            VenueOrderStatus.CANCELED,
            ExecutionType.CANCELED,
            now_ms,
            ch,
            cancel_client_order_id=cancel_client_order_id,
        )
        return order.copy(), self._finish(ch, now_ms)

    def fill_resting(self, order_id: int, qty: Decimal, *, now_ms: int) -> list[UserEvent]:
        """A counterparty hits a resting order at its price (used for the cancel race fault)."""
        order = self.orders[order_id]
        qty = min(qty, order.remaining)
        if not order.is_open or qty <= 0:
            return []
        ch = _Changes()
        self._fill(order, qty, order.price, maker=True, now_ms=now_ms, ch=ch)
        return self._finish(ch, now_ms)

    def deposit(self, asset: str, delta: Decimal, *, now_ms: int) -> list[UserEvent]:
        """A deposit (positive) or withdrawal (negative) of free balance."""
        bal = self.balances.setdefault(asset, Balance())
        if bal.free + delta < 0:
            raise Rejection(-2010, INSUFFICIENT_BALANCE)
        bal.free += delta
        ch = _Changes()
        ch.events.append(BalanceUpdateEvent(asset=asset, delta=delta, event_ms=now_ms))
        ch.touch(asset)
        return self._finish(ch, now_ms)

    # ---- internals -----------------------------------------------------------------------

    def _fill(
        self,
        order: SimOrder,
        qty: Decimal,
        price: Decimal,
        *,
        maker: bool,
        now_ms: int,
        ch: _Changes,
    ) -> None:
        rules = self.rules[order.symbol]
        quote_qty = price * qty
        rate = self.fees.maker if maker else self.fees.taker
        fee = (quote_qty * rate).quantize(_FEE_PLACES, rounding=ROUND_HALF_EVEN)
        base = self.balances[rules.base_asset]
        quote = self.balances[rules.quote_asset]
        if order.side is Side.BUY:
            # release the reservation for this quantity, then pay cost + fee
            unit = order.price if order.type is OrderType.LIMIT else order.locked / order.remaining
            released = min(order.locked, unit * qty * (1 + self.fees.reserve_rate))
            if order.type is OrderType.LIMIT and order.remaining == qty:
                released = order.locked
            order.locked -= released
            quote.locked -= released
            quote.free += released - quote_qty - fee
            base.free += qty
        else:
            order.locked -= qty
            base.locked -= qty
            quote.free += quote_qty - fee
        order.executed_qty += qty
        order.cumulative_quote += quote_qty
        order.update_ms = now_ms
        order.status = (
            VenueOrderStatus.FILLED if order.remaining == 0 else VenueOrderStatus.PARTIALLY_FILLED
        )
        if order.status is VenueOrderStatus.FILLED and order.locked != 0:
            # whatever reservation is left over (a BUY that filled below its limit) goes back
            quote_or_base = quote if order.side is Side.BUY else base
            quote_or_base.locked -= order.locked
            quote_or_base.free += order.locked
            order.locked = ZERO
        trade = SimTrade(
            trade_id=self.next_trade_id(order.symbol),
            symbol=order.symbol,
            order_id=order.order_id,
            client_order_id=order.client_order_id,
            side=order.side,
            price=price,
            qty=qty,
            quote_qty=quote_qty,
            commission=fee,
            commission_asset=rules.quote_asset,
            time_ms=now_ms,
            is_maker=maker,
        )
        self.trades[order.symbol].append(trade)
        ch.touch(rules.base_asset, rules.quote_asset)
        ch.events.append(
            ExecutionEvent(
                execution_type=ExecutionType.TRADE, order=order.copy(), trade=trade, event_ms=now_ms
            )
        )

    def _close(
        self,
        order: SimOrder,
        status: VenueOrderStatus,
        execution_type: str,
        now_ms: int,
        ch: _Changes,
        *,
        cancel_client_order_id: str | None = None,
    ) -> None:
        rules = self.rules[order.symbol]
        bal = self.balances[rules.quote_asset if order.side is Side.BUY else rules.base_asset]
        bal.locked -= order.locked
        bal.free += order.locked
        order.locked = ZERO
        order.status = status
        order.update_ms = now_ms
        ch.events.append(
            ExecutionEvent(
                execution_type=execution_type,
                order=order.copy(),
                trade=None,
                event_ms=now_ms,
                cancel_client_order_id=cancel_client_order_id,
            )
        )

    def _finish(self, ch: _Changes, now_ms: int) -> list[UserEvent]:
        if ch.assets:
            self.update_ms = now_ms
            ch.events.append(
                AccountPositionEvent(
                    balances=tuple(
                        (a, self.balances[a].free, self.balances[a].locked) for a in ch.assets
                    ),
                    event_ms=now_ms,
                )
            )
        return ch.events

    # ---- persistence ---------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        return {
            "balances": {
                a: {"free": str(b.free), "locked": str(b.locked)} for a, b in self.balances.items()
            },
            "orders": [o.to_json() for o in self.orders.values()],
            "trades": {s: [t.to_json() for t in ts] for s, ts in self.trades.items()},
            "touch": {s: {k: str(v) for k, v in asdict(t).items()} for s, t in self.touch.items()},
            "next_trade_id": dict(self._next_trade_id),
            "next_order_id": self._next_order_id,
            "seq": self._seq,
            "update_ms": self.update_ms,
        }

    def restore(self, d: Mapping[str, Any]) -> None:
        self.balances = {
            a: Balance(free=Decimal(b["free"]), locked=Decimal(b["locked"]))
            for a, b in d["balances"].items()
        }
        self.orders = {int(o["order_id"]): SimOrder.from_json(o) for o in d["orders"]}
        self.trades = {s: [SimTrade.from_json(t) for t in ts] for s, ts in d["trades"].items()}
        self.touch = {
            s: Touch(**{k: Decimal(v) for k, v in t.items()}) for s, t in d["touch"].items()
        }
        self._next_trade_id = {s: int(v) for s, v in d["next_trade_id"].items()}
        self._next_order_id = int(d["next_order_id"])
        self._seq = int(d["seq"])
        self.update_ms = int(d["update_ms"])
