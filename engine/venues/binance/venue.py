"""``BinanceVenue``: the :class:`engine.venues.base.Venue` port for Binance Spot."""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal

import httpx
import structlog
from pydantic import SecretStr

from engine.domain.market import MarketEvent
from engine.domain.types import (
    ClientOrderId,
    OrderType,
    Symbol,
    TradeId,
    VenueName,
    VenueOrderId,
    utc_now,
)
from engine.exceptions import (
    Ambiguous,
    AuthFailed,
    ConfigError,
    Definitive,
    MalformedMessage,
    NotFound,
    VenueError,
)
from engine.venues.base import (
    BalanceReport,
    FillReport,
    InstrumentRules,
    OrderReport,
    OrderRequest,
    UserEvent,
)
from engine.venues.binance import parsing
from engine.venues.binance.ratelimit import Limits, RateBudget
from engine.venues.binance.rest import (
    MAX_ORDERS_LIMIT,
    MAX_TRADES_LIMIT,
    BinanceRestClient,
    format_decimal,
)
from engine.venues.binance.schemas import AccountTrade, Order
from engine.venues.binance.signing import ServerClock, make_signer
from engine.venues.binance.stream import MarketStream, StreamSettings, UserStream
from engine.venues.metrics import REST, UNASSIGNED, VenueMetrics

log = structlog.get_logger(__name__)

PRODUCTION_REST_URL = "https://api.binance.com"
PRODUCTION_WS_API_URL = "wss://ws-api.binance.com:443/ws-api/v3"
PRODUCTION_STREAM_URL = "wss://stream.binance.com:9443"
TESTNET_REST_URL = "https://testnet.binance.vision"
TESTNET_WS_API_URL = "wss://ws-api.testnet.binance.vision/ws-api/v3"
TESTNET_STREAM_URL = "wss://stream.testnet.binance.vision"

DEFAULT_VENUE_NAME = VenueName("binance")
#: the venue refuses a recvWindow above this
MAX_RECV_WINDOW_MS = 60_000
#: orderId -> clientOrderId pairs remembered (myTrades rows carry only the orderId); past this
#: the oldest are forgotten and looked up again with allOrders when needed
CLIENT_ID_MEMORY = 100_000
#: ``allOrders`` by time answers at most a day at once
LISTING_WINDOW_MS = 24 * 3600 * 1000
#: listings run a little past our clock: the venue's may be ahead
LISTING_SLACK_MS = 60_000


@dataclass(frozen=True, slots=True, kw_only=True)
class BinanceConfig:
    """Connection settings for one Binance Spot account. Secrets stay out of ``repr``."""

    api_key: str = field(repr=False)
    api_secret: SecretStr = field(repr=False)
    rest_url: str = PRODUCTION_REST_URL
    ws_api_url: str = PRODUCTION_WS_API_URL
    stream_url: str = PRODUCTION_STREAM_URL
    recv_window_ms: int = 5000
    connect_timeout_s: float = 5.0
    #: read/write timeout of one REST call; past it the outcome is ambiguous
    request_timeout_s: float = 10.0
    venue_name: VenueName = DEFAULT_VENUE_NAME
    key_type: Literal["hmac", "ed25519"] = "hmac"
    private_key_path: Path | None = None
    #: channels opened per symbol by ``market_stream`` (``kline_1m`` etc. for bars)
    market_channels: tuple[str, ...] = ("bookTicker", "trade")
    stream: StreamSettings = field(default_factory=StreamSettings)
    limits: Limits = field(default_factory=Limits)

    def __post_init__(self) -> None:
        if not 0 < self.recv_window_ms <= MAX_RECV_WINDOW_MS:
            raise ConfigError(
                f"binance recv_window_ms must be in 1..{MAX_RECV_WINDOW_MS}, "
                f"got {self.recv_window_ms}"
            )
        for name in ("rest_url", "ws_api_url", "stream_url"):
            if not getattr(self, name):
                raise ConfigError(f"binance {name} is empty")


