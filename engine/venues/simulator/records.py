"""The simulator's Binance-shaped records: orders and trades as the wire and the snapshots show
them, the user-data events, and the protocol's refusals. Orders are live views of the matching
core's orders, so a lookup and the order book agree on the very same object."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from engine.domain.types import Liquidity, OrderType, Side, TimeInForce, VenueOrderStatus
from engine.venues.matching import Fill, Order

ZERO = Decimal(0)

INSUFFICIENT_BALANCE = "Account has insufficient balance for requested action."
DUPLICATE_ORDER = "Duplicate order sent."
UNKNOWN_ORDER = "Unknown order sent."


class ExecutionType:
    NEW = "NEW"
    TRADE = "TRADE"
    CANCELED = "CANCELED"
    EXPIRED = "EXPIRED"
    REJECTED = "REJECTED"


class Rejection(Exception):
    """A request the venue refuses, with the Binance error code, message and HTTP status."""

    def __init__(self, code: int, msg: str, *, http_status: int = 400) -> None:
        super().__init__(f"{code}: {msg}")
        self.code = code
        self.msg = msg
        self.http_status = http_status


class SimOrder:
    """One order in Binance's terms (``price`` zero for MARKET, times in epoch ms)."""

    __slots__ = ("core",)

    def __init__(self, core: Order[int]) -> None:
        self.core = core

    @property
    def order_id(self) -> int:
        return self.core.order_id

    @property
    def symbol(self) -> str:
        return self.core.symbol

    @property
    def client_order_id(self) -> str:
        return self.core.client_order_id

    @property
    def side(self) -> Side:
        return self.core.side

    @property
    def type(self) -> OrderType:
        return self.core.type

    @property
    def time_in_force(self) -> TimeInForce:
        return self.core.time_in_force

    @property
    def price(self) -> Decimal:
        return self.core.price if self.core.price is not None else ZERO

    @property
    def orig_qty(self) -> Decimal:
        return self.core.quantity

    @property
    def executed_qty(self) -> Decimal:
        return self.core.filled

    @property
    def cumulative_quote(self) -> Decimal:
        return self.core.cumulative_quote

    @property
    def status(self) -> VenueOrderStatus:
        return self.core.status

    @property
    def time_ms(self) -> int:
        return self.core.created

    @property
    def update_ms(self) -> int:
        return self.core.updated

    @property
    def working_ms(self) -> int:
        # a GTC limit order is working from acceptance (it rests unless it fills at once)
        gtc_limit = self.type is OrderType.LIMIT and self.time_in_force is TimeInForce.GTC
        return self.time_ms if gtc_limit else -1

    @property
    def locked(self) -> Decimal:
        return self.core.locked

    @property
    def seq(self) -> int:
        return self.core.seq

    @property
    def remaining(self) -> Decimal:
        return self.core.remaining

    @property
    def is_open(self) -> bool:
        return self.core.is_open

    def copy(self) -> SimOrder:
        return SimOrder(self.core.snapshot())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SimOrder) and self.to_json() == other.to_json()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"SimOrder({self.to_json()!r})"

    def to_json(self) -> dict[str, Any]:
        return {
            "order_id": self.order_id,
            "symbol": self.symbol,
            "client_order_id": self.client_order_id,
            "side": self.side.value,
            "type": self.type.value,
            "time_in_force": self.time_in_force.value,
            "price": str(self.price),
            "orig_qty": str(self.orig_qty),
            "executed_qty": str(self.executed_qty),
            "cumulative_quote": str(self.cumulative_quote),
            "status": self.status.value,
            "time_ms": self.time_ms,
            "update_ms": self.update_ms,
            "working_ms": self.working_ms,
            "locked": str(self.locked),
            "seq": self.seq,
        }

    @staticmethod
    def core_from_json(d: Mapping[str, Any]) -> Order[int]:
        order_type = OrderType(d["type"])
        return Order(
            order_id=int(d["order_id"]),
            symbol=str(d["symbol"]),
            client_order_id=str(d["client_order_id"]),
            side=Side(d["side"]),
            type=order_type,
            time_in_force=TimeInForce(d["time_in_force"]),
            price=Decimal(d["price"]) if order_type is OrderType.LIMIT else None,
            quantity=Decimal(d["orig_qty"]),
            filled=Decimal(d["executed_qty"]),
            cumulative_quote=Decimal(d["cumulative_quote"]),
            status=VenueOrderStatus(d["status"]),
            created=int(d["time_ms"]),
            updated=int(d["update_ms"]),
            locked=Decimal(d["locked"]),
            seq=int(d["seq"]),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class SimTrade:
    """One of our fills."""

    trade_id: int
    symbol: str
    order_id: int
    client_order_id: str
    side: Side
    price: Decimal
    qty: Decimal
    quote_qty: Decimal
    commission: Decimal
    commission_asset: str
    time_ms: int
    is_maker: bool

    @classmethod
    def of(cls, fill: Fill[int]) -> SimTrade:
        return cls(
            trade_id=fill.trade_id,
            symbol=fill.symbol,
            order_id=fill.order_id,
            client_order_id=fill.client_order_id,
            side=fill.side,
            price=fill.price,
            qty=fill.quantity,
            quote_qty=fill.quote_quantity,
            commission=fill.fee,
            commission_asset=fill.fee_asset,
            time_ms=fill.at,
            is_maker=fill.liquidity is Liquidity.MAKER,
        )

    def to_fill(self) -> Fill[int]:
        return Fill(
            trade_id=self.trade_id,
            symbol=self.symbol,
            order_id=self.order_id,
            client_order_id=self.client_order_id,
            side=self.side,
            price=self.price,
            quantity=self.qty,
            quote_quantity=self.quote_qty,
            fee=self.commission,
            fee_asset=self.commission_asset,
            liquidity=Liquidity.MAKER if self.is_maker else Liquidity.TAKER,
            at=self.time_ms,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "trade_id": self.trade_id,
            "symbol": self.symbol,
            "order_id": self.order_id,
            "client_order_id": self.client_order_id,
            "side": self.side.value,
            "price": str(self.price),
            "qty": str(self.qty),
            "quote_qty": str(self.quote_qty),
            "commission": str(self.commission),
            "commission_asset": self.commission_asset,
            "time_ms": self.time_ms,
            "is_maker": self.is_maker,
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> SimTrade:
        return cls(
            trade_id=int(d["trade_id"]),
            symbol=str(d["symbol"]),
            order_id=int(d["order_id"]),
            client_order_id=str(d["client_order_id"]),
            side=Side(d["side"]),
            price=Decimal(d["price"]),
            qty=Decimal(d["qty"]),
            quote_qty=Decimal(d["quote_qty"]),
            commission=Decimal(d["commission"]),
            commission_asset=str(d["commission_asset"]),
            time_ms=int(d["time_ms"]),
            is_maker=bool(d["is_maker"]),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class ExecutionEvent:
    """What an ``executionReport`` carries: the order after the event, and the fill if any."""

    execution_type: str
    order: SimOrder
    trade: SimTrade | None
    event_ms: int
    #: the cancel request's own client id (Binance puts the original id in ``C``)
    cancel_client_order_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class AccountPositionEvent:
    """``outboundAccountPosition``: the balances an event touched."""

    balances: tuple[tuple[str, Decimal, Decimal], ...]
    event_ms: int


@dataclass(frozen=True, slots=True, kw_only=True)
class BalanceUpdateEvent:
    """``balanceUpdate``: a deposit or withdrawal."""

    asset: str
    delta: Decimal
    event_ms: int


UserEvent = ExecutionEvent | AccountPositionEvent | BalanceUpdateEvent


@dataclass(frozen=True, slots=True, kw_only=True)
class NewOrder:
    symbol: str
    side: Side
    type: OrderType
    quantity: Decimal
    client_order_id: str
    price: Decimal | None = None
    time_in_force: TimeInForce | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class PlaceResult:
    order: SimOrder
    trades: tuple[SimTrade, ...]
    events: tuple[UserEvent, ...]
