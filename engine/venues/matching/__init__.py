"""One pure matching core for every simulated venue (the paper venue, the Binance-protocol
simulator, and any later protocol): instruments, fees, balances, orders, the touch and the engine
that matches them. Shells add the protocol: validation wording, reports, streams, faults."""

from engine.venues.matching.balances import Balance, ReservePolicy
from engine.venues.matching.core import MatchingCore
from engine.venues.matching.events import (
    Accepted,
    BalanceLine,
    BalancesMoved,
    Closed,
    Event,
    Filled,
)
from engine.venues.matching.fees import FeeModel, RateFees
from engine.venues.matching.instrument import FeeAsset, InstrumentSpec, Violation
from engine.venues.matching.orders import Expiry, Fill, NewOrder, Order
from engine.venues.matching.refusals import RefusalKind, Refused
from engine.venues.matching.touch import Touch

__all__ = [
    "Accepted",
    "Balance",
    "BalanceLine",
    "BalancesMoved",
    "Closed",
    "Event",
    "Expiry",
    "FeeAsset",
    "FeeModel",
    "Fill",
    "Filled",
    "InstrumentSpec",
    "MatchingCore",
    "NewOrder",
    "Order",
    "RateFees",
    "RefusalKind",
    "Refused",
    "ReservePolicy",
    "Touch",
    "Violation",
]