class BinanceVenue:
    """One Binance Spot account over REST (orders, lookups, balances) and WebSockets."""

    def __init__(
        self,
        config: BinanceConfig,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        budget: RateBudget | None = None,
        clock: ServerClock | None = None,
        now: Callable[[], datetime] = utc_now,
        metrics: VenueMetrics | None = None,
    ) -> None:
        self.config = config
        self._now = now
        #: the account this key trades for labels every metric (see ``engine.runtime``)
        self.metrics = metrics or VenueMetrics(account=UNASSIGNED, venue=config.venue_name)
        #: the newest user stream opened, whose connection state the engine watches
        self._user_stream: UserStream | None = None
        self._signer = make_signer(
            config.key_type, api_secret=config.api_secret, private_key_path=config.private_key_path
        )
        self._clock = clock or ServerClock()
        self.rest = BinanceRestClient(
            base_url=config.rest_url,
            api_key=config.api_key,
            signer=self._signer,
            recv_window_ms=config.recv_window_ms,
            clock=self._clock,
            budget=budget or RateBudget(config.limits),
            timeout=httpx.Timeout(config.request_timeout_s, connect=config.connect_timeout_s),
            venue_name=config.venue_name,
            transport=transport,
            metrics=self.metrics,
        )
        self._rules: dict[Symbol, InstrumentRules] = {}
        self._rules_lock = asyncio.Lock()
        # bounded, oldest first out (engine/metrics.py says why OrderedDict)
        self._client_ids: OrderedDict[tuple[str, VenueOrderId], ClientOrderId] = OrderedDict()

    def __repr__(self) -> str:
        return f"BinanceVenue(name={self.name!r}, rest_url={self.config.rest_url!r})"

    @property
    def name(self) -> VenueName:
        return self.config.venue_name

    @property
    def late_accept(self) -> timedelta:
        """How long after we signed it the venue may still accept a request: ``recvWindow``,
        plus a second for the error in our estimate of the venue's clock."""
        return timedelta(milliseconds=self.config.recv_window_ms, seconds=1)

    # -- orders -------------------------------------------------------------------------------

    async def submit(self, order: OrderRequest) -> OrderReport:
        """``POST /api/v3/order`` with our client id and ``newOrderRespType=FULL``.

        An ambiguous failure is raised as :class:`Ambiguous` and never retried here.
        """
        params = order_params(order)
        answer = await self.rest.new_order(params)
        return self._remember(self._order_report(answer, order.symbol, order.client_order_id))

    async def find_order(self, symbol: Symbol, client_order_id: ClientOrderId) -> OrderReport:
        """The order, with its fills when it has any (``myTrades?orderId=``).

        The order query carries no fills, and a lookup is what repairs a lost answer or a lost
        stream report: a fill older than the newest one the ledger holds would never come back
        through :meth:`trades_since`, so the lookup brings the order's own trades.
        """
        answer = await self.rest.query_order(symbol, client_order_id)
        report = self._remember(self._order_report(answer, symbol, client_order_id))
        if report.filled_quantity > 0 and report.venue_order_id is not None:
            trades = await self.rest.my_trades(
                symbol, order_id=int(report.venue_order_id), limit=MAX_TRADES_LIMIT
            )
            received = self._now()
            fills = tuple(
                replace(f, client_order_id=report.client_order_id)
                for f in sorted(
                    self._fills(trades, symbol, received, order_id=report.venue_order_id),
                    key=lambda f: int(f.trade_id),
                )
            )
            report = replace(report, fills=fills)
        return report

    async def cancel(self, symbol: Symbol, client_order_id: ClientOrderId) -> OrderReport:
        answer = await self.rest.cancel_order(symbol, client_order_id)
        return self._remember(self._order_report(answer, symbol, client_order_id))

    async def open_orders(self, symbol: Symbol | None = None) -> Sequence[OrderReport]:
        answers = await self.rest.open_orders(symbol)
        received = self._now()
        reports: list[OrderReport] = []
        for answer in answers:
            try:
                report = parsing.parse_order(answer, venue=self.name, received_at=received)
                if symbol is not None and report.symbol != symbol:
                    raise MalformedMessage(f"open order of {report.symbol!r}, asked for {symbol!r}")
            except Exception as exc:
                # e.g. a manual STOP_LOSS_LIMIT order: not one of ours, reported and skipped
                parsing.record_malformed(self.metrics, REST, repr(answer), parsing.skip_reason(exc))
                continue
            reports.append(self._remember(report))
        return reports

    async def orders_since(self, symbol: Symbol, since: datetime) -> Sequence[OrderReport]:
        """Every order of ``symbol`` created at or after ``since``, any status, oldest first:
        ``allOrders`` in windows of at most a day (the venue's limit), then by order id once a
        page is full (an order-id cursor needs no window and sees everything after it)."""
        now_ms = int(self._now().timestamp() * 1000) + LISTING_SLACK_MS
        start_ms = int(since.timestamp() * 1000)
        reports: list[OrderReport] = []
        cursor: int | None = None
        while cursor is not None or start_ms <= now_ms:
            if cursor is None:
                end_ms = min(start_ms + LISTING_WINDOW_MS - 1, now_ms)
                page = await self.rest.all_orders(
                    symbol, start_ms=start_ms, end_ms=end_ms, limit=MAX_ORDERS_LIMIT
                )
                start_ms = end_ms + 1
            else:
                page = await self.rest.all_orders(
                    symbol, from_order_id=cursor, limit=MAX_ORDERS_LIMIT
                )
            reports.extend(self._listed(page, symbol))
            if len(page) < MAX_ORDERS_LIMIT:
                if cursor is not None:
                    break  # an order-id cursor has seen everything up to now
                continue
            next_cursor = max(o.orderId for o in page) + 1
            if cursor is not None and next_cursor <= cursor:
                break  # a full page that does not move forward would repeat forever
            cursor = next_cursor
        return reports

    def _listed(self, page: Sequence[Order], symbol: Symbol) -> list[OrderReport]:
        received = self._now()
        reports: list[OrderReport] = []
        for answer in page:
            try:
                report = parsing.parse_order(answer, venue=self.name, received_at=received)
                if report.symbol != symbol:
                    raise MalformedMessage(f"order of {report.symbol!r}, asked for {symbol!r}")
            except Exception as exc:
                parsing.record_malformed(self.metrics, REST, repr(answer), parsing.skip_reason(exc))
                continue
            reports.append(self._remember(report))
        return reports

    async def trades_since(
        self, symbol: Symbol, after_trade_id: TradeId | None, *, limit: int = 1000
    ) -> Sequence[FillReport]:
        """``myTrades`` from the trade after ``after_trade_id`` (the venue's ``fromId`` is
        inclusive), each fill given its client order id, which ``myTrades`` leaves out.

        Raises rather than return a fill it cannot attribute: the ledger keys fills by trade id,
        so a fill recorded without its order could never be attributed later. A row that
        cannot be read (or is of another symbol) is logged, counted and skipped: the ledger's
        check of fills owed by closed orders is what notices it is missing.
        """
        from_id = 0 if after_trade_id is None else int(after_trade_id) + 1
        trades = await self.rest.my_trades(
            symbol, from_id=from_id, limit=min(limit, MAX_TRADES_LIMIT)
        )
        fills = self._fills(trades, symbol, self._now())
        fills.sort(key=lambda f: int(f.trade_id))
        fills = fills[:limit]
        client_ids: dict[VenueOrderId, ClientOrderId] = {}
        unknown: set[int] = set()
        for f in fills:
            if f.venue_order_id is None or f.client_order_id is not None:
                continue
            known = self._client_ids.get((symbol, f.venue_order_id))
            if known is None:
                unknown.add(int(f.venue_order_id))
            else:
                client_ids[f.venue_order_id] = known
        if unknown:
            # Returned rather than read back from the memory, which may have evicted them.
            client_ids.update(await self._learn_client_ids(symbol, unknown))
        return [
            replace(f, client_order_id=client_ids[f.venue_order_id])
            if f.client_order_id is None and f.venue_order_id is not None
            else f
            for f in fills
        ]

    def _fills(
        self,
        trades: Sequence[AccountTrade],
        symbol: Symbol,
        received: datetime,
        *,
        order_id: VenueOrderId | None = None,
    ) -> list[FillReport]:
        """The readable rows of a ``myTrades`` answer that are ``symbol``'s (and ``order_id``'s);
        every other row is logged, counted and skipped."""
        fills: list[FillReport] = []
        for trade in trades:
            try:
                fill = parsing.parse_account_trade(trade, venue=self.name, received_at=received)
                if fill.symbol != symbol:
                    raise MalformedMessage(f"trade of {fill.symbol!r}, asked for {symbol!r}")
                if order_id is not None and fill.venue_order_id != order_id:
                    raise MalformedMessage(
                        f"trade of order {fill.venue_order_id}, asked for order {order_id}"
                    )
            except Exception as exc:
                parsing.record_malformed(self.metrics, REST, repr(trade), parsing.skip_reason(exc))
                continue
            fills.append(fill)
        return fills

    async def _learn_client_ids(
        self, symbol: Symbol, order_ids: set[int]
    ) -> dict[VenueOrderId, ClientOrderId]:
        """Page through ``allOrders`` from the oldest order id wanted until all are known."""
        wanted = set(order_ids)
        learned: dict[VenueOrderId, ClientOrderId] = {}
        from_id = min(wanted)
        while wanted:
            page = await self.rest.all_orders(symbol, from_order_id=from_id, limit=MAX_ORDERS_LIMIT)
            for order in page:
                if order.symbol != symbol or not order.clientOrderId:
                    # Another symbol's order id may be the same number: it must not lend
                    # its client id to a fill of ours.
                    parsing.record_malformed(
                        self.metrics, REST, repr(order), f"allOrders row not of {symbol!r}"
                    )
                    continue
                self._remember_id(order.symbol, order.orderId, order.clientOrderId)
                if order.orderId in wanted:
                    learned[VenueOrderId(str(order.orderId))] = ClientOrderId(order.clientOrderId)
                    wanted.discard(order.orderId)
            if len(page) < MAX_ORDERS_LIMIT or not wanted:
                break
            next_from = max(max(o.orderId for o in page) + 1, min(wanted))
            if next_from <= from_id:
                break  # a full page that does not move forward would repeat forever
            from_id = next_from
        if wanted:
            raise Ambiguous(
                f"binance myTrades has fills of {symbol} orders {sorted(wanted)} that allOrders "
                "does not list; their client order ids are unknown, retry later"
            )
        return learned

    async def balances(self) -> Sequence[BalanceReport]:
        account = await self.rest.account()
        try:
            return parsing.parse_account(account, venue=self.name, received_at=self._now())
        except Exception as exc:
            # A partial balance list would read as assets gone: the whole answer is unusable.
            parsing.record_malformed(self.metrics, REST, repr(account), parsing.skip_reason(exc))
            raise Ambiguous(f"binance account answer cannot be read: {exc}") from None

    async def instrument_rules(self, symbol: Symbol) -> InstrumentRules:
        cached = self._rules.get(symbol)
        if cached is not None:
            return cached
        async with self._rules_lock:
            cached = self._rules.get(symbol)
            if cached is not None:
                return cached
            info = await self.rest.exchange_info(symbol)
            match = [s for s in info.symbols if s.symbol == symbol]
            if not match:
                raise NotFound(f"binance exchangeInfo has no symbol {symbol!r}")
            try:
                rules = parsing.parse_instrument_rules(match[0])
            except Exception as exc:
                reason = parsing.skip_reason(exc)
                parsing.record_malformed(self.metrics, REST, repr(match[0]), reason)
                raise Definitive(reason) from None
            self._rules[symbol] = rules
            return rules

    # -- streams ------------------------------------------------------------------------------

    def market_stream(self, symbols: Sequence[Symbol]) -> AsyncIterator[MarketEvent]:
        return MarketStream(
            stream_url=self.config.stream_url,
            symbols=symbols,
            channels=self.config.market_channels,
            venue=self.name,
            settings=self.config.stream,
            now=self._now,
            metrics=self.metrics,
        ).events()

    def user_stream(self) -> AsyncIterator[UserEvent]:
        return self._user_events()

    async def _user_events(self) -> AsyncIterator[UserEvent]:
        try:
            await self.rest.ensure_time_synced()
        except AuthFailed:
            raise
        except VenueError as exc:
            # Not fatal: the subscription is signed with the unsynced clock, and a -1021 answer
            # re-syncs before the next attempt.
            log.warning("binance.clock_sync_failed", venue=self.name, error=str(exc))
        self._user_stream = stream = UserStream(
            ws_api_url=self.config.ws_api_url,
            api_key=self.config.api_key,
            signer=self._signer,
            clock=self._clock,
            recv_window_ms=self.config.recv_window_ms,
            venue=self.name,
            resync_clock=self.rest.sync_time,
            settings=self.config.stream,
            now=self._now,
            metrics=self.metrics,
        )
        async for event in stream.events():
            if isinstance(event, OrderReport):
                self._remember(event)
            yield event

    def connection_lost(self) -> tuple[datetime, str] | None:
        """Since when the user stream (our fills and order reports) has been down, and why;
        ``None`` while it is up (or before it was first opened)."""
        stream = self._user_stream
        if stream is None or stream.down_since is None:
            return None
        return stream.down_since, stream.down_reason

    async def close(self) -> None:
        await self.rest.aclose()

    # -- helpers ------------------------------------------------------------------------------

    def _remember(self, report: OrderReport) -> OrderReport:
        if report.venue_order_id is not None:
            self._remember_id(report.symbol, int(report.venue_order_id), report.client_order_id)
        return report

    def _remember_id(self, symbol: str, order_id: int, client_order_id: str) -> None:
        key = (symbol, VenueOrderId(str(order_id)))
        if key in self._client_ids:
            return
        self._client_ids[key] = ClientOrderId(client_order_id)
        if len(self._client_ids) > CLIENT_ID_MEMORY:
            self._client_ids.popitem(last=False)

    def _order_report(
        self, answer: Order, symbol: Symbol, client_order_id: ClientOrderId
    ) -> OrderReport:
        try:
            report = parsing.parse_order(answer, venue=self.name, received_at=self._now())
            if report.symbol != symbol or report.client_order_id != client_order_id:
                raise MalformedMessage(
                    f"answer is about {report.symbol!r} {report.client_order_id!r}, "
                    f"asked about {symbol!r} {client_order_id!r}"
                )
        except Exception as exc:
            reason = parsing.skip_reason(exc)
            parsing.record_malformed(self.metrics, REST, repr(answer), reason)
            # The venue accepted the call; we just cannot read what it did.
            raise Ambiguous(f"binance answered with an order we cannot read: {reason}") from None
        return report


def order_params(order: OrderRequest) -> list[tuple[str, str]]:
    """The ``POST /api/v3/order`` parameters for a request, quantities written exactly."""
    if order.quantity <= 0:
        raise Definitive(f"order {order.client_order_id}: quantity must be > 0")
    params = [
        ("symbol", order.symbol),
        ("side", order.side.value),
        ("type", order.type.value),
    ]
    if order.type is OrderType.LIMIT:
        if order.limit_price is None or order.limit_price <= 0:
            raise Definitive(f"order {order.client_order_id}: a LIMIT order needs a limit_price")
        params += [
            ("timeInForce", order.time_in_force.value),
            ("quantity", format_decimal(order.quantity)),
            ("price", format_decimal(order.limit_price)),
        ]
    else:
        params.append(("quantity", format_decimal(order.quantity)))
    params += [
        ("newClientOrderId", order.client_order_id),
        ("newOrderRespType", "FULL"),
    ]
    return params
