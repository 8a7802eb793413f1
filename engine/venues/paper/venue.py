"""An in-process venue for paper trading, replay and tests: a real :class:`Venue`, not a mock.

The matching is :mod:`engine.venues.matching`'s core; this shell adds what makes it a venue in
the process: Binance's error codes as :class:`Definitive`/:class:`NotFound`, reports with the
venue's name, in-process streams, quotes set by hand (:meth:`PaperVenue.set_quote`) or stepped
from seeded random walks (:meth:`PaperVenue.step`), and fault hooks that make the ambiguous
paths of the execution protocol testable without a network. Where it differs from the
simulator's Binance account, in the core's terms:

- Fees are charged in the asset received (Binance without BNB): base asset for buys, quote
  asset for sells; symbols in ``fees_in_quote`` (prediction markets) always pay in quote.
- Only a resting-capable LIMIT order locks what it may spend (:attr:`ReservePolicy.LIMIT_ORDERS`);
  a LIMIT order may be placed before the first quote (it rests until one crosses it).
- Quantities derived from quote sizes are reported normalized (``round_quantity``).
- Client order ids are unique among *open* orders only, as on Binance: a duplicate of an open
  order is refused with ``-2010 "Duplicate order sent."``; once the order is closed the id may be
  used again, and a lookup returns the most recent order with that id.
- Trade ids are increasing integers per symbol, kept as text like every :data:`TradeId`.

Everything is deterministic for a seed and a sequence of calls: time comes from the injected
clock and the only randomness is in the random walks, which are seeded from the venue's seed.
"""

from __future__ import annotations

import asyncio
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping, Sequence, Sized
from datetime import datetime
from decimal import Decimal
from operator import attrgetter

from engine.domain.market import MarketEvent, Quote
from engine.domain.records import builder
from engine.domain.types import (
    Asset,
    ClientOrderId,
    Symbol,
    TradeId,
    VenueName,
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
)
from engine.venues.matching import (
    Accepted,
    Balance,
    BalancesMoved,
    Closed,
    Event,
    FeeAsset,
    Fill,
    Filled,
    InstrumentSpec,
    MatchingCore,
    NewOrder,
    Order,
    RateFees,
    RefusalKind,
    Refused,
    ReservePolicy,
)
from engine.venues.metrics import MARKET, UNASSIGNED, USER, VenueMetrics
from engine.venues.paper.answers import (
    CODE_CANCEL_REJECTED,
    CODE_MANDATORY_PARAM,
    CODE_NEW_ORDER_REJECTED,
    CODE_NO_SUCH_ORDER,
    CODE_UNKNOWN_SYMBOL,
    MSG_DUPLICATE,
    MSG_INSUFFICIENT,
    fill_report,
    order_report,
    validate,
)
from engine.venues.paper.ground_truth import PaperOrders
from engine.venues.paper.streams import PaperStream, QuoteStream, public_trade

__all__ = ["PaperOrders", "PaperVenue"]

PAPER = VenueName("paper")
_NEW_ORDER = builder(NewOrder)
_QUANTITY, _FILLED = attrgetter("quantity"), attrgetter("filled")


