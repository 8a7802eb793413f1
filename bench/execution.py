"""Execution benchmark: intents through reserve → submit (paper venue) → ack → fill.

Prints one JSON line::

    {"orders": N, "orders_per_s": …, "floor_orders_per_s": …, "ratio": …, "p50_ms": …, …}

Steady state: ``--warmup`` orders (500) run first, untimed, then both databases are
``ANALYZE``d, as autovacuum has a live ledger's tables within its first minute; the floor
replays the warm-up's transactions untimed too. ``--warmup 0`` measures a fresh ledger's
first seconds instead (plans made for empty tables).

* ``orders_per_s``: the real engine path (risk gate, ledger, execution coroutine, fill path)
  with ``synchronous_commit`` on, keeping ``--window`` intents outstanding (a strategy fleet that
  produces intents as fast as the engine acknowledges them, so reservations batch up).
* ``floor_orders_per_s``: raw asyncpg executing the *same statements* (SQL text and arguments
  captured from the run, grouped into the same transactions) on a fresh database, with the same
  number of concurrent connections and the same session settings (the planner's included),
  each transaction only after every earlier one that touched the same order has committed (an
  ack never replays before its reservation). It is what the
  database alone costs; ``ratio`` is how much of it the engine keeps. ``floor_pending`` counts
  orders the replay left ``PENDING_SUBMIT`` (0 when the ordering holds).
* ``p50_ms`` / ``p99_ms``: latency from handing the intent to execution to the ACK commit;
  ``wire_p50_ms`` / ``wire_p99_ms``: to the order's submit reaching the venue (the reservation
  included). ``--latency`` runs one intent at a time, which is what these mean alone.
* ``cpu_us_per_order``: this process's CPU (engine, paper venue, driver) per order, split
  into ``venue_cpu_us_per_order`` (the in-process paper venue's own work: every resume of its
  coroutines the engine awaited, timed with this thread's CPU clock, so time spent elsewhere
  while a call is suspended is not counted), ``driver_cpu_us_per_order`` (the bench building
  intents: a strategy's cost) and ``engine_cpu_us_per_order`` (the rest: what a live engine
  would spend per order, its garbage collection included); ``gc_ms`` is the time the
  collector ran during the timed run, ``gc_collections`` how often it ran;
  ``statements_per_order``, ``commits_per_order`` (transactions that wrote) and
  ``wal_fsyncs_per_order`` (from ``pg_stat_io``, when the server has it).

Uses ``DATABASE_URL`` when set (a server where it may create databases), else an embedded
Postgres in a temporary directory.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import contextvars
import gc
import json
import os
import re
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Generator, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy.engine import URL

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.controls import LeaseKeeper  # noqa: E402
from engine.domain.ids import client_order_id  # noqa: E402
from engine.domain.intents import Buy, DecisionKey, Sell  # noqa: E402
from engine.domain.market import Quote  # noqa: E402
from engine.domain.risk import Limits  # noqa: E402
from engine.domain.types import AccountId, Side, StrategyId, utc_now  # noqa: E402
from engine.execution import Execution, ExecutionConfig, FillPath  # noqa: E402
from engine.ledger.connections import (  # noqa: E402
    CONNECT_ARGS,
    init_connection,
    split_pool,
    statement_timeout_for,
)
from engine.ledger.db import (  # noqa: E402
    asyncpg_connect_kwargs,
    make_engine,
    normalize_url,
    upgrade_head,
)
from engine.ledger.embedded import embedded_postgres  # noqa: E402
from engine.ledger.ledger import Ledger  # noqa: E402
from engine.ledger.part import LedgerPart  # noqa: E402
from engine.ledger.statements import Statement  # noqa: E402
from engine.limits_book import LimitsBook  # noqa: E402
from engine.marketdata.conflator import Conflator  # noqa: E402
from engine.observability import configure_logging  # noqa: E402
from engine.portfolio import Portfolio  # noqa: E402
from engine.risk_gate import RiskGate  # noqa: E402
from engine.tasks import run_main  # noqa: E402
from engine.venues.paper import BTCUSDT, default_paper_venue  # noqa: E402

POOL = 8
#: the connections the ledger's statements run on (the rest are SQLAlchemy's, for the portfolio):
#: the floor replays them on as many
_, LEDGER_CONNECTIONS = split_pool(POOL)
PREFIX = "bench"


# -- capture: which statements the ledger ran, in which transactions ------------------------


@dataclass
class Unit:
    """One transaction (or one autocommit statement) as the ledger ran it."""

    statements: list[tuple[str, tuple[Any, ...]]] = field(default_factory=list)


_current: contextvars.ContextVar[Unit | None] = contextvars.ContextVar("unit", default=None)


class Recorder:
    def __init__(self) -> None:
        self.units: list[Unit] = []

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        original_run = Statement.run
        original_tx = LedgerPart._tx
        recorder = self

        async def run(self: Statement, db: Any, params: Any = None) -> Any:
            unit = _current.get()
            args = self.args(params)
            if unit is None:  # an autocommit statement is its own unit
                recorder.units.append(Unit([(self.sql, args)]))
            else:
                unit.statements.append((self.sql, args))
            return await original_run(self, db, params)

        @contextlib.asynccontextmanager
        async def tx(part: LedgerPart) -> AsyncIterator[Any]:
            unit = Unit()
            token = _current.set(unit)
            try:
                async with original_tx(part) as db:
                    yield db
                recorder.units.append(unit)
            finally:
                _current.reset(token)

        Statement.run = run  # type: ignore[method-assign]
        LedgerPart._tx = tx  # type: ignore[method-assign,assignment]
        try:
            yield
        finally:
            Statement.run = original_run  # type: ignore[method-assign]
            LedgerPart._tx = original_tx  # type: ignore[method-assign]


# -- CPU accounting: whose work is it ---------------------------------------------------------


class CpuMeter:
    """This thread's CPU seconds spent inside the coroutines it wraps, resume by resume.

    The bench runs the paper venue in the engine's process and thread; a real venue's matching
    runs elsewhere. Timing each resume (``send``/``throw``) of the venue's coroutine with the
    thread CPU clock counts exactly the venue's own code (and what it calls synchronously),
    not the engine's work that runs while the venue's call is suspended.
    """

    def __init__(self) -> None:
        self.seconds = 0.0

    def wrap(self, call: Callable[..., Coroutine[Any, Any, Any]]) -> Callable[..., Any]:
        meter = self

        class _Timed:
            def __init__(self, coro: Coroutine[Any, Any, Any]) -> None:
                self._coro = coro

            def __await__(self) -> Generator[Any, Any, Any]:
                coro, clock = self._coro, time.thread_time
                sent: Any = None
                thrown: BaseException | None = None
                while True:
                    t0 = clock()
                    try:
                        step = coro.send(sent) if thrown is None else coro.throw(thrown)
                    except StopIteration as stop:
                        meter.seconds += clock() - t0
                        return stop.value
                    except BaseException:
                        meter.seconds += clock() - t0
                        raise
                    meter.seconds += clock() - t0
                    try:
                        sent, thrown = (yield step), None
                    except BaseException as exc:  # delivered into the venue's coroutine
                        sent, thrown = None, exc

        def timed(*args: Any, **kwargs: Any) -> Awaitable[Any]:
            return _Timed(call(*args, **kwargs))

        return timed


class GcMeter:
    """Wall time the cyclic garbage collector ran (it stops the whole thread)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.collections = 0
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._started
            self.collections += 1


