"""A halt the daily loss limit set, lifted at the next day boundary when the account asks for
it (``daily_loss_resume = "next_day"``); otherwise it waits for `tradectl unhalt`.

The lift is an operator-less action: it is recorded in ``operator_actions`` with actor ``risk``
and the reason, in the transaction that clears the halt, so the journal answers "who let this
account trade again" even when nobody did.
"""

from __future__ import annotations

from datetime import datetime

import structlog

from engine.domain.risk import Limits
from engine.domain.risk.loss_marks import LossHaltResume, lifts_at_boundary
from engine.domain.types import ControlKind, ControlScope
from engine.ledger.ledger import Ledger
from engine.ledger.records import Operator

log = structlog.get_logger("tradectl.loss_halt")

#: the actor the journal names for what the risk gate did on its own
RISK_ACTOR = "risk"


async def lift_expired_loss_halt(ledger: Ledger, limits: Limits, now: datetime) -> bool:
    """Clear the account's daily-loss halt once its trading day has ended, when configured to;
    ``True`` when it lifted one."""
    if limits.daily_loss_resume is not LossHaltResume.NEXT_DAY:
        return False
    for control in await ledger.controls.active():
        if control.scope is not ControlScope.ACCOUNT or control.kind is not ControlKind.HALT:
            continue
        if control.target != ledger.account or not lifts_at_boundary(
            reason=control.reason,
            set_by=control.set_by,
            set_at=control.set_at,
            now=now,
            day=limits.trading_day,
        ):
            continue
        day_start = limits.trading_day.start(now)
        reason = (
            f"daily loss halt of {control.set_at.isoformat(timespec='seconds')} lifted at the "
            f"day boundary {day_start.isoformat(timespec='seconds')} "
            f'(daily_loss_resume = "next_day"): {control.reason}'
        )
        lifted = await ledger.controls.clear(
            ControlScope.ACCOUNT,
            ledger.account,
            ControlKind.HALT,
            cleared_by=RISK_ACTOR,
            operator=Operator(actor=RISK_ACTOR, reason=reason),
        )
        if lifted:
            log.warning("account.loss_halt_lifted", control=control.id, reason=reason)
            return True
    return False
