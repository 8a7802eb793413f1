"""Where the simulator's exchange core used to live: the names it exported, for old imports.
The matching itself is :mod:`engine.venues.matching`; the Binance account is
:mod:`engine.venues.simulator.account`."""

from engine.venues.matching import Balance, Touch
from engine.venues.simulator.account import Fees, SimulatedAccount, SymbolRules
from engine.venues.simulator.records import (
    DUPLICATE_ORDER,
    INSUFFICIENT_BALANCE,
    UNKNOWN_ORDER,
    ZERO,
    AccountPositionEvent,
    BalanceUpdateEvent,
    ExecutionEvent,
    ExecutionType,
    NewOrder,
    PlaceResult,
    Rejection,
    SimOrder,
    SimTrade,
    UserEvent,
)

MatchingEngine = SimulatedAccount

__all__ = [
    "DUPLICATE_ORDER",
    "INSUFFICIENT_BALANCE",
    "UNKNOWN_ORDER",
    "ZERO",
    "AccountPositionEvent",
    "Balance",
    "BalanceUpdateEvent",
    "ExecutionEvent",
    "ExecutionType",
    "Fees",
    "MatchingEngine",
    "NewOrder",
    "PlaceResult",
    "Rejection",
    "SimOrder",
    "SimTrade",
    "SymbolRules",
    "Touch",
    "UserEvent",
]
