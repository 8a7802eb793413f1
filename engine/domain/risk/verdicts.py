"""What a pre-trade check decides: one :class:`Verdict` per check, and the
:class:`RiskAssessment` of an intent that gathers them."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from engine.domain.types import VerdictResult


@dataclass(frozen=True, slots=True, kw_only=True)
class Verdict:
    """One check's outcome, stored with the decision so "which limits were checked" has an answer.

    ``limit`` and ``observed`` are kept as text so any unit (a quantity, a duration in seconds,
    a ratio) is stored exactly as compared.
    """

    check: str
    result: VerdictResult
    limit: str
    observed: str
    message: str = ""
    #: with RESIZE: the quantity the order was reduced to
    resized_qty: Decimal | None = None

    @property
    def passed(self) -> bool:
        return self.result is not VerdictResult.REJECT

    def as_json(self) -> dict[str, str | None]:
        return {
            "check": self.check,
            "result": self.result.value,
            "limit": self.limit,
            "observed": self.observed,
            "message": self.message,
            "resized_qty": None if self.resized_qty is None else str(self.resized_qty),
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class RiskAssessment:
    verdicts: tuple[Verdict, ...]
    approved: bool
    #: the quantity to order after resizes; zero when not approved
    quantity: Decimal
    #: set when a halting check (daily loss, drawdown) was crossed: halt and open an incident
    halt_reason: str | None = None

    @property
    def rejections(self) -> tuple[Verdict, ...]:
        return tuple(v for v in self.verdicts if v.result is VerdictResult.REJECT)
