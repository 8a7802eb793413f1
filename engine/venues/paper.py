"""An in-process venue for paper trading, replay and tests: a real :class:`Venue`, not a mock.

Orders match against the current top of book of each symbol, set by hand (:meth:`set_quote`) or
stepped from seeded random walks (:meth:`PaperVenue.step`). The model, in Binance's vocabulary:

- An incoming order takes liquidity at the touch (ask for a buy, bid for a sell) while the touch
  crosses its limit, as *taker*, at the touch price, up to the size still available at the touch
  for the current quote. What is left rests (``GTC``), expires (``IOC``, ``MARKET``) or, for
  ``FOK``, nothing fills unless everything can.
- Each new quote refreshes the touch size and fills resting orders it crosses, as *maker*, at
  their own limit price, best price first and then oldest first, until the touch size is used up.
- Fees are a rate on the fill and are charged in the asset received (Binance's default without
  BNB): base asset for buys, quote asset for sells; symbols in ``fees_in_quote`` (prediction
  markets) always pay in the quote asset.
- Balances have ``free`` and ``locked`` parts: a resting limit order locks what it may spend.
- Client order ids are unique among *open* orders only, as on Binance: a duplicate of an open
  order is refused with ``-2010 "Duplicate order sent."``; once the order is closed the id may be
  used again, and a lookup returns the most recent order with that id.
- Trade ids are increasing integers per symbol, kept as text like every :data:`TradeId`.

Everything is deterministic for a seed and a sequence of calls: time comes from the injected
clock and the only randomness is in the random walks, which are seeded from the venue's seed.
Fault hooks (:meth:`fail_next_submit_after_accept` and friends) make the ambiguous paths of the
execution protocol testable without a network.
"""

from __future__ import annotations

import asyncio
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Generic, TypeVar

from engine.domain.market import MarketEvent, Quote
from engine.domain.types import (
    Asset,
    ClientOrderId,
    Liquidity,
    OrderType,
    Side,
    Symbol,
    TimeInForce,
    TradeId,
    VenueName,
    VenueOrderId,
    VenueOrderStatus,
    require_aware,
    utc_now,
)
from engine.exceptions import Ambiguous, Definitive, NotFound
from engine.marketdata.random_walk import RandomWalk, WalkParams
from engine.venues.base import (
    BalanceReport,
    FillReport,
    InstrumentRules,
    OrderReport,
    OrderRequest,
    StreamReconnected,
    UserEvent,
    Venue,
    quantize_money,
)

__all__ = [
    "DEFAULT_BALANCES",
    "DEFAULT_RULES",
    "DEFAULT_WALKS",
    "PaperOrders",
    "PaperStream",
    "PaperVenue",
    "default_paper_venue",
]

# Binance's codes, so that code reading ``exc.code`` behaves the same on paper and live.
CODE_UNKNOWN_SYMBOL = -1121
CODE_MANDATORY_PARAM = -1102
CODE_PARAM_NOT_REQUIRED = -1106
CODE_FILTER_FAILURE = -1013
CODE_NEW_ORDER_REJECTED = -2010
CODE_CANCEL_REJECTED = -2011
CODE_NO_SUCH_ORDER = -2013

PAPER = VenueName("paper")

MSG_DUPLICATE = "Duplicate order sent."
MSG_INSUFFICIENT = "Account has insufficient balance for requested action."

_OPEN_STATUSES = frozenset({VenueOrderStatus.NEW, VenueOrderStatus.PARTIALLY_FILLED})
_ZERO = Decimal(0)

T = TypeVar("T")


@dataclass(frozen=True, slots=True, kw_only=True)
class PaperOrders:
    """Ground truth for tests: every order the venue ever accepted, and every submit it saw."""

    #: every accepted order in acceptance order, each in its current state
    orders: tuple[OrderReport, ...]
    #: how many orders the venue accepted (placed) per client order id; 0 for an id never
    #: placed. More than 1 only after legitimate reuse of a closed id, or a duplicated order.
    attempts: Counter[ClientOrderId]
    #: submit calls that reached the venue per client order id, accepted or refused (a submit
    #: failed with ``fail_next_submit_before_accept`` never reached it)
    submits: Counter[ClientOrderId]

    def accepted(self, client_order_id: ClientOrderId) -> tuple[OrderReport, ...]:
        """The orders accepted with this client order id (more than one only after reuse)."""
        return tuple(o for o in self.orders if o.client_order_id == client_order_id)


@dataclass(slots=True, kw_only=True)
class _Wallet:
    free: Decimal = _ZERO
    locked: Decimal = _ZERO


