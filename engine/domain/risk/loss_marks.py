"""The marks the loss limits are measured from: the account's cumulative P&L at the start of the
trading day and its high-water mark. Stored in the ledger (``loss_marks``) so a restart in the
middle of a losing day keeps the same daily loss and drawdown.

Today's loss is the change of the cumulative P&L (realized + unrealized) since the day-start
mark: realized today plus the change in unrealized since the boundary, so a position carried
into the day counts only what it moved since. The day starts at a configurable time of day in a
configurable zone (00:00 UTC by default). A boundary passed while nothing was watching takes the
first P&L seen after it as the day's start (the P&L at the boundary itself was never observed).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta, tzinfo
from decimal import Decimal
from enum import StrEnum

from engine.domain.types import require_aware


class LossHaltResume(StrEnum):
    """What lifts a halt the daily loss limit set."""

    MANUAL = "manual"  #: an operator (`tradectl unhalt --reason`)
    NEXT_DAY = "next_day"  #: the next day boundary, recorded as an operator-less action


@dataclass(frozen=True, slots=True, kw_only=True)
class TradingDay:
    """Where a trading day starts: ``boundary`` o'clock in ``zone``."""

    boundary: time = time(0)
    zone: tzinfo = UTC

    def start(self, now: datetime) -> datetime:
        """The start (in UTC) of the trading day ``now`` falls in."""
        local = require_aware(now, "now").astimezone(self.zone)
        start = datetime.combine(local.date(), self.boundary, tzinfo=self.zone)
        if start > local:
            start = datetime.combine(
                local.date() - timedelta(days=1), self.boundary, tzinfo=self.zone
            )
        return start.astimezone(UTC)


@dataclass(frozen=True, slots=True, kw_only=True)
class LossMarks:
    day_start: datetime
    #: cumulative P&L when the day began (first seen after ``day_start``)
    day_start_pnl: Decimal
    #: the highest cumulative P&L ever seen
    peak_pnl: Decimal
    peak_at: datetime

    def pnl_today(self, pnl: Decimal) -> Decimal:
        return pnl - self.day_start_pnl

    def drawdown(self, pnl: Decimal) -> Decimal:
        return self.peak_pnl - pnl


def advance(
    marks: LossMarks | None,
    pnl: Decimal,
    now: datetime,
    day: TradingDay,
    *,
    unobserved_start: Decimal | None = None,
) -> LossMarks:
    """The marks after seeing cumulative P&L ``pnl`` at ``now``: a new high raises the peak; a
    new day starts from ``unobserved_start`` when given (the realized P&L before the boundary
    plus the open P&L now: today's realized losses still count after a restart), else from
    ``pnl``; otherwise nothing changes (the same object comes back)."""
    start = day.start(now)
    begin = pnl if unobserved_start is None else unobserved_start
    if marks is None:
        return LossMarks(
            day_start=start, day_start_pnl=begin, peak_pnl=max(pnl, begin), peak_at=now
        )
    if marks.day_start < start:
        marks = LossMarks(
            day_start=start, day_start_pnl=begin, peak_pnl=marks.peak_pnl, peak_at=marks.peak_at
        )
    if pnl > marks.peak_pnl:
        marks = LossMarks(
            day_start=marks.day_start, day_start_pnl=marks.day_start_pnl, peak_pnl=pnl, peak_at=now
        )
    return marks


#: the prefix of a halt reason the daily loss limit wrote (``evaluate``'s halt_reason)
DAILY_LOSS_REASON = "daily_loss:"


def lifts_at_boundary(
    *, reason: str, set_by: str, set_at: datetime, now: datetime, day: TradingDay
) -> bool:
    """Whether an account halt may lift itself now under :attr:`LossHaltResume.NEXT_DAY`: the
    risk gate set it for the daily loss alone (never a drawdown: that waits for a human), on a
    trading day that has ended."""
    return (
        set_by == "risk"
        and reason.startswith(DAILY_LOSS_REASON)
        and "drawdown" not in reason
        and set_at < day.start(now)
    )
