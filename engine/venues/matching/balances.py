"""One asset's balance, split into what can be spent and what open orders hold."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import Enum

_ZERO = Decimal(0)


@dataclass(slots=True, kw_only=True)
class Balance:
    free: Decimal = _ZERO
    locked: Decimal = _ZERO


class ReservePolicy(Enum):
    """Which accepted orders lock what they may spend.

    Either way a balance check refuses an order that could not pay in full; the policies only
    differ in which orders then hold that amount while they match.
    """

    #: every accepted order, MARKET and a FOK about to expire included; released as it fills
    #: or closes (the simulator: ``locked`` shows on every order it reports)
    EVERY_ORDER = "EVERY_ORDER"
    #: only a LIMIT order that gets to match; a MARKET order or a FOK the touch cannot fill is
    #: settled with no lock (the paper venue: no balance event for a lock that never mattered)
    LIMIT_ORDERS = "LIMIT_ORDERS"
