"""The REST pipeline every endpoint goes through: rate limits, wire faults, authentication.

Faults are applied here, at the wire, in one fixed order per request so that a seed decides them:
rate-limit window, 418, 429, real rate limits, latency, (auth), 5xx/-1007 before processing,
the request, drop-the-response, 5xx/-1007 after processing.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from engine.tasks import wait_event
from engine.venues.simulator.auth import Authenticator
from engine.venues.simulator.faults import FaultKind, FaultRule
from engine.venues.simulator.ratelimits import Block, RateLimits
from engine.venues.simulator.records import Rejection
from engine.venues.simulator.state import SimulatorState

#: where the app keeps the server's own receive/send (dropping a connection needs them)
RAW = "sim.raw"

Payload = dict[str, Any] | list[Any]
Handler = Callable[[Request, dict[str, str]], Awaitable[Payload]]
Endpoint = Callable[[Request], Awaitable[Response]]


def _error(code: int, msg: str, status: int, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse({"code": code, "msg": msg}, status_code=status, headers=headers)


class RestPipeline:
    def __init__(
        self,
        state: SimulatorState,
        *,
        limits: RateLimits,
        auth: Authenticator,
        stopping: asyncio.Event,
    ) -> None:
        self.state = state
        self.limits = limits
        self.auth = auth
        self.stopping = stopping
        self.block: Block | None = None

    def endpoint(
        self, handler: Handler, *, weight: int, signed: bool = False, counts_order: bool = False
    ) -> Endpoint:
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
                    self.block = Block(status=status, until=now + retry_after)
                refused(-1003)
                return self._rate_limited(status, retry_after, headers)
        # 3. the real limits
        if used > self.state.config.weight_limit_1m:
            faults.count("refused_weight_limit")
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
            faults.count("refused_order_limit")
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
                self.auth.authenticate(request, raw_query, body, params)
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
        await wait_event(self.stopping, seconds)

    async def _drop(self, request: Request, rule: FaultRule) -> Response:
        raw_receive, raw_send = request.scope[RAW]
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
