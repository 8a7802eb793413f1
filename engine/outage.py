"""Riding out a ledger outage: every task waits and retries, nothing trades until reconciled.

Without the ledger nothing can be reserved, so nothing new may reach the venue; what the venue
already holds keeps working there and its fills are fetched by trade id afterwards. While the
database is away:

- :class:`LedgerHealth` says so (``available`` is False): strategies do not decide, execution
  drops the intents it still receives (never reserved, so never sent: the strategies decide
  again on fresh data once trading resumes), and the loops that only read or repair the ledger
  skip their passes instead of failing once per tick.
- :func:`guarded` restarts a task that an outage ended anyway, with backoff, instead of letting
  one ``DatabaseUnavailable`` stop the engine.
- :class:`OutageRecovery` alone probes the database (backoff up to ``RETRY_MAX_S``). When it
  answers, it confirms the lease (another engine may have taken over past the TTL: then this one
  steps down through the usual lease-lost path) and runs a full reconcile pass (unresolved
  orders, missed fills by trade id, open orders, balances). Only after that pass succeeded is
  the ledger ``available`` again, which is also the engine's readiness.

Log lines are rate-limited (:class:`ThrottledLog`): an outage is one error line, then a reminder
every ``LOG_EVERY_S`` with how long it has lasted, then one line when trading resumes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import structlog

from engine.exceptions import DatabaseUnavailable, LeaseLost, VenueError
from engine.ledger.db import is_connection_error
from engine.metrics import error

log = structlog.get_logger("tradectl.outage")

#: first and longest pause between attempts while the database is away
RETRY_MIN_S = 0.5
RETRY_MAX_S = 5.0
#: a task that ran this long before an outage ended it starts its backoff afresh
HEALTHY_RUN_S = 30.0
#: at most one log line per kind of failure in this window
LOG_EVERY_S = 10.0


def is_outage(exc: BaseException) -> bool:
    """The database went away (translated or, from a path that does not translate, raw).
    A task group's failure is an outage when every one of its failures is."""
    if isinstance(exc, BaseExceptionGroup):
        return all(is_outage(e) for e in exc.exceptions)
    return isinstance(exc, DatabaseUnavailable) or is_connection_error(exc)


