"""The matching core: one account's orders against the touch of each instrument.

Pure like a protocol object: no I/O, no awaits and no randomness. Every command takes the
shell's ``clock``, read once per order accepted, filled or closed (a quote that fills nothing
never reads it), and returns the :mod:`events <engine.venues.matching.events>` it
caused; refusals raise :class:`~engine.venues.matching.refusals.Refused`. The model:

- An incoming order takes liquidity at the touch (ask for a buy) while the touch crosses its
  limit, as taker, at the touch price, up to the size left at the touch since the last quote.
  The rest rests (GTC), expires (IOC, MARKET) or, for FOK, nothing fills unless all can.
- A new quote refreshes the sizes and fills resting orders it crosses, as maker at their own
  price, best price first then oldest first, until the size is used up. Our orders never trade
  with each other.
- Fees come from the :class:`~engine.venues.matching.fees.FeeModel`, in the asset the
  instrument's ``fee_asset`` says. A buy paying fees in quote holds back what its fee may cost.
- Trade ids are consecutive per instrument; a shell that prints public trades draws their ids
  from :meth:`MatchingCore.next_trade_id` too, so ids never collide.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from typing import Generic, TypeVar

from engine.domain.records import builder
from engine.domain.types import Liquidity, OrderType, Side, TimeInForce, VenueOrderStatus
from engine.venues.matching.balances import Balance, ReservePolicy
from engine.venues.matching.events import (
    Accepted,
    BalanceLine,
    BalancesMoved,
    Closed,
    Event,
    Filled,
)
from engine.venues.matching.fees import FeeModel
from engine.venues.matching.instrument import InstrumentSpec
from engine.venues.matching.orders import Expiry, Fill, NewOrder, Order
from engine.venues.matching.refusals import RefusalKind, Refused
from engine.venues.matching.touch import Touch

T = TypeVar("T")

_FILL = builder(Fill)

_ZERO = Decimal(0)
_ONE = Decimal(1)


class MatchingCore(Generic[T]):
    """One account trading several instruments. Attributes are the shell's to read, not write."""

    def __init__(
        self,
        instruments: Iterable[InstrumentSpec],
        balances: Mapping[str, Decimal],
        fees: FeeModel,
        *,
        reserve: ReservePolicy = ReservePolicy.EVERY_ORDER,
        listener: Callable[[Event[T]], None] | None = None,
        listening: Callable[[], bool] | None = None,
    ) -> None:
        """``listener`` hears each event the moment it happens, before the call returns: a shell
        that stamps its own messages from its clock reads it in the order events occur.

        ``listening``, when given, is asked at each command whether anybody wants its events:
        when not, none are built (the command returns no events). For a shell that reads
        events only through ``listener`` and knows when nobody listens (a paper venue in a
        replay, which reads the core's state instead): no order copies and balance lines built
        for nothing on every order."""
        self._listener = listener
        self._listening = listening
        self.instruments: dict[str, InstrumentSpec] = {i.symbol: i for i in instruments}
        self.fees = fees
        self.reserve = reserve
        self.balances: dict[str, Balance] = {}
        for i in self.instruments.values():
            self.balances.setdefault(i.base_asset, Balance())
            self.balances.setdefault(i.quote_asset, Balance())
        for asset, amount in balances.items():
            self.balances.setdefault(asset, Balance()).free = amount
        self.touch: dict[str, Touch] = {}
        #: every accepted order by id, in acceptance order
        self.orders: dict[int, Order[T]] = {}
        #: our fills per instrument, oldest first
        self.fills: dict[str, list[Fill[T]]] = {s: [] for s in self.instruments}
        #: every fill on every instrument, in the order they happened
        self.fill_log: list[Fill[T]] = []
        self.next_trade_ids: dict[str, int] = dict.fromkeys(self.instruments, 1)
        self.next_order_id = 1
        self.seq = 0
        self._open: dict[tuple[str, str], Order[T]] = {}
        self._latest: dict[tuple[str, str], Order[T]] = {}

    # ---- queries -------------------------------------------------------------------------

    def open_order(self, symbol: str, client_order_id: str) -> Order[T] | None:
        return self._open.get((symbol, client_order_id))

    def latest_order(self, symbol: str, client_order_id: str) -> Order[T] | None:
        """The open order with this client id, else the last one accepted with it."""
        return self._latest.get((symbol, client_order_id))

    def open_orders(self, symbol: str | None = None) -> list[Order[T]]:
        """Open orders in acceptance order."""
        return [
            o
            for o in sorted(self._open.values(), key=_by_seq)
            if symbol is None or o.symbol == symbol
        ]

    def next_trade_id(self, symbol: str) -> int:
        tid = self.next_trade_ids[symbol]
        self.next_trade_ids[symbol] = tid + 1
        return tid

    def reserve_needed(self, order: NewOrder) -> tuple[str, Decimal, Decimal]:
        """``(asset, per_unit, total)``: what ``order`` may spend at most."""
        spec = self.instruments[order.symbol]
        if order.side is Side.SELL:
            return spec.base_asset, _ONE, order.quantity
        price = order.price
        if price is None:
            touch = self.touch.get(order.symbol)
            if touch is None:
                raise ValueError(f"a market order on {order.symbol} needs a quote")
            price = touch.ask
        per_unit = (
            self.fees.buy_reserve_per_unit(price) if spec.fee_in_quote(buying=True) else price
        )
        return spec.quote_asset, per_unit, per_unit * order.quantity

    # ---- commands ------------------------------------------------------------------------

    def on_quote(
        self,
        symbol: str,
        *,
        bid: Decimal,
        bid_size: Decimal,
        ask: Decimal,
        ask_size: Decimal,
        clock: Callable[[], T],
    ) -> list[Event[T]]:
        """A new touch: resting orders it crosses fill, best price first, then oldest first."""
        spec = self.instruments[symbol]
        touch = Touch(
            bid=bid,
            bid_size=bid_size,
            ask=ask,
            ask_size=ask_size,
            bid_left=spec.floor_to_step(bid_size),
            ask_left=spec.floor_to_step(ask_size),
        )
        self.touch[symbol] = touch
        events = self._events()
        if not self._open:  # nothing rests (a replay's arrival quote): nothing to cross
            return events
        for side in (Side.BUY, Side.SELL):
            sign = -1 if side is Side.BUY else 1
            crossing = sorted(
                (
                    o
                    for o in self._open.values()
                    if o.symbol == symbol and o.side is side and touch.crosses(side, o.price)
                ),
                key=lambda o: (sign * (o.price or _ZERO), o.seq),
            )
            for o in crossing:
                qty = min(o.remaining, spec.available(touch.left_for(side)))
                if qty <= 0:
                    break
                assert o.price is not None
                touch.consume(side, qty)
                self._fill(o, qty, o.price, Liquidity.MAKER, clock, events)
        return events

    def place(self, order: NewOrder, *, clock: Callable[[], T]) -> tuple[Order[T], list[Event[T]]]:
        """Accept ``order`` and match it against the touch at once.

        The shell has checked the order against its protocol; the core refuses only a client id
        already open on the instrument and an order the free balance cannot pay for.
        """
        spec = self.instruments[order.symbol]
        if (order.symbol, order.client_order_id) in self._open:
            raise Refused(RefusalKind.DUPLICATE)
        asset, per_unit, needed = self.reserve_needed(order)
        free = self.balances[asset].free
        if needed > free:
            raise Refused(RefusalKind.INSUFFICIENT_BALANCE, asset=asset, needed=needed, free=free)
        touch = self.touch.get(order.symbol)
        available = _ZERO
        if touch is not None and touch.crosses(order.side, order.price):
            available = spec.available(touch.left_for(order.side))
        fok_short = (
            order.time_in_force is TimeInForce.FOK
            and min(order.quantity, available) < order.quantity
        )
        events = self._events()
        now = clock()
        self.seq += 1
        placed: Order[T] = Order(
            order_id=self.next_order_id,
            symbol=order.symbol,
            client_order_id=order.client_order_id,
            side=order.side,
            type=order.type,
            time_in_force=order.time_in_force,
            price=order.price,
            quantity=order.quantity,
            created=now,
            updated=now,
            seq=self.seq,
        )
        self.next_order_id += 1
        self.orders[placed.order_id] = placed
        self._open[(order.symbol, order.client_order_id)] = placed
        self._latest[(order.symbol, order.client_order_id)] = placed
        locks = self.reserve is ReservePolicy.EVERY_ORDER or (
            order.type is OrderType.LIMIT and not fok_short
        )
        if locks:
            placed.lock_per_unit, placed.locked = per_unit, needed
            bal = self.balances[asset]
            bal.free -= needed
            bal.locked += needed
        if events.wanted:
            events.append(Accepted(order=placed.snapshot()))
            if locks:
                events.append(self._moved(asset))
        if fok_short:
            self._close(placed, VenueOrderStatus.EXPIRED, clock, events, Expiry.FOK_UNFILLABLE)
            return placed, events
        qty = min(order.quantity, available)
        if qty > 0:
            assert touch is not None
            touch.consume(order.side, qty)
            self._fill(placed, qty, touch.price_for(order.side), Liquidity.TAKER, clock, events)
        if placed.is_open and order.type is OrderType.MARKET:
            self._close(placed, VenueOrderStatus.EXPIRED, clock, events, Expiry.MARKET_EXHAUSTED)
        elif placed.is_open and order.time_in_force is not TimeInForce.GTC:
            self._close(placed, VenueOrderStatus.EXPIRED, clock, events, Expiry.LIMIT_EXHAUSTED)
        return placed, events

    def cancel(self, order_id: int, *, clock: Callable[[], T]) -> list[Event[T]]:
        order = self.orders[order_id]
        if not order.is_open:
            raise ValueError(f"order {order_id} is already {order.status}")
        events = self._events()
        self._close(order, VenueOrderStatus.CANCELED, clock, events, None)
        return events

    def fill_resting(
        self, order_id: int, qty: Decimal, *, clock: Callable[[], T]
    ) -> list[Event[T]]:
        """A counterparty hits a resting order at its own price, outside the touch."""
        order = self.orders[order_id]
        qty = min(qty, order.remaining)
        if not order.is_open or qty <= 0 or order.price is None:
            return []
        events = self._events()
        self._fill(order, qty, order.price, Liquidity.MAKER, clock, events)
        return events

    def adjust(self, asset: str, delta: Decimal) -> list[Event[T]]:
        """A deposit (positive) or withdrawal (negative) of free balance."""
        bal = self.balances.setdefault(asset, Balance())
        if bal.free + delta < 0:
            raise Refused(
                RefusalKind.INSUFFICIENT_BALANCE, asset=asset, needed=-delta, free=bal.free
            )
        bal.free += delta
        return [self._moved(asset)]

    # ---- internals -----------------------------------------------------------------------

    def _fill(
        self,
        order: Order[T],
        qty: Decimal,
        price: Decimal,
        liquidity: Liquidity,
        clock: Callable[[], T],
        events: _Events[T],
    ) -> None:
        now = clock()
        spec = self.instruments[order.symbol]
        buying = order.side is Side.BUY
        notional = price * qty
        in_quote = spec.fee_in_quote(buying=buying)
        fee = self.fees.fee(quantity=qty, price=price, liquidity=liquidity, in_quote=in_quote)
        fee_asset = spec.quote_asset if in_quote else spec.base_asset
        base, quote = self.balances[spec.base_asset], self.balances[spec.quote_asset]
        order.filled += qty
        order.cumulative_quote += notional
        # This fill's share of the lock; a closing fill releases all that is left.
        share = order.locked if order.remaining == 0 else order.lock_per_unit * qty
        share = min(share, order.locked)
        order.locked -= share
        if buying:
            if share:
                quote.locked -= share
                quote.free += share - notional - fee if in_quote else share - notional
            else:
                quote.free -= notional
                if in_quote:
                    quote.free -= fee
            base.free += qty if in_quote else qty - fee
        else:
            # A sell spends its lock as is: one unit of base per unit sold.
            if share:
                base.locked -= share
                if share != qty:
                    base.free += share - qty
            else:
                base.free -= qty
            quote.free += notional - fee
        # Fill's fields in order, without the keyword constructor (a backtest: every order)
        fill: Fill[T] = _FILL(
            self.next_trade_id(order.symbol),  # trade_id
            order.symbol,
            order.order_id,
            order.client_order_id,
            order.side,
            price,
            qty,  # quantity
            notional,  # quote_quantity
            fee,
            fee_asset,
            liquidity,
            now,  # at
        )
        order.fills.append(fill)
        self.fills[order.symbol].append(fill)
        self.fill_log.append(fill)
        order.updated = now
        if order.remaining == 0:
            order.status = VenueOrderStatus.FILLED
            self._open.pop((order.symbol, order.client_order_id), None)
        else:
            order.status = VenueOrderStatus.PARTIALLY_FILLED
        if events.wanted:
            events.append(Filled(order=order.snapshot(), fill=fill))
            events.append(self._moved(spec.base_asset, spec.quote_asset))

    def _close(
        self,
        order: Order[T],
        status: VenueOrderStatus,
        clock: Callable[[], T],
        events: _Events[T],
        expiry: Expiry | None,
    ) -> None:
        spec = self.instruments[order.symbol]
        order.status = status
        order.expiry = expiry
        order.updated = clock()
        self._open.pop((order.symbol, order.client_order_id), None)
        released = order.locked
        if released:
            asset = spec.quote_asset if order.side is Side.BUY else spec.base_asset
            bal = self.balances[asset]
            bal.locked -= released
            bal.free += released
            order.locked = _ZERO
        if events.wanted:
            events.append(Closed(order=order.snapshot()))
            if released:
                events.append(self._moved(asset))

    def _events(self) -> _Events[T]:
        listening = self._listening
        return _Events(self._listener, wanted=listening is None or listening())

    def _moved(self, *assets: str) -> BalancesMoved:
        return BalancesMoved(
            lines=tuple(
                BalanceLine(asset=a, free=self.balances[a].free, locked=self.balances[a].locked)
                for a in sorted(set(assets))
            )
        )

    # ---- persistence ---------------------------------------------------------------------

    def restore(
        self,
        *,
        balances: Mapping[str, Balance],
        orders: Iterable[Order[T]],
        fills: Mapping[str, Iterable[Fill[T]]],
        touch: Mapping[str, Touch],
        next_trade_ids: Mapping[str, int],
        next_order_id: int,
        seq: int,
    ) -> None:
        """Replace the whole state (a snapshot taken by the shell from these attributes)."""
        self.balances = dict(balances)
        self.orders = {o.order_id: o for o in orders}
        self.fills = {s: list(fs) for s, fs in fills.items()}
        self.fill_log = [f for fs in self.fills.values() for f in fs]
        self.touch = dict(touch)
        self.next_trade_ids = dict(next_trade_ids)
        self.next_order_id = next_order_id
        self.seq = seq
        self._open, self._latest = {}, {}
        for o in self.orders.values():
            o.fills = []
            key = (o.symbol, o.client_order_id)
            self._latest[key] = o
            if o.is_open:
                self._open[key] = o
                if o.locked:
                    new = NewOrder(
                        symbol=o.symbol,
                        client_order_id=o.client_order_id,
                        side=o.side,
                        type=o.type,
                        quantity=o.quantity,
                        price=o.price,
                    )
                    o.lock_per_unit = self.reserve_needed(new)[1]
        for f in self.fill_log:
            self.orders[f.order_id].fills.append(f)


class _Events(list[Event[T]]):
    """One call's events, each also handed to the listener as it is appended; none are made
    unless ``wanted``."""

    def __init__(self, listener: Callable[[Event[T]], None] | None, *, wanted: bool) -> None:
        super().__init__()
        self._listener = listener
        self.wanted = wanted

    def append(self, event: Event[T]) -> None:
        super().append(event)
        if self._listener is not None:
            self._listener(event)


def _by_seq(o: Order[T]) -> int:
    return o.seq
