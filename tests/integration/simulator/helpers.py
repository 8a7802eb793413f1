"""A minimal signed Binance client for the simulator tests (the production adapter lives in
engine/venues/binance; these tests pin the simulator's wire behaviour on their own)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import httpx
from websockets.asyncio.client import ClientConnection

from engine.venues.simulator import DEFAULT_API_KEY, DEFAULT_API_SECRET


def sign(query: str, secret: str = DEFAULT_API_SECRET) -> str:
    return hmac.new(secret.encode(), query.encode(), hashlib.sha256).hexdigest()


class SignedClient:
    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        api_key: str = DEFAULT_API_KEY,
        api_secret: str = DEFAULT_API_SECRET,
        now_ms: Callable[[], int] | None = None,
    ) -> None:
        self.http = http
        self.api_key = api_key
        self.api_secret = api_secret
        self.now_ms = now_ms or (lambda: int(time.time() * 1000))

    async def call(self, method: str, path: str, **params: Any) -> httpx.Response:
        params.setdefault("timestamp", self.now_ms())
        query = urlencode({k: v for k, v in params.items() if v is not None})
        query += "&signature=" + sign(query, self.api_secret)
        return await self.http.request(
            method, f"{path}?{query}", headers={"X-MBX-APIKEY": self.api_key}
        )

    async def order(self, **params: Any) -> httpx.Response:
        return await self.call("POST", "/api/v3/order", **params)

    async def limit(
        self, symbol: str, side: str, qty: str, price: str, cid: str, tif: str = "GTC", **kw: Any
    ) -> httpx.Response:
        return await self.order(
            symbol=symbol,
            side=side,
            type="LIMIT",
            timeInForce=tif,
            quantity=qty,
            price=price,
            newClientOrderId=cid,
            **kw,
        )


def ws_subscribe_params(
    now_ms: int, *, api_key: str = DEFAULT_API_KEY, secret: str = DEFAULT_API_SECRET
) -> dict[str, Any]:
    params: dict[str, Any] = {"apiKey": api_key, "timestamp": now_ms}
    payload = "&".join(f"{k}={v}" for k, v in sorted(params.items()))
    params["signature"] = sign(payload, secret)
    return params


async def subscribe_user(ws: ClientConnection, req_id: int = 1) -> dict[str, Any]:
    await ws.send(
        json.dumps(
            {
                "id": req_id,
                "method": "userDataStream.subscribe.signature",
                "params": ws_subscribe_params(int(time.time() * 1000)),
            }
        )
    )
    return json.loads(await ws.recv())


async def recv_json(ws: ClientConnection, timeout: float = 5.0) -> Any:
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def recv_events(
    ws: ClientConnection, count: int, timeout: float = 5.0
) -> list[dict[str, Any]]:
    """The next ``count`` user events (``event`` payloads), in arrival order."""
    out: list[dict[str, Any]] = []
    while len(out) < count:
        msg = await recv_json(ws, timeout)
        if "event" in msg:
            out.append(msg["event"])
    return out
