"""The connection-loss protocol: a staleness monitor per venue connection and the reconnect gate.

The adapters report each stream's connection to :class:`~engine.venues.metrics.VenueMetrics`
(a WebSocket whose pings go unanswered is closed, and reported down, by the adapter). This
module watches those reports:

- A stream down for ``disconnect_after_s`` puts the account in the ``disconnected`` state: no
  new orders (the gate denies them with a ``disconnected`` verdict, engine/venue_guard.py) and a
  critical incident ``venue_disconnected`` (which alerts). Working orders stay on the venue.
- After **any** reconnect (a stream came back, short outage or long) the strategies are held
  until a reconciliation pass that *began after the reconnect* has completed: fills and order
  changes missed while the stream was down are in the ledger before anyone decides on it.
- When a connection that made the account ``disconnected`` returns, each strategy's
  ``on_disconnect`` policy applies after that pass: ``cancel`` cancels its resting orders,
  ``keep`` leaves them. Then the incident is resolved and the strategies resume.
- An incident an earlier process left open (it was stopped or killed while disconnected) is
  resolved once this process has every stream up and a reconciliation pass that began after
  that has completed: the loss it reported is over. (Resting orders at a start follow the
  strategy's ``on_start``.)
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Protocol

import structlog

from engine.ledger.ledger import Ledger
from engine.strategy_config import DisconnectPolicy, StrategySpec
from engine.venues.metrics import MARKET, USER, VenueMetrics

log = structlog.get_logger("tradectl.connection")

#: how often the streams' state is looked at
TICK_S = 0.2
#: while held, a failed reconciliation is asked for again this often (not at the next
#: periodic pass: the strategies wait for it)
RETRY_S = 2.0


class Reconciles(Protocol):
    """The reconciler's requests and how far its completed passes reach (engine.reconcile)."""

    @property
    def completed_through(self) -> int: ...

    def request(self) -> int: ...


class Cancels(Protocol):
    async def cancel_all(
        self, *, cause: str, strategy_id: str | None = None, symbol: str | None = None
    ) -> int: ...


