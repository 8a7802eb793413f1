"""``loss_marks``: the day-start and high-water marks of the account's cumulative P&L, so the
daily loss and drawdown limits measure from the same marks after a restart."""

from __future__ import annotations

from engine.domain.risk.loss_marks import LossMarks
from engine.ledger.part import LedgerPart
from engine.ledger.statements import Statement, require_finite, retry_transient

SQL_READ_LOSS_MARKS = Statement(
    """
    SELECT day_start, day_start_pnl, peak_pnl, peak_at FROM loss_marks WHERE account = :account
    """
)
SQL_SAVE_LOSS_MARKS = Statement(
    """
    INSERT INTO loss_marks AS m (account, day_start, day_start_pnl, peak_pnl, peak_at, updated_at)
    VALUES (:account, :day_start, :day_start_pnl, :peak_pnl, :peak_at, :now)
    ON CONFLICT (account) DO UPDATE
        SET day_start = EXCLUDED.day_start, day_start_pnl = EXCLUDED.day_start_pnl,
            peak_pnl = EXCLUDED.peak_pnl, peak_at = EXCLUDED.peak_at,
            updated_at = EXCLUDED.updated_at
    """
)


class LossMarksPart(LedgerPart):
    """``ledger.loss_marks``: read and save this account's marks."""

    async def read(self) -> LossMarks | None:
        async with self._connection() as db:
            row = (await SQL_READ_LOSS_MARKS.run(db, {"account": self.account})).first()
        if row is None:
            return None
        return LossMarks(
            day_start=row["day_start"],
            day_start_pnl=row["day_start_pnl"],
            peak_pnl=row["peak_pnl"],
            peak_at=row["peak_at"],
        )

    @retry_transient
    async def save(self, marks: LossMarks) -> None:
        require_finite("loss marks", day_start_pnl=marks.day_start_pnl, peak_pnl=marks.peak_pnl)
        async with self._connection() as db:
            await SQL_SAVE_LOSS_MARKS.run(
                db,
                {
                    "account": self.account,
                    "day_start": marks.day_start,
                    "day_start_pnl": marks.day_start_pnl,
                    "peak_pnl": marks.peak_pnl,
                    "peak_at": marks.peak_at,
                    "now": self._clock(),
                },
            )