@dataclass(slots=True, kw_only=True)
class _Book:
    quote: Quote | None = None
    #: size still available at the touch of the current quote (takers and makers consume it)
    bid_avail: Decimal = _ZERO
    ask_avail: Decimal = _ZERO


@dataclass(slots=True, kw_only=True)
class _Order:
    seq: int
    venue_order_id: VenueOrderId
    request: OrderRequest
    rules: InstrumentRules
    status: VenueOrderStatus
    created_at: datetime
    updated_at: datetime
    filled: Decimal = _ZERO
    cumulative_quote: Decimal = _ZERO
    #: what this order still holds locked, in ``lock_asset``; released as it fills or closes
    locked: Decimal = _ZERO
    lock_asset: Asset | None = None
    #: the amount locked per unit of quantity, so each fill releases its own share
    lock_per_unit: Decimal = _ZERO
    fills: list[FillReport] = field(default_factory=list)
    reason: str | None = None

    @property
    def is_open(self) -> bool:
        return self.status in _OPEN_STATUSES

    @property
    def remaining(self) -> Decimal:
        return self.request.quantity - self.filled

    @property
    def key(self) -> tuple[Symbol, ClientOrderId]:
        return (self.request.symbol, self.request.client_order_id)


class _EndOfStream:
    """Queued after the last event when the venue closes, so consumers drain and then stop."""


_END = _EndOfStream()


class PaperStream(Generic[T]):
    """One subscriber's stream: an async iterator that ends when the venue closes.

    Subscribing happens when the stream is *created* (not on first iteration), so no event
    published between ``user_stream()`` and the first ``anext`` is lost.
    """

    def __init__(self, on_close: Callable[[PaperStream[T]], None]) -> None:
        self._queue: asyncio.Queue[T | _EndOfStream] = asyncio.Queue()
        self._on_close = on_close
        self._done = False

    def _publish(self, item: T) -> None:
        if not self._done:
            self._queue.put_nowait(item)

    def drain(self) -> list[T]:
        """The events already published and not yet read, without waiting (the paper venue
        publishes inline, so after an awaited call its events are all here)."""
        out: list[T] = []
        while not self._queue.empty():
            item = self._queue.get_nowait()
            if isinstance(item, _EndOfStream):
                # Keep the end marker for the next reader so the stream still ends.
                self._queue.put_nowait(item)
                break
            out.append(item)
        return out

    def _end(self) -> None:
        self._queue.put_nowait(_END)

    def __aiter__(self) -> PaperStream[T]:
        return self

    async def __anext__(self) -> T:
        if self._done:
            raise StopAsyncIteration
        item = await self._queue.get()
        if self._done or isinstance(item, _EndOfStream):
            await self.aclose()
            raise StopAsyncIteration
        return item

    async def aclose(self) -> None:
        """Unsubscribe; further iteration ends at once, including a reader already waiting."""
        if not self._done:
            self._done = True
            self._on_close(self)
            self._wake_reader()

    def _wake_reader(self) -> None:
        self._queue.put_nowait(_END)


class _QuoteStream(PaperStream[MarketEvent]):
    """Market data is conflated per symbol: a slow reader gets the latest quote, not a backlog."""

    def __init__(
        self, symbols: frozenset[Symbol], on_close: Callable[[PaperStream[MarketEvent]], None]
    ) -> None:
        super().__init__(on_close)
        self.symbols = symbols
        self._pending: dict[Symbol, Quote] = {}
        self._wake = asyncio.Event()
        self._ended = False

    def _publish(self, item: MarketEvent) -> None:
        if self._done or item.symbol not in self.symbols or not isinstance(item, Quote):
            return
        # Re-inserting moves the symbol to the back: symbols are served in order of update.
        self._pending.pop(item.symbol, None)
        self._pending[item.symbol] = item
        self._wake.set()

    def _end(self) -> None:
        self._ended = True
        self._wake.set()

    def _wake_reader(self) -> None:
        self._wake.set()

    def drain(self) -> list[MarketEvent]:
        out: list[MarketEvent] = list(self._pending.values())
        self._pending.clear()
        return out

    async def __anext__(self) -> MarketEvent:
        while not self._done:
            if self._pending:
                symbol = next(iter(self._pending))
                return self._pending.pop(symbol)
            if self._ended:
                await self.aclose()
                break
            self._wake.clear()
            await self._wake.wait()
        raise StopAsyncIteration