# -- databases --------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def server() -> AsyncIterator[URL]:
    if os.environ.get("DATABASE_URL"):
        yield normalize_url(os.environ["DATABASE_URL"])
        return
    base = Path(tempfile.mkdtemp(prefix="tradectl-bench-", dir="/tmp"))
    with embedded_postgres(base / "data", delete=True) as url:
        yield normalize_url(url)


async def fresh_database(admin: URL) -> URL:
    name = f"tradectl_bench_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(**asyncpg_connect_kwargs(admin))  # type: ignore[arg-type]
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    url = admin.set(database=name)
    await upgrade_head(url)
    return url


async def drop_database(admin: URL, url: URL) -> None:
    conn = await asyncpg.connect(**asyncpg_connect_kwargs(admin))  # type: ignore[arg-type]
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)')
    finally:
        await conn.close()


# -- the engine path --------------------------------------------------------------------------


@dataclass
class EngineRun:
    elapsed: float
    cpu: float
    venue_cpu: float
    driver_cpu: float
    gc_s: float
    gc_collections: int
    ack_latencies: list[float]
    wire_latencies: list[float]
    fsyncs_at_start: int | None


async def _analyze(url: URL) -> None:
    conn = await asyncpg.connect(**asyncpg_connect_kwargs(url))  # type: ignore[arg-type]
    try:
        await conn.execute("ANALYZE")
    finally:
        await conn.close()


