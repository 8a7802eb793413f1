"""Market streams: raw (``/ws/<streams>``) and combined (``/stream?streams=``), with the
``SUBSCRIBE``/``UNSUBSCRIBE``/``LIST_SUBSCRIPTIONS`` control messages."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from engine.venues.simulator.market import INTERVAL_MS
from engine.venues.simulator.state import SimulatorState

_CLOSE = object()


class MarketStreamEndpoint:
    def __init__(self, state: SimulatorState, *, stopping: asyncio.Event) -> None:
        self.state = state
        self.stopping = stopping

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
