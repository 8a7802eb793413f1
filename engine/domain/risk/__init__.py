"""Pure pre-trade checks: ``(intent, view, limits, now) -> verdicts``.

:func:`evaluate` runs every configured check in :data:`CHECK_ORDER` and returns a
:class:`RiskAssessment`. A check whose limit is not configured yields no verdict; every other check
yields one (PASS / REJECT / RESIZE) with its limit and the value it observed, so the ledger can
answer "which limits were checked, with which values". All checks run even after a rejection, so
the record is complete.

Order of the checks, and why:

1. gates that do not depend on the size (freshness, loss halts, order rate, market quality, price
   band) come first;
2. then the size checks, each of which may RESIZE when ``limits.resizable`` names it. They run
   from the order's own size outwards (fat finger, order quantity, order notional, share of
   volume, strategy position, account exposure), and each sees the quantity the previous ones
   left. A resize only ever lowers the quantity.

Position and exposure checks use the worst case: the position plus resting orders on the same
side plus this order. An order that only reduces the exposure always passes them.

Prices: a limit order is valued at its limit price; a market order at the far touch (the ask for
a buy, the bid for a sell). A check whose input is missing (no quote, no P&L figure) rejects with
a message saying what is missing; it never passes by default.

Resized quantities are not rounded to the instrument's step size: the caller rounds down with
``InstrumentRules.round_quantity``, which never increases them.
"""

from engine.domain.risk.checks import BPS, applicable_checks
from engine.domain.risk.evaluator import evaluate
from engine.domain.risk.limits import (
    CHECK_ORDER,
    FINAL_GATE_CHECKS,
    HALTING_CHECKS,
    SIZE_CHECKS,
    Check,
    Limits,
)
from engine.domain.risk.verdicts import RiskAssessment, Verdict
from engine.domain.risk.views import ZERO, AccountView, Exposure, MarketView

__all__ = [
    "BPS",
    "CHECK_ORDER",
    "FINAL_GATE_CHECKS",
    "HALTING_CHECKS",
    "SIZE_CHECKS",
    "ZERO",
    "AccountView",
    "Check",
    "Exposure",
    "Limits",
    "MarketView",
    "RiskAssessment",
    "Verdict",
    "applicable_checks",
    "evaluate",
]
