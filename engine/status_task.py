"""The engine's status task: the live view at a terminal, else a plain block (or, in json
mode, a ``status`` event) every ``TRADECTL_STATUS_INTERVAL_S``; each pass records the mids as
the ledger's marks, so every reader of the ``pnl`` view values positions at the same prices."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from datetime import datetime

from engine.config import LogFormat, Settings
from engine.connection import ConnectionMonitor
from engine.database import Database
from engine.domain.types import AccountId, Symbol
from engine.exceptions import TradectlError
from engine.ledger.ledger import Ledger
from engine.marketdata.conflator import Conflator
from engine.observability import for_humans, json_output
from engine.outage import LedgerHealth
from engine.risk_gate import RiskGate
from engine.status import ledger_status, status_fields
from engine.status_snapshot import StatusSnapshot, gather_status
from engine.status_view import show_status
from engine.strategy_config import StrategySpec
from engine.venue_guard import VenueGuard

#: whether an engine of this process shows the live view (one per process: rich's rule)
_live_view_taken = False
#: how often the live view redraws (its data is read from the ledger each time)
LIVE_REFRESH_S = 1.0


class StatusTask:
    """Mixed into :class:`~engine.runtime.Engine`."""

    settings: Settings
    db: Database
    ledger: Ledger
    health: LedgerHealth
    conflator: Conflator
    gate: RiskGate
    account: AccountId
    symbols: tuple[Symbol, ...]
    strategies: tuple[StrategySpec, ...]
    clock: Callable[[], datetime]
    guard: VenueGuard
    connection: ConnectionMonitor

    async def _status_loop(self) -> None:
        global _live_view_taken
        if (
            self.settings.log_format is LogFormat.CONSOLE
            and sys.stdout.isatty()
            and not _live_view_taken
        ):
            # At a terminal: the live view (engine.status_view); piped, the plain block below.
            # Rich allows one live view per process: in a pool process (several engines) the
            # first engine's account has it, the others print the plain block above it.
            _live_view_taken = True
            try:
                await show_status(
                    self._status_snapshot,
                    interval_s=min(LIVE_REFRESH_S, self.settings.status_interval_s),
                    live=True,
                    out=sys.stdout,
                )
            finally:
                _live_view_taken = False
            return
        while True:
            await asyncio.sleep(self.settings.status_interval_s)
            if not self.health.available:
                down = self.health.down_for_s or 0.0
                for_humans(
                    f"--- ledger unavailable for {down:.0f}s; not trading ---",
                    "status",
                    account=self.account,
                    ledger_available=False,
                    ledger_down_s=round(down),
                )
                continue
            marks = {
                symbol: quote.mid
                for symbol in self.symbols
                if (quote := self.conflator.quote(symbol)) is not None
            }
            # The mids become the ledger's marks, so `tradectl status` from another terminal
            # values the positions at the same prices as this status does (the pnl view).
            await self.ledger.marks.record(marks)
            venue = {"circuits": self.guard.states(), "connection": self.connection.state}
            if json_output():
                fields = await status_fields(self.db.engine, self.settings.account)
                for_humans("", "status", ledger_available=True, **fields, **venue)
            else:
                text = await ledger_status(self.db.engine, self.settings.account, self.gate.limits)
                text += f"\n{self.guard.status_line()}\n{self.connection.status_line()}"
                for_humans(
                    f"--- {self.clock().isoformat(timespec='seconds')} ---\n{text}", "status"
                )

    async def _status_snapshot(self) -> StatusSnapshot:
        if not self.health.available:
            down = self.health.down_for_s or 0.0
            raise TradectlError(f"ledger unavailable for {down:.0f}s; not trading")
        now = self.clock()
        quotes = {symbol: self.conflator.quote(symbol) for symbol in self.symbols}
        marks = {s: q.mid for s, q in quotes.items() if q is not None}
        # as the plain status does: `tradectl status` elsewhere values at the same mids
        await self.ledger.marks.record(marks)
        return await gather_status(
            self.db.engine,
            self.settings.account,
            strategies={spec.strategy_id: spec.symbols for spec in self.strategies},
            marks={str(symbol): price for symbol, price in marks.items()},
            quote_ages={
                s: None if q is None else (now - q.received_at).total_seconds()
                for s, q in quotes.items()
            },
            now=now,
        )
