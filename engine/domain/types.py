"""Identifiers and enums shared by every layer.

Enum values are the strings stored in the ledger, so operators can query them verbatim.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import NewType

ClientOrderId = NewType("ClientOrderId", str)
DecisionId = NewType("DecisionId", str)
Symbol = NewType("Symbol", str)
StrategyId = NewType("StrategyId", str)
AccountId = NewType("AccountId", str)
VenueName = NewType("VenueName", str)
VenueOrderId = NewType("VenueOrderId", str)
#: Venue trade ids are kept as text: Binance uses integers, Kalshi UUIDs.
TradeId = NewType("TradeId", str)
Asset = NewType("Asset", str)


class Side(StrEnum):
    BUY = "BUY"
    SELL = "SELL"

    @property
    def sign(self) -> int:
        """+1 for a buy, -1 for a sell: the direction a fill moves the position."""
        return 1 if self is Side.BUY else -1

    @property
    def opposite(self) -> Side:
        return Side.SELL if self is Side.BUY else Side.BUY


class OrderType(StrEnum):
    LIMIT = "LIMIT"
    MARKET = "MARKET"


class TimeInForce(StrEnum):
    GTC = "GTC"  #: good till canceled
    IOC = "IOC"  #: immediate or cancel: the unfilled rest expires
    FOK = "FOK"  #: fill or kill


class Liquidity(StrEnum):
    MAKER = "MAKER"
    TAKER = "TAKER"


class OrderState(StrEnum):
    """Our ledger's view of an order (see ARCHITECTURE.md, "Order states")."""

    PENDING_SUBMIT = "PENDING_SUBMIT"  #: reserved; may or may not be on the venue
    UNKNOWN = "UNKNOWN"  #: sent, outcome unknown: must be looked up, never assumed
    OPEN = "OPEN"  #: acknowledged by the venue
    PARTIALLY_FILLED = "PARTIALLY_FILLED"
    PENDING_CANCEL = "PENDING_CANCEL"  #: cancel requested, not yet confirmed
    FILLED = "FILLED"
    CANCELED = "CANCELED"  #: possibly with fills
    REJECTED = "REJECTED"  #: the venue guarantees nothing was placed
    EXPIRED = "EXPIRED"  #: never placed and no longer wanted, or expired by the venue (IOC)

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATES


TERMINAL_STATES: frozenset[OrderState] = frozenset(
    {OrderState.FILLED, OrderState.CANCELED, OrderState.REJECTED, OrderState.EXPIRED}
)
#: states whose outcome on the venue the ledger does not know: settled only by a lookup
UNRESOLVED: frozenset[OrderState] = frozenset(
    {OrderState.PENDING_SUBMIT, OrderState.UNKNOWN, OrderState.PENDING_CANCEL}
)


class VenueOrderStatus(StrEnum):
    """An order's status as the venue reports it (Binance vocabulary, the common denominator)."""

    NEW = "NEW"
    PARTIALLY_FILLED = "PARTIALLY_FILLED"
    FILLED = "FILLED"
    CANCELED = "CANCELED"
    PENDING_CANCEL = "PENDING_CANCEL"
    REJECTED = "REJECTED"
    EXPIRED = "EXPIRED"


class DecisionOutcome(StrEnum):
    RESERVED = "reserved"  #: an order row was reserved for it
    DENIED = "denied"  #: a risk check or a control refused it
    HOLD = "hold"  #: the strategy chose to do nothing


class VerdictResult(StrEnum):
    PASS = "pass"
    REJECT = "reject"
    RESIZE = "resize"  #: passed after the quantity was reduced to fit the limit


class ControlScope(StrEnum):
    GLOBAL = "global"
    ACCOUNT = "account"
    STRATEGY = "strategy"
    SYMBOL = "symbol"


class ControlKind(StrEnum):
    HALT = "halt"  #: kill switch: no new orders; cancels and reconciliation keep working
    PAUSE = "pause"  #: no new orders for the scope
    REDUCE_ONLY = "reduce_only"  #: only orders that shrink the position


def utc_now() -> datetime:
    """The wall clock, aware UTC. Only the edges call this; the domain receives ``now``."""
    return datetime.now(UTC)


def require_aware(ts: datetime, what: str) -> datetime:
    """Refuse naive datetimes: every timestamp in tradectl is aware UTC."""
    if ts.tzinfo is UTC:  # the usual case (a paper venue's clock reads it on every order)
        return ts
    if ts.tzinfo is None or ts.utcoffset() is None:
        raise ValueError(f"{what} must be an aware UTC datetime, got naive {ts!r}")
    return ts.astimezone(UTC)
