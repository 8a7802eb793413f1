"""The pure alert rules: which incident alerts at which level, the warnings' thresholds, the
backoff and the summary text."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from engine.domain.alerts import (
    INCIDENT_ID,
    AlertLevel,
    fill_rate_alert,
    incident_alert,
    loss_warning,
    retry_delay_s,
    summary_message,
)


@pytest.mark.parametrize(
    ("kind", "level", "alert_kind"),
    [
        ("balance_drift", AlertLevel.CRITICAL, "balance_drift"),
        ("external_trade", AlertLevel.CRITICAL, "external_trade"),
        ("unknown_venue_order", AlertLevel.CRITICAL, "order_mismatch"),
        ("fills_missing", AlertLevel.CRITICAL, "order_mismatch"),
        ("strategy_failed", AlertLevel.HIGH, "strategy_paused"),
        ("venue_disconnected", AlertLevel.CRITICAL, "venue_disconnected"),
        ("something_new", AlertLevel.HIGH, "something_new"),
    ],
)
def test_an_incident_alerts_at_its_level_and_names_the_incident(
    kind: str, level: AlertLevel, alert_kind: str
) -> None:
    draft = incident_alert(kind=kind, scope="symbol:BTCUSDT", message="check it, then run x")
    assert draft is not None
    assert (draft.level, draft.kind, draft.scope) == (level, alert_kind, "symbol:BTCUSDT")
    assert "check it, then run x" in draft.message
    assert INCIDENT_ID in draft.message


@pytest.mark.parametrize("kind", ["loss_limit", "auth_failed"])
def test_an_incident_whose_halt_alerts_raises_no_second_alert(kind: str) -> None:
    assert incident_alert(kind=kind, scope="account:a", message="m") is None


def test_the_loss_warning_starts_at_half_the_limit_and_leaves_the_limit_to_the_halt() -> None:
    assert loss_warning(Decimal(49), Decimal(100)) is None
    assert loss_warning(Decimal(50), Decimal(100)) == Decimal("0.5")
    assert loss_warning(Decimal(101), Decimal(100)) is None
    assert loss_warning(Decimal(-10), Decimal(100)) is None


def test_a_fill_rate_alert_only_under_half() -> None:
    kw = {"strategy_id": "s", "orders": 10, "requested": Decimal(10), "window_s": 3600.0}
    assert fill_rate_alert(filled=Decimal(5), **kw) is None  # type: ignore[arg-type]
    low = fill_rate_alert(filled=Decimal(4), **kw)  # type: ignore[arg-type]
    assert low is not None
    assert low.level is AlertLevel.HIGH
    assert "filled 40%" in low.message


def test_the_retry_delay_doubles_up_to_its_maximum() -> None:
    delays = [retry_delay_s(n, base_s=5, max_s=60) for n in range(1, 7)]
    assert delays == [5, 10, 20, 40, 60, 60]
    assert retry_delay_s(10_000, base_s=5, max_s=60) == 60


def test_the_summary_counts_the_repeats_and_quotes_the_newest() -> None:
    t = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)
    text = summary_message(
        count=3, kind="order_rejected", scope="strategy:s:BTCUSDT", first=t, last=t,
        cooldown_s=300, latest="rejected again",
    )  # fmt: skip
    assert text.startswith("3 more order_rejected alert(s) for strategy:s:BTCUSDT")
    assert text.endswith("The newest: rejected again")