async def run_engine(
    url: URL, orders: int, window: int, warmup: int, recorder: Recorder
) -> tuple[EngineRun, int]:
    """The timed run, after ``warmup`` orders and an ANALYZE; also the index of the first
    recorded transaction of the timed part."""
    engine = make_engine(url, pool_size=POOL)
    account = AccountId("bench")
    venue = default_paper_venue((BTCUSDT,), seed=1)
    deep = Decimal(10**9)

    def quote() -> Quote:
        now = utc_now()
        return Quote(
            symbol=BTCUSDT, bid=Decimal("30000.00"), bid_size=deep, ask=Decimal("30000.01"),
            ask_size=deep, venue_ts=now, received_at=now,
        )  # fmt: skip

    venue.set_quote(quote())
    conflator = Conflator()
    conflator.publish(quote())
    ledger = Ledger(engine, account=account, venue=venue.name)
    lease = LeaseKeeper(ledger, ttl=timedelta(seconds=60))
    await lease.acquire()
    portfolio = Portfolio(engine, account)
    limits = Limits(
        max_order_qty=Decimal(1), max_order_notional=Decimal(100_000),
        max_position_qty=Decimal(10), max_price_age=timedelta(minutes=5),
        price_band_bps=Decimal(500),
    )  # fmt: skip
    gate = RiskGate(
        limits=LimitsBook(account=limits), market=conflator, portfolio=portfolio, clock=utc_now
    )
    execution = Execution(
        ledger=ledger,
        venue=venue,
        gate=gate,
        lease=lease,
        config=ExecutionConfig(account=account, order_id_prefix=PREFIX, max_batch=64),
        on_fills=lambda fills: portfolio.mark_dirty(),
    )
    fills = FillPath(ledger=ledger, execution=execution)

    started: dict[str, float] = {}
    timing = warmup == 0
    latencies: list[float] = []
    slots = asyncio.Semaphore(window)
    done = asyncio.Event()
    original_acks = ledger.orders.record_acks

    async def record_acks(acks: Any) -> Any:
        # ACKs are group-committed: each order is done when its batch's transaction is
        orders_ = await original_acks(acks)
        now = time.perf_counter()
        for ack in acks:
            latencies.append(now - started.pop(ack.client_order_id))
            slots.release()
        if timing and len(latencies) == orders:
            done.set()
        return orders_

    ledger.orders.record_acks = record_acks  # type: ignore[method-assign]
    wire: list[float] = []
    original_submit = venue.submit

    async def submit(order: Any) -> Any:
        start = started.get(order.client_order_id)
        if start is not None:
            wire.append(time.perf_counter() - start)
        return await original_submit(order)

    venue.submit = submit  # type: ignore[method-assign]
    # Every venue call the engine can make on this path, measured as the venue's CPU; the
    # latency hook above is the bench's (driver) and stays outside the measurement.
    venue_meter = CpuMeter()
    original_submit = venue_meter.wrap(original_submit)
    for name in ("cancel", "find_order", "instrument_rules"):
        setattr(venue, name, venue_meter.wrap(getattr(venue, name)))
    driver_cpu = 0.0
    gc_meter = GcMeter()
    tasks = [
        asyncio.create_task(execution.run(), name="execution"),
        asyncio.create_task(fills.run(), name="fills"),
    ]
    md_ts = utc_now()
    total = warmup + orders
    t0 = cpu0 = 0.0
    first_timed_unit = 0
    fsyncs_at_start: int | None = None
    for i in range(total):
        if i == warmup:
            # Steady state, as a live ledger is: warm code paths, prepared statements, and
            # tables with planner statistics (autovacuum analyzes a fresh ledger's tables
            # within its first minute; a bench of a few seconds would otherwise measure only
            # the plans made for empty tables).
            for _ in range(window):
                await slots.acquire()
            await _drained(venue, tasks)
            if warmup:  # --warmup 0: a fresh ledger's tables, never analyzed
                await _analyze(url)
            fsyncs_at_start = await _wal_fsyncs(url)
            first_timed_unit = len(recorder.units)
            timing = True
            latencies.clear()
            wire.clear()
            venue_meter.seconds = driver_cpu = 0.0
            for _ in range(window):
                slots.release()
            gc.freeze()  # as `tradectl run` does once the engine is ready (engine/heap.py)
            gc.callbacks.append(gc_meter)
            t0 = time.perf_counter()
            cpu0 = time.process_time()
        await slots.acquire()
        d0 = time.thread_time()
        side = Side.BUY if i % 2 == 0 else Side.SELL
        key = DecisionKey(
            strategy_id=StrategyId("bench"), symbol=BTCUSDT, interval_key=f"i{i}", side=side
        )
        kind = Buy if side is Side.BUY else Sell
        intent = kind(key=key, reason="bench", md_ts=md_ts, quantity=Decimal("0.001"))
        started[client_order_id(PREFIX, key)] = time.perf_counter()
        driver_cpu += time.thread_time() - d0
        await execution.submit_intent(intent)
    waiter = asyncio.create_task(done.wait())
    await asyncio.wait([waiter, *tasks], return_when=asyncio.FIRST_COMPLETED)
    await _drained(venue, tasks)
    for task in tasks:
        if task.done():
            raise RuntimeError(f"{task.get_name()} stopped early") from task.exception()
    elapsed = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    gc.callbacks.remove(gc_meter)
    gc.unfreeze()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await venue.close()
    await engine.dispose()
    run = EngineRun(
        elapsed=elapsed,
        cpu=cpu,
        venue_cpu=venue_meter.seconds,
        driver_cpu=driver_cpu,
        gc_s=gc_meter.seconds,
        gc_collections=gc_meter.collections,
        ack_latencies=latencies,
        wire_latencies=wire,
        fsyncs_at_start=fsyncs_at_start,
    )
    return run, first_timed_unit