def _instrument(rules: InstrumentRules, fees_in_quote: bool) -> InstrumentSpec:
    return InstrumentSpec(
        symbol=rules.symbol,
        base_asset=rules.base_asset,
        quote_asset=rules.quote_asset,
        tick_size=rules.tick_size,
        step_size=rules.step_size,
        min_qty=rules.min_qty,
        max_qty=rules.max_qty,
        min_price=rules.min_price,
        max_price=rules.max_price,
        min_notional=rules.min_notional,
        max_notional=rules.max_notional,
        fee_asset=FeeAsset.QUOTE if fees_in_quote else FeeAsset.RECEIVED,
        canonical_quantities=True,
    )


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
        metrics: VenueMetrics | None = None,
    ) -> None:
        for symbol, r in rules.items():
            if r.symbol != symbol:
                raise ValueError(f"rules for {symbol!r} describe {r.symbol!r}")
        for what, rate in (("maker_fee", maker_fee), ("taker_fee", taker_fee)):
            if not isinstance(rate, Decimal) or not rate.is_finite() or not 0 <= rate < 1:
                raise ValueError(f"{what} must be a Decimal rate in [0, 1), got {rate!r}")
        if latency < 0:
            raise ValueError(f"latency must be >= 0 seconds, got {latency}")
        for asset, amount in balances.items():
            if not isinstance(amount, Decimal) or amount < 0:
                raise ValueError(f"starting balance of {asset} must be a Decimal >= 0")
        self._name = name
        self.metrics = metrics or VenueMetrics(account=UNASSIGNED, venue=name)
        self._rules = dict(rules)
        self._seed = seed
        self._clock = clock
        self._latency = latency
        in_quote = frozenset(fees_in_quote)
        starting: dict[str, Decimal] = dict(balances.items())
        self._core: MatchingCore[datetime] = MatchingCore(
            (_instrument(r, s in in_quote) for s, r in self._rules.items()),
            starting,
            RateFees(maker=maker_fee, taker=taker_fee),
            reserve=ReservePolicy.LIMIT_ORDERS,
            listener=self._publish,
            listening=self._listened,
        )
        self._quotes: dict[Symbol, Quote] = {}
        self._walks: dict[Symbol, RandomWalk] = {}
        self._submits: Counter[ClientOrderId] = Counter()
        self._fill_reports: list[FillReport] = []

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
        report = self._report(self._accept(order), with_fills=True)
        if self._fail_after_accept:
            self._fail_after_accept -= 1
            raise Ambiguous("timeout: the venue accepted the order but the response was lost")
        return report

    def submit_now(self, order: OrderRequest) -> None:
        """:meth:`submit` for a caller in this process that reads the outcome from the venue
        itself (an in-memory replay, which folds the fills in from :meth:`fills_from`): placed
        and matched without a turn of the event loop and without the report nobody reads.
        Refuses and fails (fault hooks) exactly as :meth:`submit` does."""
        self._check_open()
        self._accept(order)
        if self._fail_after_accept:
            self._fail_after_accept -= 1
            raise Ambiguous("timeout: the venue accepted the order but the response was lost")

    def _accept(self, order: OrderRequest) -> Order[datetime]:
        """The order placed and matched, or refused: :meth:`submit` after the network."""
        if self._fail_before_accept:
            self._fail_before_accept -= 1
            raise Ambiguous("timeout: submit request lost before reaching the venue (injected)")
        # get, not Counter's __missing__: a Python call per new id (a replay: every order)
        self._submits[order.client_order_id] = self._submits.get(order.client_order_id, 0) + 1
        if self._rejections:
            reason, code = self._rejections.popleft()
            raise Definitive(reason, code=code)
        self._validate(order, self._rules_for(order.symbol))
        request = _NEW_ORDER(  # NewOrder's fields in order: no keyword parsing on every order
            order.symbol,
            order.client_order_id,
            order.side,
            order.type,
            order.quantity,
            order.limit_price,  # price
            order.time_in_force,
        )
        try:
            placed, _ = self._core.place(request, clock=self._now)
        except Refused as exc:
            if exc.kind is RefusalKind.DUPLICATE:
                raise Definitive(MSG_DUPLICATE, code=CODE_NEW_ORDER_REJECTED) from None
            raise Definitive(
                f"{MSG_INSUFFICIENT} Needs {exc.needed} {exc.asset}, free {exc.free} {exc.asset}",
                code=CODE_NEW_ORDER_REJECTED,
            ) from None
        return placed

    async def find_order(self, symbol: Symbol, client_order_id: ClientOrderId) -> OrderReport:
        await self._io()
        self._rules_for(symbol)
        placed = self._core.latest_order(symbol, client_order_id)
        if placed is None:
            raise NotFound(
                f"Order does not exist: {symbol} client order id {client_order_id!r}",
                code=CODE_NO_SUCH_ORDER,
            )
        return self._report(placed, with_fills=True)

    async def cancel(self, symbol: Symbol, client_order_id: ClientOrderId) -> OrderReport:
        """Cancel an open order. An unknown *or already closed* order raises :class:`NotFound`
        (Binance answers ``-2011 "Unknown order sent."`` for both)."""
        await self._io()
        self._rules_for(symbol)
        placed = self._core.open_order(symbol, client_order_id)
        if placed is None:
            known = self._core.latest_order(symbol, client_order_id)
            detail = "no such order" if known is None else f"order is already {known.status}"
            raise NotFound(
                f"Unknown order sent: {symbol} {client_order_id!r} ({detail})",
                code=CODE_CANCEL_REJECTED,
            )
        self._core.cancel(placed.order_id, clock=self._now)
        return self._report(placed)

    async def open_orders(self, symbol: Symbol | None = None) -> Sequence[OrderReport]:
        await self._io()
        if symbol is not None:
            self._rules_for(symbol)
        return [self._report(o) for o in self._core.open_orders(symbol)]

    async def orders_since(self, symbol: Symbol, since: datetime) -> Sequence[OrderReport]:
        await self._io()
        self._rules_for(symbol)
        return [
            self._report(o)
            for o in sorted(self._core.orders.values(), key=lambda o: o.seq)
            if o.symbol == symbol and o.created >= since
        ]

    async def trades_since(
        self, symbol: Symbol, after_trade_id: TradeId | None, *, limit: int = 1000
    ) -> Sequence[FillReport]:
        await self._io()
        self._rules_for(symbol)
        if limit <= 0:
            raise Definitive(f"limit must be positive, got {limit}", code=CODE_MANDATORY_PARAM)
        fills = self._core.fills[symbol]
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
        return [self._fill_report(f) for f in fills[:limit]]

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
        stream = QuoteStream(frozenset(symbols), self._unsubscribe_market)
        if self._closed:
            stream._end()
        else:
            self._market_streams.append(stream)
            self.metrics.stream_up(MARKET)
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
            self.metrics.stream_up(USER)
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
        self.metrics.stream_down(USER)
        self.metrics.stream_down(MARKET)

    # ----------------------------------------------------------------- market

    def set_quote(self, quote: Quote) -> None:
        """Make ``quote`` the top of book of its symbol; resting orders it crosses fill."""
        self._check_open()
        self._rules_for(quote.symbol)
        if quote.bid_size < 0 or quote.ask_size < 0:
            raise ValueError(f"quote sizes must be >= 0: {quote!r}")
        if quote.bid > quote.ask:  # locked (bid = ask) is a bar replay's zero-spread price
            raise ValueError(f"quote must have bid <= ask: {quote!r}")
        self._quotes[quote.symbol] = quote
        self._core.on_quote(
            quote.symbol,
            bid=quote.bid,
            bid_size=quote.bid_size,
            ask=quote.ask,
            ask_size=quote.ask_size,
            clock=self._now,
        )
        self._publish_market(quote)

    def _publish_market(self, event: MarketEvent) -> None:
        for stream in self._market_streams:
            stream._publish(event)

    def quote(self, symbol: Symbol) -> Quote | None:
        """The current top of book of ``symbol`` (``None`` before the first quote)."""
        self._rules_for(symbol)
        return self._quotes.get(symbol)

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
        for walk, q in zip(self._walks.values(), quotes, strict=True):
            self.set_quote(q)
            self._publish_market(walk.trade_at(q))  # the market trades too: volume is known
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
        orders = list(self._core.orders.values())
        return PaperOrders(
            orders=tuple(self._report(o) for o in orders),
            attempts=Counter(ClientOrderId(o.client_order_id) for o in orders),
            submits=Counter(self._submits),
        )

    def placed_quantities(self, symbol: Symbol) -> tuple[list[Decimal], list[Decimal]]:
        """The quantity, and the filled quantity, of every order placed on ``symbol``, in the
        order they were placed: what :meth:`all_orders` reports of them, without a report per
        order (a replay sums them up for its report)."""
        placed = [o for o in self._core.orders.values() if o.symbol == symbol]
        return list(map(_QUANTITY, placed)), list(map(_FILLED, placed))

    def all_fills(self) -> tuple[FillReport, ...]:
        """Every fill on every symbol, in the order they happened."""
        return tuple(self._logged_fills(0))

    @property
    def resting(self) -> int:
        """How many orders rest on the book: none, and a quote can fill nothing."""
        return len(self._core._open)

    def book(self) -> tuple[Sized, Sized]:
        """The open orders and the fill log as they change (read-only, sized): what
        :attr:`resting` and :attr:`fill_count` count, for a replay that asks on every bar (the
        paper venue never replaces them)."""
        return self._core._open, self._core.fill_log

    @property
    def fill_count(self) -> int:
        """How many fills there have been, on every symbol."""
        return len(self._core.fill_log)

    def fills_from(self, start: int) -> tuple[FillReport, ...]:
        """The fills after the first ``start``: a replay folds them in as they come, without
        copying the whole log each bar."""
        return tuple(self._logged_fills(start)) if start < len(self._core.fill_log) else ()

    def _logged_fills(self, start: int) -> list[FillReport]:
        """The reports of the fill log from ``start``, each built once (a fill never changes:
        a replay folds every fill in as it comes and reports them all at the end)."""
        log, reports = self._core.fill_log, self._fill_reports
        if len(reports) < len(log):
            reports.extend(self._fill_report(f) for f in log[len(reports) :])
        return reports[start:]

    def balances_now(self) -> dict[Asset, BalanceReport]:
        now = self._now()
        return {
            Asset(asset): BalanceReport(
                venue=self._name,
                asset=Asset(asset),
                free=b.free,
                locked=b.locked,
                venue_ts=now,
                received_at=now,
            )
            for asset, b in sorted(self._core.balances.items())
        }

    @property
    def _wallets(self) -> dict[str, Balance]:
        # Tests inject a balance drift the venue never announced by writing here directly.
        return self._core.balances

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
        validate(order, rules, self._core.touch.get(order.symbol))

    def _listened(self) -> bool:
        """Whether anybody hears the core's events (a stream, or the count of dropped ones)."""
        return bool(self._user_streams or self._market_streams or self._dropping)

    def _publish(self, ev: Event[datetime]) -> None:
        """Each core event as the paper venue's reports, the moment it happens (the core makes
        none while nobody listens: a replay reads the core)."""
        if isinstance(ev, Accepted | Closed):
            self._emit(self._report(ev.order))
        elif isinstance(ev, Filled):
            self._emit(self._fill_report(ev.fill))
            self._emit(self._report(ev.order))
            self._publish_market(public_trade(ev.fill))
        elif isinstance(ev, BalancesMoved):
            now = self._now()
            for line in ev.lines:
                self._emit(
                    BalanceReport(
                        venue=self._name,
                        asset=Asset(line.asset),
                        free=line.free,
                        locked=line.locked,
                        venue_ts=now,
                        received_at=now,
                    )
                )

    def _fill_report(self, fill: Fill[datetime]) -> FillReport:
        return fill_report(self._name, fill)

    def _report(self, placed: Order[datetime], *, with_fills: bool = False) -> OrderReport:
        return order_report(self._name, placed, self._now(), with_fills=with_fills)

    def _emit(self, event: UserEvent) -> None:
        if self._dropping:
            self._dropped += 1
            return
        for stream in self._user_streams:
            stream._publish(event)

    def _unsubscribe_user(self, stream: PaperStream[UserEvent]) -> None:
        if stream in self._user_streams:
            self._user_streams.remove(stream)
        if not self._user_streams:
            self.metrics.stream_down(USER)

    def _unsubscribe_market(self, stream: PaperStream[MarketEvent]) -> None:
        if stream in self._market_streams:
            self._market_streams.remove(stream)
        if not self._market_streams:
            self.metrics.stream_down(MARKET)


def _positive(n: int) -> int:
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    return n


def _conforms(venue: PaperVenue) -> Venue:
    # Never called: mypy fails here if PaperVenue drifts from the Venue protocol.
    return venue
