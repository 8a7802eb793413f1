"""Startup recovery benchmark: seconds from start to ready with N non-terminal orders.

Prints one JSON line::

    {"state": "UNKNOWN", "orders": N, "latency_ms": 5, "ready_s": …, "resolved": N,
     "venue_requests": …, "venue_weight": …, "rate_limited": 0, …}

The ledger holds N orders in ``--state`` (``UNKNOWN``: submitted, outcome never heard;
``OPEN``: acknowledged and resting) and the built-in Binance-protocol simulator holds the same
N resting orders. Every request to the simulator waits ``--latency-ms`` first (its latency
fault), and the simulator enforces Binance's default limits (6,000 request weight a minute).
``ready_s`` is the engine's own startup (:meth:`engine.runtime.Engine.startup`: lease, recovery
of every unresolved order, missing fills, startup reconciliation) until it would let strategies
trade. ``rate_limited`` counts requests the simulator refused for a limit (must stay 0).

Uses ``DATABASE_URL`` when set (a server where it may create databases), else an embedded
Postgres in a temporary directory.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from pydantic import SecretStr
from sqlalchemy.engine import URL

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.execution import drop_database, fresh_database, server  # noqa: E402
from engine.config import load_settings  # noqa: E402
from engine.database import open_database  # noqa: E402
from engine.domain.ids import client_order_id  # noqa: E402
from engine.domain.intents import DecisionKey  # noqa: E402
from engine.domain.types import (  # noqa: E402
    AccountId,
    DecisionId,
    DecisionOutcome,
    OrderType,
    Side,
    StrategyId,
    Symbol,
    TimeInForce,
    VenueName,
    utc_now,
)
from engine.ledger.db import asyncpg_connect_kwargs  # noqa: E402
from engine.ledger.ledger import Ledger  # noqa: E402
from engine.ledger.records import DecisionRecord, Reservation  # noqa: E402
from engine.observability import configure_logging  # noqa: E402
from engine.runtime import Engine, VenueSession  # noqa: E402
from engine.venues.binance import BinanceConfig, BinanceVenue  # noqa: E402
from engine.venues.simulator import SimulatorConfig, SimulatorState, serve_forever  # noqa: E402
from engine.venues.simulator.faults import FaultKind, FaultPlan, FaultRule  # noqa: E402
from engine.venues.simulator.records import NewOrder  # noqa: E402

ACCOUNT = "bench-recovery"
PREFIX = "bench"
SYMBOL = Symbol("BTCUSDT")
VENUE = VenueName("simulator")
PRICE = Decimal("10000.00")
QTY = Decimal("0.001")
SEED_BATCH = 500


def _reservation(i: int, now: Any) -> Reservation:
    key = DecisionKey(
        strategy_id=StrategyId("bench"), symbol=SYMBOL, interval_key=f"i{i}", side=Side.BUY
    )
    coid = client_order_id(PREFIX, key)
    decision = DecisionRecord(
        decision_id=DecisionId(f"dec-bench-{i}"),
        strategy_id=StrategyId("bench"),
        account=AccountId(ACCOUNT),
        symbol=SYMBOL,
        intent="buy",
        side=Side.BUY,
        quantity=QTY,
        limit_price=PRICE,
        reason="bench",
        md_ts=now,
        decided_at=now,
        interval_key=f"i{i}",
        sequence=i,
        verdicts=(),
        outcome=DecisionOutcome.RESERVED,
    )
    return Reservation(
        decision=decision,
        client_order_id=coid,
        venue=VENUE,
        type=OrderType.LIMIT,
        time_in_force=TimeInForce.GTC,
        quantity=QTY,
        limit_price=PRICE,
        expires_at=now + timedelta(hours=1),
    )


async def _seed(url: URL, sim: SimulatorState, n: int, state: str) -> None:
    """N orders resting on the simulator and the same N in the ledger, in ``state``.

    The ledger rows come from the real reserve transaction; the move to ``state`` is written
    directly (with its event), as a crash would have left it: what is measured is what the
    next start does with them, not how they got there."""
    from engine.controls import LeaseKeeper
    from engine.ledger.db import make_engine

    db = make_engine(url)
    ledger = Ledger(db, account=AccountId(ACCOUNT), venue=VENUE)
    lease = LeaseKeeper(ledger, ttl=timedelta(seconds=60))
    epoch = await lease.acquire()
    now = utc_now()
    venue_ids: dict[str, str] = {}
    for start in range(0, n, SEED_BATCH):
        batch = [_reservation(i, now) for i in range(start, min(n, start + SEED_BATCH))]
        await ledger.orders.reserve(batch, holder=lease.holder, epoch=epoch)
        for r in batch:
            placed = sim.place_order(
                NewOrder(
                    symbol=SYMBOL,
                    side=Side.BUY,
                    type=OrderType.LIMIT,
                    quantity=QTY,
                    client_order_id=r.client_order_id,
                    price=PRICE,
                    time_in_force=TimeInForce.GTC,
                )
            )
            venue_ids[r.client_order_id] = str(placed.order.order_id)
    await lease.release()
    await db.dispose()
    conn = await asyncpg.connect(**asyncpg_connect_kwargs(url))  # type: ignore[arg-type]
    try:
        async with conn.transaction():
            await conn.execute(
                """
                WITH moved AS (
                    UPDATE orders o SET state = $2, updated_at = now(), submitted_at = now(),
                           venue_order_id = CASE WHEN $2 = 'OPEN' THEN v.venue_order_id END,
                           acked_at = CASE WHEN $2 = 'OPEN' THEN now() END
                    FROM unnest($3::text[], $4::text[]) AS v(client_order_id, venue_order_id)
                    WHERE o.account = $1 AND o.client_order_id = v.client_order_id
                    RETURNING o.client_order_id
                )
                INSERT INTO order_events (account, client_order_id, from_state, to_state, cause,
                                          recorded_at)
                SELECT $1, client_order_id, 'PENDING_SUBMIT', $2, 'bench seed', now() FROM moved
                """,
                ACCOUNT,
                state,
                list(venue_ids),
                list(venue_ids.values()),
            )
    finally:
        await conn.close()


def _simulator_config(latency_ms: float) -> SimulatorConfig:
    faults = FaultPlan(
        rules=(
            FaultRule(
                kind=FaultKind.LATENCY, probability=1.0, params={"seconds": latency_ms / 1000}
            ),
        )
    )
    return SimulatorConfig(
        seed=3,
        market_interval=None,
        balances={"USDT": Decimal(10**9), "BTC": Decimal(10), "ETH": Decimal(10)},
        faults=faults,
    )


@contextlib.contextmanager
def _venue_process(snapshot: Path, latency_ms: float) -> Iterator[dict[str, Any]]:
    """The simulator in a process of its own, as a venue is: its CPU is not the engine's."""
    child = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(snapshot), "--latency-ms", str(latency_ms)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        yield json.loads(child.stdout.readline())
    finally:
        child.send_signal(signal.SIGINT)
        child.wait(timeout=30)


