"""The WebSocket API (``/ws-api/v3``): ping, time and the user-data stream subscription."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from engine.venues.simulator.auth import Authenticator
from engine.venues.simulator.ratelimits import RateLimits
from engine.venues.simulator.records import Rejection
from engine.venues.simulator.state import SimulatorState

_CLOSE = object()


class UserStreamEndpoint:
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

    async def serve(self, websocket: WebSocket) -> None:
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
                self.auth.authenticate_ws(params)
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
                        # asyncio.timeout, not wait_for (engine/tasks.py: a cancel is never lost)
                        async with asyncio.timeout(self.HOLD_SECONDS):
                            item, flag = await self.queue.get()
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
