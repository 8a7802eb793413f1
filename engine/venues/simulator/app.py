"""The simulator's ASGI app: Binance Spot REST (/api/v3), the WebSocket API (/ws-api/v3), market
streams (/ws/<streams>, /stream?streams=) and the admin endpoints (/admin/...).

Faults are applied here, at the wire, in one fixed order per request so that a seed decides them:
rate-limit window, 418, 429, real rate limits, latency, (auth), 5xx/-1007 before processing,
the request, drop-the-response, 5xx/-1007 after processing.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect

from engine.domain.types import OrderType, Side, TimeInForce
from engine.venues.simulator import wire
from engine.venues.simulator.faults import FaultKind, FaultPlan, FaultRule
from engine.venues.simulator.market import INTERVAL_MS
from engine.venues.simulator.records import NewOrder, Rejection, SimOrder
from engine.venues.simulator.state import SimulatorState

_CLIENT_ID_RE = re.compile(r"^[\.A-Z\:/a-z0-9_-]{1,36}$")
_DECIMAL_RE = re.compile(r"^([0-9]{1,20})(\.[0-9]{1,20})?$")
_RAW = "sim.raw"

Payload = dict[str, Any] | list[Any]
Handler = Callable[[Request, dict[str, str]], Awaitable[Payload]]

_ORDER_PARAMS = {
    "symbol",
    "side",
    "type",
    "timeInForce",
    "quantity",
    "price",
    "newClientOrderId",
    "newOrderRespType",
    "selfTradePreventionMode",
    "recvWindow",
    "timestamp",
    "signature",
}


class _RateLimits:
    """Sliding windows for request weight (1 minute) and new orders (10 s and 1 day)."""

    def __init__(self) -> None:
        self._weight: deque[tuple[float, int]] = deque()
        self._orders_10s: deque[float] = deque()
        self._orders_1d: deque[float] = deque()

    def add_weight(self, weight: int) -> int:
        now = time.monotonic()
        self._weight.append((now, weight))
        while self._weight and self._weight[0][0] < now - 60:
            self._weight.popleft()
        return sum(w for _, w in self._weight)

    def add_order(self) -> tuple[int, int]:
        now = time.monotonic()
        self._orders_10s.append(now)
        self._orders_1d.append(now)
        while self._orders_10s and self._orders_10s[0] < now - 10:
            self._orders_10s.popleft()
        while self._orders_1d and self._orders_1d[0] < now - 86_400:
            self._orders_1d.popleft()
        return len(self._orders_10s), len(self._orders_1d)

    def used_weight(self) -> int:
        now = time.monotonic()
        return sum(w for t, w in self._weight if t >= now - 60)


@dataclass(slots=True)
class _Block:
    status: int
    until: float  #: time.monotonic()


def _error(code: int, msg: str, status: int, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse({"code": code, "msg": msg}, status_code=status, headers=headers)


def _param_missing(name: str) -> Rejection:
    return Rejection(
        -1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed."
    )


def _strip_signature(raw: str) -> str:
    return "&".join(p for p in raw.split("&") if p and not p.startswith("signature="))


def _sign(secret: str, payload: str) -> str:
    return hmac.new(secret.encode(), payload.encode(), hashlib.sha256).hexdigest()


def _decimal(params: dict[str, str], name: str, *, required: bool) -> Decimal | None:
    raw = params.get(name)
    if raw is None or raw == "":
        if required:
            raise _param_missing(name)
        return None
    if not _DECIMAL_RE.match(raw):
        raise Rejection(
            -1100,
            f"Illegal characters found in parameter '{name}'; legal range is "
            f"'{_DECIMAL_RE.pattern}'.",
        )
    try:
        return Decimal(raw)
    except InvalidOperation:  # pragma: no cover - the regex already refuses these
        raise Rejection(-1100, f"Illegal characters found in parameter '{name}'.") from None


def _int(params: dict[str, str], name: str, default: int | None = None) -> int | None:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise Rejection(
            -1100,
            f"Illegal characters found in parameter '{name}'; legal range is '^-?[0-9]{{1,20}}$'.",
        ) from None


class SimulatorApp:
    """Builds the Starlette app around a :class:`SimulatorState`."""

    def __init__(self, state: SimulatorState, *, stopping: asyncio.Event) -> None:
        self.state = state
        self.stopping = stopping
        self.limits = _RateLimits()
        self.block: _Block | None = None
        routes = [
            Route("/api/v3/ping", self._ep(self.ping, weight=1), methods=["GET"]),
            Route("/api/v3/time", self._ep(self.server_time, weight=1), methods=["GET"]),
            Route("/api/v3/exchangeInfo", self._ep(self.exchange_info, weight=20), methods=["GET"]),
            Route(
                "/api/v3/order",
                self._dispatch_order(),
                methods=["GET", "POST", "DELETE"],
            ),
            Route(
                "/api/v3/openOrders",
                self._ep(self.open_orders, weight=6, signed=True),
                methods=["GET"],
            ),
            Route(
                "/api/v3/allOrders",
                self._ep(self.all_orders, weight=20, signed=True),
                methods=["GET"],
            ),
            Route(
                "/api/v3/myTrades",
                self._ep(self.my_trades, weight=20, signed=True),
                methods=["GET"],
            ),
            Route(
                "/api/v3/account", self._ep(self.account, weight=20, signed=True), methods=["GET"]
            ),
            Route("/admin/state", self.admin_state, methods=["GET"]),
            Route("/admin/faults", self.admin_faults, methods=["GET", "PUT", "POST"]),
            Route("/admin/snapshot", self.admin_snapshot, methods=["GET", "POST"]),
            Route("/admin/restore", self.admin_restore, methods=["POST"]),
            Route("/admin/step", self.admin_step, methods=["POST"]),
            Route("/admin/deposit", self.admin_deposit, methods=["POST"]),
            Route("/admin/quote", self.admin_quote, methods=["POST"]),
            WebSocketRoute("/ws-api/v3", self.ws_api),
            WebSocketRoute("/ws/{streams:path}", self.ws_raw),
            WebSocketRoute("/ws", self.ws_raw),
            WebSocketRoute("/stream", self.ws_combined),
        ]
        self.starlette = Starlette(routes=routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # keep the server's own send/receive: dropping a connection needs its transport
        scope[_RAW] = (receive, send)
        await self.starlette(scope, receive, send)

    # ---- REST pipeline -------------------------------------------------------------------

    def _dispatch_order(self) -> Callable[[Request], Awaitable[Response]]:
        post = self._ep(self.new_order, weight=1, signed=True, counts_order=True)
        get = self._ep(self.query_order, weight=4, signed=True)
        delete = self._ep(self.cancel_order, weight=1, signed=True)

        async def dispatch(request: Request) -> Response:
            if request.method == "POST":
                return await post(request)
            if request.method == "DELETE":
                return await delete(request)
            return await get(request)

        return dispatch

    def _ep(
        self, handler: Handler, *, weight: int, signed: bool = False, counts_order: bool = False
    ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            return await self._handle(
                request, handler, weight=weight, signed=signed, counts_order=counts_order
            )

        return endpoint

    async def _handle(
        self,
        request: Request,
        handler: Handler,
        *,
        weight: int,
        signed: bool,
        counts_order: bool,
    ) -> Response:
        method, path = request.method, request.url.path
        faults = self.state.faults
        raw_query = request.scope.get("query_string", b"").decode("utf-8", "replace")
        body = (await request.body()).decode("utf-8", "replace")
        pairs = parse_qsl(raw_query, keep_blank_values=True) + parse_qsl(
            body, keep_blank_values=True
        )
        params: dict[str, str] = {}
        duplicate = False
        for k, v in pairs:
            duplicate = duplicate or k in params
            params[k] = v
        if weight and "symbol" not in params and path == "/api/v3/openOrders":
            weight = 80
        used = self.limits.add_weight(weight)
        headers = {"X-MBX-USED-WEIGHT-1M": str(used)}
        if counts_order:
            c10, c1d = self.limits.add_order()
            headers["X-MBX-ORDER-COUNT-10S"] = str(c10)
            headers["X-MBX-ORDER-COUNT-1D"] = str(c1d)

        def refused(code: int) -> None:
            if counts_order:
                self.state.record_refused_submission(
                    params.get("newClientOrderId", ""), params.get("symbol", ""), code
                )

        # 1. an active rate-limit / ban window refuses everything
        now = time.monotonic()
        if self.block is not None and now < self.block.until:
            faults.count(f"refused_in_{self.block.status}_window")
            refused(-1003)
            return self._rate_limited(self.block.status, self.block.until - now, headers)
        # 2. 418 / 429 faults open a window
        for kind, status in ((FaultKind.IP_BAN_418, 418), (FaultKind.RATE_LIMIT_429, 429)):
            rule = faults.roll(kind, method=method, path=path)
            if rule is not None:
                retry_after = float(rule.param("retry_after", 1))
                if rule.param("enforce", True):
                    self.block = _Block(status=status, until=now + retry_after)
                refused(-1003)
                return self._rate_limited(status, retry_after, headers)
        # 3. the real limits
        if used > self.state.config.weight_limit_1m:
            refused(-1003)
            return _error(
                -1003,
                f"Too much request weight used; current limit is "
                f"{self.state.config.weight_limit_1m} request weight per 1 MINUTE. Please use "
                "WebSocket Streams for live updates to avoid polling the API.",
                429,
                {**headers, "Retry-After": "60"},
            )
        if (
            counts_order
            and int(headers["X-MBX-ORDER-COUNT-10S"]) > self.state.config.order_limit_10s
        ):
            refused(-1015)
            return _error(
                -1015,
                f"Too many new orders; current limit is {self.state.config.order_limit_10s} "
                "orders per 10 SECOND.",
                429,
                {**headers, "Retry-After": "10"},
            )
        # 4. latency
        latency = faults.roll(FaultKind.LATENCY, method=method, path=path)
        if latency is not None:
            await self._sleep(float(latency.param("seconds", 0.2)))
        # 5. server-side failures, decided now so the draw order never depends on the outcome
        fail_5xx = faults.roll(FaultKind.HTTP_5XX, method=method, path=path)
        fail_1007 = faults.roll(FaultKind.ERROR_1007, method=method, path=path)
        try:
            if duplicate:
                raise Rejection(-1101, "Duplicate values for a parameter detected.")
            if signed:
                self._authenticate(request, raw_query, body, params)
            if fail_5xx is not None and not fail_5xx.param("after_accept", False):
                refused(-1000)
                return self._server_error(fail_5xx, headers)
            if fail_1007 is not None and not fail_1007.param("after_accept", True):
                refused(-1007)
                return self._timeout_1007(fail_1007, headers)
            payload = await handler(request, params)
        except Rejection as exc:
            if counts_order and exc.code in (-1022, -1021, -2014, -2015, -1101):
                refused(exc.code)
            return _error(exc.code, exc.msg, exc.http_status, headers)
        # 6. the answer is lost although the request took effect
        drop = faults.roll(FaultKind.DROP_RESPONSE, method=method, path=path)
        if drop is not None:
            return await self._drop(request, drop)
        if fail_5xx is not None:
            return self._server_error(fail_5xx, headers)
        if fail_1007 is not None:
            return self._timeout_1007(fail_1007, headers)
        return JSONResponse(payload, headers=headers)

    def _authenticate(
        self, request: Request, raw_query: str, body: str, params: dict[str, str]
    ) -> None:
        cfg = self.state.config
        key = request.headers.get("X-MBX-APIKEY")
        if not key:
            raise Rejection(-2014, "API-key format invalid.", http_status=401)
        if not hmac.compare_digest(key.encode(), cfg.api_key.encode()):
            raise Rejection(
                -2015, "Invalid API-key, IP, or permissions for action.", http_status=401
            )
        self._check_signed(params, _strip_signature(raw_query) + _strip_signature(body))

    def _check_signed(self, params: dict[str, Any], signed_payload: str) -> None:
        cfg = self.state.config
        signature = params.get("signature")
        if not signature:
            raise _param_missing("signature")
        timestamp = params.get("timestamp")
        if timestamp in (None, ""):
            raise _param_missing("timestamp")
        expected = _sign(cfg.api_secret, signed_payload)
        if not hmac.compare_digest(expected, str(signature).lower()):
            raise Rejection(-1022, "Signature for this request is not valid.")
        try:
            ts = int(str(timestamp))
            recv_window = Decimal(str(params.get("recvWindow", 5000)))
        except (ValueError, InvalidOperation):
            raise Rejection(-1100, "Illegal characters found in parameter 'timestamp'.") from None
        if recv_window > 60_000 or recv_window <= 0:
            raise Rejection(-1131, "recvWindow must be less than 60000")
        ts_ms = Decimal(ts) / 1000 if ts > 10**14 else Decimal(ts)  # microseconds accepted
        now_ms = self.state.now_ms()
        if ts_ms >= now_ms + 1000:
            raise Rejection(
                -1021, "Timestamp for this request was 1000ms ahead of the server's time."
            )
        if now_ms - ts_ms > recv_window:
            raise Rejection(-1021, "Timestamp for this request is outside of the recvWindow.")

    def _rate_limited(self, status: int, retry_after: float, headers: dict[str, str]) -> Response:
        seconds = max(1, int(retry_after + 0.999))
        if status == 418:
            until = self.state.now_ms() + seconds * 1000
            msg = (
                f"Way too much request weight used; IP banned until {until}. Please use "
                "WebSocket Streams for live updates to avoid bans."
            )
        else:
            msg = (
                f"Too much request weight used; current limit is "
                f"{self.state.config.weight_limit_1m} request weight per 1 MINUTE. Please use "
                "WebSocket Streams for live updates to avoid polling the API."
            )
        return _error(-1003, msg, status, {**headers, "Retry-After": str(seconds)})

    def _server_error(self, rule: FaultRule, headers: dict[str, str]) -> Response:
        status = int(rule.param("status", 503))
        if status == 503:
            return _error(
                -1000, "Unknown error, please check your request or try again later.", 503, headers
            )
        return _error(
            -1000, "An unknown error occurred while processing the request.", status, headers
        )

    def _timeout_1007(self, rule: FaultRule, headers: dict[str, str]) -> Response:
        return _error(
            -1007,
            "Timeout waiting for response from backend server. Send status unknown; "
            "execution status unknown.",
            int(rule.param("status", 503)),
            headers,
        )

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stopping.wait(), timeout=seconds)

    async def _drop(self, request: Request, rule: FaultRule) -> Response:
        raw_receive, raw_send = request.scope[_RAW]
        mode = str(rule.param("mode", "close"))
        if mode == "close":
            cycle = getattr(raw_send, "__self__", None)
            transport = getattr(cycle, "transport", None)
            if transport is not None:
                transport.abort()
        limit = float(rule.param("hang_seconds", 30.0))

        async def until_disconnect() -> None:
            while (await raw_receive())["type"] != "http.disconnect":
                pass

        stop = asyncio.ensure_future(self.stopping.wait())
        gone = asyncio.ensure_future(until_disconnect())
        try:
            await asyncio.wait({stop, gone}, timeout=limit, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in (stop, gone):
                t.cancel()
            await asyncio.gather(stop, gone, return_exceptions=True)
        # the client is gone (or we gave up): nothing of this reaches it, or a bare 504 does
        return Response(status_code=504)

    # ---- REST handlers -------------------------------------------------------------------

    async def ping(self, request: Request, params: dict[str, str]) -> Payload:
        return {}

    async def server_time(self, request: Request, params: dict[str, str]) -> Payload:
        return {"serverTime": self.state.now_ms()}

    async def exchange_info(self, request: Request, params: dict[str, str]) -> Payload:
        specs = list(self.state.config.symbols)
        wanted: list[str] | None = None
        if params.get("symbol"):
            wanted = [params["symbol"]]
        elif params.get("symbols"):
            try:
                wanted = [str(s) for s in json.loads(params["symbols"])]
            except (json.JSONDecodeError, TypeError):
                raise Rejection(-1100, "Illegal characters found in parameter 'symbols'.") from None
        if wanted is not None:
            known = {s.symbol: s for s in specs}
            for w in wanted:
                if w not in known:
                    raise Rejection(-1121, "Invalid symbol.")
            specs = [known[w] for w in wanted]
        cfg = self.state.config
        return {
            "timezone": "UTC",
            "serverTime": self.state.now_ms(),
            "rateLimits": [
                {
                    "rateLimitType": "REQUEST_WEIGHT",
                    "interval": "MINUTE",
                    "intervalNum": 1,
                    "limit": cfg.weight_limit_1m,
                },
                {
                    "rateLimitType": "ORDERS",
                    "interval": "SECOND",
                    "intervalNum": 10,
                    "limit": cfg.order_limit_10s,
                },
            ],
            "exchangeFilters": [],
            "symbols": [wire.symbol_info(s) for s in specs],
        }

    def _symbol(self, params: dict[str, str]) -> str:
        symbol = params.get("symbol")
        if not symbol:
            raise _param_missing("symbol")
        self.state.engine.symbol_rules(symbol)
        return symbol

    async def new_order(self, request: Request, params: dict[str, str]) -> Payload:
        unknown = sorted(set(params) - _ORDER_PARAMS)
        if unknown:
            raise Rejection(
                -1104,
                f"Not all sent parameters were read; read '{len(params) - len(unknown)}' "
                f"parameter(s) but was sent '{len(params)}'.",
            )
        client_id = params.get("newClientOrderId") or self.state.generate_client_order_id()
        symbol = params.get("symbol", "")
        if not _CLIENT_ID_RE.match(client_id):
            self.state.record_refused_submission(client_id, symbol, -1100)
            raise Rejection(
                -1100,
                "Illegal characters found in parameter 'newClientOrderId'; legal range is "
                f"'{_CLIENT_ID_RE.pattern}'.",
            )
        try:
            symbol = self._symbol(params)
            side_raw = params.get("side") or ""
            type_raw = params.get("type") or ""
            if not side_raw:
                raise _param_missing("side")
            if not type_raw:
                raise _param_missing("type")
            try:
                side = Side(side_raw)
            except ValueError:
                raise Rejection(-1117, "Invalid side.") from None
            try:
                order_type = OrderType(type_raw)
            except ValueError:
                raise Rejection(-1116, "Invalid orderType.") from None
            tif: TimeInForce | None = None
            if params.get("timeInForce"):
                try:
                    tif = TimeInForce(params["timeInForce"])
                except ValueError:
                    raise Rejection(-1115, "Invalid timeInForce.") from None
            resp_type = params.get("newOrderRespType", "FULL")
            if resp_type not in ("ACK", "RESULT", "FULL"):
                raise Rejection(-1100, "Illegal characters found in parameter 'newOrderRespType'.")
            qty = _decimal(params, "quantity", required=True)
            price = _decimal(params, "price", required=False)
            assert qty is not None
        except Rejection as exc:
            self.state.record_refused_submission(client_id, symbol, exc.code)
            raise
        result = self.state.place_order(
            NewOrder(
                symbol=symbol,
                side=side,
                type=order_type,
                quantity=qty,
                price=price,
                time_in_force=tif,
                client_order_id=client_id,
            )
        )
        if resp_type == "ACK":
            return wire.order_ack(result.order)
        if resp_type == "RESULT":
            return wire.order_result(result.order)
        return wire.order_full(result.order, result.trades)

    def _lookup_ids(self, params: dict[str, str]) -> tuple[int | None, str | None]:
        order_id = _int(params, "orderId")
        client_id = params.get("origClientOrderId") or None
        if order_id is None and client_id is None:
            raise Rejection(
                -1102,
                "Param 'origClientOrderId' or 'orderId' must be sent, but both were empty/null!",
            )
        return order_id, client_id

    async def query_order(self, request: Request, params: dict[str, str]) -> Payload:
        symbol = self._symbol(params)
        order_id, client_id = self._lookup_ids(params)
        order = self.state.engine.find(symbol, order_id=order_id, client_order_id=client_id)
        if order is None:
            raise Rejection(-2013, "Order does not exist.")
        return wire.order_query(order)

    async def cancel_order(self, request: Request, params: dict[str, str]) -> Payload:
        symbol = self._symbol(params)
        order_id, client_id = self._lookup_ids(params)
        cancel_id = params.get("newClientOrderId") or self.state.generate_client_order_id()
        race = self.state.faults.roll(
            FaultKind.PARTIAL_FILL_CANCEL_RACE, method=request.method, path=request.url.path
        )
        order: SimOrder = self.state.cancel_order(
            symbol,
            order_id=order_id,
            client_order_id=client_id,
            cancel_client_order_id=cancel_id,
            race=race.kind if race else None,
            race_fraction=Decimal(str(race.param("fraction", "0.5"))) if race else Decimal("0.5"),
        )
        return wire.cancel_result(order, cancel_id, self.state.now_ms())

    async def open_orders(self, request: Request, params: dict[str, str]) -> Payload:
        symbol = self._symbol(params) if params.get("symbol") else None
        orders = sorted(self.state.engine.open_orders(symbol), key=lambda o: o.order_id)
        return [wire.order_query(o) for o in orders]

    def _limit(self, params: dict[str, str]) -> int:
        limit = _int(params, "limit", 500)
        assert limit is not None
        if limit < 1 or limit > 1000:
            raise Rejection(-1130, "Data sent for parameter 'limit' is not valid.")
        return limit

    async def all_orders(self, request: Request, params: dict[str, str]) -> Payload:
        symbol = self._symbol(params)
        limit = self._limit(params)
        from_id = _int(params, "orderId")
        start, end = _int(params, "startTime"), _int(params, "endTime")
        orders = sorted(
            (o for o in self.state.engine.orders.values() if o.symbol == symbol),
            key=lambda o: o.order_id,
        )
        if from_id is not None:
            orders = [o for o in orders if o.order_id >= from_id][:limit]
        else:
            if start is not None:
                orders = [o for o in orders if o.time_ms >= start]
            if end is not None:
                orders = [o for o in orders if o.time_ms <= end]
            orders = orders[:limit] if start is not None else orders[-limit:]
        return [wire.order_query(o) for o in orders]

    async def my_trades(self, request: Request, params: dict[str, str]) -> Payload:
        symbol = self._symbol(params)
        limit = self._limit(params)
        from_id = _int(params, "fromId")
        order_id = _int(params, "orderId")
        start, end = _int(params, "startTime"), _int(params, "endTime")
        trades = list(self.state.engine.trades.get(symbol, []))
        if order_id is not None:
            trades = [t for t in trades if t.order_id == order_id]
        if from_id is not None:
            trades = [t for t in trades if t.trade_id >= from_id][:limit]
        else:
            if start is not None:
                trades = [t for t in trades if t.time_ms >= start]
            if end is not None:
                trades = [t for t in trades if t.time_ms <= end]
            trades = trades[:limit] if start is not None else trades[-limit:]
        return [wire.my_trade(t) for t in trades]

    async def account(self, request: Request, params: dict[str, str]) -> Payload:
        cfg = self.state.config
        omit_zero = params.get("omitZeroBalances", "false").lower() == "true"
        balances = [
            {"asset": a, "free": wire.fmt(b.free), "locked": wire.fmt(b.locked)}
            for a, b in sorted(self.state.engine.balances.items())
            if not (omit_zero and b.free == 0 and b.locked == 0)
        ]
        return {
            "makerCommission": int(cfg.maker_fee * 10_000),
            "takerCommission": int(cfg.taker_fee * 10_000),
            "buyerCommission": 0,
            "sellerCommission": 0,
            "commissionRates": {
                "maker": wire.fmt(cfg.maker_fee),
                "taker": wire.fmt(cfg.taker_fee),
                "buyer": wire.fmt(Decimal(0)),
                "seller": wire.fmt(Decimal(0)),
            },
            "canTrade": True,
            "canWithdraw": True,
            "canDeposit": True,
            "brokered": False,
            "requireSelfTradePrevention": False,
            "preventSor": False,
            "updateTime": self.state.engine.update_ms,
            "accountType": "SPOT",
            "balances": balances,
            "permissions": ["SPOT"],
            "uid": 1,
        }

    # ---- admin ---------------------------------------------------------------------------

    async def admin_state(self, request: Request) -> Response:
        return JSONResponse(self.state.ground_truth())

    async def admin_faults(self, request: Request) -> Response:
        if request.method in ("PUT", "POST"):
            try:
                plan = FaultPlan.from_mapping(await request.json())
            except Exception as exc:
                return JSONResponse({"error": f"bad fault plan: {exc}"}, status_code=400)
            self.state.set_faults(plan)
        return JSONResponse(
            {"plan": self.state.faults.plan.to_mapping(), "counters": self.state.fault_counts()}
        )

    async def admin_snapshot(self, request: Request) -> Response:
        if request.method == "GET":
            return JSONResponse(self.state.snapshot_data())
        body = await request.json()
        path = self.state.snapshot(str(body["path"]))
        return JSONResponse({"path": str(path)})

    async def admin_restore(self, request: Request) -> Response:
        body = await request.json()
        try:
            if "path" in body:
                self.state.restore(str(body["path"]))
            else:
                self.state.restore_data(body)
        except (ValueError, OSError, KeyError) as exc:
            return JSONResponse({"error": f"cannot restore: {exc}"}, status_code=400)
        return JSONResponse({"restored": True})

    async def admin_step(self, request: Request) -> Response:
        body = await request.body()
        steps = int(json.loads(body).get("steps", 1)) if body else 1
        for _ in range(steps):
            self.state.step()
        return JSONResponse({"market": {s: self.state.touch(s) for s in self.state.sources}})

    async def admin_deposit(self, request: Request) -> Response:
        body = await request.json()
        try:
            self.state.deposit(str(body["asset"]), Decimal(str(body["amount"])))
        except Rejection as exc:
            return JSONResponse({"code": exc.code, "msg": exc.msg}, status_code=400)
        return JSONResponse({"balances": self.state.ground_truth()["balances"]})

    async def admin_quote(self, request: Request) -> Response:
        """``{"symbol", "bid", "ask", "size"}`` (decimals as strings): set the touch and match."""
        try:
            body = await request.json()
            self.state.set_quote(
                str(body["symbol"]),
                bid=Decimal(str(body["bid"])),
                ask=Decimal(str(body["ask"])),
                size=Decimal(str(body["size"])),
            )
        except (ValueError, KeyError, TypeError, InvalidOperation) as exc:
            return JSONResponse({"error": f"bad quote: {exc}"}, status_code=400)
        return JSONResponse({"market": {body["symbol"]: self.state.touch(str(body["symbol"]))}})

    # ---- WebSocket API -------------------------------------------------------------------

    async def ws_api(self, websocket: WebSocket) -> None:
        await websocket.accept()
        conn = _UserConnection(websocket)
        pump = asyncio.create_task(conn.pump(), name="sim-ws-api-pump")
        tokens: dict[int, int] = {}  # subscription id -> state token
        try:
            while not conn.closed:
                receive = asyncio.ensure_future(websocket.receive())
                closed = asyncio.ensure_future(conn.closed_event.wait())
                stop = asyncio.ensure_future(self.stopping.wait())
                done, pending = await asyncio.wait(
                    {receive, closed, stop}, return_when=asyncio.FIRST_COMPLETED
                )
                for t in pending:
                    t.cancel()
                await asyncio.gather(*pending, return_exceptions=True)
                if receive not in done:
                    break
                message = receive.result()
                if message["type"] == "websocket.disconnect":
                    break
                text = message.get("text")
                if text is None and message.get("bytes") is not None:
                    text = message["bytes"].decode("utf-8", "replace")
                conn.deliver(self._ws_api_call(conn, tokens, text or ""))
        finally:
            for token in tokens.values():
                self.state.remove_user_sink(token)
            conn.shut()
            await asyncio.gather(pump, return_exceptions=True)

    def _ws_api_call(
        self, conn: _UserConnection, tokens: dict[int, int], text: str
    ) -> dict[str, Any]:
        try:
            request = json.loads(text)
            if not isinstance(request, dict):
                raise ValueError
        except ValueError:
            return {
                "id": None,
                "status": 400,
                "error": {"code": -1135, "msg": "Invalid JSON Request"},
            }
        req_id = request.get("id")
        method = request.get("method")
        params = request.get("params") or {}
        weight = self.limits.add_weight(2)
        rate_limits = [
            {
                "rateLimitType": "REQUEST_WEIGHT",
                "interval": "MINUTE",
                "intervalNum": 1,
                "limit": self.state.config.weight_limit_1m,
                "count": weight,
            }
        ]

        def ok(result: Any) -> dict[str, Any]:
            return {"id": req_id, "status": 200, "result": result, "rateLimits": rate_limits}

        try:
            if not isinstance(params, dict):
                raise Rejection(-1130, "Data sent for parameter 'params' is not valid.")
            if method == "ping":
                return ok({})
            if method == "time":
                return ok({"serverTime": self.state.now_ms()})
            if method == "userDataStream.subscribe.signature":
                self._ws_authenticate(params)
                sub_id = conn.next_subscription_id()
                tokens[sub_id] = self.state.add_user_sink(conn, sub_id)
                return ok({"subscriptionId": sub_id})
            if method == "userDataStream.unsubscribe":
                if "subscriptionId" in params:
                    sub = params["subscriptionId"]
                    token = tokens.pop(int(sub), None) if isinstance(sub, int | str) else None
                    if token is None:
                        raise Rejection(
                            -1130, "Data sent for parameter 'subscriptionId' is not valid."
                        )
                    self.state.remove_user_sink(token)
                else:
                    for token in tokens.values():
                        self.state.remove_user_sink(token)
                    tokens.clear()
                return ok({})
            if method == "session.subscriptions":
                return ok([{"subscriptionId": s} for s in sorted(tokens)])
            raise Rejection(-1020, "This operation is not supported.")
        except Rejection as exc:
            return {
                "id": req_id,
                "status": exc.http_status,
                "error": {"code": exc.code, "msg": exc.msg},
                "rateLimits": rate_limits,
            }

    def _ws_authenticate(self, params: dict[str, Any]) -> None:
        api_key = params.get("apiKey")
        if not api_key:
            raise _param_missing("apiKey")
        if not hmac.compare_digest(str(api_key).encode(), self.state.config.api_key.encode()):
            raise Rejection(
                -2015, "Invalid API-key, IP, or permissions for action.", http_status=401
            )
        payload = "&".join(
            f"{k}={_ws_value(v)}" for k, v in sorted(params.items()) if k != "signature"
        )
        self._check_signed({k: _ws_value(v) for k, v in params.items()}, payload)

    # ---- market streams ------------------------------------------------------------------

    async def ws_raw(self, websocket: WebSocket) -> None:
        streams = [s for s in websocket.path_params.get("streams", "").split("/") if s]
        await self._market(websocket, streams, combined=False)

    async def ws_combined(self, websocket: WebSocket) -> None:
        streams = [s for s in websocket.query_params.get("streams", "").split("/") if s]
        await self._market(websocket, streams, combined=True)

    def _normalize_stream(self, name: str) -> str:
        symbol_part, sep, kind = name.partition("@")
        symbol = symbol_part.upper()
        if not sep or symbol not in self.state.sources:
            raise ValueError(f"Invalid stream name {name!r}")
        if kind.lower() == "bookticker":
            return f"{symbol.lower()}@bookTicker"
        if kind == "trade":
            return f"{symbol.lower()}@trade"
        if kind.startswith("kline_") and kind[len("kline_") :] in INTERVAL_MS:
            self.state.ensure_kline(symbol, kind[len("kline_") :])
            return f"{symbol.lower()}@{kind}"
        raise ValueError(f"Invalid stream name {name!r}")

    async def _market(self, websocket: WebSocket, streams: list[str], *, combined: bool) -> None:
        await websocket.accept()
        try:
            wanted = {self._normalize_stream(s) for s in streams}
        except ValueError as exc:
            await websocket.close(code=1008, reason=str(exc)[:120])
            return
        conn = _MarketConnection(websocket, wanted, combined=combined)
        token = self.state.add_market_sink(conn)
        pump = asyncio.create_task(conn.pump(), name="sim-market-pump")
        try:
            while not conn.closed:
                receive = asyncio.ensure_future(websocket.receive())
                closed = asyncio.ensure_future(conn.closed_event.wait())
                stop = asyncio.ensure_future(self.stopping.wait())
                done, pending = await asyncio.wait(
                    {receive, closed, stop}, return_when=asyncio.FIRST_COMPLETED
                )
                for t in pending:
                    t.cancel()
                await asyncio.gather(*pending, return_exceptions=True)
                if receive not in done:
                    break
                message = receive.result()
                if message["type"] == "websocket.disconnect":
                    break
                conn.control(self._market_control(conn, message.get("text") or ""))
        finally:
            self.state.remove_market_sink(token)
            conn.shut()
            await asyncio.gather(pump, return_exceptions=True)

    def _market_control(self, conn: _MarketConnection, text: str) -> dict[str, Any]:
        try:
            req = json.loads(text)
            method, req_id = req.get("method"), req.get("id")
            params = req.get("params") or []
        except (ValueError, AttributeError):
            return {"error": {"code": 3, "msg": "Invalid JSON"}}
        try:
            if method == "SUBSCRIBE":
                conn.streams |= {self._normalize_stream(str(p)) for p in params}
                return {"result": None, "id": req_id}
            if method == "UNSUBSCRIBE":
                for p in params:
                    with contextlib.suppress(ValueError):
                        conn.streams.discard(self._normalize_stream(str(p)))
                return {"result": None, "id": req_id}
            if method == "LIST_SUBSCRIPTIONS":
                return {"result": sorted(conn.streams), "id": req_id}
        except ValueError as exc:
            return {"error": {"code": 2, "msg": str(exc)}, "id": req_id}
        return {
            "error": {"code": 2, "msg": f"Invalid request: unknown method {method!r}"},
            "id": req_id,
        }


def _ws_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


_CLOSE = object()


class _UserConnection:
    """One WebSocket API connection: responses and user events go out through one queue, in order.

    A ``hold`` event (the reorder fault) is sent after the next message, or after a short while
    if nothing follows, so it arrives late but is never lost.
    """

    HOLD_SECONDS = 0.25

    def __init__(self, websocket: WebSocket) -> None:
        self.websocket = websocket
        self.queue: asyncio.Queue[Any] = asyncio.Queue()
        self.closed = False
        self.closed_event = asyncio.Event()
        self._next_sub = 0

    def next_subscription_id(self) -> int:
        sub = self._next_sub
        self._next_sub += 1
        return sub

    def deliver(self, payload: dict[str, Any], *, hold: bool = False) -> None:
        if not self.closed:
            self.queue.put_nowait((payload, hold))

    def disconnect(self, reason: str) -> None:
        if not self.closed:
            self.queue.put_nowait((_CLOSE, reason))

    def shut(self) -> None:
        self.closed = True
        self.closed_event.set()
        self.queue.put_nowait((_CLOSE, ""))

    async def pump(self) -> None:
        held: dict[str, Any] | None = None
        try:
            while True:
                try:
                    if held is None:
                        item, flag = await self.queue.get()
                    else:
                        item, flag = await asyncio.wait_for(self.queue.get(), self.HOLD_SECONDS)
                except TimeoutError:
                    assert held is not None
                    await self.websocket.send_text(json.dumps(held))
                    held = None
                    continue
                if item is _CLOSE:
                    if flag and not self.closed:
                        await self.websocket.close(code=1001, reason=str(flag)[:120])
                    return
                if flag and held is None:
                    held = item
                    continue
                await self.websocket.send_text(json.dumps(item))
                if held is not None:
                    await self.websocket.send_text(json.dumps(held))
                    held = None
        except (WebSocketDisconnect, RuntimeError, OSError):
            pass
        finally:
            self.closed = True
            self.closed_event.set()


class _MarketConnection:
    MAX_QUEUE = 10_000

    def __init__(self, websocket: WebSocket, streams: set[str], *, combined: bool) -> None:
        self.websocket = websocket
        self.streams = streams
        self.combined = combined
        self.queue: asyncio.Queue[Any] = asyncio.Queue()
        self.closed = False
        self.closed_event = asyncio.Event()

    def wants(self, stream: str) -> bool:
        return stream in self.streams

    def deliver(self, stream: str, payload: dict[str, Any]) -> None:
        if self.closed:
            return
        if self.queue.qsize() >= self.MAX_QUEUE:
            # Binance drops consumers that cannot keep up; so do we
            self.disconnect("slow consumer")
            return
        self.queue.put_nowait({"stream": stream, "data": payload} if self.combined else payload)

    def control(self, response: dict[str, Any]) -> None:
        if not self.closed:
            self.queue.put_nowait(response)

    def disconnect(self, reason: str) -> None:
        if not self.closed:
            self.queue.put_nowait((_CLOSE, reason))

    def shut(self) -> None:
        self.closed = True
        self.closed_event.set()
        self.queue.put_nowait((_CLOSE, ""))

    async def pump(self) -> None:
        try:
            while True:
                item = await self.queue.get()
                if isinstance(item, tuple) and item[0] is _CLOSE:
                    if item[1] and not self.closed:
                        await self.websocket.close(code=1001, reason=str(item[1])[:120])
                    return
                await self.websocket.send_text(json.dumps(item))
        except (WebSocketDisconnect, RuntimeError, OSError):
            pass
        finally:
            self.closed = True
            self.closed_event.set()
