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
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog
from pydantic import SecretStr

from engine.config import Settings, VenueKind
from engine.controls import LeaseKeeper, OperatorDesk, halt_for_loss
from engine.crashpoints import CrashPoints
from engine.database import Database, open_database
from engine.demo import simulator_config
from engine.domain.risk import Limits
from engine.domain.types import (
    AccountId,
    ControlKind,
    ControlScope,
    StrategyId,
    Symbol,
    VenueName,
    utc_now,
)
from engine.exceptions import (
    Ambiguous,
    ConfigError,
    Definitive,
    NotFound,
    RateLimited,
    ShutdownStuck,
    TradectlError,
)
from engine.execution import Execution, ExecutionConfig, FillPath
from engine.ledger.ledger import Ledger
from engine.marketdata.conflator import Conflator
from engine.marketdata.feed import MarketDataFeed
from engine.observability import configure_logging, serve_metrics
from engine.outage import LedgerHealth, OutageRecovery, guarded
from engine.portfolio import Portfolio
from engine.reconcile import Reconciler
from engine.risk_gate import LimitsBook, RiskGate
from engine.status import ledger_status
from engine.strategy_config import StrategySpec, load_trading_config
from engine.strategy_host import StrategyHost
from engine.tasks import stop_tasks
from engine.venues.base import Venue

log = structlog.get_logger("tradectl.runtime")

#: how long a stop lets execution finish the intents it holds, then how long cancelled tasks
#: get to end: a graceful stop is bounded by their sum (plus the lease release)
SHUTDOWN_GRACE_S = 5.0
SHUTDOWN_CANCEL_S = 2.0
LEASE_RELEASE_S = 1.0
#: the whole stop: edges cancelled, execution drained, the rest cancelled, lease released
SHUTDOWN_DEADLINE_S = 2 * SHUTDOWN_CANCEL_S + SHUTDOWN_GRACE_S + LEASE_RELEASE_S
#: first and longest pause between attempts of a startup step the venue failed transiently
STARTUP_RETRY_S = 0.5
STARTUP_RETRY_MAX_S = 30.0


@dataclass(slots=True)
class VenueSession:
    venue: Venue
    #: background work that produces market data for a local venue (paper), if any
    driver: Callable[[], Coroutine[Any, Any, None]] | None = None
    description: str = ""
    #: whether quote sequence numbers are per symbol, so a skipped number is a lost update
    #: (Binance's bookTicker ``u`` is one counter across symbols: gaps there mean nothing)
    per_symbol_sequences: bool = False
    extra_tasks: dict[str, Callable[[], Coroutine[Any, Any, None]]] = field(default_factory=dict)
    #: the ledger account to trade as, when the venue decides it (the demo exchange after a
    #: reset trades as a fresh account: engine/demo.py)
    account: str | None = None


