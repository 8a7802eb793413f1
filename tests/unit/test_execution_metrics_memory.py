"""The execution metrics' bounded memories (trade ids counted, orders' strategies): full, they
forget the oldest entry first, one per new one."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from prometheus_client import REGISTRY

from engine import metrics as metrics_module
from engine.domain.types import (
    AccountId,
    Side,
    Symbol,
    TradeId,
    VenueName,
    VenueOrderId,
)
from engine.metrics import ExecutionMetrics
from engine.venues.base import FillReport

AT = datetime(2026, 12, 1, tzinfo=UTC)
ACCOUNT = AccountId("memory-test")


def _fill(trade: int) -> FillReport:
    return FillReport(
        venue=VenueName("paper"),
        symbol=Symbol("BTCUSDT"),
        trade_id=TradeId(str(trade)),
        client_order_id=None,  # a trade made outside tradectl: counted as "external"
        venue_order_id=VenueOrderId("v1"),
        side=Side.BUY,
        quantity=Decimal("0.001"),
        price=Decimal("30000"),
        fee=Decimal(0),
        fee_asset=None,
        liquidity=None,
        venue_ts=AT,
        received_at=AT,
    )


def _counted() -> float:
    labels = {"account": ACCOUNT, "strategy": "external", "symbol": "BTCUSDT"}
    return REGISTRY.get_sample_value("tradectl_fills_total", labels) or 0.0


def test_a_full_memory_of_trade_ids_forgets_the_oldest_first(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(metrics_module, "_SEEN_CAPACITY", 3)
    metrics = ExecutionMetrics(ACCOUNT)
    before = _counted()
    metrics.fills([_fill(1), _fill(2), _fill(3), _fill(4)])  # 1 forgotten for 4
    assert _counted() == before + 4
    metrics.fills([_fill(4), _fill(3), _fill(2)])  # remembered: not counted again
    assert _counted() == before + 4
    metrics.fills([_fill(1)])  # forgotten: counted as new (and 2 forgotten for it)
    assert _counted() == before + 5
    metrics.fills([_fill(3), _fill(4)])
    assert _counted() == before + 5