async def _drained(venue: Any, tasks: list[asyncio.Task[None]]) -> None:
    # The order is not done until the user stream's copy of its events is applied too:
    # a fill path that lags behind would be throughput borrowed from later.
    while any(not stream._queue.empty() for stream in venue._user_streams):
        if any(task.done() for task in tasks):
            return
        await asyncio.sleep(0.001)


# -- the floor --------------------------------------------------------------------------------


_ORDER_ID = re.compile(rf"{PREFIX}-[A-Za-z0-9_-]+")


def _order_ids(unit: Unit) -> set[str]:
    """The client order ids a transaction names (they carry the bench prefix), as a value,
    in an array, or inside a JSON parameter (the reservation's rows)."""
    ids: set[str] = set()
    for _, args in unit.statements:
        for arg in args:
            values = arg if isinstance(arg, list) else [arg]
            for v in values:
                if isinstance(v, str):
                    ids.update(_ORDER_ID.findall(v))
    return ids


def _writes(unit: Unit) -> bool:
    return any(
        word in sql.upper() for sql, _ in unit.statements for word in ("INSERT", "UPDATE", "DELETE")
    )


async def run_floor(url: URL, units: list[Unit], first_timed: int, *, analyze: bool) -> float:
    """Seconds to replay ``units[first_timed:]``, after the warm-up's units and an ANALYZE,
    as the engine's run was timed."""
    conns = [
        await asyncpg.connect(**asyncpg_connect_kwargs(url))  # type: ignore[arg-type]
        for _ in range(LEDGER_CONNECTIONS)
    ]
    for conn in conns:
        # the engine's ledger connections' settings, so the same statements plan the same way
        await init_connection(conn, statement_timeout_for(CONNECT_ARGS["command_timeout"]))
    # Each transaction waits for the last earlier one that named any of its orders: the engine
    # never acknowledges an order before its reservation has committed, nor may the floor.
    last: dict[str, asyncio.Event] = {}
    plan: list[tuple[Unit, list[asyncio.Event], asyncio.Event]] = []
    for unit in units:
        ids = _order_ids(unit)
        after = list({id(e): e for e in (last[i] for i in ids if i in last)}.values())
        done = asyncio.Event()
        for i in ids:
            last[i] = done
        plan.append((unit, after, done))
    queue = iter(plan[:first_timed])

    async def replay(conn: asyncpg.Connection, unit: Unit) -> None:
        if len(unit.statements) == 1:
            await conn.fetch(unit.statements[0][0], *unit.statements[0][1])
            return
        async with conn.transaction():
            for sql, args in unit.statements:
                await conn.fetch(sql, *args)

    async def worker(conn: asyncpg.Connection) -> None:
        # Units are taken in order, so whatever one waits for was taken earlier by a worker
        # that is running it or waiting on something earlier still: no cycle.
        for unit, after, done in queue:
            for event in after:
                await event.wait()
            while True:
                try:
                    await replay(conn, unit)
                    break
                except asyncpg.DeadlockDetectedError:
                    continue
            done.set()

    await asyncio.gather(*(worker(c) for c in conns))
    if analyze:
        await _analyze(url)
    queue = iter(plan[first_timed:])
    t0 = time.perf_counter()
    await asyncio.gather(*(worker(c) for c in conns))
    elapsed = time.perf_counter() - t0
    for c in conns:
        await c.close()
    return elapsed


