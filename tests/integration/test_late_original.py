"""A submit the venue holds past our timeout lands after all: the resolver must not resend
before it can no longer land, or one client order id becomes two venue orders.

Against the Binance-protocol simulator over real sockets: the venue sits on the first order
request (a latency fault) longer than our request timeout, then handles it, and fills it at
once. Binance refuses a duplicate client order id only while the first order is open, so a
resend made in between would be a second fill."""

from __future__ import annotations

import time
from datetime import timedelta
from decimal import Decimal

from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncEngine

from engine.controls import LeaseKeeper
from engine.domain.market import Quote
from engine.domain.types import AccountId, OrderState, Symbol, VenueName, utc_now
from engine.execution import Execution, ExecutionConfig
from engine.ledger.ledger import Ledger
from engine.limits_book import LimitsBook
from engine.marketdata.conflator import Conflator
from engine.portfolio import Portfolio
from engine.risk_gate import RiskGate
from engine.venues.binance import BinanceConfig, BinanceVenue
from engine.venues.metrics import VenueMetrics
from engine.venues.simulator import FaultPlan, SimulatorConfig, run_simulator
from tests.helpers import eventually
from tests.integration.test_execution import PREFIX, buy, coid_of

ACCOUNT = AccountId("acct-late-original")
BTCUSDT = Symbol("BTCUSDT")
HOLD_S = 2.0  # the venue sits on the first submit this long; we give up after 0.5 s


async def test_a_submit_held_past_our_timeout_is_not_resent_before_it_can_no_longer_land(
    db_engine: AsyncEngine,
) -> None:
    faults = FaultPlan.from_mapping(
        [
            {
                "kind": "latency",
                "probability": 1.0,
                "endpoints": ["POST /api/v3/order"],
                "max_count": 1,
                "seconds": HOLD_S,
            }
        ]
    )
    config = SimulatorConfig(seed=23, market_interval=None, faults=faults)
    async with run_simulator(config) as sim:
        venue = BinanceVenue(
            BinanceConfig(
                api_key=config.api_key,
                api_secret=SecretStr(config.api_secret),
                rest_url=sim.rest_url,
                ws_api_url=sim.ws_api_url,
                stream_url=sim.stream_url,
                venue_name=VenueName("simulator"),
                request_timeout_s=0.5,
                recv_window_ms=3000,
            ),
            metrics=VenueMetrics(account=ACCOUNT, venue="simulator"),
        )
        try:
            ledger = Ledger(db_engine, account=ACCOUNT, venue=venue.name, clock=utc_now)
            lease = LeaseKeeper(ledger, ttl=timedelta(seconds=30))
            await lease.acquire()
            touch = sim.state.touch(BTCUSDT)
            conflator = Conflator()
            now = utc_now()
            conflator.publish(
                Quote(
                    symbol=BTCUSDT,
                    bid=Decimal(touch["bid"]),
                    bid_size=Decimal("1"),
                    ask=Decimal(touch["ask"]),
                    ask_size=Decimal("1"),
                    venue_ts=now,
                    received_at=now,
                )
            )
            portfolio = Portfolio(db_engine, ACCOUNT)
            gate = RiskGate(
                limits=LimitsBook.empty(), market=conflator, portfolio=portfolio, clock=utc_now
            )
            execution = Execution(
                ledger=ledger,
                venue=venue,
                gate=gate,
                lease=lease,
                config=ExecutionConfig(
                    account=ACCOUNT,
                    order_id_prefix=PREFIX,
                    consistency_window=timedelta(seconds=0.2),
                    late_accept=venue.late_accept,  # recvWindow 3 s + 1 s
                ),
                clock=utc_now,
            )
            # marketable: it fills the moment the venue handles it
            intent = buy(utc_now, qty="0.002", price=str(Decimal(touch["ask"]) + 50))  # type: ignore[arg-type]
            coid = coid_of(intent)
            await execution.process([intent])
            order = await ledger.orders.get(coid)
            assert order is not None
            assert order.state is OrderState.UNKNOWN  # we gave up on the answer

            held_until = time.monotonic() + HOLD_S + 0.5

            async def settled() -> bool:
                await execution.resolve_unresolved()
                found = await ledger.orders.get(coid)
                # and the venue has handled the request it sat on, whatever it made of it
                return (
                    found is not None
                    and found.state is OrderState.FILLED
                    and time.monotonic() >= held_until
                )

            # the resolver keeps looking while the venue sits on the first request, and after
            await eventually(settled, timeout=15, interval=0.1, message="the order never filled")
            venue_orders = sim.state.venue_orders_by_client_id().get(coid, [])
            assert len(venue_orders) == 1, f"venue orders for {coid}: {venue_orders}"
        finally:
            await venue.close()
