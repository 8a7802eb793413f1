"""Binance Spot JSON shapes, rendered from the engine's objects (field names as documented)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from engine.domain.types import OrderType
from engine.venues.simulator.config import SymbolSpec
from engine.venues.simulator.market import Kline
from engine.venues.simulator.records import (
    AccountPositionEvent,
    BalanceUpdateEvent,
    ExecutionEvent,
    SimOrder,
    SimTrade,
)


def fmt(value: Decimal) -> str:
    """Binance sends decimals as strings with 8 places."""
    return f"{value:.8f}"


def _tif(order: SimOrder) -> str:
    # Binance reports GTC for MARKET orders
    return "GTC" if order.type is OrderType.MARKET else order.time_in_force.value


def order_ack(order: SimOrder) -> dict[str, Any]:
    return {
        "symbol": order.symbol,
        "orderId": order.order_id,
        "orderListId": -1,
        "clientOrderId": order.client_order_id,
        "transactTime": order.time_ms,
    }


def order_result(order: SimOrder) -> dict[str, Any]:
    out = order_ack(order)
    out.update(
        {
            "price": fmt(order.price),
            "origQty": fmt(order.orig_qty),
            "executedQty": fmt(order.executed_qty),
            "origQuoteOrderQty": fmt(Decimal(0)),
            "cummulativeQuoteQty": fmt(order.cumulative_quote),
            "status": order.status.value,
            "timeInForce": _tif(order),
            "type": order.type.value,
            "side": order.side.value,
            "workingTime": order.working_ms,
            "selfTradePreventionMode": "NONE",
        }
    )
    return out


def order_full(order: SimOrder, trades: tuple[SimTrade, ...]) -> dict[str, Any]:
    out = order_result(order)
    out["fills"] = [
        {
            "price": fmt(t.price),
            "qty": fmt(t.qty),
            "commission": fmt(t.commission),
            "commissionAsset": t.commission_asset,
            "tradeId": t.trade_id,
        }
        for t in trades
    ]
    return out


def order_query(order: SimOrder) -> dict[str, Any]:
    """``GET /api/v3/order`` / ``openOrders`` / ``allOrders`` element."""
    return {
        "symbol": order.symbol,
        "orderId": order.order_id,
        "orderListId": -1,
        "clientOrderId": order.client_order_id,
        "price": fmt(order.price),
        "origQty": fmt(order.orig_qty),
        "executedQty": fmt(order.executed_qty),
        "cummulativeQuoteQty": fmt(order.cumulative_quote),
        "status": order.status.value,
        "timeInForce": _tif(order),
        "type": order.type.value,
        "side": order.side.value,
        "stopPrice": fmt(Decimal(0)),
        "icebergQty": fmt(Decimal(0)),
        "time": order.time_ms,
        "updateTime": order.update_ms,
        "isWorking": order.working_ms >= 0,
        "workingTime": order.working_ms,
        "origQuoteOrderQty": fmt(Decimal(0)),
        "selfTradePreventionMode": "NONE",
    }


def cancel_result(order: SimOrder, cancel_client_order_id: str, now_ms: int) -> dict[str, Any]:
    return {
        "symbol": order.symbol,
        "origClientOrderId": order.client_order_id,
        "orderId": order.order_id,
        "orderListId": -1,
        "clientOrderId": cancel_client_order_id,
        "transactTime": now_ms,
        "price": fmt(order.price),
        "origQty": fmt(order.orig_qty),
        "executedQty": fmt(order.executed_qty),
        "cummulativeQuoteQty": fmt(order.cumulative_quote),
        "status": order.status.value,
        "timeInForce": _tif(order),
        "type": order.type.value,
        "side": order.side.value,
        "selfTradePreventionMode": "NONE",
    }


def my_trade(t: SimTrade) -> dict[str, Any]:
    return {
        "symbol": t.symbol,
        "id": t.trade_id,
        "orderId": t.order_id,
        "orderListId": -1,
        "price": fmt(t.price),
        "qty": fmt(t.qty),
        "quoteQty": fmt(t.quote_qty),
        "commission": fmt(t.commission),
        "commissionAsset": t.commission_asset,
        "time": t.time_ms,
        "isBuyer": t.side.value == "BUY",
        "isMaker": t.is_maker,
        "isBestMatch": True,
    }


def symbol_info(spec: SymbolSpec) -> dict[str, Any]:
    filters: list[dict[str, Any]] = [
        {
            "filterType": "PRICE_FILTER",
            "minPrice": fmt(spec.effective_min_price),
            "maxPrice": fmt(spec.max_price),
            "tickSize": fmt(spec.tick_size),
        },
        {
            "filterType": "LOT_SIZE",
            "minQty": fmt(spec.effective_min_qty),
            "maxQty": fmt(spec.max_qty),
            "stepSize": fmt(spec.step_size),
        },
        {
            "filterType": "NOTIONAL",
            "minNotional": fmt(spec.min_notional),
            "applyMinToMarket": True,
            "maxNotional": fmt(spec.max_notional if spec.max_notional is not None else Decimal(0)),
            "applyMaxToMarket": spec.max_notional is not None,
            "avgPriceMins": 0,
        },
    ]
    if spec.max_notional is None:
        # Binance's NOTIONAL filter always carries maxNotional; a huge value means "no cap"
        filters[2]["maxNotional"] = fmt(Decimal(9_000_000_000))
    return {
        "symbol": spec.symbol,
        "status": "TRADING",
        "baseAsset": spec.base_asset,
        "baseAssetPrecision": 8,
        "quoteAsset": spec.quote_asset,
        "quotePrecision": 8,
        "quoteAssetPrecision": 8,
        "baseCommissionPrecision": 8,
        "quoteCommissionPrecision": 8,
        "orderTypes": ["LIMIT", "MARKET"],
        "icebergAllowed": False,
        "ocoAllowed": False,
        "otoAllowed": False,
        "quoteOrderQtyMarketAllowed": False,
        "allowTrailingStop": False,
        "cancelReplaceAllowed": False,
        "isSpotTradingAllowed": True,
        "isMarginTradingAllowed": False,
        "filters": filters,
        "permissions": [],
        "permissionSets": [["SPOT"]],
        "defaultSelfTradePreventionMode": "NONE",
        "allowedSelfTradePreventionModes": ["NONE"],
    }


def execution_report(ev: ExecutionEvent) -> dict[str, Any]:
    o = ev.order
    t = ev.trade
    out: dict[str, Any] = {
        "e": "executionReport",
        "E": ev.event_ms,
        "s": o.symbol,
        "c": ev.cancel_client_order_id or o.client_order_id,
        "S": o.side.value,
        "o": o.type.value,
        "f": _tif(o),
        "q": fmt(o.orig_qty),
        "p": fmt(o.price),
        "P": fmt(Decimal(0)),
        "F": fmt(Decimal(0)),
        "g": -1,
        "C": o.client_order_id if ev.cancel_client_order_id else "",
        "x": ev.execution_type,
        "X": o.status.value,
        "r": "NONE",
        "i": o.order_id,
        "l": fmt(t.qty if t else Decimal(0)),
        "z": fmt(o.executed_qty),
        "L": fmt(t.price if t else Decimal(0)),
        "n": fmt(t.commission) if t else "0",
        "N": t.commission_asset if t else None,
        "T": ev.event_ms,
        "t": t.trade_id if t else -1,
        "I": 0,
        "w": o.is_open and o.working_ms >= 0,
        "m": t.is_maker if t else False,
        "M": False,
        "O": o.time_ms,
        "Z": fmt(o.cumulative_quote),
        "Y": fmt(t.quote_qty if t else Decimal(0)),
        "Q": fmt(Decimal(0)),
        "V": "NONE",
    }
    if o.working_ms >= 0:
        out["W"] = o.working_ms
    return out


def account_position(ev: AccountPositionEvent) -> dict[str, Any]:
    return {
        "e": "outboundAccountPosition",
        "E": ev.event_ms,
        "u": ev.event_ms,
        "B": [{"a": a, "f": fmt(free), "l": fmt(locked)} for a, free, locked in ev.balances],
    }


def balance_update(ev: BalanceUpdateEvent) -> dict[str, Any]:
    return {
        "e": "balanceUpdate",
        "E": ev.event_ms,
        "a": ev.asset,
        "d": fmt(ev.delta),
        "T": ev.event_ms,
    }


def user_event(ev: ExecutionEvent | AccountPositionEvent | BalanceUpdateEvent) -> dict[str, Any]:
    if isinstance(ev, ExecutionEvent):
        return execution_report(ev)
    if isinstance(ev, AccountPositionEvent):
        return account_position(ev)
    return balance_update(ev)


def book_ticker(
    symbol: str, update_id: int, bid: Decimal, bid_qty: Decimal, ask: Decimal, ask_qty: Decimal
) -> dict[str, Any]:
    return {
        "u": update_id,
        "s": symbol,
        "b": fmt(bid),
        "B": fmt(bid_qty),
        "a": fmt(ask),
        "A": fmt(ask_qty),
    }


def public_trade(
    symbol: str, trade_id: int, price: Decimal, qty: Decimal, buyer_is_maker: bool, now_ms: int
) -> dict[str, Any]:
    return {
        "e": "trade",
        "E": now_ms,
        "s": symbol,
        "t": trade_id,
        "p": fmt(price),
        "q": fmt(qty),
        "T": now_ms,
        "m": buyer_is_maker,
        "M": True,
    }


def kline(symbol: str, k: Kline, now_ms: int) -> dict[str, Any]:
    return {
        "e": "kline",
        "E": now_ms,
        "s": symbol,
        "k": {
            "t": k.open_ms,
            "T": k.close_ms,
            "s": symbol,
            "i": k.interval,
            "f": k.first_trade_id,
            "L": k.last_trade_id,
            "o": fmt(k.open),
            "c": fmt(k.close),
            "h": fmt(k.high),
            "l": fmt(k.low),
            "v": fmt(k.volume),
            "n": k.trades,
            "x": k.closed,
            "q": fmt(k.quote_volume),
            "V": fmt(k.taker_buy_volume),
            "Q": fmt(k.taker_buy_quote),
            "B": "0",
        },
    }