class PaperVenue:
    """An in-process exchange account implementing :class:`engine.venues.base.Venue`.

    ``rules`` names the tradable symbols; ``balances`` are the starting free balances.
    ``latency`` (seconds) is awaited at the start of every call; even at 0 each call yields to
    the event loop once, as a network call would.
    """

    def __init__(
        self,
        *,
        name: VenueName = PAPER,
        rules: Mapping[Symbol, InstrumentRules],
        balances: Mapping[Asset, Decimal],
        seed: int = 0,
        clock: Callable[[], datetime] = utc_now,
        maker_fee: Decimal = Decimal("0.001"),
        taker_fee: Decimal = Decimal("0.001"),
        fees_in_quote: Iterable[Symbol] = (),
        latency: float = 0.0,
    ) -> None:
        for symbol, r in rules.items():
            if r.symbol != symbol:
                raise ValueError(f"rules for {symbol!r} describe {r.symbol!r}")
        for what, rate in (("maker_fee", maker_fee), ("taker_fee", taker_fee)):
            if not isinstance(rate, Decimal) or not rate.is_finite() or not 0 <= rate < 1:
                raise ValueError(f"{what} must be a Decimal rate in [0, 1), got {rate!r}")
        if latency < 0:
            raise ValueError(f"latency must be >= 0 seconds, got {latency}")
        self._name = name
        self._rules = dict(rules)
        self._seed = seed
        self._clock = clock
        self._maker_fee = maker_fee
        self._taker_fee = taker_fee
        self._fees_in_quote = frozenset(fees_in_quote)
        self._latency = latency

        self._wallets: dict[Asset, _Wallet] = {}
        for r in self._rules.values():
            self._wallets.setdefault(r.base_asset, _Wallet())
            self._wallets.setdefault(r.quote_asset, _Wallet())
        for asset, amount in balances.items():
            if not isinstance(amount, Decimal) or amount < 0:
                raise ValueError(f"starting balance of {asset} must be a Decimal >= 0")
            self._wallets.setdefault(asset, _Wallet()).free = amount

        self._books: dict[Symbol, _Book] = {s: _Book() for s in self._rules}
        self._walks: dict[Symbol, RandomWalk] = {}
        self._orders: list[_Order] = []
        self._open: dict[tuple[Symbol, ClientOrderId], _Order] = {}
        self._latest: dict[tuple[Symbol, ClientOrderId], _Order] = {}
        self._fills: dict[Symbol, list[FillReport]] = {s: [] for s in self._rules}
        self._all_fills: list[FillReport] = []
        self._submits: Counter[ClientOrderId] = Counter()
        self._next_order_id = 1
        self._next_trade_id: dict[Symbol, int] = dict.fromkeys(self._rules, 1)

        self._user_streams: list[PaperStream[UserEvent]] = []
        self._market_streams: list[PaperStream[MarketEvent]] = []
        self._dropping = False
        self._dropped = 0
        self._closed = False

        self._fail_before_accept = 0
        self._fail_after_accept = 0
        self._rejections: deque[tuple[str, int | None]] = deque()

    # ----------------------------------------------------------------- Venue protocol

    @property
    def name(self) -> VenueName:
        return self._name

    async def submit(self, order: OrderRequest) -> OrderReport:
        """Place ``order`` and match it at once against the current quote.

        Refusals (unknown symbol, bad parameters, filter failure, duplicate open client id,
        insufficient balance) raise :class:`Definitive` and change nothing.
        """
        await self._io()
        if self._fail_before_accept:
            self._fail_before_accept -= 1
            raise Ambiguous("timeout: submit request lost before reaching the venue (injected)")
        self._submits[order.client_order_id] += 1
        if self._rejections:
            reason, code = self._rejections.popleft()
            raise Definitive(reason, code=code)
        rules = self._rules_for(order.symbol)
        self._validate(order, rules)
        if order.time_in_force is TimeInForce.FOK and self._fillable(order) < order.quantity:
            # Binance accepts the order and reports it EXPIRED with nothing filled.
            placed = self._accept(order, rules, lock=False)
            self._close_order(placed, VenueOrderStatus.EXPIRED, "fill or kill: not fully fillable")
        else:
            placed = self._accept(order, rules, lock=True)
            self._take(placed)
            if placed.is_open and order.type is OrderType.MARKET:
                self._close_order(placed, VenueOrderStatus.EXPIRED, "no more liquidity at touch")
            elif placed.is_open and order.time_in_force is not TimeInForce.GTC:
                self._close_order(placed, VenueOrderStatus.EXPIRED, "no more liquidity at limit")
        report = self._report(placed, fills=tuple(placed.fills))
        if self._fail_after_accept:
            self._fail_after_accept -= 1
            raise Ambiguous("timeout: the venue accepted the order but the response was lost")
        return report

    async def find_order(self, symbol: Symbol, client_order_id: ClientOrderId) -> OrderReport:
        await self._io()
        self._rules_for(symbol)
        placed = self._latest.get((symbol, client_order_id))
        if placed is None:
            raise NotFound(
                f"Order does not exist: {symbol} client order id {client_order_id!r}",
                code=CODE_NO_SUCH_ORDER,
            )
        return self._report(placed, fills=tuple(placed.fills))

    async def cancel(self, symbol: Symbol, client_order_id: ClientOrderId) -> OrderReport:
        """Cancel an open order. An unknown *or already closed* order raises :class:`NotFound`
        (Binance answers ``-2011 "Unknown order sent."`` for both)."""
        await self._io()
        self._rules_for(symbol)
        placed = self._open.get((symbol, client_order_id))
        if placed is None:
            known = self._latest.get((symbol, client_order_id))
            detail = "no such order" if known is None else f"order is already {known.status}"
            raise NotFound(
                f"Unknown order sent: {symbol} {client_order_id!r} ({detail})",
                code=CODE_CANCEL_REJECTED,
            )
        self._close_order(placed, VenueOrderStatus.CANCELED, None)
        return self._report(placed)

    async def open_orders(self, symbol: Symbol | None = None) -> Sequence[OrderReport]:
        await self._io()
        if symbol is not None:
            self._rules_for(symbol)
        return [
            self._report(o)
            for o in self._open.values()
            if symbol is None or o.request.symbol == symbol
        ]

    async def trades_since(
        self, symbol: Symbol, after_trade_id: TradeId | None, *, limit: int = 1000
    ) -> Sequence[FillReport]:
        await self._io()
        self._rules_for(symbol)
        if limit <= 0:
            raise Definitive(f"limit must be positive, got {limit}", code=CODE_MANDATORY_PARAM)
        fills = self._fills[symbol]
        if after_trade_id is not None:
            try:
                after = int(after_trade_id)
            except ValueError:
                raise Definitive(
                    f"paper trade ids are integers, got {after_trade_id!r}",
                    code=CODE_MANDATORY_PARAM,
                ) from None
            # Trade ids are 1, 2, 3, … per symbol, so the list index is the id minus one.
            fills = fills[max(after, 0) :]
        return list(fills[:limit])

    async def balances(self) -> Sequence[BalanceReport]:
        await self._io()
        return list(self.balances_now().values())

    async def instrument_rules(self, symbol: Symbol) -> InstrumentRules:
        await self._io()
        return self._rules_for(symbol)

    def market_stream(self, symbols: Sequence[Symbol]) -> PaperStream[MarketEvent]:
        """Quotes of ``symbols`` as they are set or stepped, conflated per symbol for a slow
        reader (market data never queues without bound). Ends when the venue closes."""
        for s in symbols:
            self._rules_for(s)
        stream = _QuoteStream(frozenset(symbols), self._unsubscribe_market)
        if self._closed:
            stream._end()
        else:
            self._market_streams.append(stream)
        return stream

    def user_stream(self) -> PaperStream[UserEvent]:
        """Order, fill and balance events in the order they happen. Ends when the venue closes.

        Each subscriber has its own *unbounded* queue, on purpose: execution events must never
        be dropped or conflated (a lost fill is a wrong position), and in-process there is no
        socket buffer to push back on. A consumer that stops reading should ``aclose()`` it.
        ``StreamReconnected`` appears only after injected drops (:meth:`drop_stream_events`).
        """
        stream: PaperStream[UserEvent] = PaperStream(self._unsubscribe_user)
        if self._closed:
            stream._end()
        else:
            self._user_streams.append(stream)
        return stream

    async def close(self) -> None:
        """End every stream (after the events already queued); further calls are refused."""
        if self._closed:
            return
        self._closed = True
        for user in self._user_streams:
            user._end()
        for market in self._market_streams:
            market._end()
        self._user_streams.clear()
        self._market_streams.clear()

    # ----------------------------------------------------------------- market

    def set_quote(self, quote: Quote) -> None:
        """Make ``quote`` the top of book of its symbol; resting orders it crosses fill."""
        self._check_open()
        self._rules_for(quote.symbol)
        if quote.bid_size < 0 or quote.ask_size < 0:
            raise ValueError(f"quote sizes must be >= 0: {quote!r}")
        if quote.bid >= quote.ask:
            raise ValueError(f"quote must have bid < ask: {quote!r}")
        book = self._books[quote.symbol]
        book.quote = quote
        book.bid_avail = quote.bid_size
        book.ask_avail = quote.ask_size
        self._match_resting(quote.symbol)
        for stream in self._market_streams:
            stream._publish(quote)

    def quote(self, symbol: Symbol) -> Quote | None:
        """The current top of book of ``symbol`` (``None`` before the first quote)."""
        self._rules_for(symbol)
        return self._books[symbol].quote

    def attach(self, walk: RandomWalk) -> None:
        """Drive ``walk.symbol`` from ``walk`` on each :meth:`step`."""
        self._rules_for(walk.symbol)
        self._walks[walk.symbol] = walk

    def attach_random_walk(self, symbol: Symbol, params: WalkParams) -> RandomWalk:
        """Attach a random walk seeded from this venue's seed, so runs repeat for a seed."""
        walk = RandomWalk(symbol, params, seed=self._seed)
        self.attach(walk)
        return walk

    def step(self, now: datetime | None = None) -> list[Quote]:
        """Advance every attached random walk one step and apply the new quotes."""
        now = require_aware(now, "now") if now is not None else self._now()
        quotes = [walk.next_quote(now) for walk in self._walks.values()]
        for q in quotes:
            self.set_quote(q)
        return quotes

    # ----------------------------------------------------------------- fault hooks

    def fail_next_submit_after_accept(self, n: int = 1) -> None:
        """The next ``n`` *accepted* submits place the order, then raise ``Ambiguous``
        ("timeout"). Submits the venue refuses raise their ``Definitive`` as usual."""
        self._fail_after_accept += _positive(n)

    def fail_next_submit_before_accept(self, n: int = 1) -> None:
        """The next ``n`` submits raise ``Ambiguous`` and place nothing."""
        self._fail_before_accept += _positive(n)

    def reject_next_submit(self, reason: str, *, code: int | None = None) -> None:
        """The next submit raises ``Definitive(reason)`` and places nothing (queues up)."""
        self._rejections.append((reason, code))

    def drop_stream_events(self, drop: bool, *, announce_reconnect: bool = True) -> None:
        """While ``drop`` is on, user-stream events are lost (fills stay visible through
        ``trades_since`` and ``find_order``). Turning it off announces ``StreamReconnected`` to
        subscribers if anything was lost, as a real stream does after a reconnect, unless
        ``announce_reconnect`` is false (a silent loss)."""
        was_dropping, self._dropping = self._dropping, drop
        if was_dropping and not drop:
            lost, self._dropped = self._dropped, 0
            if lost and announce_reconnect:
                event = StreamReconnected(
                    venue=self._name,
                    received_at=self._now(),
                    reason=f"{lost} user stream events were dropped (injected)",
                )
                for stream in self._user_streams:
                    stream._publish(event)

    # ----------------------------------------------------------------- ground truth

    def all_orders(self) -> PaperOrders:
        return PaperOrders(
            orders=tuple(self._report(o) for o in self._orders),
            attempts=Counter(o.request.client_order_id for o in self._orders),
            submits=Counter(self._submits),
        )

    def all_fills(self) -> tuple[FillReport, ...]:
        """Every fill on every symbol, in the order they happened."""
        return tuple(self._all_fills)

    def balances_now(self) -> dict[Asset, BalanceReport]:
        now = self._now()
        return {
            asset: BalanceReport(
                venue=self._name,
                asset=asset,
                free=w.free,
                locked=w.locked,
                venue_ts=now,
                received_at=now,
            )
            for asset, w in sorted(self._wallets.items())
        }

    # ----------------------------------------------------------------- internals

    async def _io(self) -> None:
        self._check_open()
        await asyncio.sleep(self._latency)
        self._check_open()

    def _check_open(self) -> None:
        if self._closed:
            raise Definitive(f"paper venue {self._name!r} is closed")

    def _now(self) -> datetime:
        return require_aware(self._clock(), "paper venue clock")

    def _rules_for(self, symbol: Symbol) -> InstrumentRules:
        rules = self._rules.get(symbol)
        if rules is None:
            raise Definitive(
                f"Invalid symbol {symbol!r}: paper venue {self._name!r} trades "
                f"{', '.join(sorted(self._rules)) or 'nothing'}",
                code=CODE_UNKNOWN_SYMBOL,
            )
        return rules

    def _validate(self, order: OrderRequest, rules: InstrumentRules) -> None:
        if order.type is OrderType.LIMIT and order.limit_price is None:
            raise Definitive("a LIMIT order needs a limit price", code=CODE_MANDATORY_PARAM)
        if order.type is OrderType.MARKET and order.limit_price is not None:
            raise Definitive("a MARKET order takes no limit price", code=CODE_PARAM_NOT_REQUIRED)
        if order.quantity <= 0 or (order.limit_price is not None and order.limit_price <= 0):
            raise Definitive(
                f"Filter failure: quantity {order.quantity} and price {order.limit_price} "
                "must be positive",
                code=CODE_FILTER_FAILURE,
            )
        problems = rules.violations(order.quantity, order.limit_price)
        if order.type is OrderType.MARKET:
            touch = self._touch_price(order.symbol, order.side)
            if touch is None:
                raise Definitive(
                    f"no quote for {order.symbol}: a MARKET order needs a price to fill at",
                    code=CODE_NEW_ORDER_REJECTED,
                )
            notional = order.quantity * touch
            if notional < rules.min_notional:
                problems.append(f"notional {notional} below min_notional {rules.min_notional}")
        if problems:
            raise Definitive(f"Filter failure: {'; '.join(problems)}", code=CODE_FILTER_FAILURE)
        if (order.symbol, order.client_order_id) in self._open:
            raise Definitive(MSG_DUPLICATE, code=CODE_NEW_ORDER_REJECTED)
        asset, needed = self._spend(order, rules)
        free = self._wallets[asset].free
        if needed > free:
            raise Definitive(
                f"{MSG_INSUFFICIENT} Needs {needed} {asset}, free {free} {asset}",
                code=CODE_NEW_ORDER_REJECTED,
            )

    def _max_fee_rate(self) -> Decimal:
        return max(self._maker_fee, self._taker_fee)

    def _unit_spend(self, order: OrderRequest, rules: InstrumentRules) -> tuple[Asset, Decimal]:
        """What one unit of quantity may cost at most, and in which asset."""
        if order.side is Side.SELL:
            return rules.base_asset, Decimal(1)
        price = order.limit_price
        if price is None:
            price = self._touch_price(order.symbol, Side.BUY) or _ZERO
        if order.symbol in self._fees_in_quote:
            price = price * (1 + self._max_fee_rate())
        return rules.quote_asset, price

    def _spend(self, order: OrderRequest, rules: InstrumentRules) -> tuple[Asset, Decimal]:
        asset, per_unit = self._unit_spend(order, rules)
        return asset, per_unit * order.quantity

    def _touch_price(self, symbol: Symbol, side: Side) -> Decimal | None:
        """The price an order on ``side`` takes liquidity at: the ask for a buy."""
        q = self._books[symbol].quote
        if q is None:
            return None
        return q.ask if side is Side.BUY else q.bid

    def _touch_available(self, order: _Order | OrderRequest) -> Decimal:
        req = order.request if isinstance(order, _Order) else order
        book = self._books[req.symbol]
        touch = self._touch_price(req.symbol, req.side)
        if touch is None:
            return _ZERO
        if req.limit_price is not None and (
            touch > req.limit_price if req.side is Side.BUY else touch < req.limit_price
        ):
            return _ZERO
        avail = book.ask_avail if req.side is Side.BUY else book.bid_avail
        return self._rules[req.symbol].round_quantity(avail)

    def _fillable(self, order: OrderRequest) -> Decimal:
        return min(order.quantity, self._touch_available(order))

    def _accept(self, order: OrderRequest, rules: InstrumentRules, *, lock: bool) -> _Order:
        now = self._now()
        placed = _Order(
            seq=len(self._orders),
            venue_order_id=VenueOrderId(str(self._next_order_id)),
            request=order,
            rules=rules,
            status=VenueOrderStatus.NEW,
            created_at=now,
            updated_at=now,
        )
        self._next_order_id += 1
        self._orders.append(placed)
        self._open[placed.key] = placed
        self._latest[placed.key] = placed
        changed: set[Asset] = set()
        if lock and order.type is OrderType.LIMIT:
            asset, per_unit = self._unit_spend(order, rules)
            placed.lock_asset, placed.lock_per_unit = asset, per_unit
            placed.locked = per_unit * order.quantity
            wallet = self._wallets[asset]
            wallet.free -= placed.locked
            wallet.locked += placed.locked
            changed.add(asset)
        self._emit(self._report(placed))
        self._emit_balances(changed)
        return placed

    def _take(self, placed: _Order) -> None:
        """Match an incoming order against the touch, as taker."""
        qty = min(placed.remaining, self._touch_available(placed))
        if qty <= 0:
            return
        price = self._touch_price(placed.request.symbol, placed.request.side)
        assert price is not None
        self._consume(placed.request.symbol, placed.request.side, qty)
        self._fill(placed, qty, price, Liquidity.TAKER)

    def _match_resting(self, symbol: Symbol) -> None:
        """Fill resting orders the new quote crosses, as maker at their own limit price."""
        for side in (Side.BUY, Side.SELL):
            crossing = [
                o
                for o in self._open.values()
                if o.request.symbol == symbol
                and o.request.side is side
                and self._touch_available(o) > 0
            ]
            # Best price first (highest bid / lowest offer), then time priority.
            sign = -1 if side is Side.BUY else 1
            crossing.sort(key=lambda o: (sign * (o.request.limit_price or _ZERO), o.seq))
            for o in crossing:
                qty = min(o.remaining, self._touch_available(o))
                if qty <= 0:
                    break
                assert o.request.limit_price is not None
                self._consume(symbol, side, qty)
                self._fill(o, qty, o.request.limit_price, Liquidity.MAKER)

    def _consume(self, symbol: Symbol, side: Side, qty: Decimal) -> None:
        book = self._books[symbol]
        if side is Side.BUY:
            book.ask_avail -= qty
        else:
            book.bid_avail -= qty

    def _fill(self, placed: _Order, qty: Decimal, price: Decimal, liquidity: Liquidity) -> None:
        req, rules = placed.request, placed.rules
        now = self._now()
        rate = self._maker_fee if liquidity is Liquidity.MAKER else self._taker_fee
        notional = qty * price
        fee_in_quote = req.side is Side.SELL or req.symbol in self._fees_in_quote
        fee_asset = rules.quote_asset if fee_in_quote else rules.base_asset
        fee = quantize_money((notional if fee_in_quote else qty) * rate)

        base, quote = self._wallets[rules.base_asset], self._wallets[rules.quote_asset]
        placed.filled += qty
        placed.cumulative_quote += notional
        # Release this fill's share of the lock first; a closing fill releases all that is left.
        if placed.lock_asset is not None:
            share = placed.locked if placed.remaining == 0 else placed.lock_per_unit * qty
            share = min(share, placed.locked)
            placed.locked -= share
            wallet = self._wallets[placed.lock_asset]
            wallet.locked -= share
            wallet.free += share
        if req.side is Side.BUY:
            quote.free -= notional
            base.free += qty
        else:
            base.free -= qty
            quote.free += notional
        self._wallets[fee_asset].free -= fee

        trade_id = self._next_trade_id[req.symbol]
        self._next_trade_id[req.symbol] = trade_id + 1
        report = FillReport(
            venue=self._name,
            symbol=req.symbol,
            trade_id=TradeId(str(trade_id)),
            client_order_id=req.client_order_id,
            venue_order_id=placed.venue_order_id,
            side=req.side,
            quantity=qty,
            price=price,
            fee=fee,
            fee_asset=fee_asset,
            liquidity=liquidity,
            venue_ts=now,
            received_at=now,
        )
        placed.fills.append(report)
        self._fills[req.symbol].append(report)
        self._all_fills.append(report)
        placed.updated_at = now
        if placed.remaining == 0:
            placed.status = VenueOrderStatus.FILLED
            del self._open[placed.key]
        else:
            placed.status = VenueOrderStatus.PARTIALLY_FILLED
        self._emit(report)
        self._emit(self._report(placed))
        self._emit_balances({rules.base_asset, rules.quote_asset})

    def _close_order(self, placed: _Order, status: VenueOrderStatus, reason: str | None) -> None:
        placed.status = status
        placed.reason = reason
        placed.updated_at = self._now()
        self._open.pop(placed.key, None)
        changed: set[Asset] = set()
        if placed.lock_asset is not None and placed.locked:
            wallet = self._wallets[placed.lock_asset]
            wallet.locked -= placed.locked
            wallet.free += placed.locked
            placed.locked = _ZERO
            changed.add(placed.lock_asset)
        self._emit(self._report(placed))
        self._emit_balances(changed)

    def _report(self, placed: _Order, *, fills: tuple[FillReport, ...] = ()) -> OrderReport:
        req = placed.request
        return OrderReport(
            venue=self._name,
            symbol=req.symbol,
            client_order_id=req.client_order_id,
            venue_order_id=placed.venue_order_id,
            side=req.side,
            type=req.type,
            status=placed.status,
            quantity=req.quantity,
            limit_price=req.limit_price,
            filled_quantity=placed.filled,
            cumulative_quote=placed.cumulative_quote,
            venue_ts=placed.updated_at,
            received_at=self._now(),
            fills=fills,
            reason=placed.reason,
        )

    def _emit(self, event: UserEvent) -> None:
        if self._dropping:
            self._dropped += 1
            return
        for stream in self._user_streams:
            stream._publish(event)

    def _emit_balances(self, assets: Iterable[Asset]) -> None:
        if not assets:
            return
        snapshot = self.balances_now()
        for asset in sorted(assets):
            self._emit(snapshot[asset])

    def _unsubscribe_user(self, stream: PaperStream[UserEvent]) -> None:
        if stream in self._user_streams:
            self._user_streams.remove(stream)

    def _unsubscribe_market(self, stream: PaperStream[MarketEvent]) -> None:
        if stream in self._market_streams:
            self._market_streams.remove(stream)