@contextlib.asynccontextmanager
async def open_venue(
    settings: Settings,
    symbols: tuple[Symbol, ...],
    clock: Callable[[], datetime],
    *,
    db: Database | None = None,
) -> AsyncIterator[VenueSession]:
    """The venue of ``settings``; with ``db``, the built-in simulator is the demo exchange that
    persists in the data dir (without it, a fresh simulator that forgets everything)."""
    if settings.venue is VenueKind.PAPER:
        from engine.venues.paper import default_paper_venue

        venue = default_paper_venue(symbols, seed=settings.seed, clock=clock)

        async def drive() -> None:
            while True:
                venue.step(clock())
                await asyncio.sleep(0.25)

        try:
            yield VenueSession(
                venue=venue,
                driver=drive,
                description="in-process paper venue",
                per_symbol_sequences=True,
            )
        finally:
            await venue.close()
        return
    if settings.venue in (VenueKind.KALSHI, VenueKind.KALSHI_SIMULATOR):
        from engine.venues.kalshi.session import open_kalshi

        async with open_kalshi(settings, symbols) as kalshi:
            yield VenueSession(
                venue=kalshi.venue, driver=kalshi.driver, description=kalshi.description
            )
        return
    from engine.venues.binance import BinanceConfig, BinanceVenue

    if settings.venue is VenueKind.SIMULATOR:
        from engine.venues.simulator import run_simulator

        sim_config = simulator_config(symbols, seed=settings.seed)
        async with contextlib.AsyncExitStack() as stack:
            exchange = None
            if db is not None:
                # the demo exchange persists in the data dir with the ledger (engine/demo.py)
                from engine.demo import open_exchange

                exchange = await stack.enter_async_context(
                    open_exchange(settings, db.engine, sim_config)
                )
            sim = await stack.enter_async_context(
                run_simulator(sim_config, state=exchange.state if exchange else None)
            )
            if exchange is not None:
                await stack.enter_async_context(exchange.keeping(sim.state))
            binance = BinanceVenue(
                BinanceConfig(
                    api_key=sim_config.api_key,
                    api_secret=SecretStr(sim_config.api_secret),
                    rest_url=sim.rest_url,
                    ws_api_url=sim.ws_api_url,
                    stream_url=sim.stream_url,
                    venue_name=VenueName("simulator"),
                )
            )
            try:
                yield VenueSession(
                    venue=binance,
                    description=f"the built-in Binance-protocol simulator at {sim.rest_url}",
                    account=exchange.account if exchange else None,
                )
            finally:
                await binance.close()
        return
    if settings.binance_api_key is None or settings.binance_api_secret is None:
        raise ConfigError(
            "TRADECTL_VENUE=binance needs TRADECTL_BINANCE_API_KEY and TRADECTL_BINANCE_API_SECRET"
        )
    binance = BinanceVenue(
        BinanceConfig(
            api_key=settings.binance_api_key.get_secret_value(),
            api_secret=settings.binance_api_secret,
            rest_url=settings.binance_rest_url,
            ws_api_url=settings.binance_ws_api_url,
            stream_url=settings.binance_stream_url,
        )
    )
    try:
        yield VenueSession(venue=binance, description=f"Binance at {settings.binance_rest_url}")
    finally:
        await binance.close()


