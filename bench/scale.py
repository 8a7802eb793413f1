"""Scale benchmark: durable orders/s for 1, 2 and 4 engine processes over 1-32 accounts on one
Postgres, with the Postgres commit ceiling measured in the same run.

Prints one JSON line per configuration::

    {"kind": "commit_ceiling", "connections": 8, "commits_per_s": …}
    {"kind": "engines", "engines": 2, "accounts": 8, "orders_per_s": …, "per_account": …, …}

* ``commit_ceiling``: what the server commits, alone: ``--ceiling-connections`` asyncpg
  connections each running a single-row ``INSERT`` (its own transaction, synchronous commit on)
  in a loop for ``--seconds``, from ``--ceiling-processes`` processes (a Python client is the
  bottleneck before the server on small machines; several processes lift that).
* ``engines``: ``engines`` worker processes share ``accounts`` accounts round-robin (an engine
  never exceeds the accounts). Each account runs the engine's real execution path as the
  multi-account engine does, side by side in its process's event loop: its own lease, risk
  gate, execution coroutine and fill path, over an in-process paper venue (market orders, filled
  at once), keeping ``--window`` intents outstanding. A *durable order* is one whose
  reservation and acknowledgement have committed (synchronous commit on); ``orders_per_s``
  counts them over ``--seconds`` after every process is ready, summed over the processes.
  ``commits_per_order`` is measured from ``pg_stat_database.xact_commit`` over the same window,
  ``engine_cpu_us_per_order`` from the worker processes' CPU time; ``load_average`` says how
  busy the machine was (a shared machine's figures are a floor, not a ceiling).

Every configuration runs against a fresh database on one server: ``DATABASE_URL`` (a server
where it may create databases) or an embedded Postgres in a temporary directory. The engine's
logging is off (WARNING) so the figure is the path's, not the log's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy.engine import URL

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.execution import drop_database, fresh_database, server  # noqa: E402
from engine.controls import LeaseKeeper  # noqa: E402
from engine.domain.intents import Buy, DecisionKey, Sell  # noqa: E402
from engine.domain.market import Quote  # noqa: E402
from engine.domain.risk import Limits  # noqa: E402
from engine.domain.types import AccountId, Side, StrategyId, utc_now  # noqa: E402
from engine.execution import Execution, ExecutionConfig, FillPath  # noqa: E402
from engine.ledger.db import asyncpg_connect_kwargs, make_engine, normalize_url  # noqa: E402
from engine.ledger.ledger import Ledger  # noqa: E402
from engine.limits_book import LimitsBook  # noqa: E402
from engine.marketdata.conflator import Conflator  # noqa: E402
from engine.observability import configure_logging  # noqa: E402
from engine.portfolio import Portfolio  # noqa: E402
from engine.risk_gate import RiskGate  # noqa: E402
from engine.tasks import run_main  # noqa: E402
from engine.venues.paper import BTCUSDT, default_paper_venue  # noqa: E402

PREFIX = "scale"
SCRIPT = Path(__file__).resolve()
ENGINES = (1, 2, 4)
ACCOUNTS = (1, 2, 4, 8, 16, 32)


# -- one worker process: several accounts' execution paths ------------------------------------


@dataclass
class AccountPath:
    account: str
    execution: Execution
    tasks: list[asyncio.Task[None]]
    acked: int = 0


async def _open_account(engine: Any, account: str, window: int) -> AccountPath:
    venue = default_paper_venue((BTCUSDT,), seed=1)
    deep = Decimal(10**9)
    now = utc_now()
    quote = Quote(
        symbol=BTCUSDT, bid=Decimal("30000.00"), bid_size=deep, ask=Decimal("30000.01"),
        ask_size=deep, venue_ts=now, received_at=now,
    )  # fmt: skip
    venue.set_quote(quote)
    conflator = Conflator()
    conflator.publish(quote)
    ledger = Ledger(engine, account=AccountId(account), venue=venue.name)
    lease = LeaseKeeper(ledger, ttl=timedelta(seconds=120))
    await lease.acquire()
    portfolio = Portfolio(engine, account)
    limits = Limits(
        max_order_qty=Decimal(1), max_order_notional=Decimal(100_000),
        max_position_qty=Decimal(10), max_price_age=timedelta(hours=1),
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
        config=ExecutionConfig(account=AccountId(account), order_id_prefix=PREFIX, max_batch=64),
        on_fills=lambda fills: portfolio.mark_dirty(),
    )
    fills = FillPath(ledger=ledger, execution=execution)
    path = AccountPath(account=account, execution=execution, tasks=[])
    slots = asyncio.Semaphore(window)
    original_acks = ledger.orders.record_acks

    async def record_acks(acks: Any) -> Any:
        # ACKs are group-committed: each order is durable when its batch's transaction is
        orders = await original_acks(acks)
        path.acked += len(acks)
        for _ in acks:
            slots.release()
        return orders

    ledger.orders.record_acks = record_acks  # type: ignore[method-assign]

    async def intents() -> None:
        md_ts = utc_now()
        i = 0
        while True:
            await slots.acquire()
            side = Side.BUY if i % 2 == 0 else Side.SELL
            key = DecisionKey(
                strategy_id=StrategyId("scale"), symbol=BTCUSDT, interval_key=f"i{i}", side=side
            )
            kind = Buy if side is Side.BUY else Sell
            await execution.submit_intent(
                kind(key=key, reason="scale", md_ts=md_ts, quantity=Decimal("0.001"))
            )
            i += 1

    path.tasks = [
        asyncio.create_task(execution.run(), name=f"execution-{account}"),
        asyncio.create_task(fills.run(), name=f"fills-{account}"),
        asyncio.create_task(intents(), name=f"intents-{account}"),
    ]
    return path


async def worker(url: URL, accounts: list[str], window: int, seconds: float, pool: int) -> None:
    """Print ``ready``, wait for ``go`` on stdin, run ``seconds``, print the counts as JSON."""
    engine = make_engine(url, pool_size=pool)
    paths = [await _open_account(engine, a, window) for a in accounts]
    print("ready", flush=True)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    await reader.readline()
    before = {p.account: p.acked for p in paths}
    t0 = time.perf_counter()
    cpu0 = time.process_time()
    await asyncio.sleep(seconds)
    elapsed = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    acked = sum(p.acked - before[p.account] for p in paths)
    failed = [t.get_name() for p in paths for t in p.tasks if t.done()]
    line = {"acked": acked, "elapsed": elapsed, "cpu": cpu, "failed": failed}
    print(json.dumps(line), flush=True)
    for p in paths:
        for t in p.tasks:
            t.cancel()
        await asyncio.gather(*p.tasks, return_exceptions=True)
    await engine.dispose()


# -- the coordinator ----------------------------------------------------------------------------


async def _spawn(args: list[str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        str(SCRIPT),
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


async def _run_together(
    procs: list[asyncio.subprocess.Process], url: URL
) -> tuple[list[dict[str, Any]], int]:
    """Wait until every process is ready, start them at once, collect their JSON lines and
    the commits the server made meanwhile."""
    for proc in procs:
        assert proc.stdout is not None
        line = await proc.stdout.readline()
        if line.strip() != b"ready":
            raise RuntimeError(f"a worker failed to start: {line!r}")
    commits0 = await _commits(url)
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write(b"go\n")
        await proc.stdin.drain()
    results = []
    for proc in procs:
        assert proc.stdout is not None
        results.append(json.loads(await proc.stdout.readline()))
    commits = await _commits(url) - commits0
    for proc in procs:
        await proc.wait()
    return results, commits


async def _commits(url: URL) -> int:
    conn = await asyncpg.connect(**asyncpg_connect_kwargs(url))  # type: ignore[arg-type]
    try:
        await conn.execute("SELECT pg_stat_clear_snapshot()")
        value = await conn.fetchval(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
        )
        return int(value)
    finally:
        await conn.close()


async def engines_config(
    admin: URL, engines: int, accounts: int, window: int, seconds: float, pool: int
) -> dict[str, Any]:
    url = await fresh_database(admin)
    try:
        names = [f"acct-{i:02d}" for i in range(accounts)]
        shares = [names[e::engines] for e in range(engines)]
        procs = [
            await _spawn(
                [
                    "--worker",
                    "--url",
                    url.render_as_string(hide_password=False),
                    "--worker-accounts",
                    ",".join(share),
                    "--window",
                    str(window),
                    "--seconds",
                    str(seconds),
                    "--pool",
                    str(min(pool, 2 * len(share) + 2)),
                ]
            )
            for share in shares
        ]
        results, commits = await _run_together(procs, url)
    finally:
        await drop_database(admin, url)
    failed = [name for r in results for name in r["failed"]]
    acked = sum(r["acked"] for r in results)
    elapsed = max(r["elapsed"] for r in results)
    if not acked:
        # a path that acknowledged nothing is broken, not slow: a zero would read as a figure
        raise SystemExit(
            f"bench/scale.py: {engines} engine(s) over {accounts} account(s) acknowledged no "
            f"order in {elapsed:.1f}s (tasks ended: {failed or 'none'})"
        )
    return {
        "kind": "engines",
        "engines": engines,
        "accounts": accounts,
        "window": window,
        "orders": acked,
        "orders_per_s": round(acked / elapsed, 1),
        "per_account": round(acked / elapsed / accounts, 1),
        "commits_per_order": round(commits / acked, 2),
        # the engine processes' CPU per order (Python): what one core per process caps at
        "engine_cpu_us_per_order": round(sum(r["cpu"] for r in results) / acked * 1e6),
        "load_average": round(os.getloadavg()[0], 1),
        "seconds": round(elapsed, 2),
        "failed_tasks": failed,
    }


async def ceiling_worker(url: URL, connections: int, seconds: float) -> None:
    conns = [
        await asyncpg.connect(**asyncpg_connect_kwargs(url))  # type: ignore[arg-type]
        for _ in range(connections)
    ]
    print("ready", flush=True)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    await reader.readline()
    count = 0
    deadline = time.perf_counter() + seconds

    async def loop_one(conn: asyncpg.Connection) -> None:
        nonlocal count
        while time.perf_counter() < deadline:
            await conn.execute("INSERT INTO scale_commits (v) VALUES ($1)", count)
            count += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(loop_one(c) for c in conns))
    elapsed = time.perf_counter() - t0
    print(json.dumps({"acked": count, "elapsed": elapsed, "cpu": 0.0, "failed": []}), flush=True)
    for c in conns:
        await c.close()


async def ceiling_config(
    admin: URL, connections: int, processes: int, seconds: float
) -> dict[str, Any]:
    url = await fresh_database(admin)
    try:
        conn = await asyncpg.connect(**asyncpg_connect_kwargs(url))  # type: ignore[arg-type]
        try:
            await conn.execute("CREATE TABLE scale_commits (id bigserial PRIMARY KEY, v bigint)")
            sync = await conn.fetchval("SHOW synchronous_commit")
            fsync = await conn.fetchval("SHOW fsync")
        finally:
            await conn.close()
        per = max(1, connections // processes)
        procs = [
            await _spawn(
                [
                    "--ceiling-worker",
                    "--url",
                    url.render_as_string(hide_password=False),
                    "--ceiling-connections",
                    str(per),
                    "--seconds",
                    str(seconds),
                ]
            )
            for _ in range(processes)
        ]
        results, _ = await _run_together(procs, url)
    finally:
        await drop_database(admin, url)
    commits = sum(r["acked"] for r in results)
    elapsed = max(r["elapsed"] for r in results)
    return {
        "kind": "commit_ceiling",
        "connections": per * processes,
        "processes": processes,
        "commits_per_s": round(commits / elapsed, 1),
        "synchronous_commit": sync,
        "fsync": fsync,
        "seconds": round(elapsed, 2),
    }


async def main(args: argparse.Namespace) -> None:
    async with server() as admin:
        conn = await asyncpg.connect(**asyncpg_connect_kwargs(admin))  # type: ignore[arg-type]
        try:
            max_connections = int(await conn.fetchval("SHOW max_connections"))
        finally:
            await conn.close()
        for connections in args.ceiling_connections:
            line = await ceiling_config(
                admin, connections, min(args.ceiling_processes, connections), args.seconds
            )
            print(json.dumps(line), flush=True)
        for engines in args.engines:
            for accounts in args.accounts:
                if engines > accounts:
                    continue  # an account has one owner: the extra engines would only wait
                # every process's pool fits the server, with room for the coordinator
                pool = max(2, min(args.pool, (max_connections - 10) // engines))
                line = await engines_config(
                    admin, engines, accounts, args.window, args.seconds, pool
                )
                print(json.dumps(line), flush=True)


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engines", type=_ints, default=list(ENGINES))
    parser.add_argument("--accounts", type=_ints, default=list(ACCOUNTS))
    parser.add_argument("--window", type=int, default=8, help="intents outstanding per account")
    parser.add_argument("--seconds", type=float, default=5.0, help="measured time per config")
    parser.add_argument("--pool", type=int, default=16, help="most connections per process")
    parser.add_argument("--ceiling-connections", type=_ints, default=[1, 8, 32])
    parser.add_argument("--ceiling-processes", type=int, default=4)
    # the processes this script starts
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--ceiling-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--worker-accounts", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    configure_logging(json=True, level="WARNING")
    if args.worker:
        run_main(
            worker(
                normalize_url(args.url),
                args.worker_accounts.split(","),
                args.window,
                args.seconds,
                args.pool,
            )
        )
    elif args.ceiling_worker:
        [connections] = args.ceiling_connections
        run_main(ceiling_worker(normalize_url(args.url), connections, args.seconds))
    else:
        run_main(main(args))
