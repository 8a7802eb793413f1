"""The simulator's ASGI app: Binance Spot REST (/api/v3), the WebSocket API (/ws-api/v3), market
streams (/ws/<streams>, /stream?streams=) and the admin endpoints (/admin/...), each in its own
module; REST requests all pass through :class:`~engine.venues.simulator.pipeline.RestPipeline`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute
from starlette.types import Receive, Scope, Send

from engine.venues.simulator.admin import AdminRoutes
from engine.venues.simulator.auth import Authenticator
from engine.venues.simulator.pipeline import RAW, RestPipeline
from engine.venues.simulator.ratelimits import RateLimits
from engine.venues.simulator.rest_account import AccountRoutes
from engine.venues.simulator.rest_orders import OrderRoutes
from engine.venues.simulator.state import SimulatorState
from engine.venues.simulator.ws_api import UserStreamEndpoint
from engine.venues.simulator.ws_market import MarketStreamEndpoint


class SimulatorApp:
    """Builds the Starlette app around a :class:`SimulatorState`."""

    def __init__(self, state: SimulatorState, *, stopping: asyncio.Event) -> None:
        self.state = state
        self.stopping = stopping
        self.limits = RateLimits()
        auth = Authenticator(state)
        self.pipeline = RestPipeline(state, limits=self.limits, auth=auth, stopping=stopping)
        ep = self.pipeline.endpoint
        account = AccountRoutes(state)
        self.orders = OrderRoutes(state)
        admin = AdminRoutes(state)
        user = UserStreamEndpoint(state, limits=self.limits, auth=auth, stopping=stopping)
        market = MarketStreamEndpoint(state, stopping=stopping)
        routes = [
            Route("/api/v3/ping", ep(account.ping, weight=1), methods=["GET"]),
            Route("/api/v3/time", ep(account.server_time, weight=1), methods=["GET"]),
            Route("/api/v3/exchangeInfo", ep(account.exchange_info, weight=20), methods=["GET"]),
            Route("/api/v3/order", self._dispatch_order(), methods=["GET", "POST", "DELETE"]),
            Route(
                "/api/v3/openOrders",
                ep(self.orders.open_orders, weight=6, signed=True),
                methods=["GET"],
            ),
            Route(
                "/api/v3/allOrders",
                ep(account.all_orders, weight=20, signed=True),
                methods=["GET"],
            ),
            Route(
                "/api/v3/myTrades",
                ep(account.my_trades, weight=20, signed=True),
                methods=["GET"],
            ),
            Route("/api/v3/account", ep(account.account, weight=20, signed=True), methods=["GET"]),
            Route("/admin/state", admin.admin_state, methods=["GET"]),
            Route("/admin/faults", admin.admin_faults, methods=["GET", "PUT", "POST"]),
            Route("/admin/snapshot", admin.admin_snapshot, methods=["GET", "POST"]),
            Route("/admin/restore", admin.admin_restore, methods=["POST"]),
            Route("/admin/step", admin.admin_step, methods=["POST"]),
            Route("/admin/deposit", admin.admin_deposit, methods=["POST"]),
            Route("/admin/quote", admin.admin_quote, methods=["POST"]),
            WebSocketRoute("/ws-api/v3", user.serve),
            WebSocketRoute("/ws/{streams:path}", market.ws_raw),
            WebSocketRoute("/ws", market.ws_raw),
            WebSocketRoute("/stream", market.ws_combined),
        ]
        self.starlette = Starlette(routes=routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # keep the server's own send/receive: dropping a connection needs its transport
        scope[RAW] = (receive, send)
        await self.starlette(scope, receive, send)

    def _dispatch_order(self) -> Callable[[Request], Awaitable[Response]]:
        post = self.pipeline.endpoint(
            self.orders.new_order, weight=1, signed=True, counts_order=True
        )
        get = self.pipeline.endpoint(self.orders.query_order, weight=4, signed=True)
        delete = self.pipeline.endpoint(self.orders.cancel_order, weight=1, signed=True)

        async def dispatch(request: Request) -> Response:
            if request.method == "POST":
                return await post(request)
            if request.method == "DELETE":
                return await delete(request)
            return await get(request)

        return dispatch
