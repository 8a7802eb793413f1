"""The account's gauges that describe the ledger, set by one periodic task.

Orders by state and the age of the oldest unresolved one, open incidents, P&L per strategy and
symbol at the latest mid, and risk utilization. Each pass costs what changed, not the account's
history: working orders are read by their partial index every pass, the terminal states' counts
(a scan of every order) every ``ALL_STATES_EVERY`` passes; the P&L folds only the fills recorded
since the last pass, in recording order.

Fill ids come from a sequence, so a transaction can commit a lower id after a higher one was
read: every pass reads again the last ``FILL_ID_WINDOW`` ids and folds only those it has not.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal

import structlog

from engine.domain.positions import Position, PositionFill, apply_fill, settle, unrealized
from engine.domain.types import OrderState, StrategyId, Symbol
from engine.exceptions import DatabaseUnavailable
from engine.ledger.ledger import Ledger
from engine.ledger.monitoring import FILLS_PAGE, Monitoring
from engine.metrics import (
    INCIDENTS_OPEN,
    OLDEST_ORDER_AGE,
    ORDERS,
    PNL_REALIZED,
    PNL_UNREALIZED,
    RISK_UTILIZATION,
    SEVERITIES,
    error,
)
from engine.outage import LedgerState
from engine.risk_gate import RiskGate

log = structlog.get_logger("tradectl.metrics")

#: the states whose oldest order's age is a gauge: an order stuck there needs a look
AGED_STATES = (OrderState.PENDING_SUBMIT, OrderState.UNKNOWN)
DEFAULT_INTERVAL_S = 1.0
ALL_STATES_EVERY = 10
#: how far back (in fill ids) a pass looks for fills committed out of id order
FILL_ID_WINDOW = 1000


class AccountGauges:
    def __init__(
        self,
        *,
        ledger: Ledger,
        monitoring: Monitoring,
        gate: RiskGate,
        mark: Callable[[Symbol], Decimal | None],
        clock: Callable[[], datetime],
        ledger_state: LedgerState,
        interval_s: float = DEFAULT_INTERVAL_S,
    ) -> None:
        self.account = ledger.account
        self.ledger = ledger
        self.monitoring = monitoring
        self.gate = gate
        self.mark = mark
        self.clock = clock
        self.ledger_state = ledger_state
        self.interval_s = interval_s
        self._positions: dict[tuple[StrategyId, Symbol], Position] = {}
        #: the highest fill id folded, and the ids folded within FILL_ID_WINDOW below it
        self._after = 0
        self._folded: set[int] = set()
        self._passes = 0

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            if not self.ledger_state.available:
                continue
            try:
                await self.refresh()
            except DatabaseUnavailable as exc:
                self.ledger_state.unavailable(exc, where="metrics")
            except Exception:
                # Metrics must never stop trading: count it, log it, try again next pass.
                error(self.account, "metrics")
                log.exception("metrics.refresh_failed")

    async def refresh(self) -> None:
        await self._orders()
        await self._incidents()
        await self._pnl()
        for (strategy, limit), used in self.gate.utilization().items():
            RISK_UTILIZATION.labels(self.account, strategy, limit.value).set(used)

    async def _orders(self) -> None:
        every_state = self._passes % ALL_STATES_EVERY == 0
        self._passes += 1
        counts = await self.monitoring.orders_by_state(working_only=not every_state)
        now = self.clock()
        for state in OrderState:
            if state.is_terminal and not every_state:
                continue
            found = counts.get(state)
            ORDERS.labels(self.account, state.value).set(found.count if found else 0)
            if state in AGED_STATES:
                age = (now - found.oldest).total_seconds() if found else 0.0
                OLDEST_ORDER_AGE.labels(self.account, state.value).set(max(age, 0.0))

    async def _incidents(self) -> None:
        counts = dict.fromkeys(SEVERITIES, 0)
        for incident in await self.ledger.incidents.read():
            counts[incident.severity] = counts.get(incident.severity, 0) + 1
        for severity, count in counts.items():
            INCIDENTS_OPEN.labels(self.account, severity).set(count)

    async def _pnl(self) -> None:
        cursor = max(self._after - FILL_ID_WINDOW, 0)
        while True:
            fills = await self.monitoring.fills_after(cursor)
            for fill in fills:
                cursor = fill.id
                if fill.id <= self._after - FILL_ID_WINDOW or fill.id in self._folded:
                    continue
                if fill.base_asset is None or fill.quote_asset is None:
                    continue  # no instrument row yet: looked at again while in the window
                self._folded.add(fill.id)
                key = (fill.strategy_id, fill.symbol)
                position = self._positions.get(key) or Position(
                    base_asset=fill.base_asset, quote_asset=fill.quote_asset, symbol=fill.symbol
                )
                self._positions[key] = apply_fill(
                    position,
                    PositionFill(
                        side=fill.side,
                        qty=fill.qty,
                        price=fill.price,
                        fee=fill.fee,
                        fee_asset=fill.fee_asset,
                    ),
                )
            if len(fills) < FILLS_PAGE:
                break
        if self._folded:
            self._after = max(self._after, max(self._folded))
            self._folded = {i for i in self._folded if i > self._after - FILL_ID_WINDOW}
        settled = await self.ledger.settlements.read()
        for (strategy, symbol), position in self._positions.items():
            settlement = settled.get(symbol)
            if settlement is not None:
                # a settled market's contracts were paid out: the P&L is realized at the payout
                position = settle(position, settlement.payout)
            PNL_REALIZED.labels(self.account, strategy, symbol).set(float(position.realized_pnl))
            mark = self.mark(symbol)
            if position.is_flat:
                PNL_UNREALIZED.labels(self.account, strategy, symbol).set(0.0)
            elif mark is not None:
                PNL_UNREALIZED.labels(self.account, strategy, symbol).set(
                    float(unrealized(position, mark))
                )
