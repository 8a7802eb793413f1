"""``on_start``: what a start does with a strategy's orders resting from a previous session."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy.engine import URL

from engine.config import load_settings
from engine.database import open_database
from engine.domain.intents import Buy, DecisionKey
from engine.domain.market import Quote
from engine.domain.types import OrderState, Side, StrategyId, Symbol, TimeInForce, utc_now
from engine.runtime import Engine
from engine.strategy_config import StartPolicy, StrategySpec, parse_trading_config
from engine.venue_session import VenueSession
from engine.venues.metrics import VenueMetrics
from engine.venues.paper import PRES_YES, PaperVenue, default_paper_venue
from tests.helpers import eventually


def _spec(on_start: str) -> StrategySpec:
    raw = {
        "strategy": [
            {
                "id": "fv-rest",
                "kind": "fair_value",
                "symbols": [PRES_YES],
                "on_start": on_start,
                "params": {"fair": "0.55", "edge": "0.02", "qty": "10", "max_inventory": "100"},
            },
            {
                "id": "fv-other",
                "kind": "fair_value",
                "symbols": [PRES_YES],
                "params": {"fair": "0.55", "edge": "0.02", "qty": "10", "max_inventory": "100"},
            },
        ]
    }
    specs = parse_trading_config(raw, source=Path("<test>")).strategies
    assert specs[0].on_start is StartPolicy(on_start)
    return specs


def _quote(symbol: Symbol) -> Quote:
    now = utc_now()
    return Quote(
        symbol=symbol,
        bid=Decimal("0.50"),
        bid_size=Decimal(1000),
        ask=Decimal("0.52"),
        ask_size=Decimal(1000),
        venue_ts=now,
        received_at=now,
    )


@contextlib.asynccontextmanager
async def _engine(
    database_url: URL, venue: PaperVenue, specs: tuple[StrategySpec, ...]
) -> AsyncIterator[Engine]:
    settings = load_settings(
        database_url=database_url.render_as_string(hide_password=False),
        account="start-policy",
        venue="paper",
    )
    async with open_database(settings) as database:
        engine = Engine(
            settings,
            database,
            VenueSession(venue=venue, metrics=VenueMetrics(account="start-policy", venue="paper")),
            specs,
        )
        try:
            yield engine
        finally:
            if engine._lease_task is not None:
                engine._lease_task.cancel()
            await engine._release_lease()


async def _leave_resting_orders(engine: Engine, venue: PaperVenue) -> None:
    """A previous session: one resting bid from each strategy."""
    await engine.startup()
    venue.set_quote(_quote(PRES_YES))
    engine.conflator.publish(_quote(PRES_YES))
    execution = asyncio.create_task(engine.execution.run())
    try:
        for strategy in ("fv-rest", "fv-other"):
            key = DecisionKey(
                strategy_id=StrategyId(strategy), symbol=PRES_YES, interval_key="i1", side=Side.BUY
            )
            await engine.execution.submit_intent(
                Buy(
                    key=key,
                    reason="resting bid",
                    md_ts=utc_now(),
                    quantity=Decimal(10),
                    limit_price=Decimal("0.40"),
                    time_in_force=TimeInForce.GTC,
                )
            )

        async def both_rest() -> bool:
            return [o.state for o in await engine.ledger.orders.non_terminal()] == [
                OrderState.OPEN,
                OrderState.OPEN,
            ]

        await eventually(both_rest, message="the resting bids should be acknowledged")
    finally:
        execution.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await execution


@pytest.mark.parametrize(
    ("policy", "kept"), [("cancel", {"fv-other"}), ("keep", {"fv-rest", "fv-other"})]
)
async def test_a_start_cancels_or_keeps_the_strategys_resting_orders_before_it_trades(
    database_url: URL, policy: str, kept: set[str]
) -> None:
    venue = default_paper_venue((PRES_YES,), seed=5)
    async with _engine(database_url, venue, _spec("keep")) as first:
        await _leave_resting_orders(first, venue)

    async with _engine(database_url, venue, _spec(policy)) as second:
        await second.startup()

        resting = {
            o.client_order_id: o.strategy_id for o in await second.ledger.orders.non_terminal()
        }
        assert set(resting.values()) == kept
        # the venue agrees: only the kept orders still rest there
        assert {o.client_order_id for o in await venue.open_orders(PRES_YES)} == set(resting)
