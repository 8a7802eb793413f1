"""docs/risk.md stays the complete list: every check's verdict name and every limits field of
the strategies file has a row there."""

from __future__ import annotations

from pathlib import Path

from engine.domain.risk import Check
from engine.protection_config import BreakerFields, ConnectionTable
from engine.strategy_config import _AccountLimits, _Limits

DOC = (Path(__file__).resolve().parents[2] / "docs" / "risk.md").read_text(encoding="utf-8")
VENUE_CHECKS = ("circuit_open", "disconnected", "control", "venue_filters")


def test_every_check_has_a_row_in_the_risk_doc() -> None:
    missing = [c for c in [*(c.value for c in Check), *VENUE_CHECKS] if f"| `{c}` |" not in DOC]
    assert missing == []


def test_every_limits_and_protection_field_is_named_in_the_risk_doc() -> None:
    fields = {
        *_Limits.model_fields,
        *_AccountLimits.model_fields,
        *BreakerFields.model_fields,
        *ConnectionTable.model_fields,
    } - {"resize"}  # resize is described once, for every size check
    missing = sorted(f for f in fields if f"`{f}" not in DOC)
    assert missing == []
