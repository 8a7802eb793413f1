"""Wiring and supervision: the startup sequence and the engine's tasks.

Startup (ARCHITECTURE.md): schema at head → lease → resolve every non-terminal order → fetch
missing fills → reconcile (unknown venue orders, balances) → only then strategies start.

Every task is named and referenced; one that dies stops the engine (STYLE.md, supervised tasks).
Shutdown stops the strategies first, lets execution finish the batch it holds, then cancels the
rest with a timeout: an order interrupted between submit and ACK is ``PENDING_SUBMIT`` in the
ledger and is resolved by lookup at the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from decimal import Decimal
from functools import partial

import structlog

from engine import ops_http, task_dump
from engine.account_gauges import AccountGauges
from engine.alert_watch import AlertWatch
from engine.alerting import delivery_for
from engine.config import Settings
from engine.connection import ConnectionMonitor
from engine.controls import LeaseKeeper, OperatorDesk, halt_for_loss
from engine.crashpoints import CrashPoints
from engine.database import Database, open_database
from engine.domain.risk import Limits
from engine.domain.types import (
    AccountId,
    ControlKind,
    ControlScope,
    StrategyId,
    Symbol,
    utc_now,
)
from engine.exceptions import (
    ConfigError,
    Definitive,
    NotFound,
    ShutdownStuck,
    TradectlError,
)
from engine.execution import Execution, ExecutionConfig, FillPath
from engine.handoff import HandOff, first_set
from engine.heap import frozen_once_ready
from engine.ledger.ledger import Ledger
from engine.ledger.monitoring import Monitoring
from engine.limits_book import LimitsBook
from engine.live_guard import confirm_live, staging
from engine.loss_halt import lift_expired_loss_halt
from engine.marketdata.conflator import Conflator
from engine.marketdata.feed import MarketDataFeed
from engine.marketdata.recording import recorder_for
from engine.metrics import assumptions, controls_active, error
from engine.observability import configure_logging, for_humans, json_output
from engine.operator_listener import OperatorListener
from engine.outage import LedgerHealth, OutageRecovery, guarded
from engine.portfolio import Portfolio
from engine.protection_config import VenueProtection, protection_from_settings
from engine.readiness import Readiness, watch_engine
from engine.reconcile import Reconciler
from engine.risk_gate import RiskGate
from engine.settlement import settler_for
from engine.startup_steps import StartupSteps, apply_start_policies
from engine.status_task import StatusTask
from engine.strategy_config import StrategySpec, load_trading_config
from engine.strategy_host import StrategyHost
from engine.tasks import named, run_main, stop_tasks, wait_event
from engine.venue_guard import GuardedGate, VenueGuard
from engine.venue_session import VenueSession, open_venue, until_the_venue_answers

log = structlog.get_logger("tradectl.runtime")

#: how long a stop lets execution finish the intents it holds, then how long cancelled tasks
#: get to end: a graceful stop is bounded by their sum (plus the lease release)
SHUTDOWN_GRACE_S = 5.0
SHUTDOWN_CANCEL_S = 2.0
LEASE_RELEASE_S = 1.0
#: the whole stop: edges cancelled, execution drained, the rest cancelled, lease released
SHUTDOWN_DEADLINE_S = 2 * SHUTDOWN_CANCEL_S + SHUTDOWN_GRACE_S + LEASE_RELEASE_S


class Engine(StatusTask):
    """One account's engine over an open database and venue."""

    def __init__(
        self,
        settings: Settings,
        db: Database,
        session: VenueSession,
        strategies: tuple[StrategySpec, ...],
        *,
        clock: Callable[[], datetime] = utc_now,
        crash: CrashPoints | None = None,
        account_limits: Limits | None = None,
        readiness: Readiness | None = None,
        protection: VenueProtection | None = None,
        lease: Callable[[Ledger], LeaseKeeper] | None = None,
    ) -> None:
        self.settings = settings
        #: breakers and the connection-loss time: the TOML's, else the settings'
        self.protection = protection or protection_from_settings(settings)
        self.db = db
        self.session = session
        self.venue = session.venue
        self.strategies = strategies
        self.clock = clock
        self.account = AccountId(settings.account)
        self.ledger = Ledger(db.engine, account=self.account, venue=self.venue.name, clock=clock)
        # a pool's engine takes a free account's lease or none (engine/pool.py); alone: standby
        self.lease = (
            lease(self.ledger) if lease else LeaseKeeper(self.ledger, ttl=settings.lease_ttl)
        )
        self.conflator = Conflator(detect_gaps=session.per_symbol_sequences)
        self.portfolio = Portfolio(db.engine, settings.account)
        self.gate = RiskGate(
            limits=LimitsBook.from_specs(strategies, account=account_limits),
            market=self.conflator,
            portfolio=self.portfolio,
            clock=clock,
            ledger=self.ledger,
        )
        self.crash = crash or CrashPoints.from_env()
        #: circuit breakers and auth halts (engine/venue_guard.py)
        self.guard = VenueGuard(
            self.ledger, session.metrics, self.protection.breakers, key=session.credential
        )
        #: reachable and reconciled since the last outage: the engine's readiness
        self.health = LedgerHealth(account=self.account)
        self.execution = Execution(
            ledger=self.ledger,
            venue=self.venue,
            gate=GuardedGate(self.gate, self.guard, lambda: self.connection.reason),
            lease=self.lease,
            config=ExecutionConfig(
                account=self.account,
                order_id_prefix=settings.order_id_prefix,
                consistency_window=settings.consistency_window,
                late_accept=session.late_accept,
                resolve_interval_s=settings.resolve_interval_s,
                max_batch=settings.max_batch,
            ),
            clock=clock,
            crash=self.crash,
            on_fills=lambda fills: self.portfolio.mark_dirty(),
            ledger_state=self.health,
        )
        self.gauges = AccountGauges(
            ledger=self.ledger,
            monitoring=Monitoring(
                db.engine, account=self.account, venue=self.venue.name, clock=clock
            ),
            gate=self.gate,
            mark=self._mark,
            clock=clock,
            ledger_state=self.health,
        )
        for spec in strategies:
            assumptions(
                self.account,
                spec.strategy_id,
                fee_bps=spec.assumed_fee_bps,
                slippage_bps=spec.assumed_slippage_bps,
            )
        self.symbols = symbols_of(strategies)
        self.execution.symbols.update(self.symbols)
        self.settler = settler_for(
            self.venue,
            ledger=self.ledger,
            execution=self.execution,
            on_settled=self.portfolio.mark_dirty,
        )
        self.reconciler = Reconciler(
            ledger=self.ledger,
            execution=self.execution,
            prefix=settings.order_id_prefix,
            balance_tolerance=settings.balance_tolerance,
            settle_s=settings.balance_settle_s,
            settler=self.settler,
            read_headroom=session.metrics.read_headroom,
        )
        self.guard.serve(self.execution)
        #: the connection-loss protocol and the reconnect gate (engine/connection.py)
        self.connection = ConnectionMonitor(
            self.ledger, session.metrics, self.reconciler, self.execution, strategies,
            disconnect_after_s=self.protection.disconnect_after_s,
        )  # fmt: skip
        self.fill_path = FillPath(
            ledger=self.ledger,
            execution=self.execution,
            on_reconnect=self.connection.reconnected,
            on_auth_failed=self.guard.auth_failed,
        )
        self.listener = OperatorListener(db.engine.url, self.account)
        self.handoff = HandOff(self.ledger, self.execution, holder=self.lease.holder)
        self.desk = OperatorDesk(
            self.ledger,
            holder=self.lease.holder,
            reconciler=self.reconciler,
            execution=self.execution,
            ledger_state=self.health,
            poll_s=settings.operator_poll_s,
            wakeup=self.listener.subscribe(),
            handoff=self.handoff,
        )
        self._controls_wake = self.listener.subscribe()
        self.alert_delivery = delivery_for(self.ledger.alerts, settings, clock=clock)
        self._paused: set[StrategyId] = set()
        self._lease_task: asyncio.Task[None] | None = None
        self._started = False
        #: what /readyz reports (engine/ops_http.py)
        self.readiness = readiness or Readiness()
        watch_engine(
            self.readiness,
            lease=self.lease,
            health=self.health,
            streams=session.metrics,
            started=lambda: self._started,
        )
        self.host = StrategyHost(
            conflator=self.conflator,
            portfolio=self.portfolio,
            sink=self.execution.submit_intent,
            on_strategy_failure=self._strategy_failed,
            is_paused=self._is_paused,
            clock=clock,
            may_trade=lambda: (
                self.health.available and self.connection.may_trade() and not self.handoff.active
            ),
        )
        for spec in strategies:
            self.host.add(spec.hosted(staging(settings)))
            if spec.bar_interval is not None:
                # Bar strategies decide on closed bars; venues stream quotes, so bars are
                # built from them (the feed closes due bars even in a quiet market).
                for symbol in spec.symbols:
                    self.conflator.build_bars(symbol, spec.bar_interval)

    @property
    def ready(self) -> bool:
        """Started, the ledger reachable and reconciled since any outage (``/readyz`` also
        wants the lease and the streams: ``self.readiness``). False from a lost connection
        until the post-outage reconcile succeeded."""
        return self.health.available

    # -- controls seen by the strategies (the reserve transaction enforces them regardless) ---

    async def _refresh_controls(self) -> None:
        paused: set[StrategyId] = set()
        blocked_all = False
        active = await self.ledger.controls.active()
        controls_active(self.account, (c.kind for c in active), all_kinds=ControlKind)
        for control in active:
            if control.kind is ControlKind.REDUCE_ONLY:
                continue  # strategies keep deciding; reserve lets only reducing orders through
            if control.scope in (ControlScope.GLOBAL, ControlScope.ACCOUNT):
                blocked_all = blocked_all or control.target in ("*", self.account)
            elif control.scope is ControlScope.STRATEGY:
                paused.add(StrategyId(control.target))
        if blocked_all:
            paused.update(self.host.strategy_ids)
        self._paused = paused

    async def _is_paused(self, strategy_id: StrategyId) -> bool:
        return strategy_id in self._paused

    def _mark(self, symbol: Symbol) -> Decimal | None:
        quote = self.conflator.quote(symbol)
        return None if quote is None else quote.mid

    async def _strategy_failed(self, strategy_id: StrategyId, exc: BaseException) -> None:
        reason = f"strategy raised {type(exc).__name__}: {exc}"
        error(self.account, "strategy")
        self._paused.add(strategy_id)
        await self.ledger.controls.set(
            ControlScope.STRATEGY, strategy_id, ControlKind.PAUSE, reason=reason, set_by="engine"
        )
        await self.ledger.incidents.open(
            kind="strategy_failed",
            scope=f"strategy:{strategy_id}",
            severity="error",
            message=(
                f"strategy {strategy_id} paused: {reason}. Fix it, then "
                f"`tradectl resume --strategy {strategy_id} --reason '…'`"
            ),
            details={"exception": type(exc).__name__},
            dedupe_key=f"strategy_failed:{strategy_id}",
        )

    # -- the loops -----------------------------------------------------------------------------

    async def _controls_loop(self) -> None:
        # "take effect within a second": the reserve transaction enforces controls anyway; this
        # only stops paused strategies from deciding at all. Read at once when an operator's
        # NOTIFY arrives, else every operator_poll_s; the loss halt is checked every 0.5 s.
        next_read = 0.0
        while True:
            if not self.health.available:
                await asyncio.sleep(0.5)  # nothing to read; recovery refreshes them
                continue
            await self.gate.watch_losses()  # a loss crossed while nobody trades halts too
            reason = self.gate.take_halt()
            if reason is not None:
                # The gate already rejects every order while the loss is over the limit; the
                # HALT makes it stick across restarts until an operator lifts it.
                day = self.gate.limits.account.trading_day
                await halt_for_loss(self.ledger, reason, day=day, now=self.clock())
            if self._controls_wake.is_set() or time.monotonic() >= next_read:
                self._controls_wake.clear()
                next_read = time.monotonic() + self.settings.operator_poll_s
                await lift_expired_loss_halt(self.ledger, self.gate.limits.account, self.clock())
                await self._refresh_controls()
            await wait_event(self._controls_wake, 0.5)

    async def _reconcile_loop(self) -> None:
        await self.reconciler.run_periodic(self.settings.reconcile_interval_s)

    async def _check_symbols(self) -> None:
        # A symbol the venue does not list would be denied at every decision, forever, with a
        # warning per attempt: refuse to start instead, naming them.
        missing: list[str] = []
        for symbol in self.symbols:
            try:
                await self.venue.instrument_rules(symbol)
            except (NotFound, Definitive) as exc:
                missing.append(f"{symbol} ({exc})")
        if missing:
            raise ConfigError(
                f"the venue ({self.session.description}) does not list {', '.join(missing)}, "
                "which the strategies in TRADECTL_STRATEGIES_FILE trade: change the strategies "
                "or point the engine at a venue that lists them"
            )

    async def startup(self) -> None:
        step = StartupSteps(self.account)
        with step("symbols"):
            await until_the_venue_answers("checking the venue's symbols", self._check_symbols)
        with step("lease"):
            await self.lease.acquire()
        # Renewed from here on: recovery against a slow or rate-limiting venue can outlast the
        # TTL, and a lease lost before trading starts would stop the engine at once.
        self._lease_task = asyncio.create_task(named("lease", self.lease.keep), name="lease")
        with step("recover"):
            await self.execution.recover()
        with step("reconcile"):
            await until_the_venue_answers(
                "startup reconciliation", lambda: self.reconciler.reconcile(startup=True)
            )
        with step("load"):
            await self._refresh_controls()
            await apply_start_policies(self.strategies, self.execution)
            await self.portfolio.refresh()
            await self.gate.load_history()
        step.done()
        self.health.started()
        self._started = True

    async def _catch_up(self) -> None:
        """After an outage, before trading again: the same epoch (LeaseLost if another engine
        took over: the caller steps down), then what startup does: every unresolved order looked
        up, missed fills fetched by trade id, open orders and balances compared."""
        await self.lease.renew()
        await self.reconciler.reconcile()
        await self.execution.settle_owed_fills()
        await self._refresh_controls()
        self.portfolio.forget()
        await self.portfolio.refresh()
        await self.gate.load_history()

    async def run(self, stop: asyncio.Event, *, on_ready: Callable[[], None] | None = None) -> None:
        # Every line of this engine names its account, whichever task writes it (a task copies
        # the context it was created in); reset on the way out, for a caller running several
        with structlog.contextvars.bound_contextvars(account=self.account):
            await self._run(stop, on_ready)

    async def _run(self, stop: asyncio.Event, on_ready: Callable[[], None] | None) -> None:
        try:
            await self.startup()
        except BaseException:
            if self._lease_task is not None:
                await stop_tasks({"lease": self._lease_task}, deadline_s=SHUTDOWN_CANCEL_S)
            await self._release_lease()
            raise
        assert self._lease_task is not None
        for_humans(
            f"tradectl running: account {self.account} on {self.session.description}; "
            f"strategies {', '.join(self.host.strategy_ids) or 'none'}\n"
            f"inspect the ledger with: {self.db.psql}",
            "engine.started",
            account=self.account,
            venue=self.session.description,
            strategies=list(self.host.strategy_ids),
            psql=self.db.psql,
        )
        core: dict[str, Callable[[], Awaitable[None]]] = {
            "fills": self.fill_path.run,
            "execution": self.execution.run,
            "resolver": self.execution.run_resolver,
            "reconcile": self._reconcile_loop,
            "controls": self._controls_loop,
            # its own task: a reconcile it runs must not hold up the controls refresh
            "operator": self.desk.run,
            "operator-listen": self.listener.run,
            # the only task that probes the database during an outage, and ends it
            "recovery": OutageRecovery(self.health, self._catch_up).run,
            # sends in worker threads: a slow or dead channel never holds up trading
            "alerts": self.alert_delivery.run,
            "alert-watch": AlertWatch(
                self.ledger,
                venue=self.venue,
                gate=self.gate,
                disconnect_s=self.settings.alert_disconnect_s,
                unknown_s=self.settings.alert_unknown_s,
                slippage_bps=self.settings.alert_slippage_bps,
                clock=self.clock,
            ).run,
            "metrics": self.gauges.run,
            "venue-guard": self.guard.run,
            "connection": self.connection.run,
        }
        edge: dict[str, Callable[[], Awaitable[None]]] = {
            "marketdata": MarketDataFeed(
                self.venue,
                self.symbols,
                self.conflator,
                metrics=self.session.metrics,
                recorder=recorder_for(self.settings),
                on_auth_failed=partial(self.guard.auth_failed, where="the market stream"),
            ).run,
            "strategies": self.host.run,
            "status": self._status_loop,
        }
        if self.session.driver is not None:
            edge["venue-driver"] = self.session.driver
        if self.settler is not None:
            core["settlements"] = partial(self.settler.run, self.settings.reconcile_interval_s)
        edge.update(self.session.extra_tasks)
        tasks = {"lease": self._lease_task} | {
            name: asyncio.create_task(named(name, _guard(name, fn, self.health)), name=name)
            for name, fn in (core | edge).items()
        }
        # an operator's stop, or a hand-off that has recorded its result (engine/handoff.py)
        stopper = asyncio.create_task(first_set(stop, self.handoff.done), name="stop")
        if on_ready is not None:
            on_ready()
        ended: list[str] = []
        try:
            done, _ = await asyncio.wait(
                [*tasks.values(), stopper], return_when=asyncio.FIRST_COMPLETED
            )
            for task in done:
                if task is not stopper:
                    exc = task.exception() if not task.cancelled() else None
                    error(self.account, task.get_name())
                    log.error("engine.task_ended", task=task.get_name(), error=exc)
                    ended.append(f"{task.get_name()}: {exc!r}" if exc else task.get_name())
            await self._report_lease_loss()
        finally:
            stopper.cancel()
            await self._shutdown(tasks, edge_names=set(edge))
        if ended:
            # A supervisor must see this as a failure (and restart us into standby/recovery),
            # not as an operator's clean stop.
            reason = self.execution.stopped_reason or "; ".join(ended)
            raise TradectlError(f"the engine stopped on its own: {reason}")

    async def _report_lease_loss(self) -> None:
        # Execution finds a lost lease at its next reservation, often before the lease task's
        # next renewal would: either way one alert (bounded: the stop must not wait on it).
        reason = self.execution.stopped_reason
        if reason is None or not reason.startswith("lease lost"):
            return
        with contextlib.suppress(Exception):
            async with asyncio.timeout(LEASE_RELEASE_S):
                await self.lease.report_lost(reason)

    async def _release_lease(self) -> None:
        # Always, and bounded: a standby or the next start must not wait out the lease's TTL,
        # and a database that went away must not hold up the stop.
        with contextlib.suppress(Exception):
            async with asyncio.timeout(LEASE_RELEASE_S):
                await self.lease.release()

    async def _shutdown(
        self, tasks: dict[str, asyncio.Task[None]], *, edge_names: set[str]
    ) -> None:
        # 1. No new decisions.
        edges = {n: t for n, t in tasks.items() if n in edge_names}
        stuck = await stop_tasks(edges, deadline_s=SHUTDOWN_CANCEL_S)
        # 2. Let execution finish the intents it already holds, their fills in (bounded).
        if not stuck:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(SHUTDOWN_GRACE_S):
                    await self.execution.drain()
                    await self.execution.wait_for_announced_fills()
                    # the counts of the holds still running (engine.domain.holds)
                    with contextlib.suppress(TradectlError):
                        await self.execution.flush_holds()
        # 3. Everything else, the risk gate's background read included.
        rest = {n: t for n, t in tasks.items() if n not in edges}
        stuck += await stop_tasks({**rest, **self.gate.background()}, deadline_s=SHUTDOWN_CANCEL_S)
        await self._release_lease()
        if stuck:
            error(self.account, "shutdown")
            log.error("engine.stop_stuck", stuck=stuck)
            raise ShutdownStuck(
                f"the engine did not stop cleanly: task(s) {', '.join(stuck)} ignored "
                "cancellation; the lease was released"
            )
        for_humans("tradectl stopped", "engine.stopped", account=self.account)


