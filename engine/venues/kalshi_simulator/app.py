"""The Kalshi simulator's ASGI app: Trade API v2 REST under ``/trade-api/v2``, the WebSocket at
``/trade-api/ws/v2`` and admin endpoints under ``/admin``. Every REST request is verified (RSA-PSS
over ``timestamp + METHOD + path``) and then passes the fault plan: latency, a 429 without
``Retry-After``, a 5xx (before or after the request took effect) and a dropped answer (after)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import Awaitable, Callable
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect

from engine.domain.types import OrderType, Side, TimeInForce
from engine.tasks import wait_event
from engine.venues.kalshi.ratelimit import CANCEL_COST, DEFAULT_COST
from engine.venues.kalshi.signing import (
    KEY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WS_PATH,
    signature_payload,
    verify,
)
from engine.venues.kalshi_simulator.state import (
    KalshiSimState,
    Subscriber,
    count,
    dollars,
    iso,
)
from engine.venues.matching import NewOrder, RefusalKind, Refused
from engine.venues.simulator.faults import FaultKind, FaultRule
from engine.venues.simulator.pipeline import RAW

PREFIX = "/trade-api/v2"
_COID = re.compile(r"^[-\w:+=/]{1,64}$")
_TIF = {
    "good_till_canceled": TimeInForce.GTC,
    "immediate_or_cancel": TimeInForce.IOC,
    "fill_or_kill": TimeInForce.FOK,
}
_CENT = Decimal("0.01")

Handler = Callable[[Request], Awaitable[Response]]


class VenueRefusal(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"code": code, "message": message, "details": ""}, status_code=status)


class KalshiSimApp:
    def __init__(
        self, state: KalshiSimState, public_key: rsa.RSAPublicKey, *, stopping: asyncio.Event
    ) -> None:
        self.state = state
        self.public_key = public_key
        self.stopping = stopping
        ep = self._endpoint
        routes = [
            Route(f"{PREFIX}/portfolio/events/orders", ep(self.create), methods=["POST"]),
            Route(
                f"{PREFIX}/portfolio/events/orders/{{order_id}}",
                ep(self.cancel),
                methods=["DELETE"],
            ),
            Route(f"{PREFIX}/portfolio/orders", ep(self.orders), methods=["GET"]),
            Route(f"{PREFIX}/portfolio/orders/{{order_id}}", ep(self.order), methods=["GET"]),
            Route(f"{PREFIX}/portfolio/fills", ep(self.fills), methods=["GET"]),
            Route(f"{PREFIX}/portfolio/balance", ep(self.balance), methods=["GET"]),
            Route(f"{PREFIX}/portfolio/positions", ep(self.positions), methods=["GET"]),
            Route(f"{PREFIX}/portfolio/settlements", ep(self.settlements), methods=["GET"]),
            Route(f"{PREFIX}/markets/{{ticker}}", ep(self.market), methods=["GET"]),
            Route(f"{PREFIX}/exchange/user_data_timestamp", ep(self.user_data_ts), methods=["GET"]),
            Route("/admin/quote", self.admin_quote, methods=["POST"]),
            Route("/admin/state", self.admin_state, methods=["GET"]),
            Route("/admin/close_market", self.admin_close_market, methods=["POST"]),
            Route("/admin/settle_market", self.admin_settle_market, methods=["POST"]),
            Route("/admin/maintenance", self.admin_maintenance, methods=["POST"]),
            WebSocketRoute(WS_PATH, self.websocket),
        ]
        self.starlette = Starlette(routes=routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope[RAW] = (receive, send)
        await self.starlette(scope, receive, send)

    # -- the pipeline -----------------------------------------------------------------------------

    def authentic(self, headers: Any, method: str, path: str) -> bool:
        key, ts, sig = (headers.get(h) for h in (KEY_HEADER, TIMESTAMP_HEADER, SIGNATURE_HEADER))
        if key != self.state.config.key_id or not ts or not sig or not ts.isdigit():
            return False
        if abs(self.state.clock() - int(ts)) > self.state.config.max_skew_s * 1000:
            return False
        return verify(self.public_key, sig, signature_payload(int(ts), method, path))

    def _endpoint(self, handler: Handler) -> Handler:
        async def endpoint(request: Request) -> Response:
            method, path = request.method, request.url.path
            if not self.authentic(request.headers, method, path):
                return error(401, "authentication_error", "invalid signature or key")
            short = path.removeprefix(PREFIX)
            self.state.requests[f"{method} {short}"] += 1
            short = fault_path(short)
            faults = self.state.faults
            slow = faults.roll(FaultKind.LATENCY, method=method, path=short)
            if slow is not None:
                await self._sleep(float(slow.param("seconds", 0.2)))
            if faults.roll(FaultKind.RATE_LIMIT_429, method=method, path=short) is not None:
                return JSONResponse({"error": "too many requests"}, status_code=429)
            if not self._within_budget(method, short):
                faults.count("rate_limited")
                return JSONResponse({"error": "too many requests"}, status_code=429)
            fivexx = faults.roll(FaultKind.HTTP_5XX, method=method, path=short)
            if fivexx is not None and not fivexx.param("after_accept", False):
                return error(int(fivexx.param("status", 503)), "internal_error", "unavailable")
            try:
                response = await handler(request)
            except VenueRefusal as exc:
                return error(exc.status, exc.code, exc.message)
            if fivexx is not None:
                return error(int(fivexx.param("status", 503)), "internal_error", "unavailable")
            drop = faults.roll(FaultKind.DROP_RESPONSE, method=method, path=short)
            if drop is not None:
                return await self._drop(request, drop)
            return response

        return endpoint

    def _within_budget(self, method: str, path: str) -> bool:
        budget = self.state.budget
        if budget is None:
            return True
        write = path.startswith("/portfolio/events/orders") and method in ("POST", "DELETE")
        cost = CANCEL_COST if method == "DELETE" else DEFAULT_COST
        return budget.bucket(write=write).try_take(cost)

    async def _sleep(self, seconds: float) -> None:
        await wait_event(self.stopping, seconds)

    async def _drop(self, request: Request, rule: FaultRule) -> Response:
        """The request took effect; its answer never arrives (reset, or held until given up)."""
        raw_receive, raw_send = request.scope[RAW]
        if str(rule.param("mode", "close")) == "close":
            transport = getattr(getattr(raw_send, "__self__", None), "transport", None)
            if transport is not None:
                transport.abort()

        async def until_disconnect() -> None:
            while (await raw_receive())["type"] != "http.disconnect":
                pass

        waits = {
            asyncio.ensure_future(self.stopping.wait()),
            asyncio.ensure_future(until_disconnect()),
        }
        try:
            await asyncio.wait(
                waits,
                timeout=float(rule.param("hang_seconds", 30.0)),
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            for t in waits:
                t.cancel()
            await asyncio.gather(*waits, return_exceptions=True)
        return Response(status_code=504)

    # -- orders -----------------------------------------------------------------------------------

    async def create(self, request: Request) -> Response:
        body = await _json(request)
        coid = str(body.get("client_order_id", ""))
        self.state.submissions.append(coid)
        ticker = str(body.get("ticker", ""))
        if ticker not in self.state.markets:
            raise VenueRefusal(404, "market_not_found", f"no market {ticker}")
        if self.state.status[ticker] != "active":
            raise VenueRefusal(400, "market_closed", f"market {ticker} is closed")
        if self.state.maintenance:
            raise VenueRefusal(400, "exchange_paused", "trading is paused for maintenance")
        if coid and not _COID.match(coid):
            raise VenueRefusal(400, "invalid_parameters", "client_order_id")
        side = {"bid": Side.BUY, "ask": Side.SELL}.get(str(body.get("side")))
        tif = _TIF.get(str(body.get("time_in_force")))
        if side is None or tif is None or "self_trade_prevention_type" not in body:
            raise VenueRefusal(400, "invalid_parameters", "side, time_in_force or stp")
        qty, price = _decimal(body.get("count")), _decimal(body.get("price"))
        if qty is None or qty <= 0 or qty % _CENT != 0:
            raise VenueRefusal(400, "invalid_parameters", "count must be a positive 0.01 step")
        if price is None or not (_CENT <= price <= Decimal("0.99")) or price % _CENT != 0:
            raise VenueRefusal(400, "invalid_price", "price is off the market's price_ranges")
        if (
            side is Side.SELL
            and self.state.no_collateral_needed(ticker, qty, price) > self.state.cash_available()
        ):
            raise VenueRefusal(400, "insufficient_balance", "insufficient balance")
        order = NewOrder(
            symbol=ticker,
            client_order_id=coid,
            side=side,
            type=OrderType.LIMIT,
            quantity=qty,
            price=price,
            time_in_force=tif,
        )
        try:
            placed, _ = self.state.core.place(order, clock=self.state.clock)
        except Refused as exc:
            if exc.kind is RefusalKind.DUPLICATE:
                raise VenueRefusal(409, "order_already_exists", "client_order_id is open") from None
            raise VenueRefusal(400, "insufficient_balance", "insufficient balance") from None
        if self.state.faults.roll(FaultKind.DUPLICATE_CREATE_409) is not None:
            raise VenueRefusal(409, "order_already_exists", "client_order_id is open")
        answer: dict[str, Any] = {
            "order_id": self.state.uuid_of(placed),
            "client_order_id": coid,
            "fill_count": count(placed.filled),
            "remaining_count": count(placed.remaining if placed.is_open else Decimal(0)),
            "ts_ms": placed.updated,
        }
        if placed.filled > 0:
            answer["average_fill_price"] = dollars(placed.cumulative_quote / placed.filled)
            fees = sum((f.fee for f in placed.fills), Decimal(0))
            answer["average_fee_paid"] = dollars(fees / placed.filled)
        return JSONResponse(answer, status_code=201)

    async def cancel(self, request: Request) -> Response:
        core_id = self.state.order_by_uuid.get(request.path_params["order_id"])
        order = None if core_id is None else self.state.core.orders[core_id]
        if order is not None and self.state.status[order.symbol] != "active":
            raise VenueRefusal(400, "market_closed", f"market {order.symbol} is closed")
        if order is None or not order.is_open:
            raise VenueRefusal(404, "not_found", "no open order with this id")
        left = order.remaining
        self.state.core.cancel(order.order_id, clock=self.state.clock)
        return JSONResponse(
            {
                "order_id": self.state.uuid_of(order),
                "client_order_id": order.client_order_id,
                "reduced_by": count(left),
                "ts_ms": order.updated,
            }
        )

    async def orders(self, request: Request) -> Response:
        q = request.query_params
        min_ts = q.get("min_ts")
        rows = self.state.listed_orders(
            ticker=q.get("ticker"),
            status=q.get("status"),
            min_ts=int(min_ts) if min_ts and min_ts.isdigit() else None,
        )
        page, cursor = _page(rows, q.get("cursor", ""), q.get("limit", "100"))
        return JSONResponse({"orders": page, "cursor": cursor})

    async def order(self, request: Request) -> Response:
        core_id = self.state.order_by_uuid.get(request.path_params["order_id"])
        if core_id is None or not self.state.visible(self.state.core.orders[core_id].created):
            raise VenueRefusal(404, "not_found", "order not found")
        return JSONResponse({"order": self.state.order_json(self.state.core.orders[core_id])})

    async def fills(self, request: Request) -> Response:
        q = request.query_params
        rows = self.state.listed_fills(ticker=q.get("ticker"), order_id=q.get("order_id"))
        page, cursor = _page(rows, q.get("cursor", ""), q.get("limit", "100"))
        return JSONResponse({"fills": page, "cursor": cursor})

    # -- account and markets ----------------------------------------------------------------------

    async def balance(self, request: Request) -> Response:
        free = self.state.cash_available()
        return JSONResponse(
            {
                "balance": int(free * 100),
                "balance_dollars": dollars(free),
                "portfolio_value": 0,
                "updated_ts": self.state.clock() // 1000,
            }
        )

    async def positions(self, request: Request) -> Response:
        rows = [
            {
                "ticker": t,
                "exchange_index": 0,
                "position_fp": count(self.state.position(t)),
                "market_exposure_dollars": "0.0000",
                "realized_pnl_dollars": "0.0000",
                "fees_paid_dollars": "0.0000",
                "total_traded_dollars": "0.0000",
            }
            for t in self.state.markets
        ]
        return JSONResponse({"market_positions": rows, "event_positions": [], "cursor": ""})

    async def settlements(self, request: Request) -> Response:
        q = request.query_params
        min_ts = q.get("min_ts")
        since_ms = int(min_ts) * 1000 if min_ts and min_ts.isdigit() else None
        rows = [
            row
            for row in reversed(self.state.settlements)  # newest first, as the venue lists
            if since_ms is None or _ms(row["settled_time"]) >= since_ms
        ]
        page, cursor = _page(rows, q.get("cursor", ""), q.get("limit", "100"))
        return JSONResponse({"settlements": page, "cursor": cursor})

    async def market(self, request: Request) -> Response:
        spec = self.state.markets.get(request.path_params["ticker"])
        if spec is None:
            raise VenueRefusal(404, "not_found", "market not found")
        touch = self.state.core.touch.get(spec.ticker)
        return JSONResponse(
            {
                "market": {
                    "ticker": spec.ticker,
                    "event_ticker": spec.event_ticker,
                    "market_type": "binary",
                    "status": self.state.status[spec.ticker],
                    "close_time": spec.close_time,
                    "yes_bid_dollars": dollars(touch.bid if touch else spec.bid),
                    "yes_ask_dollars": dollars(touch.ask if touch else spec.ask),
                    "price_level_structure": "linear_cent",
                    "price_ranges": [{"start": "0.0000", "end": "1.0000", "step": "0.0100"}],
                }
            }
        )

    async def user_data_ts(self, request: Request) -> Response:
        return JSONResponse({"as_of_time": iso(self.state.as_of_ms())})

    # -- admin ------------------------------------------------------------------------------------

    async def admin_quote(self, request: Request) -> Response:
        body = await _json(request)
        ticker = str(body.get("symbol", ""))
        values = [_decimal(body.get(k)) for k in ("bid", "ask", "size")]
        if ticker not in self.state.markets or any(v is None for v in values):
            return error(400, "invalid_parameters", "symbol, bid, ask, size")
        bid, ask, size = (v for v in values if v is not None)
        self.state.set_quote(ticker, bid=bid, ask=ask, size=size)
        return JSONResponse({"ok": True})

    async def admin_close_market(self, request: Request) -> Response:
        ticker = str((await _json(request)).get("ticker", ""))
        if ticker not in self.state.markets:
            return error(404, "not_found", "market not found")
        return JSONResponse({"canceled": self.state.close_market(ticker)})

    async def admin_settle_market(self, request: Request) -> Response:
        body = await _json(request)
        ticker, result = str(body.get("ticker", "")), str(body.get("result", ""))
        if ticker not in self.state.markets:
            return error(404, "not_found", "market not found")
        if result not in ("yes", "no"):
            return error(400, "invalid_parameters", "result must be yes or no")
        if self.state.status[ticker] == "finalized":
            return error(409, "market_settled", f"market {ticker} has settled already")
        return JSONResponse({"settlement": self.state.settle_market(ticker, result)})

    async def admin_maintenance(self, request: Request) -> Response:
        self.state.maintenance = bool((await _json(request)).get("on", False))
        return JSONResponse({"maintenance": self.state.maintenance})

    async def admin_state(self, request: Request) -> Response:
        return JSONResponse(self.state.ground_truth())

    # -- WebSocket --------------------------------------------------------------------------------

    async def websocket(self, ws: WebSocket) -> None:
        if self.state.refuse_streams or not self.authentic(ws.headers, "GET", WS_PATH):
            await ws.close(code=1008)
            return
        await ws.accept()
        sub = Subscriber()

        async def commands() -> None:
            while True:
                message = await ws.receive()
                if message["type"] == "websocket.disconnect":
                    return
                frame = json.loads(message.get("text") or message.get("bytes") or b"{}")
                params = frame.get("params", {})
                if frame.get("cmd") == "unsubscribe":
                    for sid in self.state.unsubscribe_sids(sub, list(params.get("sids", []))):
                        sub.queue.put_nowait(
                            {"id": frame.get("id"), "type": "unsubscribed", "sid": sid}
                        )
                    continue
                if frame.get("cmd") != "subscribe":
                    continue
                sids = self.state.subscribe(
                    sub, list(params.get("channels", [])), list(params.get("market_tickers", []))
                )
                for channel, sid in sids.items():
                    sub.queue.put_nowait(
                        {
                            "id": frame.get("id"),
                            "type": "subscribed",
                            "msg": {"channel": channel, "sid": sid},
                        }
                    )
                if "orderbook_delta" in sids:
                    # a snapshot of each market first, numbered in the subscription's sequence
                    # (no await in between: no delta can come before it)
                    sub.yes_price = bool(params.get("use_yes_price", False))
                    for ticker in self.state.markets:
                        if not sub.tickers or ticker in sub.tickers:
                            sub.queue.put_nowait(
                                self.state.book_snapshot(sub, sids["orderbook_delta"], ticker)
                            )
                if "ticker" in sids:
                    # the current touch at once, so a subscriber never waits for a move
                    for ticker in self.state.markets:
                        if not sub.tickers or ticker in sub.tickers:
                            msg = self.state.ticker_msg(ticker)
                            await sub.queue.put(
                                {"type": "ticker", "sid": sids["ticker"], "msg": msg}
                            )

        reader = asyncio.create_task(commands())
        stop = asyncio.ensure_future(self.stopping.wait())
        try:
            while True:
                get = asyncio.ensure_future(sub.queue.get())
                done, _ = await asyncio.wait(
                    {get, reader, stop}, return_when=asyncio.FIRST_COMPLETED
                )
                if get not in done:
                    get.cancel()
                    break
                item = get.result()
                if item is None:
                    break  # a fault drops the connection
                await ws.send_text(json.dumps(item))
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            self.state.unsubscribe(sub)
            stop.cancel()
            reader.cancel()
            await asyncio.gather(reader, stop, return_exceptions=True)
            with contextlib.suppress(RuntimeError, WebSocketDisconnect):
                await ws.close()


async def _json(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.body())
    except ValueError:
        raise VenueRefusal(400, "invalid_parameters", "body is not JSON") from None
    if not isinstance(body, dict):
        raise VenueRefusal(400, "invalid_parameters", "body is not an object")
    return body


_ORDER_ID_SEGMENT = re.compile(r"(/orders/)[^/]+$")


def fault_path(path: str) -> str:
    """The path a fault rule names: an order id in it is written ``{order_id}``
    (``DELETE /portfolio/events/orders/{order_id}``), so a rule can target cancels."""
    return _ORDER_ID_SEGMENT.sub(r"\1{order_id}", path)


def _ms(rfc3339: str) -> int:
    return int(datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp() * 1000)


def _decimal(value: object) -> Decimal | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = Decimal(value)
    except InvalidOperation:
        return None
    return parsed if parsed.is_finite() else None


def _page(rows: list[dict[str, Any]], cursor: str, limit: str) -> tuple[list[dict[str, Any]], str]:
    start = int(cursor) if cursor.isdigit() else 0
    size = max(1, min(int(limit) if limit.isdigit() else 100, 1000))
    page = rows[start : start + size]
    more = start + size < len(rows)
    return page, str(start + size) if more else ""