class Engine:
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
    ) -> None:
        self.settings = settings
        self.db = db
        self.session = session
        self.venue = session.venue
        self.strategies = strategies
        self.clock = clock
        self.account = AccountId(settings.account)
        self.ledger = Ledger(db.engine, account=self.account, venue=self.venue.name, clock=clock)
        self.lease = LeaseKeeper(self.ledger, ttl=settings.lease_ttl)
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
        #: reachable and reconciled since the last outage: the engine's readiness
        self.health = LedgerHealth()
        self.execution = Execution(
            ledger=self.ledger,
            venue=self.venue,
            gate=self.gate,
            lease=self.lease,
            config=ExecutionConfig(
                account=self.account,
                order_id_prefix=settings.order_id_prefix,
                consistency_window=settings.consistency_window,
                resolve_interval_s=settings.resolve_interval_s,
                max_batch=settings.max_batch,
            ),
            clock=clock,
            crash=self.crash,
            on_fills=lambda fills: self.portfolio.mark_dirty(),
            ledger_state=self.health,
        )
        self.symbols = symbols_of(strategies)
        self.execution.symbols.update(self.symbols)
        self.reconciler = Reconciler(
            ledger=self.ledger,
            execution=self.execution,
            prefix=settings.order_id_prefix,
            balance_tolerance=settings.balance_tolerance,
            settle_s=settings.balance_settle_s,
        )
        self.fill_path = FillPath(
            ledger=self.ledger,
            execution=self.execution,
            on_reconnect=self.reconciler.request,
        )
        self.desk = OperatorDesk(
            self.ledger,
            holder=self.lease.holder,
            reconciler=self.reconciler,
            execution=self.execution,
            ledger_state=self.health,
        )
        self._paused: set[StrategyId] = set()
        self._lease_task: asyncio.Task[None] | None = None
        self.host = StrategyHost(
            conflator=self.conflator,
            portfolio=self.portfolio,
            sink=self.execution.submit_intent,
            on_strategy_failure=self._strategy_failed,
            is_paused=self._is_paused,
            clock=clock,
            may_trade=lambda: self.health.available,
        )
        for spec in strategies:
            self.host.add(spec.hosted())
            if spec.bar_interval is not None:
                # Bar strategies decide on closed bars; venues stream quotes, so bars are
                # built from them (the feed closes due bars even in a quiet market).
                for symbol in spec.symbols:
                    self.conflator.build_bars(symbol, spec.bar_interval)

    @property
    def ready(self) -> bool:
        """Started, the ledger reachable and reconciled since any outage: what ``/readyz``
        reports. False from a lost connection until the post-outage reconcile succeeded."""
        return self.health.available

    # -- controls seen by the strategies (the reserve transaction enforces them regardless) ---

    async def _refresh_controls(self) -> None:
        paused: set[StrategyId] = set()
        blocked_all = False
        for control in await self.ledger.controls.active():
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

    async def _strategy_failed(self, strategy_id: StrategyId, exc: BaseException) -> None:
        reason = f"strategy raised {type(exc).__name__}: {exc}"
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
        # only stops paused strategies from deciding at all.
        while True:
            if not self.health.available:
                await asyncio.sleep(0.5)  # nothing to read; recovery refreshes them
                continue
            reason = self.gate.take_halt()
            if reason is not None:
                # The gate already rejects every order while the loss is over the limit; the
                # HALT makes it stick across restarts until an operator lifts it.
                await halt_for_loss(self.ledger, reason)
            await self._refresh_controls()
            await asyncio.sleep(0.5)

    async def _status_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.status_interval_s)
            if not self.health.available:
                down = self.health.down_for_s or 0.0
                print(f"--- ledger unavailable for {down:.0f}s; not trading ---", flush=True)
                continue
            marks = {
                symbol: quote.mid
                for symbol in self.symbols
                if (quote := self.conflator.quote(symbol)) is not None
            }
            text = await ledger_status(self.db.engine, self.settings.account, marks)
            print(f"--- {self.clock().isoformat(timespec='seconds')} ---\n{text}", flush=True)

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
        await _until_the_venue_answers("checking the venue's symbols", self._check_symbols)
        await self.lease.acquire()
        # Renewed from here on: recovery against a slow or rate-limiting venue can outlast the
        # TTL, and a lease lost before trading starts would stop the engine at once.
        self._lease_task = asyncio.create_task(_named("lease", self.lease.keep), name="lease")
        await self.execution.recover()
        await _until_the_venue_answers(
            "startup reconciliation", lambda: self.reconciler.reconcile(startup=True)
        )
        await self._refresh_controls()
        await self.portfolio.refresh()
        await self.gate.load_history()
        self.health.started()

    async def _catch_up(self) -> None:
        """After an outage, before trading again: the same epoch (LeaseLost if another engine
        took over: the caller steps down), then what startup does: every unresolved order looked
        up, missed fills fetched by trade id, open orders and balances compared."""
        await self.lease.renew()
        await self.reconciler.reconcile()
        await self.execution.settle_owed_fills()
        await self._refresh_controls()
        self.portfolio.mark_dirty()
        await self.portfolio.refresh()
        await self.gate.load_history()

    async def run(self, stop: asyncio.Event, *, on_ready: Callable[[], None] | None = None) -> None:
        try:
            await self.startup()
        except BaseException:
            if self._lease_task is not None:
                await stop_tasks({"lease": self._lease_task}, deadline_s=SHUTDOWN_CANCEL_S)
            await self._release_lease()
            raise
        assert self._lease_task is not None
        print(
            f"tradectl running: account {self.account} on {self.session.description}; "
            f"strategies {', '.join(self.host.strategy_ids) or 'none'}\n"
            f"inspect the ledger with: {self.db.psql}",
            flush=True,
        )
        core: dict[str, Callable[[], Awaitable[None]]] = {
            "fills": self.fill_path.run,
            "execution": self.execution.run,
            "resolver": self.execution.run_resolver,
            "reconcile": self._reconcile_loop,
            "controls": self._controls_loop,
            # its own task: a reconcile it runs must not hold up the controls refresh
            "operator": self.desk.run,
            # the only task that probes the database during an outage, and ends it
            "recovery": OutageRecovery(self.health, self._catch_up).run,
        }
        edge: dict[str, Callable[[], Awaitable[None]]] = {
            "marketdata": MarketDataFeed(self.venue, self.symbols, self.conflator).run,
            "strategies": self.host.run,
            "status": self._status_loop,
        }
        if self.session.driver is not None:
            edge["venue-driver"] = self.session.driver
        edge.update(self.session.extra_tasks)
        tasks = {"lease": self._lease_task} | {
            name: asyncio.create_task(_named(name, _guard(name, fn, self.health)), name=name)
            for name, fn in (core | edge).items()
        }
        stopper = asyncio.create_task(stop.wait(), name="stop")
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
                    log.error("task ended; stopping the engine", task=task.get_name(), error=exc)
                    ended.append(f"{task.get_name()}: {exc!r}" if exc else task.get_name())
        finally:
            stopper.cancel()
            await self._shutdown(tasks, edge_names=set(edge))
        if ended:
            # A supervisor must see this as a failure (and restart us into standby/recovery),
            # not as an operator's clean stop.
            reason = self.execution.stopped_reason or "; ".join(ended)
            raise TradectlError(f"the engine stopped on its own: {reason}")

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
        # 2. Let execution finish the intents it already holds (bounded).
        if not stuck:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(SHUTDOWN_GRACE_S):
                    await self.execution.drain()
        # 3. Everything else.
        stuck += await stop_tasks(
            {n: t for n, t in tasks.items() if n not in edges}, deadline_s=SHUTDOWN_CANCEL_S
        )
        await self._release_lease()
        if stuck:
            log.error("tasks did not stop; lease released, exiting", stuck=stuck)
            raise ShutdownStuck(
                f"the engine did not stop cleanly: task(s) {', '.join(stuck)} ignored "
                "cancellation; the lease was released"
            )
        print("tradectl stopped", flush=True)


