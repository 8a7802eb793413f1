"""Public and account REST routes: ping, time, exchangeInfo, allOrders, myTrades, account."""

from __future__ import annotations

import json
from decimal import Decimal

from starlette.requests import Request

from engine.venues.simulator import wire
from engine.venues.simulator.params import int_param, limit_param, symbol_param
from engine.venues.simulator.pipeline import Payload
from engine.venues.simulator.records import Rejection
from engine.venues.simulator.state import SimulatorState


class AccountRoutes:
    def __init__(self, state: SimulatorState) -> None:
        self.state = state

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

    async def all_orders(self, request: Request, params: dict[str, str]) -> Payload:
        symbol = symbol_param(self.state, params)
        limit = limit_param(params)
        from_id = int_param(params, "orderId")
        start, end = int_param(params, "startTime"), int_param(params, "endTime")
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
        symbol = symbol_param(self.state, params)
        limit = limit_param(params)
        from_id = int_param(params, "fromId")
        order_id = int_param(params, "orderId")
        start, end = int_param(params, "startTime"), int_param(params, "endTime")
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
