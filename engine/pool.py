"""A pool of engines over one Postgres: ``TRADECTL_ACCOUNTS=auto`` (or a list of accounts).

Every pool tick (a third of the lease TTL) an engine:

1. heartbeats its row in ``engines`` (how the pool counts live engines: one that owns no
   account yet holds no lease);
2. reads the accounts: the enabled ones (``auto``) or the listed ones;
3. stops the engines of accounts that were disabled (gracefully, releasing the lease);
4. works out its fair share, ``ceil(accounts / live engines)`` capped at
   ``TRADECTL_MAX_ACCOUNTS``; above it (an engine joined), it releases the newest of the
   accounts it has run for ``MIN_HOLD_TTLS`` TTLs or more, gracefully: strategies stop,
   in-flight intents finish, the lease is released, so the
   joining engine takes it at its next tick; below it, it claims accounts whose lease is free or
   expired: the account of an engine that died is taken over once its lease's TTL has run out,
   and the taker's startup (recover, reconcile) runs before any strategy trades.

Two engines claiming the same account race on the lease row: one gets the next epoch, the
other's start ends at ``AccountTaken`` and it tries another account next tick. An account this
engine released, or whose engine failed here, is not claimed again by it for a while, so a
failing account does not stay with one engine and a released one goes to the joiner.
With a list of accounts the engine runs all of them (no fair share), each as soon as its lease
is free.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import time

import structlog

from engine import ops_http
from engine.accounts import AccountConfig
from engine.config import Settings
from engine.controls import make_holder
from engine.database import Database, open_database
from engine.exceptions import DatabaseUnavailable, TradectlError
from engine.ledger.accounts import Accounts
from engine.ledger.ledger import Ledger
from engine.readiness import Readiness
from engine.runtime import SHUTDOWN_DEADLINE_S
from engine.supervisor import PoolLease, Supervisor, deliver_alerts_while
from engine.tasks import wait_event

log = structlog.get_logger("tradectl.pool")

#: an account released here is left to the other engines for this many TTLs
RELEASE_COOLDOWN_TTLS = 3.0
#: an account is kept this many TTLs at least before a fair-share release: a taker that just
#: reconciled trades for a while rather than handing the account on at once to a joiner
MIN_HOLD_TTLS = 5.0
#: first and longest wait before this engine retries an account whose engine failed here
RETRY_S = 5.0
RETRY_MAX_S = 300.0


class Pool:
    def __init__(
        self,
        settings: Settings,
        db: Database,
        readiness: Readiness,
        *,
        holder: str | None = None,
    ) -> None:
        self.settings = settings
        self.db = db
        self.holder = holder or make_holder()
        self.book = Accounts(db.engine)
        self.auto = settings.accounts == "auto"
        self.listed = (
            None
            if self.auto or settings.accounts is None
            else {a.strip() for a in settings.accounts.split(",") if a.strip()}
        )
        self.max_accounts = settings.max_accounts if self.auto else len(self.listed or ())
        self.tick_s = settings.lease_ttl_s / 3
        self.supervisor = Supervisor(settings, db, readiness, lease=self._lease)
        self._not_before: dict[str, float] = {}
        self._failures: dict[str, int] = {}
        self._ticks = 0
        self._senders: dict[str, asyncio.Task[None]] = {}
        self._stop = asyncio.Event()
        readiness.add("pool", lambda: None if self._ticks else "joining the pool")

    def _lease(self, ledger: Ledger) -> PoolLease:
        return PoolLease(ledger, ttl=self.settings.lease_ttl, holder=self.holder)

    async def run(self, stop: asyncio.Event) -> None:
        log.info("pool.joined", holder=self.holder, accounts=self.settings.accounts,
                 max_accounts=self.max_accounts)  # fmt: skip
        self._stop = stop
        try:
            while not stop.is_set():
                try:
                    await self.tick()
                except DatabaseUnavailable as exc:
                    # the engines keep their leases as long as they can renew them: nothing
                    # to decide until the database answers again
                    log.warning("pool.tick_failed", error=str(exc))
                await wait_event(stop, self.tick_s)
        finally:
            for sender in self._senders.values():
                sender.cancel()
            await self.supervisor.stop_all(SHUTDOWN_DEADLINE_S)
            with contextlib.suppress(Exception):
                async with asyncio.timeout(1.0):
                    await self.book.leave(self.holder)
            log.info("pool.left", holder=self.holder)

    def owned(self) -> list[str]:
        return sorted(a for a, r in self.supervisor.runs.items() if not r.stop.is_set())

    async def tick(self) -> None:
        now = time.monotonic()
        for run in self.supervisor.reap():
            if run.failure is not None:
                n = self._failures.get(run.account, 0) + 1
                self._failures[run.account] = n
                wait = min(RETRY_S * 2 ** (n - 1), RETRY_MAX_S)
                self._not_before[run.account] = now + wait
                self._send_alerts(run.config, wait)
                continue
            self._failures.pop(run.account, None)  # it ran: the next failure waits 5 s again
            if run.stop.is_set():
                self._not_before[run.account] = now + RELEASE_COOLDOWN_TTLS * (
                    self.settings.lease_ttl_s
                )
        ttl = self.settings.lease_ttl
        await self.book.heartbeat(self.holder, ttl, self.max_accounts)
        self._ticks += 1
        configs = await self.book.all()
        wanted = {
            c.account: c
            for c in configs
            if c.enabled and (self.listed is None or c.account in self.listed)
        }
        for account in self.owned():
            if account not in wanted:
                log.info("pool.account_disabled", account=account)
                self.supervisor.release(account)
        if self._ticks == 1 and self.auto:
            return  # one tick to be counted before claiming: engines starting together share
        mine = self.owned()
        if self.auto:
            live = max(1, len(await self.book.live_engines()))
            share = min(self.max_accounts, math.ceil(len(wanted) / live))
        else:
            share = len(wanted)
        if len(mine) > share:
            settled = now - MIN_HOLD_TTLS * self.settings.lease_ttl_s
            newest = sorted(
                (a for a in mine if self.supervisor.runs[a].started <= settled),
                key=lambda a: self.supervisor.runs[a].started,
                reverse=True,
            )
            for account in newest[: len(mine) - share]:
                log.info("pool.releasing", account=account, share=share, owned=len(mine))
                self.supervisor.release(account)
            return
        if len(mine) >= share:
            return
        held = await self.book.held()
        free = [
            c
            for account, c in wanted.items()
            if account not in held
            and account not in self.supervisor.runs
            and self._not_before.get(account, 0.0) <= now
        ]
        # engines that look at the same moment start from different accounts
        random.shuffle(free)
        for config in free[: share - len(mine)]:
            self._start(config)

    def _start(self, config: AccountConfig) -> None:
        sender = self._senders.pop(config.account, None)
        if sender is not None:
            sender.cancel()
        log.info("pool.claiming", account=config.account)
        self.supervisor.start(config)

    def _send_alerts(self, config: AccountConfig, seconds: float) -> None:
        if config.account in self._senders:
            return
        task = asyncio.create_task(
            deliver_alerts_while(self.settings, self.db, config, seconds, self._stop),
            name=f"alerts:{config.account}",
        )
        self._senders[config.account] = task
        task.add_done_callback(lambda _: self._senders.pop(config.account, None))


async def run_pool(settings: Settings, stop: asyncio.Event | None = None) -> None:
    """``tradectl run`` with ``TRADECTL_ACCOUNTS``: one ops server for every account, one
    database pool, and the pool of account engines until ``stop``."""
    stop = stop or asyncio.Event()
    readiness = Readiness()
    async with contextlib.AsyncExitStack() as stack:
        ops = None
        if settings.metrics_port is not None:
            ops = await stack.enter_async_context(
                ops_http.serving(settings.metrics_host, settings.metrics_port, readiness)
            )
            assert ops.task is not None
            ops.task.add_done_callback(lambda _: stop.set())
        db = await stack.enter_async_context(open_database(settings))
        await Pool(settings, db, readiness).run(stop)
        if ops is not None and (failure := ops.failure()) is not None:
            raise TradectlError(f"the engine stopped on its own: {failure}")
