"""``on_start`` in a running engine against the built-in Binance-protocol simulator: a restart
with ``on_start = "cancel"`` cancels the strategy's orders resting from the previous session on
the venue, after reconciliation and before it trades; another strategy's stay (the paper-venue
version: test_start_policy.py)."""

from __future__ import annotations

from collections.abc import Awaitable

from sqlalchemy.engine import URL

from engine.domain.types import StrategyId
from tests.helpers import eventually
from tests.integration.test_portfolio_limits_engine import BTC, B, buy, resting, running

HOLDER = StrategyId("holder")


async def test_a_restart_with_on_start_cancel_cancels_only_that_strategys_resting_orders(
    database_url: URL,
) -> None:
    async with running(database_url, "start-cancel", {}) as run:
        await resting(run, buy(HOLDER, BTC, "0.001", "20000", "h1"))
        await resting(run, buy(B, BTC, "0.001", "20000", "b1"))
        state = run.state
    assert len([o for o in state.orders() if o.status == "NEW"]) == 2

    async with running(database_url, "start-cancel", {}, state=state, on_start="cancel") as run:
        # cancelled during startup, before the strategy decides; the venue agrees
        async def left_resting() -> list[StrategyId]:
            return [o.strategy_id for o in await run.engine.ledger.orders.non_terminal()]

        await eventually(lambda: _is(left_resting(), [B]))
        left = await run.engine.ledger.orders.non_terminal()

        def on_the_venue() -> list[str]:
            return [o.client_order_id for o in state.orders() if o.status == "NEW"]

        await eventually(lambda: on_the_venue() == [left[0].client_order_id])


async def _is(value: Awaitable[object], expected: object) -> bool:
    return await value == expected
