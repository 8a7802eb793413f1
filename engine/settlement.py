"""Market settlements (prediction markets) into the ledger.

A venue that settles markets (:class:`engine.venues.base.SettlesMarkets`: Kalshi) says so two
ways, and both are used:

- its list of the account's settlements (``GET /portfolio/settlements``), read at every
  reconcile (so at startup, before strategies trade: a market that settled while the engine was
  down is recorded then), periodically, and whenever the stream says a market settled;
- its lifecycle stream: ``determined`` brings the result and the payout, ``settled`` says the
  payout happened; the settlement is recorded at once, the list confirms it.

``ledger.settlements.record`` keeps one row per account, venue and market, so the same
settlement seen on the stream and in the list is one row. A settlement that disagrees with the
one recorded (another result or payout) is not rewritten: an incident says so. When a market
settles, the ledger's orders on it that may still be open are looked up on the venue: the
venue's answer (canceled when the market closed) ends them, never a guess.

From then on the ``pnl`` view closes the positions at the payout (realized P&L includes the
resolution, as ``engine.domain.positions.settle`` does) and the balance check
(``ledger.balances.expected``) moves the contracts out and the payout in.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from datetime import datetime, timedelta
from typing import Any

import structlog

from engine.domain.types import ControlKind, ControlScope, Symbol
from engine.exceptions import AuthFailed, DatabaseUnavailable, VenueError
from engine.execution import Execution
from engine.ledger.ledger import Ledger
from engine.metrics import SETTLEMENTS, error
from engine.tasks import wait_event
from engine.venue_guard import halt_for_auth
from engine.venues.base import MarketLifecycle, SettlementReport, SettlesMarkets, StreamReconnected

log = structlog.get_logger("tradectl.settlement")
#: how long the lifecycle stream waits after the venue refused our credentials
AUTH_RETRY_S = 30.0

#: the periodic list starts this long before the newest settlement recorded (a settlement the
#: stream recorded first must not hide an older one the list has not shown yet)
LOOKBACK = timedelta(days=1)
#: lifecycle steps of a market that has closed: its orders are looked up (``deactivated`` is a
#: pause of an open market, not a close)
_CLOSING_STEPS = frozenset({"determined", "settled"})


class Settler:
    """Records one account's settlements from a :class:`SettlesMarkets` venue."""

    def __init__(
        self,
        *,
        ledger: Ledger,
        venue: SettlesMarkets,
        execution: Execution,
        on_settled: Callable[[], None] | None = None,
    ) -> None:
        self.ledger = ledger
        self.venue = venue
        self.execution = execution
        #: told after each settlement recorded (the portfolio: its P&L and exposure changed)
        self.on_settled = on_settled
        #: the first list of a process reads the whole history; later ones from LOOKBACK
        self._listed_once = False
        #: result and payout of markets determined on the stream, until they settle
        self._determined: dict[Symbol, MarketLifecycle] = {}
        self._wake = asyncio.Event()
        #: after the venue refused our credentials on the lifecycle stream: the wait before
        #: it is opened again (the account is halted meanwhile; cancels and reconciles go on)
        self.auth_retry_s = AUTH_RETRY_S

    async def sync(self) -> list[Symbol]:
        """Record what the venue lists that the ledger lacks; the markets newly recorded."""
        since: datetime | None = None
        if self._listed_once:
            recorded = await self.ledger.settlements.read()
            if recorded:
                since = max(r.settled_at for r in recorded.values()) - LOOKBACK
        reports = await self.venue.settlements_since(since)
        self._listed_once = True
        return [r.symbol for r in reports if await self.record(r, source="rest")]

    async def record(self, report: SettlementReport, *, source: str) -> bool:
        """``True`` when this call recorded the settlement."""
        # The balance check counts a settlement through its market's assets: make sure the
        # instrument row exists (a market settled while we were away may not have one yet).
        await self.execution.rules_for(report.symbol)
        recorded = await self.ledger.settlements.record(
            report.symbol, result=report.result, payout=report.payout, settled_at=report.settled_at
        )
        if not recorded:
            await self._compare(report)
            return False
        SETTLEMENTS.labels(self.ledger.account, self.ledger.venue, source).inc()
        if self.on_settled is not None:
            self.on_settled()
        log.info(
            "settlement.recorded",
            symbol=report.symbol,
            result=report.result,
            payout=str(report.payout),
            settled_at=report.settled_at.isoformat(),
            venue_quantity=None if report.quantity is None else str(report.quantity),
            source=source,
        )
        # The market takes no more orders: strategies that still decide on it are held back
        # here rather than refused by the venue at every decision.
        await self.ledger.controls.set(
            ControlScope.SYMBOL,
            report.symbol,
            ControlKind.PAUSE,
            reason=f"market {report.symbol} settled {report.result}: it takes no more orders",
            set_by="settlement",
        )
        await self._look_up_orders(report.symbol)
        return True

    async def _compare(self, report: SettlementReport) -> None:
        known = (await self.ledger.settlements.read()).get(report.symbol)
        if known is None or (known.result, known.payout) == (report.result, report.payout):
            return
        what = (
            f"the venue says {report.symbol} settled {report.result} paying {report.payout:f}; "
            f"the ledger recorded {known.result} paying {known.payout:f}"
        )
        incident = await self.ledger.incidents.open(
            kind="settlement_mismatch",
            scope=f"symbol:{report.symbol}",
            severity="error",
            message=(
                f"{what}. Settlements are append-only: check the market on the venue; P&L and "
                "the balance check use the recorded one until this is resolved by hand"
            ),
            details={
                "symbol": report.symbol,
                "venue_result": report.result,
                "venue_payout": str(report.payout),
                "ledger_result": known.result,
                "ledger_payout": str(known.payout),
            },
            dedupe_key=f"settlement_mismatch:{self.ledger.account}:{report.symbol}",
        )
        error(self.ledger.account, "settlement")
        log.error("settlement.mismatch", what=what, incident=incident.id)

    async def _look_up_orders(self, symbol: Symbol) -> None:
        """The market takes no more orders: what the ledger may still have open on it is
        looked up, and the venue's answer (canceled at the close) ends it."""
        orders = [o for o in await self.ledger.orders.non_terminal() if o.symbol == symbol]
        if orders:
            await self.execution.resolve_orders(orders)

    async def on_lifecycle(self, event: MarketLifecycle) -> None:
        if event.event == "determined" and event.result is not None and event.payout is not None:
            self._determined[event.symbol] = event
        if event.event == "settled":
            determined = self._determined.pop(event.symbol, None)
            if (
                determined is not None
                and determined.result is not None
                and determined.payout is not None
                and await self._ours(event.symbol)
            ):
                report = SettlementReport(
                    venue=event.venue,
                    symbol=event.symbol,
                    result=determined.result,
                    payout=determined.payout,
                    settled_at=event.at,
                    received_at=event.at,
                )
                await self.record(report, source="stream")
            self._wake.set()  # the list confirms it, or brings it when the stream lacked a step
        elif event.event in _CLOSING_STEPS and await self._ours(event.symbol):
            await self._look_up_orders(event.symbol)

    async def _ours(self, symbol: Symbol) -> bool:
        """Whether the account trades or traded the market (the lifecycle channel carries
        every market of the venue)."""
        if symbol in self.execution.symbols:
            return True
        return symbol in await self.ledger.balances.fill_symbols()

    async def run(self, interval_s: float) -> None:
        """List settlements every ``interval_s`` (sooner when the stream says a market settled
        or reconnected) and follow the lifecycle stream."""
        tasks = {
            asyncio.create_task(self._list(interval_s), name="settlements-list"),
            asyncio.create_task(self._follow(), name="settlements-stream"),
        }
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()  # the error itself (AuthFailed, ...) stops the engine
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _list(self, interval_s: float) -> None:
        while True:
            await wait_event(self._wake, interval_s)
            self._wake.clear()
            await self._guarded(self.sync())

    async def _follow(self) -> None:
        while True:
            try:
                async for event in self.venue.lifecycle_stream():
                    if isinstance(event, StreamReconnected):
                        self._wake.set()  # steps may have been missed
                        continue
                    await self._guarded(self.on_lifecycle(event))
                return
            except AuthFailed as exc:
                # a refused key does not heal by reconnecting, nor must it stop the engine:
                # halt the account (cancels and reconciliation go on) and try again later
                log.error("settlement.stream_auth_failed", error=str(exc))
                await self._guarded(
                    halt_for_auth(
                        self.ledger,
                        self.execution.config.account,
                        exc,
                        where="the market lifecycle stream",
                        key=self.execution.credential,
                    )
                )
            await asyncio.sleep(self.auth_retry_s)
            self._wake.set()  # what the stream missed meanwhile is in the list

    async def _guarded(self, step: Coroutine[Any, Any, object]) -> None:
        if not self.execution.ledger_state.available:
            step.close()
            return  # the pass that ends an outage reconciles, which lists settlements
        try:
            await step
        except DatabaseUnavailable as exc:
            self.execution.ledger_state.unavailable(exc, where="settlement")
        except VenueError as exc:
            log.warning("settlement.sync_failed", error=str(exc))  # the next pass tries again


def settler_for(
    venue: object,
    *,
    ledger: Ledger,
    execution: Execution,
    on_settled: Callable[[], None] | None = None,
) -> Settler | None:
    """A settler when the venue's markets settle, else ``None``."""
    if not isinstance(venue, SettlesMarkets):
        return None
    return Settler(ledger=ledger, venue=venue, execution=execution, on_settled=on_settled)
