"""The pre-trade risk evaluation: every configured check on one intent, in order, into one
:class:`~engine.domain.risk.verdicts.RiskAssessment`."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import ROUND_FLOOR, localcontext

from engine.domain.intents import Buy, Sell
from engine.domain.risk.checks import CHECKS, MISSING, CheckContext
from engine.domain.risk.limits import CHECK_ORDER, HALTING_CHECKS, Check, Limits
from engine.domain.risk.verdicts import RiskAssessment, Verdict
from engine.domain.risk.views import ZERO, AccountView, MarketView
from engine.domain.types import VerdictResult, require_aware


def evaluate(
    intent: Buy | Sell,
    market: MarketView,
    account: AccountView,
    limits: Limits,
    now: datetime,
    checks: Sequence[Check] = CHECK_ORDER,
    *,
    explain: bool = True,
) -> RiskAssessment:
    """Run every configured check on ``intent`` in :data:`CHECK_ORDER` (or only ``checks``,
    in their order: the final gate's :data:`FINAL_GATE_CHECKS`).

    ``explain=False`` leaves the passes out of the verdicts (their text is never built): for
    an assessment whose passes nobody stores, such as the final gate's."""
    now = require_aware(now, "now")
    if market.symbol != intent.symbol:
        raise ValueError(f"market view is for {market.symbol}, the intent for {intent.symbol}")
    ctx = CheckContext(
        intent=intent,
        market=market,
        account=account,
        limits=limits,
        now=now,
        qty=intent.quantity,
        explain=explain,
    )
    verdicts: list[Verdict] = []
    halt: list[str] = []
    # Rounding towards minus infinity: a quantity derived from a limit (limit / price) is never
    # rounded up past it.
    with localcontext() as decimal_context:
        decimal_context.rounding = ROUND_FLOOR
        for check in checks:
            verdict = CHECKS[check](ctx)
            if verdict is None:
                continue
            verdicts.append(verdict)
            if verdict.result is VerdictResult.RESIZE:
                assert verdict.resized_qty is not None
                assert verdict.resized_qty < ctx.qty
                ctx.qty = verdict.resized_qty
            elif (
                verdict.result is VerdictResult.REJECT
                and check in HALTING_CHECKS
                and verdict.observed != MISSING  # unknown P&L blocks orders; it is no breach
            ):
                halt.append(f"{check.value}: {verdict.message}")
    approved = all(v.passed for v in verdicts)
    return RiskAssessment(
        verdicts=tuple(verdicts),
        approved=approved,
        quantity=ctx.qty if approved else ZERO,
        halt_reason="; ".join(halt) or None,
    )
