"""A small_live engine sends a tenth of each order and records the stage with the decision."""

from __future__ import annotations

import asyncio
import contextlib
from decimal import Decimal
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine

from engine.config import load_settings
from engine.database import open_database
from engine.domain.market import Quote
from engine.domain.types import utc_now
from engine.runtime import Engine
from engine.strategy_config import parse_trading_config
from engine.venue_session import VenueSession
from engine.venues.metrics import VenueMetrics
from engine.venues.paper import PRES_YES, default_paper_venue
from tests.helpers import eventually

ACCOUNT = "stage-small"


async def test_small_live_orders_a_tenth_and_records_stage_and_fraction(
    database_url: URL, db_engine: AsyncEngine
) -> None:
    specs = parse_trading_config(
        {
            "strategy": [
                {
                    "id": "fv",
                    "kind": "fair_value",
                    "symbols": [PRES_YES],
                    "params": {"fair": "0.60", "edge": "0.02", "qty": "30"},
                }
            ]
        },
        source=Path("<test>"),
    ).strategies
    settings = load_settings(
        database_url=database_url.render_as_string(hide_password=False),
        account=ACCOUNT,
        venue="paper",
        stage="small_live",
    )
    venue = default_paper_venue((PRES_YES,))
    stop = asyncio.Event()
    async with open_database(settings) as db:
        engine = Engine(
            settings,
            db,
            VenueSession(venue=venue, metrics=VenueMetrics(account=ACCOUNT, venue="paper")),
            specs,
        )
        task = asyncio.create_task(engine.run(stop))
        try:

            async def decided() -> object:
                if task.done():
                    task.result()
                now = utc_now()
                venue.set_quote(
                    Quote(
                        symbol=PRES_YES,
                        bid=Decimal("0.50"),
                        bid_size=Decimal(1000),
                        ask=Decimal("0.52"),
                        ask_size=Decimal(1000),
                        venue_ts=now,
                        received_at=now,
                    )
                )
                async with db_engine.connect() as conn:
                    return (
                        await conn.execute(
                            text(
                                "SELECT d.quantity, d.stage, d.capital_fraction, "
                                "o.requested_qty AS oq "
                                "FROM decisions d JOIN orders o USING (account, decision_id) "
                                "WHERE d.account = :a AND d.intent = 'buy'"
                            ),
                            {"a": ACCOUNT},
                        )
                    ).first()

            row = await eventually(decided, timeout=30, message="no buy decision")
        finally:
            stop.set()
            with contextlib.suppress(Exception):
                await task
    assert (row.quantity, row.stage, row.capital_fraction, row.oq) == (
        Decimal(3),
        "small_live",
        Decimal("0.1"),
        Decimal(3),
    )
