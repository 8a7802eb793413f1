"""Kalshi simulator faults the chaos suite uses: a create that took effect answered with the 409
of a retried create (the adapter must call it ambiguous and find the order), and rules that name
a cancel by its path template (``{order_id}``)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from engine.domain.types import OrderType, Side, TimeInForce, VenueOrderStatus
from engine.exceptions import Ambiguous
from engine.venues.base import OrderRequest
from engine.venues.kalshi_simulator import KalshiSimConfig, run_kalshi_simulator
from engine.venues.simulator.faults import FaultPlan
from tests.contract.test_kalshi_simulator_contract import MARKET, adapter_for
from tests.contract.venue_contract import new_client_order_id


def resting_buy() -> OrderRequest:
    return OrderRequest(
        client_order_id=new_client_order_id("f"),
        symbol=MARKET,
        side=Side.BUY,
        type=OrderType.LIMIT,
        quantity=Decimal(2),
        limit_price=Decimal("0.30"),
        time_in_force=TimeInForce.GTC,
    )


async def test_a_409_answer_to_a_create_that_took_effect_is_ambiguous_and_found() -> None:
    plan = FaultPlan.from_mapping([{"kind": "duplicate_create_409", "probability": 1.0}])
    async with run_kalshi_simulator(KalshiSimConfig(read_lag_s=0, faults=plan)) as sim:
        venue = adapter_for(sim)
        try:
            order = resting_buy()
            with pytest.raises(Ambiguous):
                await venue.submit(order)
            found = await venue.find_order(MARKET, order.client_order_id)
            assert found.status is VenueOrderStatus.NEW
            assert sim.state.submissions.count(order.client_order_id) == 1
            assert sim.state.fault_counts()["duplicate_create_409"] == 1
        finally:
            await venue.close()


async def test_a_fault_rule_names_a_cancel_by_its_path_template() -> None:
    rule = {
        "kind": "http_5xx",
        "probability": 1.0,
        "endpoints": ["DELETE /portfolio/events/orders/{order_id}"],
    }
    config = KalshiSimConfig(read_lag_s=0, faults=FaultPlan.from_mapping([rule]))
    async with run_kalshi_simulator(config) as sim:
        venue = adapter_for(sim)
        try:
            order = resting_buy()
            await venue.submit(order)  # the create is not named: it goes through
            with pytest.raises(Ambiguous):
                await venue.cancel(MARKET, order.client_order_id)
            assert sim.state.fault_counts() == {"http_5xx": 1}
        finally:
            await venue.close()
