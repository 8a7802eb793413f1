"""The Kalshi REST client: RSA-PSS signed requests, read/write token buckets, errors mapped once.

Every method returns :mod:`.schemas` structs or raises an :mod:`engine.exceptions` outcome; no
httpx exception escapes. Nothing is retried here: an ambiguous create is the caller's lookup to
make, and a 429 empties our bucket so the next request waits for the refill.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TypeVar
from urllib.parse import urlsplit

import httpx
import msgspec
import structlog

from engine.exceptions import Ambiguous, MalformedMessage, RateLimited, VenueError
from engine.venues.binance.parsing import record_malformed, skip_reason
from engine.venues.kalshi import schemas
from engine.venues.kalshi.errors import Operation, classify, classify_transport
from engine.venues.kalshi.ratelimit import CANCEL_COST, DEFAULT_COST, KalshiBudget
from engine.venues.kalshi.signing import KalshiSigner
from engine.venues.metrics import REST, VenueMetrics

log = structlog.get_logger(__name__)

T = TypeVar("T")
Params = Sequence[tuple[str, str]]

#: the venue's page size cap for orders and fills
MAX_PAGE = 1000

_ENCODER = msgspec.json.Encoder()
_ERROR = msgspec.json.Decoder(schemas.ErrorBody)
_ERROR_ENVELOPE = msgspec.json.Decoder(schemas.ErrorEnvelope)
_CREATE = msgspec.json.Decoder(schemas.CreateOrderResponse)
_CANCEL = msgspec.json.Decoder(schemas.CancelOrderResponse)
_ORDERS = msgspec.json.Decoder(schemas.OrdersPage)
_ORDER = msgspec.json.Decoder(schemas.OrderEnvelope)
_FILLS = msgspec.json.Decoder(schemas.FillsPage)
_BALANCE = msgspec.json.Decoder(schemas.Balance)
_POSITIONS = msgspec.json.Decoder(schemas.PositionsPage)
_MARKET = msgspec.json.Decoder(schemas.MarketEnvelope)
_SETTLEMENTS = msgspec.json.Decoder(schemas.SettlementsPage)
_USER_DATA_TS = msgspec.json.Decoder(schemas.UserDataTimestamp)


class KalshiRestClient:
    def __init__(
        self,
        *,
        base_url: str,
        signer: KalshiSigner,
        budget: KalshiBudget,
        timeout: httpx.Timeout,
        metrics: VenueMetrics,
        venue_name: str = "kalshi",
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._signer = signer
        self._metrics = metrics
        self.budget = budget
        metrics.budget = budget.headroom
        self._venue = venue_name
        base = base_url.rstrip("/")
        #: signatures cover the path from the root, e.g. ``/trade-api/v2``
        self._prefix = urlsplit(base).path
        self._http = httpx.AsyncClient(base_url=base, timeout=timeout, transport=transport)

    def __repr__(self) -> str:
        return f"KalshiRestClient(base_url={str(self._http.base_url)!r})"

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- orders ---------------------------------------------------------------------------------

    async def create_order(self, body: schemas.CreateOrderRequest) -> schemas.CreateOrderResponse:
        return await self._request(
            "POST",
            "/portfolio/events/orders",
            operation=Operation.SUBMIT,
            decoder=_CREATE,
            body=_ENCODER.encode(body),
            write=True,
        )

    async def cancel_order(self, order_id: str, ticker: str) -> schemas.CancelOrderResponse:
        return await self._request(
            "DELETE",
            f"/portfolio/events/orders/{order_id}",
            params=[("market_ticker", ticker)],
            operation=Operation.CANCEL,
            decoder=_CANCEL,
            write=True,
            cost=CANCEL_COST,
        )

    async def get_order(self, order_id: str) -> schemas.Order:
        envelope = await self._request(
            "GET", f"/portfolio/orders/{order_id}", operation=Operation.LOOKUP, decoder=_ORDER
        )
        return envelope.order

    async def orders(
        self,
        *,
        ticker: str | None = None,
        status: str | None = None,
        min_ts: int | None = None,
        cursor: str = "",
        limit: int = MAX_PAGE,
    ) -> schemas.OrdersPage:
        params: list[tuple[str, str]] = []
        if ticker is not None:
            params.append(("ticker", ticker))
        if status is not None:
            params.append(("status", status))
        if min_ts is not None:
            params.append(("min_ts", str(min_ts)))
        params.append(("limit", str(max(1, min(limit, MAX_PAGE)))))
        if cursor:
            params.append(("cursor", cursor))
        return await self._request(
            "GET", "/portfolio/orders", params=params, operation=Operation.READ, decoder=_ORDERS
        )

    async def fills(
        self,
        *,
        ticker: str | None = None,
        order_id: str | None = None,
        cursor: str = "",
        limit: int = MAX_PAGE,
    ) -> schemas.FillsPage:
        params: list[tuple[str, str]] = []
        if ticker is not None:
            params.append(("ticker", ticker))
        if order_id is not None:
            params.append(("order_id", order_id))
        params.append(("limit", str(max(1, min(limit, MAX_PAGE)))))
        if cursor:
            params.append(("cursor", cursor))
        return await self._request(
            "GET", "/portfolio/fills", params=params, operation=Operation.READ, decoder=_FILLS
        )

    async def settlements(
        self, *, min_ts: int | None = None, cursor: str = "", limit: int = MAX_PAGE
    ) -> schemas.SettlementsPage:
        params: list[tuple[str, str]] = []
        if min_ts is not None:
            params.append(("min_ts", str(min_ts)))
        params.append(("limit", str(max(1, min(limit, MAX_PAGE)))))
        if cursor:
            params.append(("cursor", cursor))
        return await self._request(
            "GET",
            "/portfolio/settlements",
            params=params,
            operation=Operation.READ,
            decoder=_SETTLEMENTS,
        )

    # -- account and markets --------------------------------------------------------------------

    async def balance(self) -> schemas.Balance:
        return await self._request(
            "GET", "/portfolio/balance", operation=Operation.READ, decoder=_BALANCE
        )

    async def positions(self, cursor: str = "") -> schemas.PositionsPage:
        params = [("limit", str(MAX_PAGE))] + ([("cursor", cursor)] if cursor else [])
        return await self._request(
            "GET",
            "/portfolio/positions",
            params=params,
            operation=Operation.READ,
            decoder=_POSITIONS,
        )

    async def market(self, ticker: str) -> schemas.Market:
        envelope = await self._request(
            "GET", f"/markets/{ticker}", operation=Operation.READ, decoder=_MARKET
        )
        return envelope.market

    async def user_data_timestamp(self) -> schemas.UserDataTimestamp:
        return await self._request(
            "GET", "/exchange/user_data_timestamp", operation=Operation.READ, decoder=_USER_DATA_TS
        )

    # -- plumbing -------------------------------------------------------------------------------

    async def _request(
        self,
        method: str,
        path: str,
        *,
        operation: Operation,
        decoder: msgspec.json.Decoder[T],
        params: Params = (),
        body: bytes | None = None,
        write: bool = False,
        cost: int = DEFAULT_COST,
    ) -> T:
        bucket = self.budget.bucket(write=write)
        await bucket.take(cost)
        headers = self._signer.headers(method, f"{self._prefix}{path}")
        if body is not None:
            headers["Content-Type"] = "application/json"
        started = time.monotonic()
        endpoint = _endpoint(method, path, operation)
        try:
            response = await self._http.request(
                method, path, params=list(params), content=body, headers=headers
            )
        except httpx.HTTPError as exc:
            error = classify_transport(exc, operation=operation)
            self._count(endpoint, error)
            log.warning(
                "kalshi.request_failed",
                venue=self._venue,
                method=method,
                path=path,
                outcome=type(error).__name__,
                error=type(exc).__name__,
            )
            raise error from None
        if response.is_success:
            try:
                answer = self._decode(decoder, response, operation)
            except VenueError as exc:
                self._count(endpoint, exc)
                raise
            self._count(endpoint, None)
            return answer
        error = self._error(response, operation)
        if isinstance(error, RateLimited):
            bucket.drain()
        self._count(endpoint, error)
        log.warning(
            "kalshi.request_refused",
            venue=self._venue,
            method=method,
            path=path,
            http_status=response.status_code,
            outcome=type(error).__name__,
            elapsed_ms=round((time.monotonic() - started) * 1000, 1),
        )
        raise error

    def _count(self, endpoint: str, error: VenueError | None) -> None:
        """One request sent and how it ended, and the token budget it left (after a 429
        emptied the bucket)."""
        self._metrics.request(endpoint, error)
        self._metrics.rate_limit_headroom(self.budget.headroom())

    def _decode(
        self, decoder: msgspec.json.Decoder[T], response: httpx.Response, operation: Operation
    ) -> T:
        try:
            return decoder.decode(response.content)
        except msgspec.DecodeError as exc:
            reason = skip_reason(MalformedMessage(f"undecodable kalshi answer: {exc}"))
            record_malformed(self._metrics, REST, response.content, f"{operation.value}: {reason}")
            raise Ambiguous(
                f"kalshi {operation.value} answered HTTP {response.status_code} with an "
                f"undecodable body: {reason}",
                http_status=response.status_code,
            ) from None

    def _error(self, response: httpx.Response, operation: Operation) -> VenueError:
        code: str | None = None
        msg = response.reason_phrase
        body: schemas.ErrorBody | None = None
        try:
            body = _ERROR.decode(response.content)
        except msgspec.DecodeError:
            try:
                body = _ERROR_ENVELOPE.decode(response.content).error
            except msgspec.DecodeError:
                body = None
        if body is not None:
            code = body.code
            msg = body.message or body.error or msg
        return classify(
            operation=operation, http_status=response.status_code, code=code, msg=msg or ""
        )


def _endpoint(method: str, path: str, operation: Operation) -> str:
    """The request's ``endpoint`` label: one per endpoint, not per order or market (an id in
    the path would make a series per order)."""
    if operation in (Operation.LOOKUP, Operation.CANCEL) or path.startswith("/markets/"):
        path = path.rsplit("/", 1)[0] + "/{id}"
    return f"{method} {path}"