async def _until_the_venue_answers(what: str, attempt: Callable[[], Awaitable[Any]]) -> None:
    """Retry a startup step through transient venue failures (5xx, timeouts, 429/418).

    Exiting instead would make a supervisor restart the engine straight into the same outage,
    and into a longer ban; strategies start only once the step has succeeded anyway.
    """
    delay = STARTUP_RETRY_S
    while True:
        try:
            await attempt()
            return
        except (Ambiguous, RateLimited) as exc:
            wait = max(delay, exc.retry_after if isinstance(exc, RateLimited) else 0.0)
            log.warning(f"{what} failed; retrying", error=str(exc), retry_in_s=round(wait, 3))
            await asyncio.sleep(wait)
            delay = min(delay * 2, STARTUP_RETRY_MAX_S)


def symbols_of(specs: tuple[StrategySpec, ...]) -> tuple[Symbol, ...]:
    return tuple(sorted({symbol for spec in specs for symbol in spec.symbols}))


def _guard(
    name: str, fn: Callable[[], Awaitable[None]], health: LedgerHealth
) -> Callable[[], Awaitable[None]]:
    return lambda: guarded(name, fn, health)


async def _named(name: str, fn: Callable[[], Awaitable[None]]) -> None:
    structlog.contextvars.bind_contextvars(task=name)
    await fn()


async def run(settings: Settings, stop: asyncio.Event | None = None) -> None:
    """Open the database and the venue, then run the engine until ``stop`` is set."""
    stop = stop or asyncio.Event()
    config = load_trading_config(settings.strategies_file)
    strategies = config.strategies
    async with open_database(settings) as db:
        clock = utc_now
        async with open_venue(settings, symbols_of(strategies), clock, db=db) as session:
            if session.account is not None and session.account != settings.account:
                settings = settings.model_copy(update={"account": session.account})
            engine = Engine(
                settings, db, session, strategies, clock=clock,
                account_limits=config.account_limits,
            )  # fmt: skip
            await engine.run(stop)


def main(settings: Settings) -> None:
    """``tradectl run``: log setup, metrics, signals; Ctrl-C stops gracefully."""
    configure_logging(json=settings.log_format.value == "json", level=settings.log_level)
    if settings.metrics_port is not None:
        serve_metrics(settings.metrics_port)

    async def go() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            await run(settings, stop)
        except ShutdownStuck as exc:
            # asyncio.run would cancel the stuck task again and wait for it without a bound.
            print(f"error: {exc}", file=sys.stderr, flush=True)
            os._exit(2)

    asyncio.run(go())