def _positive(n: int) -> int:
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    return n


# ----------------------------------------------------------------------------- a ready venue

BTCUSDT = Symbol("BTCUSDT")
PRES_YES = Symbol("PRES-YES")

#: Sensible rules for the symbols :func:`default_paper_venue` knows.
DEFAULT_RULES: Mapping[Symbol, InstrumentRules] = {
    BTCUSDT: InstrumentRules(
        symbol=BTCUSDT,
        base_asset=Asset("BTC"),
        quote_asset=Asset("USDT"),
        tick_size=Decimal("0.01"),
        step_size=Decimal("0.00001"),
        min_qty=Decimal("0.00001"),
        max_qty=Decimal("9000"),
        min_notional=Decimal("5"),
    ),
    # A binary prediction-market contract: priced in (0, 1) dollars, traded in whole contracts.
    PRES_YES: InstrumentRules(
        symbol=PRES_YES,
        base_asset=Asset("PRES-YES"),
        quote_asset=Asset("USD"),
        tick_size=Decimal("0.01"),
        step_size=Decimal("1"),
        min_qty=Decimal("1"),
        max_qty=Decimal("100000"),
        min_price=Decimal("0.01"),
        max_price=Decimal("0.99"),
    ),
}

DEFAULT_WALKS: Mapping[Symbol, WalkParams] = {
    BTCUSDT: WalkParams(start=Decimal("30000.00"), tick=Decimal("0.01"), size=Decimal("0.5")),
    PRES_YES: WalkParams(
        start=Decimal("0.50"),
        tick=Decimal("0.01"),
        step_bps=Decimal(200),
        size=Decimal(500),
        floor=Decimal(0),
        cap=Decimal(1),
    ),
}

