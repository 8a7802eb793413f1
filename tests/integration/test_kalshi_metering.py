"""Every Kalshi REST request is metered: what the simulator received, request by request, is what
``tradectl_venue_requests_total`` of the account counts (by endpoint and outcome), and the token
budget left shows in ``tradectl_venue_rate_limit_headroom``. Read over HTTP, as Prometheus does."""

from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from pydantic import SecretStr

from engine.domain.types import ClientOrderId, OrderType, Side, TimeInForce, VenueName
from engine.exceptions import RateLimited
from engine.venues.base import OrderRequest
from engine.venues.kalshi import KalshiConfig, KalshiVenue
from engine.venues.kalshi_simulator import KalshiSimConfig, run_kalshi_simulator
from engine.venues.metrics import VenueMetrics
from engine.venues.simulator.faults import FaultPlan, FaultRule
from tests.contract.test_kalshi_simulator_contract import MARKET
from tests.metrics_http import metrics_server, scrape


def order(coid: str, price: str, tif: TimeInForce) -> OrderRequest:
    return OrderRequest(
        client_order_id=ClientOrderId(coid),
        symbol=MARKET,
        side=Side.BUY,
        type=OrderType.LIMIT,
        quantity=Decimal(2),
        limit_price=Decimal(price),
        time_in_force=tif,
    )


async def test_every_kalshi_rest_request_is_counted_per_account_with_the_budget_left() -> None:
    account = f"meter-{uuid.uuid4().hex[:8]}"
    balance_429 = FaultRule.from_mapping(
        {"kind": "rate_limit_429", "endpoints": ["GET /portfolio/balance"], "max_count": 1}
    )
    config = KalshiSimConfig(seed=5, faults=FaultPlan(rules=(balance_429,)))
    async with run_kalshi_simulator(config) as sim:
        venue = KalshiVenue(
            KalshiConfig(
                key_id=sim.key_id,
                private_key=SecretStr(sim.private_key_pem),
                rest_url=sim.rest_url,
                ws_url=sim.ws_url,
                venue_name=VenueName("kalshi-sim"),
                read_margin=timedelta(0),
            ),
            metrics=VenueMetrics(account=account, venue="kalshi-sim"),
        )
        try:
            filled = await venue.submit(order("meter-take", "0.47", TimeInForce.IOC))
            assert filled.filled_quantity == 2  # and its fills were read by order id
            resting = await venue.submit(order("meter-rest", "0.30", TimeInForce.GTC))
            await venue.find_order(MARKET, resting.client_order_id)
            await venue.cancel(MARKET, resting.client_order_id)
            with pytest.raises(RateLimited):
                await venue.balances()
            await venue.balances()  # positions and open orders too
            await venue.trades_since(MARKET, None)
            await venue.settlements_since(None)
        finally:
            await venue.close()
        received = dict(sim.state.requests)

    with metrics_server() as url:
        scrape_ = await scrape(url)
    counted = scrape_.total("tradectl_venue_requests_total", account=account)
    assert counted == sum(received.values()), (
        f"the venue received {received}; metered:\n{scrape_.describe(account)}"
    )
    endpoints = scrape_.labels("tradectl_venue_requests_total", "endpoint", account=account)
    assert {
        "POST /portfolio/events/orders",
        "DELETE /portfolio/events/orders/{id}",
        "GET /portfolio/orders",
        "GET /portfolio/orders/{id}",
        "GET /portfolio/fills",
        "GET /portfolio/balance",
        "GET /portfolio/positions",
        "GET /portfolio/settlements",
        "GET /markets/{id}",
    } <= endpoints
    assert (
        scrape_.value(
            "tradectl_venue_requests_total",
            account=account,
            endpoint="GET /portfolio/balance",
            outcome="rate_limited",
        )
        == 1
    )
    for limit in ("read_tokens", "write_tokens"):
        left = scrape_.value("tradectl_venue_rate_limit_headroom", account=account, limit=limit)
        assert left is not None, f"no {limit} headroom"
        assert 0 <= left <= 1, f"{limit}: {left}"