class ConnectionMonitor:
    """One account's venue connection: ``disconnected``, held after a reconnect, or trading."""

    def __init__(
        self,
        ledger: Ledger,
        metrics: VenueMetrics,
        reconciler: Reconciles,
        execution: Cancels,
        strategies: Sequence[StrategySpec],
        *,
        disconnect_after_s: float,
        streams: tuple[str, ...] = (USER, MARKET),
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ledger = ledger
        self.metrics = metrics
        self.account = metrics.account
        self.reconciler = reconciler
        self.execution = execution
        self.strategies = tuple(strategies)
        self.disconnect_after_s = disconnect_after_s
        self.streams = streams
        #: why the account is disconnected; ``None`` while connected
        self.reason: str | None = None
        #: the reconcile ticket the strategies wait for (0: nothing to wait for)
        self._hold_ticket = 0
        #: the connection that returned had made the account disconnected: apply the policies
        self._returned_from_loss = False
        self._incident_written = False
        #: an earlier process's open incident: looked for once every stream is up, resolved
        #: when the reconciliation pass asked for then has completed (0: none pending)
        self._leftover_looked = False
        self._leftover_ticket = 0
        self._connections = dict(metrics.connections)
        self.reconnects = 0
        self._monotonic = monotonic
        self._asked_at = 0.0

    # -- what the others ask -------------------------------------------------------------------

    def disconnected(self) -> str | None:
        return self.reason

    @property
    def held(self) -> bool:
        """Strategies wait: a reconnect's reconciliation (or its policies) is not done yet."""
        return self._hold_ticket > 0

    def may_trade(self) -> bool:
        return self.reason is None and not self.held

    def reconnected(self) -> None:
        """A stream came back (the user stream's ``StreamReconnected``, or seen here): hold
        the strategies until a reconciliation pass asked for now has completed."""
        self.reconnects += 1
        self._hold_ticket = max(self._hold_ticket, self.reconciler.request())
        self._asked_at = self._monotonic()
        log.info("connection.reconnected_holding", ticket=self._hold_ticket)

    @property
    def state(self) -> str:
        """``disconnected``, ``held`` (after a reconnect, until reconciled) or ``up``."""
        return "disconnected" if self.reason is not None else "held" if self.held else "up"

    def status_line(self) -> str:
        if self.reason is not None:
            return f"venue connection: DISCONNECTED ({self.reason}); no new orders"
        if self.held:
            return "venue connection: up, strategies held until the reconnect's reconciliation"
        return "venue connection: up"

    # -- the task ------------------------------------------------------------------------------

    async def run(self) -> None:
        while True:
            await self.tick()
            await asyncio.sleep(TICK_S)

    async def tick(self) -> None:
        down = {
            stream: seconds
            for stream in self.streams
            if (seconds := self.metrics.down_for_s(stream)) is not None
        }
        connections = dict(self.metrics.connections)
        if connections.get(USER, 0) > self._connections.get(USER, 1):
            # the user stream came back (however briefly it was away): what it missed is
            # fetched by the pass this asks for, before the strategies decide again
            self.reconnected()
        self._connections = {s: max(n, 1) for s, n in connections.items()}
        lost = {s: t for s, t in down.items() if t >= self.disconnect_after_s}
        if lost and self.reason is None:
            await self._enter(lost)
        elif self.reason is not None and not self._incident_written:
            await self._open_incident(self.reason)  # the first write failed (a ledger outage)
        elif not down and self.reason is not None:
            self.reason = None
            self._returned_from_loss = True
            self.reconnected()
        if self.reason is None:
            await self._leftover(connections)
        if not self.held:
            return
        if self.reconciler.completed_through >= self._hold_ticket:
            await self._release()
        elif self._monotonic() - self._asked_at >= RETRY_S:
            # the pass failed (or is slow): a later one covers the ticket too
            self.reconciler.request()
            self._asked_at = self._monotonic()

    async def _enter(self, lost: dict[str, float]) -> None:
        streams = ", ".join(f"{s} stream down {t:.0f}s" for s, t in sorted(lost.items()))
        # denied from now on, before the incident is written (which may wait on the ledger)
        # the limit it crossed with it: the denied decisions' verdicts keep both
        self.reason = (
            f"{self.metrics.venue}: {streams} (disconnect_after {self.disconnect_after_s:g}s)"
        )
        self._incident_written = False
        log.error("connection.disconnected", reason=self.reason)
        await self._open_incident(streams)

    async def _open_incident(self, what: str) -> None:
        await self.ledger.incidents.open(
            kind="venue_disconnected",
            scope=f"account:{self.account}",
            severity="critical",
            message=(
                f"account {self.account} lost its connection to {self.metrics.venue} "
                f"({what}); no new orders until it returns and is reconciled"
            ),
            details={"venue": self.metrics.venue},
            dedupe_key=f"venue_disconnected:{self.account}",
        )
        self._incident_written = True

    async def _leftover(self, connections: dict[str, int]) -> None:
        if not self._leftover_looked:
            if any(connections.get(s, 0) == 0 for s in self.streams):
                return  # not every stream is up yet
            open_ = await self.ledger.incidents.read()  # a ledger outage: looked at again
            self._leftover_looked = True
            if any(i.kind == "venue_disconnected" for i in open_):
                self._leftover_ticket = self.reconciler.request()
        if self._leftover_ticket and self.reconciler.completed_through >= self._leftover_ticket:
            self._leftover_ticket = 0
            resolved = await self.ledger.incidents.resolve_by_key(
                f"venue_disconnected:{self.account}",
                "a later engine process connected every stream and reconciled",
            )
            log.info("connection.leftover_incident_resolved", incident=resolved)

    async def _release(self) -> None:
        ticket = self._hold_ticket
        if self._returned_from_loss:
            for spec in self.strategies:
                if spec.on_disconnect is not DisconnectPolicy.CANCEL:
                    continue
                sent = await self.execution.cancel_all(
                    cause="on_disconnect = cancel: the venue connection was lost",
                    strategy_id=spec.strategy_id,
                )
                log.info("disconnect_policy.cancelled", strategy=spec.strategy_id, orders=sent)
            await self.ledger.incidents.resolve_by_key(
                f"venue_disconnected:{self.account}", "the connection returned and was reconciled"
            )
            self._returned_from_loss = False
        if self._hold_ticket == ticket:  # else a reconnect came meanwhile: wait for its pass
            self._hold_ticket = 0
            log.info("connection.trading_resumed")