DEFAULT_BALANCES: Mapping[Asset, Decimal] = {
    Asset("USDT"): Decimal(100_000),
    Asset("BTC"): Decimal(1),
    Asset("USD"): Decimal(10_000),
    Asset("PRES-YES"): Decimal(0),
}


def default_paper_venue(
    symbols: Sequence[Symbol] = (BTCUSDT, PRES_YES),
    *,
    seed: int = 0,
    clock: Callable[[], datetime] = utc_now,
    balances: Mapping[Asset, Decimal] | None = None,
    maker_fee: Decimal = Decimal("0.001"),
    taker_fee: Decimal = Decimal("0.001"),
) -> PaperVenue:
    """A funded paper venue with :data:`DEFAULT_RULES` and a seeded random walk per symbol.

    No quote exists until the first :meth:`PaperVenue.step` (or :meth:`PaperVenue.set_quote`).
    """
    unknown = [s for s in symbols if s not in DEFAULT_RULES]
    if unknown:
        raise ValueError(
            f"no default rules for {unknown}; known: {sorted(DEFAULT_RULES)}. "
            "Construct PaperVenue(rules=...) directly for other symbols."
        )
    rules = {s: DEFAULT_RULES[s] for s in symbols}
    assets = {a for r in rules.values() for a in (r.base_asset, r.quote_asset)}
    venue = PaperVenue(
        rules=rules,
        balances=dict(balances)
        if balances is not None
        else {a: v for a, v in DEFAULT_BALANCES.items() if a in assets},
        seed=seed,
        clock=clock,
        maker_fee=maker_fee,
        taker_fee=taker_fee,
        fees_in_quote=[s for s in symbols if s == PRES_YES],
    )
    for s in symbols:
        venue.attach_random_walk(s, DEFAULT_WALKS[s])
    return venue


def _conforms(venue: PaperVenue) -> Venue:
    # Never called: mypy fails here if PaperVenue drifts from the Venue protocol.
    return venue
