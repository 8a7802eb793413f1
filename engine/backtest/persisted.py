"""The persisted execution path: a replay's intents through the live durable path (risk gate,
:class:`~engine.execution.Execution`, the ledger under the account's lease, and
:class:`~engine.execution.FillPath`), on the replay's simulated clock, so the run can be
inspected with the SQL used for live trading."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from engine.backtest.errors import BacktestError
from engine.backtest.execution_path import MAX_REJECTION_SAMPLES, ORDER_ID_PREFIX
from engine.backtest.render import plain
from engine.controls import LeaseKeeper
from engine.domain.intents import Buy, Cancel, Hold, Sell
from engine.domain.risk import Limits
from engine.domain.types import AccountId, ClientOrderId, StrategyId
from engine.exceptions import TradectlError
from engine.execution import Execution, ExecutionConfig, FillPath
from engine.ledger.ledger import Ledger
from engine.limits_book import LimitsBook
from engine.marketdata.conflator import Conflator
from engine.portfolio import Portfolio
from engine.risk_gate import RiskGate
from engine.tasks import stop_tasks
from engine.venues.base import InstrumentRules
from engine.venues.paper import PaperVenue
from strategies.base import StrategyLimits


@dataclass(frozen=True, slots=True, kw_only=True)
class LedgerTarget:
    """Where a persisted replay is recorded: a database at the migrations' head, and an account
    that holds nothing yet (the strategy is recorded under the account's name, so that every
    decision and client order id is unique to the run)."""

    engine: AsyncEngine
    account: AccountId


#: how long closing waits for the risk gate's background read once cancelled
_STOP_S = 5.0

_ACCOUNT_IN_USE = text(
    "SELECT EXISTS (SELECT 1 FROM decisions WHERE account = :account)"
    " OR EXISTS (SELECT 1 FROM orders WHERE account = :account)"
)
# Every buy/sell decision that did not become an order on the venue: denied by a risk check or
# a control, refused by the venue, or stopped by the final gate before the wire.
_REFUSED = text(
    """
    SELECT d.decided_at, d.side, d.quantity, d.symbol, d.outcome, d.verdicts,
           o.state, o.last_error
    FROM decisions d
    LEFT JOIN orders o ON o.decision_id = d.decision_id AND o.account = d.account
    WHERE d.account = :account AND d.intent IN ('buy', 'sell')
      AND (d.outcome = 'denied' OR o.state = 'REJECTED'
           OR (o.state = 'EXPIRED' AND o.venue_order_id IS NULL))
    ORDER BY d.decided_at, d.decision_id
    """
)


def _risk_limits(limits: StrategyLimits) -> Limits:
    # The same mapping the engine applies to a strategy's configured limits.
    return Limits(
        max_order_qty=limits.max_order_qty,
        max_order_notional=limits.max_order_notional,
        max_position_qty=limits.max_position,
        max_price_age=limits.max_quote_age,
        # the replay publishes its bars into the conflator: their volume is the window's
        max_volume_fraction=limits.max_volume_fraction,
        volume_window=limits.volume_window or Limits().volume_window,
        max_depth_fraction=limits.max_depth_fraction,
    )


class LedgerPath:
    """The live durable path: risk gate, reserve, final gate, submit, ack, and the venue's
    user stream applied by :class:`~engine.execution.FillPath`, under the account's lease,
    all on the replay's simulated clock."""

    def __init__(
        self,
        target: LedgerTarget,
        *,
        venue: PaperVenue,
        conflator: Conflator,
        strategy_id: StrategyId,
        rules: InstrumentRules,
        limits: StrategyLimits,
        bar_interval: timedelta,
        clock: Callable[[], datetime],
    ) -> None:
        self.target = target
        self.account = target.account
        self.ledger = Ledger(target.engine, account=self.account, venue=venue.name, clock=clock)
        # Renewed at every bar: two bars and a minute cover a bar's walk, decision and latency.
        self.lease = LeaseKeeper(self.ledger, ttl=bar_interval * 2 + timedelta(minutes=1))
        self.portfolio = Portfolio(target.engine, self.account)
        self.gate = RiskGate(
            limits=LimitsBook(strategies={strategy_id: _risk_limits(limits)}),
            market=conflator,
            portfolio=self.portfolio,
            clock=clock,
        )
        self.execution = Execution(
            ledger=self.ledger,
            venue=venue,
            gate=self.gate,
            lease=self.lease,
            config=ExecutionConfig(account=self.account, order_id_prefix=ORDER_ID_PREFIX),
            clock=clock,
            on_fills=lambda fills: self.portfolio.mark_dirty(),
        )
        self.fill_path = FillPath(ledger=self.ledger, execution=self.execution)
        self.rules = rules
        # Subscribed now, so no venue event is missed; the paper venue publishes inline.
        self.events = venue.user_stream()

    async def start(self) -> None:
        async with self.target.engine.connect() as conn:
            used = (await conn.execute(_ACCOUNT_IN_USE, {"account": self.account})).scalar()
        if used:
            raise BacktestError(
                f"ledger account {self.account!r} already holds decisions or orders; a "
                "backtest records into a fresh account: choose another --account"
            )
        await self.lease.acquire()
        await self.portfolio.refresh()

    async def heartbeat(self) -> None:
        await self.ledger.leases.renew(self.lease.holder, self.lease.epoch, self.lease.ttl)

    async def decided(self, intent: Hold | Cancel) -> None:
        await self.execution.process([intent])
        await self.settle()

    async def submit(self, orders: Sequence[tuple[Buy | Sell, ClientOrderId]]) -> None:
        # One batch, as the execution coroutine takes what is queued; it derives the same
        # client order ids from the decision keys.
        await self.execution.process([_on_grid(intent, self.rules) for intent, _ in orders])
        await self.settle()

    async def settle(self) -> None:
        for event in self.events.drain():
            await self.fill_path.apply(event)

    async def rejections(self) -> tuple[int, list[str]]:
        async with self.target.engine.connect() as conn:
            rows = (await conn.execute(_REFUSED, {"account": self.account})).all()
        samples = []
        for decided_at, side, qty, symbol, outcome, verdicts, state, last_error in rows[
            :MAX_REJECTION_SAMPLES
        ]:
            if outcome == "denied":
                failed = [v for v in verdicts or () if v.get("result") != "pass"]
                why = "; ".join(
                    f"{v['check']}: {v.get('message') or v.get('observed')}" for v in failed
                )
                why = f"denied ({why or 'no verdict'})"
            else:
                why = f"{state}: {last_error}"
            samples.append(f"{decided_at.isoformat()} {side} {plain(qty)} {symbol}: {why}")
        return len(rows), samples

    async def close(self) -> None:
        try:
            # the last hold run's count (holds are recorded when their reason changes)
            with contextlib.suppress(TradectlError):
                await self.execution.flush_holds()
            await self.events.aclose()
        finally:
            await stop_tasks(self.gate.background(), deadline_s=_STOP_S)
            if not self.lease.lost:
                with contextlib.suppress(TradectlError):
                    await self.lease.release()


def _on_grid(intent: Buy | Sell, rules: InstrumentRules) -> Buy | Sell:
    """The intent with its quantity rounded down to the step and its price to the tick
    (towards the passive side), as both paths send it. A quantity below one step is left as
    it is, for the venue to refuse and the ledger to record why."""
    quantity = rules.round_quantity(intent.quantity)
    price = (
        None if intent.limit_price is None else rules.round_price(intent.limit_price, intent.side)
    )
    if quantity <= 0:
        return intent
    if quantity == intent.quantity and price == intent.limit_price:
        return intent
    return dataclasses.replace(intent, quantity=quantity, limit_price=price)