def symbols_of(specs: tuple[StrategySpec, ...]) -> tuple[Symbol, ...]:
    return tuple(sorted({symbol for spec in specs for symbol in spec.symbols}))


def _guard(
    name: str, fn: Callable[[], Awaitable[None]], health: LedgerHealth
) -> Callable[[], Awaitable[None]]:
    return lambda: guarded(name, fn, health)


async def run(settings: Settings, stop: asyncio.Event | None = None) -> None:
    """Serve the ops endpoints, open the database and the venue, then run the engine until
    ``stop`` is set."""
    stop = stop or asyncio.Event()
    readiness = Readiness()
    async with contextlib.AsyncExitStack() as stack:
        ops = None
        if settings.metrics_port is not None:
            # First: alive (and not ready) for the whole startup, and a port that cannot be
            # bound fails before anything else is opened.
            ops = await stack.enter_async_context(
                ops_http.serving(settings.metrics_host, settings.metrics_port, readiness)
            )
            assert ops.task is not None
            ops.task.add_done_callback(lambda _: stop.set())  # supervised: its end stops us
        await _run_engine(settings, stop, readiness)
        if ops is not None and (failure := ops.failure()) is not None:
            raise TradectlError(f"the engine stopped on its own: {failure}")


async def _run_engine(settings: Settings, stop: asyncio.Event, readiness: Readiness) -> None:
    config = load_trading_config(settings.strategies_file)
    strategies = config.strategies
    confirm_live(settings, [spec.strategy_id for spec in strategies])  # before anything opens
    async with open_database(settings) as db:
        clock = utc_now
        async with open_venue(settings, symbols_of(strategies), clock, db=db) as session:
            if session.account is not None and session.account != settings.account:
                settings = settings.model_copy(update={"account": session.account})
            engine = Engine(
                settings, db, session, strategies, clock=clock,
                account_limits=config.account_limits, readiness=readiness,
                protection=config.protection.resolve(settings),
            )  # fmt: skip
            with frozen_once_ready() as ready:
                await engine.run(stop, on_ready=ready)


def main(settings: Settings) -> None:
    """``tradectl run``: log setup, signals; Ctrl-C stops gracefully."""
    configure_logging(json=settings.log_format.value == "json", level=settings.log_level)

    async def go() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        task_dump.install(loop)
        try:
            if settings.accounts is None:
                await run(settings, stop)
            else:
                from engine.pool import run_pool

                await run_pool(settings, stop)
        except ShutdownStuck as exc:
            # asyncio.run would cancel the stuck task again and wait for it without a bound.
            if json_output():
                log.critical("engine.exiting", error=str(exc))
            else:
                print(f"error: {exc}", file=sys.stderr, flush=True)
            os._exit(2)

    run_main(go())