async def scenario(admin: URL, *, state: str, orders: int, latency_ms: float) -> dict[str, Any]:
    url = await fresh_database(admin)
    config = _simulator_config(latency_ms)
    exchange = SimulatorState(config)
    try:
        await _seed(url, exchange, orders, state)
        with tempfile.TemporaryDirectory() as tmp:
            snapshot = exchange.snapshot(Path(tmp) / "exchange.json")
            with _venue_process(snapshot, latency_ms) as sim:
                result = await _start(url, config, sim)
    finally:
        await drop_database(admin, url)
    return {"state": state, "orders": orders, "latency_ms": latency_ms, **result}


async def _start(url: URL, config: SimulatorConfig, sim: dict[str, Any]) -> dict[str, Any]:
    settings = load_settings(
        database_url=url.render_as_string(hide_password=False),
        account=ACCOUNT,
        order_id_prefix=PREFIX,
        status_interval_s=3600,
    )
    venue = BinanceVenue(
        BinanceConfig(
            api_key=config.api_key,
            api_secret=SecretStr(config.api_secret),
            rest_url=sim["rest_url"],
            ws_api_url=sim["ws_api_url"],
            stream_url=sim["stream_url"],
            venue_name=VENUE,
        )
    )
    async with httpx.AsyncClient(base_url=sim["admin_url"]) as admin_http:
        async with open_database(settings) as database:
            engine = Engine(settings, database, VenueSession(venue=venue), strategies=())
            engine.execution.symbols.add(SYMBOL)
            before = await _fault_counts(admin_http)
            t0 = time.perf_counter()
            await engine.startup()
            ready_s = time.perf_counter() - t0
            after = await _fault_counts(admin_http)
            if engine._lease_task is not None:
                engine._lease_task.cancel()
            await engine._release_lease()
        await venue.close()
    return {
        "ready_s": round(ready_s, 2),
        "unresolved_after": await _count(url, "state IN ('UNKNOWN', 'PENDING_SUBMIT')"),
        "open_after": await _count(url, "state = 'OPEN'"),
        "venue_requests": after.get("latency", 0) - before.get("latency", 0),
        "rate_limited": sum(
            n - before.get(k, 0) for k, n in after.items() if k.startswith("refused")
        ),
    }


async def _fault_counts(admin: httpx.AsyncClient) -> dict[str, int]:
    answer = await admin.get("/faults")
    answer.raise_for_status()
    return dict(answer.json().get("counters", {}))


async def _count(url: URL, where: str) -> int:
    conn = await asyncpg.connect(**asyncpg_connect_kwargs(url))  # type: ignore[arg-type]
    try:
        return int(
            await conn.fetchval(
                f"SELECT count(*) FROM orders WHERE account = $1 AND {where}", ACCOUNT
            )
        )
    finally:
        await conn.close()


async def main(states: list[str], orders: int, latency_ms: float) -> list[dict[str, Any]]:
    async with server() as admin:
        return [
            await scenario(admin, state=s, orders=orders, latency_ms=latency_ms) for s in states
        ]


def _serve(snapshot: str, latency_ms: float) -> None:
    serve_forever(_simulator_config(latency_ms), restore_from=snapshot)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--orders", type=int, default=10_000)
    parser.add_argument("--latency-ms", type=float, default=5.0)
    parser.add_argument("--state", choices=("UNKNOWN", "OPEN", "both"), default="both")
    args = parser.parse_args()
    if args.serve:
        _serve(args.serve, args.latency_ms)
        sys.exit(0)
    configure_logging(json=True, level="WARNING")
    logging.getLogger().setLevel(logging.WARNING)
    states = ["UNKNOWN", "OPEN"] if args.state == "both" else [args.state]
    results = asyncio.run(main(states, args.orders, args.latency_ms))
    summary = {r["state"]: r for r in results}
    print(json.dumps({"orders": args.orders, "latency_ms": args.latency_ms, **summary}))
