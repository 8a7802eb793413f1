"""``KalshiVenue``: the :class:`engine.venues.base.Venue` port for Kalshi event markets.

Kalshi has **no lookup by client order id**: :meth:`KalshiVenue.find_order` reads the order by
its venue id when this process learned it (an answer or the ``user_orders`` stream), else scans
``GET /portfolio/orders`` for the market from the submit time (minus clock skew), all pages,
matching the client order id. Reads lag writes, so an order the scan does not show is only
``NotFound`` once ``GET /exchange/user_data_timestamp`` says the reads cover the moment it was
sent (or, for an order of an earlier process, the moment this one started); before that it is
``Ambiguous`` ("not visible yet"), which the engine answers by looking again, never by resending.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal

import httpx
import structlog

from engine.domain.market import MarketEvent
from engine.domain.types import (
    ClientOrderId,
    OrderType,
    Side,
    Symbol,
    TimeInForce,
    TradeId,
    VenueName,
    VenueOrderId,
    VenueOrderStatus,
    utc_now,
)
from engine.exceptions import Ambiguous, Definitive, MalformedMessage, NotFound
from engine.venues.base import (
    BalanceReport,
    FillReport,
    InstrumentRules,
    MarketLifecycle,
    OrderReport,
    OrderRequest,
    SettlementReport,
    StreamReconnected,
    UserEvent,
)
from engine.venues.binance.parsing import record_malformed, skip_reason
from engine.venues.binance.rest import format_decimal
from engine.venues.kalshi import parsing, schemas, settlements
from engine.venues.kalshi.balances import balance_snapshot
from engine.venues.kalshi.config import KalshiConfig
from engine.venues.kalshi.marketdata import CHANNELS, PARAMS, KalshiMarketData
from engine.venues.kalshi.ratelimit import KalshiBudget
from engine.venues.kalshi.rest import KalshiRestClient
from engine.venues.kalshi.signing import KalshiSigner, load_private_key
from engine.venues.kalshi.stream import KalshiStream, decode_user
from engine.venues.metrics import (
    MARKET,
    MARKET_STREAM,
    REST,
    UNASSIGNED,
    USER,
    USER_STREAM,
    VenueMetrics,
)
from engine.venues.validation import ms_timestamp, non_negative

log = structlog.get_logger(__name__)

#: orders remembered by client id (venue id, time in force, last report); oldest forgotten first
MEMORY = 100_000


@dataclass(slots=True)
class _Known:
    """What this process knows of one of its client order ids."""

    sent_at: datetime
    #: ``None`` for an order this process did not send (seen on the stream)
    tif: TimeInForce | None
    type: OrderType
    #: when the create call came back (answer, error or timeout)
    ended_at: datetime | None = None
    order_id: VenueOrderId | None = None
    report: OrderReport | None = None


class KalshiVenue:
    """One Kalshi account over REST (orders, fills, balance, markets) and the WebSocket."""

    def __init__(
        self,
        config: KalshiConfig,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        budget: KalshiBudget | None = None,
        now: Callable[[], datetime] = utc_now,
        metrics: VenueMetrics | None = None,
    ) -> None:
        self.config = config
        #: the account this key trades for labels every metric (see ``engine.venue_session``)
        self.metrics = metrics or VenueMetrics(account=UNASSIGNED, venue=config.venue_name)
        self._now = now
        self._started = now()
        key = load_private_key(config.private_key, config.private_key_path)
        self._signer = KalshiSigner(config.key_id, key)
        self.rest = KalshiRestClient(
            base_url=config.rest_url,
            signer=self._signer,
            budget=budget or KalshiBudget(config.tier),
            timeout=httpx.Timeout(config.request_timeout_s, connect=config.connect_timeout_s),
            metrics=self.metrics,
            venue_name=config.venue_name,
            transport=transport,
        )
        self._rules: dict[Symbol, InstrumentRules] = {}
        self._rules_lock = asyncio.Lock()
        # bounded, oldest first out (engine/metrics.py says why OrderedDict)
        self._known: OrderedDict[ClientOrderId, _Known] = OrderedDict()
        self._client_ids: OrderedDict[VenueOrderId, ClientOrderId] = OrderedDict()

    def __repr__(self) -> str:
        return f"KalshiVenue(name={self.name!r}, rest_url={self.config.rest_url!r})"

    @property
    def name(self) -> VenueName:
        return self.config.venue_name

    @property
    def late_accept(self) -> timedelta:
        """How long a create request may still land after we sent it. Kalshi states no window
        for a signed request's age, so the bound is our own: the request timeout (the client has
        given up on it by then), plus a second."""
        return timedelta(seconds=self.config.request_timeout_s + 1)

    # -- orders -------------------------------------------------------------------------------

    async def submit(self, order: OrderRequest) -> OrderReport:
        """``POST /portfolio/events/orders``. A MARKET order (Kalshi has none) is sent as an
        IOC limit at the far end of the price grid: it takes the touch and never rests."""
        rules = await self.instrument_rules(order.symbol)
        body, sent_price = self._create_body(order, rules)
        known = self._known.get(order.client_order_id)
        if known is None or known.report is None or not _is_open(known.report):
            known = _Known(sent_at=self._now(), tif=order.time_in_force, type=order.type)
            self._remember(order.client_order_id, known)
        try:
            answer = await self.rest.create_order(body)
        finally:
            # the venue stamped the order (if it took it) before this moment, as far as anyone
            # can tell: reads must cover it before a scan that misses the order means anything
            known.ended_at = self._now()
        try:
            report = parsing.parse_create(
                answer, order, sent_price=sent_price, venue=self.name, received_at=self._now()
            )
        except MalformedMessage as exc:
            record_malformed(self.metrics, REST, repr(answer), str(exc))
            raise Ambiguous(f"kalshi answered a create we cannot read: {exc}") from None
        self._learn(report)
        if report.filled_quantity > 0 and report.venue_order_id is not None:
            report = await self._with_fills(report)
        return report

    def _create_body(
        self, order: OrderRequest, rules: InstrumentRules
    ) -> tuple[schemas.CreateOrderRequest, Decimal]:
        coid = order.client_order_id
        if order.quantity <= 0 or order.quantity % parsing.COUNT_STEP != 0:
            raise Definitive(f"order {coid}: count {order.quantity} is not a positive 0.01 step")
        if order.type is OrderType.MARKET:
            limit = rules.max_price if order.side is Side.BUY else rules.min_price
            if limit is None:
                raise Definitive(f"order {coid}: market {order.symbol} has no price bound")
            tif = TimeInForce.IOC
        else:
            if order.limit_price is None:
                raise Definitive(f"order {coid}: a LIMIT order needs a limit_price")
            limit, tif = order.limit_price, order.time_in_force
            if not parsing.on_grid(rules, limit):
                raise Definitive(f"order {coid}: price {limit} is off {order.symbol}'s grid")
        body = schemas.CreateOrderRequest(
            ticker=order.symbol,
            side=parsing.BOOK_SIDES[order.side],
            count=format(order.quantity.quantize(parsing.COUNT_STEP), "f"),
            price=format_decimal(limit),
            time_in_force=parsing.TIME_IN_FORCE[tif],
            self_trade_prevention_type="taker_at_cross",
            client_order_id=coid,
        )
        return body, limit

    async def find_order(self, symbol: Symbol, client_order_id: ClientOrderId) -> OrderReport:
        known = self._known.get(client_order_id)
        report: OrderReport | None = None
        if known is not None and known.order_id is not None:
            try:
                report = self._parsed(await self.rest.get_order(known.order_id), known)
            except NotFound:
                report = None  # not readable yet: the scan and the stream may know more
        as_of: datetime | None = None
        if report is None:
            # read before the scan: what the scan then misses was absent as of this time
            as_of = parsing.parse_time(
                (await self.rest.user_data_timestamp()).as_of_time, "as_of_time"
            )
            since = None if known is None else known.sent_at - self.config.clock_skew
            matches = [
                r for r in await self._scan(symbol, since) if r.client_order_id == client_order_id
            ]
            # the newest order with this client id, as a lookup by id would answer
            report = matches[-1] if matches else None
        if (
            known is not None
            and known.report is not None
            and (report is None or report.venue_order_id != known.report.venue_order_id)
        ):
            # the answer or the stream saw our latest order under this id; the reads lag (a
            # scan may only show an older order that had the same client order id)
            report = known.report
        if report is None:
            self._not_visible_yet(client_order_id, known, as_of)
            raise NotFound(f"kalshi has no order {client_order_id!r} on {symbol}")
        self._learn(report)
        if report.filled_quantity > 0 and report.venue_order_id is not None:
            report = await self._with_fills(report)
        return report

    def _not_visible_yet(
        self, coid: ClientOrderId, known: _Known | None, as_of: datetime | None
    ) -> None:
        """Raise ``Ambiguous`` while the venue's reads may not show an order sent at all."""
        # An order of an earlier process was placed before this one started; one of ours
        # before its create call ended, by our clock, which may run behind the venue's by up
        # to ``read_margin``.
        if known is None:
            sent = self._started
        else:
            sent = (known.ended_at or self._now()) + self.config.read_margin
        if as_of is None or as_of < sent:
            raise Ambiguous(
                f"kalshi reads are current to {as_of}, before order {coid!r} may have been "
                "placed: not visible yet, look again"
            )

    async def cancel(self, symbol: Symbol, client_order_id: ClientOrderId) -> OrderReport:
        current = await self.find_order(symbol, client_order_id)
        if not _is_open(current) or current.venue_order_id is None:
            return current
        try:
            answer = await self.rest.cancel_order(current.venue_order_id, symbol)
        except NotFound:
            return await self.find_order(symbol, client_order_id)
        reduced = non_negative(answer.reduced_by, "reduced_by")
        report = replace(
            current,
            status=VenueOrderStatus.CANCELED,
            filled_quantity=max(current.filled_quantity, current.quantity - reduced),
            venue_ts=ms_timestamp(answer.ts_ms, "ts_ms"),
            received_at=self._now(),
            fills=(),
        )
        self._learn(report)
        return report

    async def open_orders(self, symbol: Symbol | None = None) -> Sequence[OrderReport]:
        reports = await self._pages(symbol, status="resting", since=None)
        return [r for r in reports if _is_open(r)]

    async def orders_since(self, symbol: Symbol, since: datetime) -> Sequence[OrderReport]:
        """Every order of ``symbol`` created at or after ``since`` (any status), oldest first."""
        return await self._scan(symbol, since)

    async def _scan(self, symbol: Symbol, since: datetime | None) -> list[OrderReport]:
        reports = await self._pages(symbol, status=None, since=since)
        return sorted(reports, key=lambda r: r.venue_ts or self._started)

    async def _pages(
        self, symbol: Symbol | None, *, status: str | None, since: datetime | None
    ) -> list[OrderReport]:
        min_ts = None if since is None else int(since.timestamp())
        reports: list[OrderReport] = []
        cursor = ""
        while True:
            page = await self.rest.orders(
                ticker=symbol, status=status, min_ts=min_ts, cursor=cursor
            )
            for order in page.orders:
                if symbol is not None and order.ticker != symbol:
                    record_malformed(self.metrics, REST, repr(order), f"order not of {symbol!r}")
                    continue
                try:
                    known = self._known.get(ClientOrderId(order.client_order_id))
                    report = self._parsed(order, known)
                except MalformedMessage as exc:
                    record_malformed(self.metrics, REST, repr(order), skip_reason(exc))
                    continue
                self._learn(report)
                reports.append(report)
            if not page.cursor or not page.orders:
                return reports
            cursor = page.cursor

    def _parsed(self, order: schemas.Order, known: _Known | None) -> OrderReport:
        return parsing.parse_order(
            order,
            venue=self.name,
            received_at=self._now(),
            tif=None if known is None else known.tif,
            order_type=OrderType.LIMIT if known is None else known.type,
        )

    # -- fills --------------------------------------------------------------------------------

    async def trades_since(
        self, symbol: Symbol, after_trade_id: TradeId | None, *, limit: int = 1000
    ) -> Sequence[FillReport]:
        """Our fills on ``symbol`` after ``after_trade_id``, oldest first, at most ``limit``.

        Kalshi fill ids are UUIDs with no order, and ``GET /portfolio/fills`` lists newest
        first: the listing is read back until ``after_trade_id`` shows up and what the venue
        lists after it is returned ("after" is the venue's order, not the id's). An id the
        listing no longer has (past the historical cutoff) returns everything; the ledger skips
        repeats by trade id. Each call reads from the newest fill back to the anchor, so paging
        through many new fills costs a read per page per call. Fills carry no client order id;
        it is filled in from the orders (read by venue id when unknown).
        """
        newest_first: list[FillReport] = []
        anchor: FillReport | None = None
        cursor = ""
        received = self._now()
        while anchor is None:
            page = await self.rest.fills(ticker=symbol, cursor=cursor)
            for row in page.fills:
                try:
                    fill = parsing.parse_fill(row, venue=self.name, received_at=received)
                    if fill.symbol != symbol:
                        raise MalformedMessage(f"fill of {fill.symbol!r}, asked for {symbol!r}")
                except MalformedMessage as exc:
                    record_malformed(self.metrics, REST, repr(row), skip_reason(exc))
                    continue
                if after_trade_id is not None and fill.trade_id == after_trade_id:
                    anchor = fill
                    break
                newest_first.append(fill)
            if anchor is not None or not page.cursor or not page.fills:
                break
            cursor = page.cursor
        fills = list(reversed(newest_first))[:limit]
        return [await self._attributed(f) for f in fills]

    async def _attributed(self, fill: FillReport) -> FillReport:
        if fill.client_order_id is not None or fill.venue_order_id is None:
            return fill
        coid = self._client_ids.get(fill.venue_order_id)
        if coid is None:
            order = await self.rest.get_order(fill.venue_order_id)
            coid = ClientOrderId(order.client_order_id)
            self._client_ids[fill.venue_order_id] = coid
        return replace(fill, client_order_id=coid)

    async def _with_fills(self, report: OrderReport) -> OrderReport:
        """The order's own fills (``GET /portfolio/fills?order_id=``), oldest first."""
        assert report.venue_order_id is not None
        received = self._now()
        fills: list[FillReport] = []
        cursor = ""
        while True:
            page = await self.rest.fills(order_id=report.venue_order_id, cursor=cursor)
            for row in page.fills:
                try:
                    fill = parsing.parse_fill(
                        row,
                        venue=self.name,
                        received_at=received,
                        client_order_id=report.client_order_id,
                    )
                    if fill.venue_order_id != report.venue_order_id:
                        raise MalformedMessage(f"fill of order {fill.venue_order_id}")
                except MalformedMessage as exc:
                    record_malformed(self.metrics, REST, repr(row), skip_reason(exc))
                    continue
                fills.append(fill)
            if not page.cursor or not page.fills:
                break
            cursor = page.cursor
        fills.sort(key=lambda f: f.venue_ts)
        return replace(report, fills=tuple(fills))

    # -- account and markets ------------------------------------------------------------------

    async def balances(self) -> Sequence[BalanceReport]:
        """One snapshot the venue's later reads cover (see :mod:`.balances`); ``ReadsBehind``
        when they do not catch up in time."""
        return await balance_snapshot(
            self.rest,
            venue=self.name,
            open_orders=self.open_orders,
            now=self._now,
            read_margin=self.config.read_margin,
            wait=self.config.balance_read_wait,
        )

    async def instrument_rules(self, symbol: Symbol) -> InstrumentRules:
        cached = self._rules.get(symbol)
        if cached is not None:
            return cached
        async with self._rules_lock:
            cached = self._rules.get(symbol)
            if cached is not None:
                return cached
            market = await self.rest.market(symbol)
            try:
                rules = parsing.parse_market(market)
            except MalformedMessage as exc:
                record_malformed(self.metrics, REST, repr(market), str(exc))
                raise Definitive(str(exc)) from None
            self._rules[symbol] = rules
            return rules

    # -- streams ------------------------------------------------------------------------------

    def market_stream(self, symbols: Sequence[Symbol]) -> AsyncIterator[MarketEvent]:
        return self._market_events(symbols)

    async def _market_events(self, symbols: Sequence[Symbol]) -> AsyncIterator[MarketEvent]:
        # order books (snapshot, sequenced deltas) and public trades: engine/venues/kalshi/
        # marketdata.py
        stream = self._stream(list(CHANNELS), symbols, announce=False, params=PARAMS)
        data = KalshiMarketData(venue=self.name, metrics=self.metrics, now=self._now)
        async for event in data.events(stream):
            yield event

    def user_stream(self) -> AsyncIterator[UserEvent]:
        return self._user_events()

    async def _user_events(self) -> AsyncIterator[UserEvent]:
        stream = self._stream(["fill", "user_orders"], (), announce=True)
        async for frame in stream.frames():
            if isinstance(frame, StreamReconnected):
                yield frame
                continue
            event = decode_user(
                frame, venue=self.name, metrics=self.metrics, received_at=self._now()
            )
            if isinstance(event, OrderReport):
                known = self._known.get(event.client_order_id)
                if known is None and event.client_order_id:
                    # an order of an earlier process (or placed while we were away): what the
                    # stream says is evidence a lookup can use while the reads lag behind
                    known = _Known(sent_at=event.venue_ts or self._now(), tif=None, type=event.type)
                    self._remember(event.client_order_id, known)
                if known is not None:
                    # the message has no time in force; ours says whether a cancel is an expiry
                    status = parsing.venue_status(
                        _kalshi_status(event.status),
                        event.filled_quantity,
                        event.quantity - event.filled_quantity,
                        known.tif,
                    )
                    event = replace(event, status=status, type=known.type)
                self._learn(event)
            if event is not None:
                yield event

    # -- settlements (engine/venues/kalshi/settlements.py) --------------------------------------

    async def settlements_since(self, since: datetime | None) -> Sequence[SettlementReport]:
        return await settlements.settlements_since(
            self.rest, since, venue=self.name, metrics=self.metrics, now=self._now
        )

    def lifecycle_stream(self) -> AsyncIterator[MarketLifecycle | StreamReconnected]:
        stream = self._stream([settlements.CHANNEL], (), announce=True, label=settlements.LIFECYCLE)
        return settlements.lifecycle_events(
            stream, venue=self.name, metrics=self.metrics, now=self._now
        )

    def _stream(
        self,
        channels: list[str],
        tickers: Sequence[str],
        *,
        announce: bool,
        label: str = "",
        params: Mapping[str, object] | None = None,
    ) -> KalshiStream:
        return KalshiStream(
            url=self.config.ws_url,
            signer=self._signer,
            channels=channels,
            market_tickers=tickers,
            params=params,
            venue=self.name,
            metrics=self.metrics,
            # the user stream announces its reconnects; the market stream does not
            stream=label or (USER if announce else MARKET),
            source=USER_STREAM if announce else MARKET_STREAM,
            settings=self.config.stream,
            now=self._now,
            announce_reconnects=announce,
        )

    async def close(self) -> None:
        await self.rest.aclose()

    # -- memory -------------------------------------------------------------------------------

    def _remember(self, coid: ClientOrderId, known: _Known) -> None:
        self._known[coid] = known
        while len(self._known) > MEMORY:
            self._known.popitem(last=False)

    def _learn(self, report: OrderReport) -> None:
        """Keep the newest report of an order, its venue id, and the client id of the venue id."""
        if report.venue_order_id is not None:
            self._client_ids[report.venue_order_id] = report.client_order_id
            while len(self._client_ids) > MEMORY:
                self._client_ids.popitem(last=False)
        known = self._known.get(report.client_order_id)
        if known is None:
            return
        current = known.report
        if (
            current is not None
            and current.venue_order_id != report.venue_order_id
            and _updated(report) < _updated(current)
        ):
            # another order under the same client id (unique among open orders only): the one
            # updated last is the newer, as the older closed before the newer was placed
            return
        known.order_id = report.venue_order_id
        known.report = report


def _updated(report: OrderReport) -> datetime:
    return report.venue_ts or report.received_at


def _is_open(report: OrderReport) -> bool:
    return report.status in (VenueOrderStatus.NEW, VenueOrderStatus.PARTIALLY_FILLED)


def _kalshi_status(status: VenueOrderStatus) -> str:
    if status is VenueOrderStatus.FILLED:
        return "executed"
    if status in (VenueOrderStatus.NEW, VenueOrderStatus.PARTIALLY_FILLED):
        return "resting"
    return "canceled"