class ThrottledLog:
    """At most one line per key every ``every_s``; the next line says how many were skipped."""

    def __init__(
        self,
        logger: Any,
        *,
        every_s: float = LOG_EVERY_S,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._log = logger
        self.every_s = every_s
        self._monotonic = monotonic
        self._last: dict[str, float] = {}
        self._skipped: dict[str, int] = {}

    def logged(self, key: str) -> None:
        """Count ``key`` as logged now (by a line written elsewhere)."""
        self._last[key] = self._monotonic()

    def warning(self, key: str, event: str, **fields: Any) -> bool:
        """Log unless ``key`` was logged within the window; True when a line was written."""
        now = self._monotonic()
        last = self._last.get(key)
        if last is not None and now - last < self.every_s:
            self._skipped[key] = self._skipped.get(key, 0) + 1
            return False
        self._last[key] = now
        skipped = self._skipped.pop(key, 0)
        if skipped:
            fields["repeated"] = skipped
        self._log.warning(event, **fields)
        return True


class LedgerState(Protocol):
    """What the execution path needs to know about the ledger's reachability."""

    @property
    def available(self) -> bool: ...

    def unavailable(self, exc: BaseException, *, where: str) -> None: ...


class AlwaysAvailable:
    """For an execution path with no supervision (backtests, tests): outages are not tracked."""

    @property
    def available(self) -> bool:
        return True

    def unavailable(self, exc: BaseException, *, where: str) -> None:
        del exc, where


class LedgerHealth:
    """Whether the ledger may be used for trading: reachable and reconciled since the last
    outage. ``available`` is the engine's readiness (a later ``/readyz`` reads it)."""

    def __init__(
        self, *, account: str | None = None, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        #: whose errors an outage counts (tradectl_errors_total); None counts none
        self.account = account
        self._monotonic = monotonic
        self._available = asyncio.Event()
        self._lost = asyncio.Event()
        self._down_since: float | None = None
        #: failures reported so far: a recovery pass counts only if none arrived meanwhile
        self.failures = 0
        self.outages = 0
        self.throttled = ThrottledLog(log, monotonic=monotonic)

    @property
    def available(self) -> bool:
        return self._available.is_set()

    @property
    def down_for_s(self) -> float | None:
        if self._down_since is None:
            return None
        return self._monotonic() - self._down_since

    def started(self) -> None:
        """The startup sequence (lease, recovery, reconcile) completed: trading may begin."""
        self._available.set()

    def unavailable(self, exc: BaseException, *, where: str) -> None:
        """A task found the database gone. Idempotent: the first report of an outage logs an
        error and stops trading; later ones are throttled reminders."""
        self.failures += 1
        if self._down_since is None:
            self._down_since = self._monotonic()
            self.outages += 1
            self._available.clear()
            self._lost.set()
            if self.account is not None:
                error(self.account, "ledger")
            log.error(
                "ledger.unavailable",
                note="no new orders until it is back and reconciled; working orders stay on "
                "the venue, their fills are fetched afterwards",
                where=where,
                error=str(exc),
            )
            self.throttled.logged("outage")  # the first reminder comes a window later
            return
        self.throttled.warning(
            "outage",
            "ledger.still_unavailable",
            where=where,
            down_for_s=round(self.down_for_s or 0.0, 1),
            error=str(exc),
        )

    def restored(self) -> None:
        down = self.down_for_s
        self._down_since = None
        self._lost.clear()
        self._available.set()
        log.warning(
            "ledger.recovered",
            outage_s=None if down is None else round(down, 1),
        )

    async def wait_lost(self) -> None:
        await self._lost.wait()

    async def wait_available(self) -> None:
        await self._available.wait()


class OutageRecovery:
    """The one task that probes the database during an outage and ends it (see the module)."""

    def __init__(
        self,
        health: LedgerHealth,
        catch_up: Callable[[], Awaitable[None]],
        *,
        retry_min_s: float = RETRY_MIN_S,
        retry_max_s: float = RETRY_MAX_S,
    ) -> None:
        self.health = health
        #: confirm the lease, then reconcile; raises on failure (LeaseLost: step down)
        self.catch_up = catch_up
        self.retry_min_s = retry_min_s
        self.retry_max_s = retry_max_s

    async def run(self) -> None:
        while True:
            await self.health.wait_lost()
            await self.recover()

    async def recover(self) -> None:
        delay = self.retry_min_s
        while True:
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.retry_max_s)
            failures = self.health.failures
            try:
                await self.catch_up()
            except LeaseLost:
                if self.health.account is not None:
                    error(self.health.account, "lease")
                log.error(
                    "lease.taken_over_during_outage",
                    outage_s=round(self.health.down_for_s or 0.0, 1),
                )
                raise
            except VenueError as exc:
                # The ledger answered but the venue did not: still not reconciled.
                self.health.throttled.warning(
                    "recovery-venue",
                    "ledger.recovery_venue_failed",
                    error=str(exc),
                )
                continue
            except Exception as exc:
                if not is_outage(exc):
                    raise
                self.health.unavailable(exc, where="recovery")
                continue
            if self.health.failures != failures:
                # Another task saw the database fail while this pass ran: not proven back.
                continue
            self.health.restored()
            return


async def guarded(
    name: str,
    fn: Callable[[], Awaitable[None]],
    health: LedgerHealth,
    *,
    retry_min_s: float = RETRY_MIN_S,
    retry_max_s: float = RETRY_MAX_S,
    monotonic: Callable[[], float] = time.monotonic,
) -> None:
    """Run a task; when an outage ends it, report it and start it again after a backoff.

    Any other exception (a bug) still ends the task and, with it, the engine.
    """
    delay = retry_min_s
    while True:
        started = monotonic()
        try:
            await fn()
            return
        except Exception as exc:
            if not is_outage(exc):
                raise
            leaf: BaseException = exc
            while isinstance(leaf, BaseExceptionGroup):
                leaf = leaf.exceptions[0]  # the log names the database error, not the group
            health.unavailable(leaf, where=name)
        if monotonic() - started >= HEALTHY_RUN_S:
            delay = retry_min_s
        await asyncio.sleep(delay)
        delay = min(delay * 2, retry_max_s)
