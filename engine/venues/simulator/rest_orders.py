"""``/api/v3/order`` (new, query, cancel) and ``/api/v3/openOrders``."""

from __future__ import annotations

from decimal import Decimal

from starlette.requests import Request

from engine.domain.types import OrderType, Side, TimeInForce
from engine.venues.simulator import wire
from engine.venues.simulator.faults import FaultKind
from engine.venues.simulator.params import (
    CLIENT_ID_RE,
    decimal_param,
    int_param,
    param_missing,
    symbol_param,
)
from engine.venues.simulator.pipeline import Payload
from engine.venues.simulator.records import NewOrder, Rejection, SimOrder
from engine.venues.simulator.state import SimulatorState

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


class OrderRoutes:
    def __init__(self, state: SimulatorState) -> None:
        self.state = state

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
        if not CLIENT_ID_RE.match(client_id):
            self.state.record_refused_submission(client_id, symbol, -1100)
            raise Rejection(
                -1100,
                "Illegal characters found in parameter 'newClientOrderId'; legal range is "
                f"'{CLIENT_ID_RE.pattern}'.",
            )
        try:
            symbol = symbol_param(self.state, params)
            side_raw = params.get("side") or ""
            type_raw = params.get("type") or ""
            if not side_raw:
                raise param_missing("side")
            if not type_raw:
                raise param_missing("type")
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
            qty = decimal_param(params, "quantity", required=True)
            price = decimal_param(params, "price", required=False)
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
        order_id = int_param(params, "orderId")
        client_id = params.get("origClientOrderId") or None
        if order_id is None and client_id is None:
            raise Rejection(
                -1102,
                "Param 'origClientOrderId' or 'orderId' must be sent, but both were empty/null!",
            )
        return order_id, client_id

    async def query_order(self, request: Request, params: dict[str, str]) -> Payload:
        symbol = symbol_param(self.state, params)
        order_id, client_id = self._lookup_ids(params)
        order = self.state.engine.find(symbol, order_id=order_id, client_order_id=client_id)
        if order is None:
            raise Rejection(-2013, "Order does not exist.")
        return wire.order_query(order)

    async def cancel_order(self, request: Request, params: dict[str, str]) -> Payload:
        symbol = symbol_param(self.state, params)
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
        symbol = symbol_param(self.state, params) if params.get("symbol") else None
        orders = sorted(self.state.engine.open_orders(symbol), key=lambda o: o.order_id)
        return [wire.order_query(o) for o in orders]