async def _scalar(url: URL, sql: str) -> Any:
    conn = await asyncpg.connect(**asyncpg_connect_kwargs(url))  # type: ignore[arg-type]
    try:
        return await conn.fetchval(sql)
    except asyncpg.PostgresError:
        return None  # a server without that statistics view
    finally:
        await conn.close()


async def _wal_fsyncs(url: URL) -> int | None:
    # pg_stat_io has the WAL rows from PostgreSQL 18; pg_stat_wal.wal_sync before it
    found = await _scalar(url, "SELECT sum(fsyncs) FROM pg_stat_io WHERE object = 'wal'")
    if found is None:
        found = await _scalar(url, "SELECT wal_sync FROM pg_stat_wal")
    return None if found is None else int(found)


def _ms(values: list[float], cut: int) -> float:
    if len(values) < 2:
        return round(values[0] * 1000, 3) if values else 0.0
    return round(statistics.quantiles(values, n=100)[cut - 1] * 1000, 3)


async def main(orders: int, window: int, warmup: int) -> dict[str, Any]:
    async with server() as admin:
        engine_db = await fresh_database(admin)
        floor_db = await fresh_database(admin)
        try:
            recorder = Recorder()
            with recorder.installed():
                run, first_timed = await run_engine(engine_db, orders, window, warmup, recorder)
            fsyncs_after = await _wal_fsyncs(engine_db)
            floor_elapsed = await run_floor(
                floor_db, recorder.units, first_timed, analyze=warmup > 0
            )
            # the statement counts are the timed orders'
            units = recorder.units[first_timed:]
            floor_pending = await _scalar(
                floor_db, "SELECT count(*) FROM orders WHERE state = 'PENDING_SUBMIT'"
            )
        finally:
            await drop_database(admin, engine_db)
            await drop_database(admin, floor_db)
    orders_per_s = orders / run.elapsed
    floor_per_s = orders / floor_elapsed
    fsyncs = (
        None
        if run.fsyncs_at_start is None or fsyncs_after is None
        else round((fsyncs_after - run.fsyncs_at_start) / orders, 3)
    )
    return {
        "orders": orders,
        "window": window,
        "warmup": warmup,
        "orders_per_s": round(orders_per_s, 1),
        "floor_orders_per_s": round(floor_per_s, 1),
        "ratio": round(orders_per_s / floor_per_s, 3),
        "floor_pending": floor_pending,
        "p50_ms": _ms(run.ack_latencies, 50),
        "p99_ms": _ms(run.ack_latencies, 99),
        "wire_p50_ms": _ms(run.wire_latencies, 50),
        "wire_p99_ms": _ms(run.wire_latencies, 99),
        "cpu_us_per_order": round(run.cpu / orders * 1e6, 1),
        "engine_cpu_us_per_order": round(
            (run.cpu - run.venue_cpu - run.driver_cpu) / orders * 1e6, 1
        ),
        "venue_cpu_us_per_order": round(run.venue_cpu / orders * 1e6, 1),
        "driver_cpu_us_per_order": round(run.driver_cpu / orders * 1e6, 1),
        "gc_ms": round(run.gc_s * 1000, 1),
        "gc_collections": run.gc_collections,
        "statements": sum(len(u.statements) for u in units),
        "statements_per_order": round(sum(len(u.statements) for u in units) / orders, 3),
        "transactions": sum(1 for u in units if len(u.statements) > 1),
        "commits_per_order": round(sum(1 for u in units if _writes(u)) / orders, 3),
        "wal_fsyncs_per_order": fsyncs,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=2000)
    parser.add_argument("--window", type=int, default=32, help="intents kept outstanding")
    parser.add_argument(
        "--warmup",
        type=int,
        default=500,
        help="orders before timing starts (then ANALYZE, as autovacuum would)",
    )
    parser.add_argument(
        "--latency", action="store_true", help="one intent at a time (500 unless --orders)"
    )
    parser.add_argument(
        "--log-level", default="INFO", help="the engine's log level (its lines go to stderr)"
    )
    args = parser.parse_args()
    if args.latency:
        args.window = 1
        if "--orders" not in sys.argv:
            args.orders = 500
    # As the engine logs in production (JSON lines, INFO: a line per order step), so their cost
    # is in the number; on stderr, stdout carries the result line only
    configure_logging(json=True, level=args.log_level)
    # the engine's own event loop (uvloop where installed), as `tradectl run` uses
    print(json.dumps(run_main(main(args.orders, args.window, args.warmup))))
