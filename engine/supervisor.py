"""One process, several accounts: each account's engine runs in its own supervised task.

An :class:`AccountRun` is one account's whole engine (:class:`engine.runtime.Engine`: its own
lease and epoch, venue connections, execution, reconciler, strategies), opened from the account's
row (engine/accounts.py) on the process's shared database pool. Whatever ends one (the venue
refusing its credentials, a venue that never answers, a lost lease, a task that crashed) ends
that task only: the failure is logged with the account, counted, and recorded as an incident
(and so an alert) of that account, and the others trade on.

Process-wide parts are shared on purpose: the metrics registry (every series has an ``account``
label), the ops HTTP server (``/readyz`` reports each account's parts under its name), the
signal handlers (one stop for the process). Logs name the account through structlog's context,
bound in each account's task. Crash points (``TRADECTL_CRASH_POINT``) end the whole process, as
a crash would.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog
from prometheus_client import Gauge

from engine.accounts import AccountConfig, account_settings, account_trading_config
from engine.alerting import delivery_for
from engine.config import Settings
from engine.controls import LeaseKeeper
from engine.database import Database
from engine.domain.types import AccountId, VenueName, utc_now
from engine.exceptions import AuthFailed, ConfigError, LeaseLost, TradectlError
from engine.heap import frozen_once_ready
from engine.ledger.ledger import Ledger
from engine.metrics import _metric, error, lease_held
from engine.readiness import Readiness
from engine.runtime import Engine, symbols_of
from engine.tasks import wait_event
from engine.venue_guard import halt_for_auth
from engine.venue_session import open_venue

log = structlog.get_logger("tradectl.supervisor")

RUNNING = _metric(
    Gauge,
    "tradectl_account_running",
    "1 while this process runs the account's engine (pool engines: owned accounts)",
    ("account",),
)


class AccountTaken(TradectlError):
    """Another engine holds the account's lease: a pool engine leaves it to that one."""


class PoolLease(LeaseKeeper):
    """A pool engine's lease: taken if free (or its own), never waited for as a standby: the
    pool tries another account instead."""

    async def acquire(self) -> int:
        epoch = await self.ledger.leases.acquire(self.holder, self.ttl)
        if epoch is None:
            raise AccountTaken(f"account {self.ledger.account}: another engine holds the lease")
        self._epoch = epoch
        self._lost = False
        lease_held(self.ledger.account, True)
        log.info("lease.acquired", holder=self.holder, epoch=epoch)
        return epoch


@dataclass(slots=True)
class AccountRun:
    """One account's engine task in this process."""

    config: AccountConfig
    task: asyncio.Task[None]
    stop: asyncio.Event
    readiness: Readiness
    started: float = field(default_factory=time.monotonic)
    #: why it ended on its own (None: still running, or stopped on request)
    failure: str | None = None

    @property
    def account(self) -> str:
        return self.config.account


async def run_account(
    base: Settings,
    db: Database,
    config: AccountConfig,
    stop: asyncio.Event,
    readiness: Readiness,
    *,
    lease: Callable[[Ledger], LeaseKeeper] | None,
) -> None:
    """Open the account's venue and run its engine until ``stop`` (or until it fails)."""
    settings = account_settings(base, config)
    trading = account_trading_config(settings, config)
    async with open_venue(settings, symbols_of(trading.strategies), utc_now, db=db) as session:
        if session.account is not None and session.account != settings.account:
            settings = settings.model_copy(update={"account": session.account})
        engine = Engine(
            settings, db, session, trading.strategies,
            account_limits=trading.account_limits, readiness=readiness, lease=lease,
        )  # fmt: skip
        try:
            with frozen_once_ready() as ready:
                await engine.run(stop, on_ready=ready)
        except TradectlError as exc:
            fenced = (engine.execution.stopped_reason or "").startswith("lease lost")
            if engine.lease.lost or fenced:
                # another engine took the account over (this one stalled past the TTL): the
                # account trades on there; the lease-lost alert was raised by the lease keeper
                raise LeaseLost(str(exc)) from exc
            raise


