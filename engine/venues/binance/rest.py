"""The Binance Spot REST client: signed requests, rate budget, errors mapped at the boundary.

One shared ``httpx.AsyncClient``. Every method returns wire structs from :mod:`.schemas` or raises
an :mod:`engine.exceptions` venue outcome; no httpx exception escapes. The only retry is the one
the venue makes safe: a ``-1021`` (timestamp outside recvWindow) answer means the request was
refused before processing, so the clock is re-synced and the request re-signed and sent once more.
An ambiguous failure is never retried here: for a new order that is the caller's lookup to make.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from decimal import Decimal
from typing import TypeVar

import httpx
import msgspec
import structlog

from engine.exceptions import Ambiguous, MalformedMessage, RateLimited, VenueError
from engine.venues.binance import schemas
from engine.venues.binance.errors import (
    INVALID_TIMESTAMP,
    Operation,
    classify,
    classify_transport,
    parse_retry_after,
)
from engine.venues.binance.parsing import record_malformed, skip_reason
from engine.venues.binance.ratelimit import (
    ACCOUNT,
    ALL_ORDERS,
    CANCEL_ORDER,
    EXCHANGE_INFO,
    MY_TRADES,
    NEW_ORDER,
    OPEN_ORDERS,
    OPEN_ORDERS_ALL,
    QUERY_ORDER,
    SERVER_TIME,
    Endpoint,
    RateBudget,
)
from engine.venues.binance.signing import ServerClock, Signer, encode_params, percent_encode
from engine.venues.metrics import REST, UNASSIGNED, VenueMetrics
from engine.venues.validation import ms_timestamp

log = structlog.get_logger(__name__)

T = TypeVar("T")

Params = list[tuple[str, str]]

_ERROR_DECODER = msgspec.json.Decoder(schemas.ErrorBody)
_TIME_DECODER = msgspec.json.Decoder(schemas.ServerTime)
_EXCHANGE_INFO_DECODER = msgspec.json.Decoder(schemas.ExchangeInfo)
_ORDER_DECODER = msgspec.json.Decoder(schemas.Order)
_ORDERS_DECODER = msgspec.json.Decoder(list[schemas.Order])
_TRADES_DECODER = msgspec.json.Decoder(list[schemas.AccountTrade])
_ACCOUNT_DECODER = msgspec.json.Decoder(schemas.AccountInfo)

#: the venue caps myTrades at 1000 rows per call
MAX_TRADES_LIMIT = 1000
#: and allOrders too
MAX_ORDERS_LIMIT = 1000


def decode_answer(decoder: msgspec.json.Decoder[T], content: bytes) -> T:
    """A 2xx body as its wire struct; :class:`MalformedMessage` (with the body) when it is not
    one. The values inside are checked by :mod:`.parsing` when they become reports."""
    try:
        return decoder.decode(content)
    except msgspec.DecodeError as exc:
        raise MalformedMessage(f"undecodable binance answer: {exc}", raw=content) from None


def format_decimal(value: Decimal) -> str:
    """Plain positional notation, never an exponent (``1E-8`` → ``0.00000001``)."""
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text or "0"


class BinanceRestClient:
    def __init__(
        self,
        *,
        base_url: str,
        api_key: str,
        signer: Signer,
        recv_window_ms: int,
        clock: ServerClock,
        budget: RateBudget,
        timeout: httpx.Timeout,
        venue_name: str = "binance",
        transport: httpx.AsyncBaseTransport | None = None,
        metrics: VenueMetrics | None = None,
    ) -> None:
        self._api_key = api_key
        self._signer = signer
        self._recv_window = str(recv_window_ms)
        self.clock = clock
        self.budget = budget
        self._venue = venue_name
        self.metrics = metrics or VenueMetrics(account=UNASSIGNED, venue=venue_name)
        self.metrics.budget = budget.headroom
        budget.on_wait = self.metrics.rate_limit_wait
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            timeout=timeout,
            transport=transport,
            headers={"X-MBX-APIKEY": api_key} if api_key else {},
        )

    def __repr__(self) -> str:
        return f"BinanceRestClient(base_url={str(self._http.base_url)!r})"

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- time ---------------------------------------------------------------------------------

    async def sync_time(self) -> int:
        """Measure the offset to the venue's clock; returns the offset in milliseconds."""
        await self.budget.acquire(SERVER_TIME)
        sent = self.clock.local_ms()
        try:
            response = await self._http.get(SERVER_TIME.path)
        except httpx.HTTPError as exc:
            error = classify_transport(exc, operation=Operation.READ)
            self._count(SERVER_TIME, error)
            raise error from None
        received = self.clock.local_ms()
        self.budget.observe(response.headers)
        if not response.is_success:
            error = self._error(response, Operation.READ)
            self._count(SERVER_TIME, error)
            raise error
        try:
            body = self._decode(_TIME_DECODER, response, Operation.READ)
        except VenueError as exc:
            self._count(SERVER_TIME, exc)
            raise
        self._count(SERVER_TIME, None)
        try:
            # An absurd server time would skew every signed request's timestamp after it.
            ms_timestamp(body.serverTime, "binance serverTime")
        except MalformedMessage as exc:
            record_malformed(self.metrics, REST, response.content, str(exc))
            raise Ambiguous(f"binance time answered {exc}") from None
        self.clock.update(body.serverTime, sent, received)
        log.info("binance.clock_synced", venue=self._venue, offset_ms=self.clock.offset_ms)
        return self.clock.offset_ms

    async def ensure_time_synced(self) -> None:
        if not self.clock.synced:
            await self.sync_time()

    # -- endpoints ----------------------------------------------------------------------------

    async def exchange_info(self, symbol: str) -> schemas.ExchangeInfo:
        return await self._request(
            EXCHANGE_INFO,
            [("symbol", symbol)],
            signed=False,
            operation=Operation.READ,
            decoder=_EXCHANGE_INFO_DECODER,
        )

    async def new_order(self, params: Params) -> schemas.Order:
        """``POST /api/v3/order``; the caller supplies newClientOrderId and the order fields."""
        return await self._request(
            NEW_ORDER, params, signed=True, operation=Operation.SUBMIT, decoder=_ORDER_DECODER
        )

    async def query_order(self, symbol: str, orig_client_order_id: str) -> schemas.Order:
        return await self._request(
            QUERY_ORDER,
            [("symbol", symbol), ("origClientOrderId", orig_client_order_id)],
            signed=True,
            operation=Operation.LOOKUP,
            decoder=_ORDER_DECODER,
        )

    async def cancel_order(self, symbol: str, orig_client_order_id: str) -> schemas.Order:
        return await self._request(
            CANCEL_ORDER,
            [("symbol", symbol), ("origClientOrderId", orig_client_order_id)],
            signed=True,
            operation=Operation.CANCEL,
            decoder=_ORDER_DECODER,
        )

    async def open_orders(self, symbol: str | None = None) -> list[schemas.Order]:
        if symbol is None:
            return await self._request(
                OPEN_ORDERS_ALL, [], signed=True, operation=Operation.READ, decoder=_ORDERS_DECODER
            )
        return await self._request(
            OPEN_ORDERS,
            [("symbol", symbol)],
            signed=True,
            operation=Operation.READ,
            decoder=_ORDERS_DECODER,
        )

    async def all_orders(
        self,
        symbol: str,
        *,
        from_order_id: int | None = None,
        start_ms: int | None = None,
        end_ms: int | None = None,
        limit: int = MAX_ORDERS_LIMIT,
    ) -> list[schemas.Order]:
        """Orders of ``symbol``, oldest first, any status: with order id >= ``from_order_id``,
        or created in ``[start_ms, end_ms]`` (the venue allows at most 24 hours between them)."""
        limit = max(1, min(limit, MAX_ORDERS_LIMIT))
        params = [("symbol", symbol)]
        if from_order_id is not None:
            params.append(("orderId", str(from_order_id)))
        if start_ms is not None:
            params.append(("startTime", str(start_ms)))
        if end_ms is not None:
            params.append(("endTime", str(end_ms)))
        params.append(("limit", str(limit)))
        return await self._request(
            ALL_ORDERS,
            params,
            signed=True,
            operation=Operation.READ,
            decoder=_ORDERS_DECODER,
        )

    async def my_trades(
        self,
        symbol: str,
        *,
        from_id: int | None = None,
        order_id: int | None = None,
        limit: int = MAX_TRADES_LIMIT,
    ) -> list[schemas.AccountTrade]:
        """Trades with id >= ``from_id``, oldest first (the venue's ``fromId`` is inclusive);
        with ``order_id``, only that order's trades."""
        limit = max(1, min(limit, MAX_TRADES_LIMIT))
        params = [("symbol", symbol)]
        if order_id is not None:
            params.append(("orderId", str(order_id)))
        if from_id is not None:
            params.append(("fromId", str(from_id)))
        params.append(("limit", str(limit)))
        return await self._request(
            MY_TRADES,
            params,
            signed=True,
            operation=Operation.READ,
            decoder=_TRADES_DECODER,
        )

    async def account(self) -> schemas.AccountInfo:
        return await self._request(
            ACCOUNT, [], signed=True, operation=Operation.READ, decoder=_ACCOUNT_DECODER
        )

    # -- plumbing -----------------------------------------------------------------------------

    def _signed_query(self, params: Sequence[tuple[str, str]]) -> str:
        full = [
            *params,
            ("recvWindow", self._recv_window),
            ("timestamp", str(self.clock.now_ms())),
        ]
        payload = encode_params(full)
        return f"{payload}&signature={percent_encode(self._signer.sign(payload))}"

    async def _request(
        self,
        endpoint: Endpoint,
        params: Sequence[tuple[str, str]],
        *,
        signed: bool,
        operation: Operation,
        decoder: msgspec.json.Decoder[T],
    ) -> T:
        resynced = False
        while True:
            if signed:
                await self.ensure_time_synced()
            await self.budget.acquire(endpoint)
            query = self._signed_query(params) if signed else encode_params(params)
            started = time.monotonic()
            try:
                response = await self._send(endpoint, query)
            except httpx.HTTPError as exc:
                error = classify_transport(exc, operation=operation)
                self._count(endpoint, error)
                log.warning(
                    "binance.request_failed",
                    venue=self._venue,
                    method=endpoint.method,
                    path=endpoint.path,
                    outcome=type(error).__name__,
                    error=type(exc).__name__,
                )
                raise error from None
            self.budget.observe(response.headers)
            if response.is_success:
                try:
                    answer = self._decode(decoder, response, operation)
                except VenueError as exc:
                    self._count(endpoint, exc)
                    raise
                self._count(endpoint, None)
                return answer
            error = self._error(response, operation)
            self._count(endpoint, error)
            log.warning(
                "binance.request_refused",
                venue=self._venue,
                method=endpoint.method,
                path=endpoint.path,
                http_status=response.status_code,
                code=error.code,
                outcome=type(error).__name__,
                elapsed_ms=round((time.monotonic() - started) * 1000, 1),
            )
            if signed and error.code == INVALID_TIMESTAMP and not resynced:
                # Refused before processing (nothing placed): re-sync, re-sign, send once more.
                resynced = True
                await self.sync_time()
                continue
            raise error

    def _count(self, endpoint: Endpoint, error: VenueError | None) -> None:
        """One request sent and how it ended; the budget it left (after the venue's own
        counts and any back-off it imposed)."""
        self.metrics.request(f"{endpoint.method} {endpoint.path}", error)
        self.metrics.rate_limit_headroom(self.budget.headroom())

    async def _send(self, endpoint: Endpoint, query: str) -> httpx.Response:
        if endpoint.method == "POST":
            return await self._http.post(
                endpoint.path,
                content=query.encode("ascii"),
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            )
        url = f"{endpoint.path}?{query}" if query else endpoint.path
        return await self._http.request(endpoint.method, url)

    def _decode(
        self, decoder: msgspec.json.Decoder[T], response: httpx.Response, operation: Operation
    ) -> T:
        try:
            return decode_answer(decoder, response.content)
        except Exception as exc:
            # Malformed, or (last resort) a decoder bug: logged once, never raised as is.
            reason = skip_reason(exc)
            record_malformed(self.metrics, REST, response.content, f"{operation.value}: {reason}")
            # The request was accepted (2xx) but we cannot tell what it did.
            raise Ambiguous(
                f"binance {operation.value} answered HTTP {response.status_code} with an "
                f"undecodable body: {reason}",
                http_status=response.status_code,
            ) from None

    def _error(self, response: httpx.Response, operation: Operation) -> VenueError:
        code: int | None = None
        msg = response.reason_phrase
        try:
            body = _ERROR_DECODER.decode(response.content)
            code, msg = body.code, body.msg
        except msgspec.DecodeError:
            pass
        status = response.status_code
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        if status in (418, 429):
            retry_after = self.budget.back_off(retry_after)
        error = classify(
            operation=operation,
            http_status=status,
            code=code,
            msg=msg,
            retry_after=retry_after,
        )
        if isinstance(error, RateLimited) and status not in (418, 429):
            # -1003/-1015 in a 4xx body: honour it like a 429 so we stop sending.
            self.budget.back_off(error.retry_after, orders_only=code == -1015)
        return error