async def record_failure(
    base: Settings, db: Database, config: AccountConfig, exc: Exception
) -> str:
    """The account's incident (and its alert, through the outbox) for an engine that ended on
    its own; the reason in words. Refused credentials halt the account as on a running engine."""
    account = config.account
    ledger = Ledger(
        db.engine, account=AccountId(account), venue=VenueName(config.venue.value), clock=utc_now
    )
    reason = f"{type(exc).__name__}: {exc}"
    error(account, "account")
    log.error("account.failed", account=account, error=reason)
    with contextlib.suppress(Exception):  # the database may be what failed
        if isinstance(exc, AuthFailed):
            key = ", ".join(f"{k} ({v})" for k, v in config.credentials.items()) or "its API key"
            await halt_for_auth(ledger, account, exc, where="startup", key=key)
        else:
            await ledger.incidents.open(
                kind="account_failed",
                scope=f"account:{account}",
                severity="critical" if isinstance(exc, ConfigError) else "error",
                message=(
                    f"the engine of account {account} stopped: {reason}; the other accounts "
                    "trade on, and it is retried"
                ),
                details={"exception": type(exc).__name__},
                dedupe_key=f"account_failed:{account}",
            )
    return reason


async def deliver_alerts_while(
    base: Settings, db: Database, config: AccountConfig, seconds: float, stop: asyncio.Event
) -> None:
    """Send the account's pending alerts (its failure's among them) while nothing else does:
    its engine, which normally delivers them, is down."""
    ledger = Ledger(
        db.engine,
        account=AccountId(config.account),
        venue=VenueName(config.venue.value),
        clock=utc_now,
    )
    delivery = delivery_for(ledger.alerts, base, clock=utc_now)
    sender = asyncio.create_task(delivery.run(), name=f"alerts:{config.account}")
    try:
        await wait_event(stop, seconds)
    finally:
        sender.cancel()
        with contextlib.suppress(BaseException):
            await sender


def readiness_check(account: str, readiness: Readiness) -> Callable[[], str | None]:
    def check() -> str | None:
        problems = readiness.problems()
        if not problems:
            return None
        return "; ".join(f"{part}: {what}" for part, what in problems.items())

    return check


class Supervisor:
    """Starts, stops and watches the account engines of this process."""

    def __init__(
        self,
        base: Settings,
        db: Database,
        readiness: Readiness,
        *,
        lease: Callable[[Ledger], LeaseKeeper] | None = None,
    ) -> None:
        self.base = base
        self.db = db
        self.readiness = readiness
        self.lease = lease
        self.runs: dict[str, AccountRun] = {}

    def start(self, config: AccountConfig) -> AccountRun:
        stop = asyncio.Event()
        readiness = Readiness()
        task = asyncio.create_task(
            self._run(config, stop, readiness), name=f"account:{config.account}"
        )
        run = AccountRun(config=config, task=task, stop=stop, readiness=readiness)
        self.runs[config.account] = run
        self.readiness.add(f"account:{config.account}", readiness_check(config.account, readiness))
        RUNNING.labels(config.account).set(1)
        return run

    async def _run(self, config: AccountConfig, stop: asyncio.Event, readiness: Readiness) -> None:
        with structlog.contextvars.bound_contextvars(account=config.account):
            try:
                await run_account(self.base, self.db, config, stop, readiness, lease=self.lease)
            except AccountTaken as exc:
                log.info("account.taken", note=str(exc))
                raise
            except LeaseLost as exc:
                error(config.account, "lease")
                log.warning("account.lease_lost", note="another engine runs it now", error=str(exc))
                raise
            except Exception as exc:
                run = self.runs.get(config.account)
                reason = await record_failure(self.base, self.db, config, exc)
                if run is not None:
                    run.failure = reason
                raise

    def reap(self) -> list[AccountRun]:
        """The runs that ended (on request or on their own), forgotten here."""
        ended = [run for run in self.runs.values() if run.task.done()]
        for run in ended:
            del self.runs[run.account]
            self.readiness.discard(f"account:{run.account}")
            RUNNING.labels(run.account).set(0)
            if not run.task.cancelled():
                exc = run.task.exception()  # retrieved always: asyncio logs one never read
                if (
                    run.failure is None
                    and exc is not None
                    and not isinstance(exc, AccountTaken | LeaseLost)
                ):
                    run.failure = f"{type(exc).__name__}: {exc}"
        return ended

    def release(self, account: str) -> None:
        """Graceful: strategies stop, execution finishes what it holds, the lease is released
        (Engine's own shutdown), so another engine takes the account over at once."""
        run = self.runs.get(account)
        if run is not None:
            log.info("account.releasing", account=account)
            run.stop.set()

    async def stop_all(self, deadline_s: float) -> None:
        for run in self.runs.values():
            run.stop.set()
        tasks = [run.task for run in self.runs.values()]
        if tasks:
            _done, pending = await asyncio.wait(tasks, timeout=deadline_s)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=2.0)
        self.reap()
