"""Where an order's way to the wire goes: ``bench/execution.py --latency`` with a stamp at each
step of intent → reserve → send, and the p50 of every interval.

The steps: the intent handed to execution (``intent``), the batch admitted (``admit``), the
ledger's reserve called (``reserve``), a connection checked out (``checkout`` → ``connection``),
the reservation statement sent and answered (``statement`` → ``answered``), the connection given
back (``checkin`` → ``checked_in``), reserve returned (``reserved``), the send task spawned
(``spawn``) and started (``send``), and the venue's submit called (``wire``: what the bench's
``wire_p50_ms`` measures). Also the reservation statement's first step (asyncpg's encoding of the
parameters and the write) and this thread's CPU while the statement was out (other tasks' work
included), and the ACK statement's first step.

``--cpu`` stamps with this thread's CPU clock instead of the wall clock: the Python work of each
interval, which a machine busy with other work disturbs far less than wall times (the statement's
interval is then only the CPU spent while it was out). Each stamp costs a few microseconds, so the
sum of the intervals is a little above the bench's ``wire_p50_ms``.

Usage: ``python bench/latency_timeline.py [--orders N] [--warmup N] [--cpu]`` (DATABASE_URL as
for bench/execution.py). Prints one JSON line.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import statistics
import sys
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Generator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import execution as bench  # noqa: E402

from engine.execution.core import Execution  # noqa: E402
from engine.ledger.connections import LedgerConnections  # noqa: E402
from engine.ledger.report_batch import SQL_APPLY_REPORTS  # noqa: E402
from engine.ledger.reservations import SQL_RESERVE_GATED, Reserving  # noqa: E402
from engine.ledger.statements import Statement  # noqa: E402
from engine.observability import configure_logging  # noqa: E402
from engine.tasks import run_main  # noqa: E402
from engine.venues.paper import BTCUSDT, default_paper_venue  # noqa: E402

STEPS = (
    "intent",
    "admit",
    "reserve",
    "checkout",
    "connection",
    "statement",
    "answered",
    "checkin",
    "checked_in",
    "reserved",
    "spawn",
    "send",
    "wire",
)


class _FirstStep:
    """Awaits ``coro``, recording the CPU seconds of its first step (up to its first
    suspension: for a statement, encoding the parameters and writing them)."""

    def __init__(self, coro: Coroutine[Any, Any, Any], into: list[float]) -> None:
        self._coro, self._into = coro, into

    def __await__(self) -> Generator[Any, Any, Any]:
        coro, first = self._coro, True
        sent: Any = None
        thrown: BaseException | None = None
        while True:
            t0 = time.thread_time()
            try:
                step = coro.send(sent) if thrown is None else coro.throw(thrown)
            except StopIteration as stop:
                if first:
                    self._into.append(time.thread_time() - t0)
                return stop.value
            if first:
                self._into.append(time.thread_time() - t0)
                first = False
            try:
                sent, thrown = (yield step), None
            except BaseException as exc:
                sent, thrown = None, exc


class Timeline:
    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.orders: list[dict[str, float]] = []
        self.current: dict[str, float] = {}
        self.encode: list[float] = []
        self.ack_encode: list[float] = []
        self.cpu_out: list[float] = []

    def stamp(self, step: str) -> None:
        self.current.setdefault(step, self.clock())

    @contextlib.contextmanager
    def installed(self) -> Any:
        line = self
        saved: list[tuple[Any, str, Any]] = []

        def patch(owner: Any, name: str, value: Any) -> None:
            saved.append((owner, name, getattr(owner, name)))
            setattr(owner, name, value)

        submit_intent, admit = Execution.submit_intent, Execution._admit
        reserve, spawn, send = Reserving.reserve, Execution._spawn, Execution._send
        connection, run = LedgerConnections.connection, Statement.run
        venue_class = type(default_paper_venue((BTCUSDT,), seed=1))
        venue_submit = venue_class.submit
        acks = set(SQL_APPLY_REPORTS.values())

        async def _submit_intent(self: Execution, intent: Any) -> None:
            line.current = {"intent": line.clock()}
            line.orders.append(line.current)
            await submit_intent(self, intent)

        async def _admit(self: Execution, intents: Any, sends: Any) -> None:
            line.stamp("admit")
            await admit(self, intents, sends)

        async def _reserve(self: Reserving, *args: Any, **kwargs: Any) -> Any:
            line.stamp("reserve")
            results = await reserve(self, *args, **kwargs)
            line.stamp("reserved")
            return results

        @contextlib.asynccontextmanager
        async def _connection(self: LedgerConnections) -> AsyncIterator[Any]:
            mine = "reserve" in line.current and "connection" not in line.current
            if mine:
                line.stamp("checkout")
            async with connection(self) as db:
                if mine:
                    line.stamp("connection")
                yield db
                if mine:
                    line.stamp("checkin")
            if mine:
                line.stamp("checked_in")

        async def _run(self: Statement, db: Any, params: Any = None) -> Any:
            if self in acks:
                return await _FirstStep(run(self, db, params), line.ack_encode)
            if self is not SQL_RESERVE_GATED:
                return await run(self, db, params)
            line.stamp("statement")
            cpu = time.thread_time()
            rows = await _FirstStep(run(self, db, params), line.encode)
            line.cpu_out.append(time.thread_time() - cpu)
            line.stamp("answered")
            return rows

        def _spawn(self: Execution, *args: Any, **kwargs: Any) -> None:
            line.stamp("spawn")
            spawn(self, *args, **kwargs)

        async def _send(self: Execution, order: Any) -> None:
            line.stamp("send")
            await send(self, order)

        async def _venue_submit(self: Any, request: Any) -> Any:
            line.stamp("wire")
            return await venue_submit(self, request)

        patch(Execution, "submit_intent", _submit_intent)
        patch(Execution, "_admit", _admit)
        patch(Reserving, "reserve", _reserve)
        patch(LedgerConnections, "connection", _connection)
        patch(Statement, "run", _run)
        patch(Execution, "_spawn", _spawn)
        patch(Execution, "_send", _send)
        patch(venue_class, "submit", _venue_submit)
        try:
            yield
        finally:
            for owner, name, value in reversed(saved):
                setattr(owner, name, value)

    def report(self, orders: int) -> dict[str, Any]:
        timed = [o for o in self.orders[-orders:] if "wire" in o and "intent" in o]

        def p50(values: list[float]) -> float:
            return round(statistics.median(values) * 1000, 3) if values else 0.0

        steps: dict[str, float] = {}
        for a, b in itertools.pairwise(STEPS):
            steps[f"{a}->{b}"] = p50([o[b] - o[a] for o in timed if a in o and b in o])
        return {
            "orders": len(timed),
            "clock": "thread_cpu" if self.clock is time.thread_time else "wall",
            "intent_to_wire_p50_ms": p50([o["wire"] - o["intent"] for o in timed]),
            "steps_p50_ms": steps,
            "statement_first_step_cpu_p50_ms": p50(self.encode[-orders:]),
            "cpu_while_statement_out_p50_ms": p50(self.cpu_out[-orders:]),
            "ack_statement_first_step_cpu_p50_ms": p50(self.ack_encode[-orders:]),
        }


async def main(orders: int, warmup: int, line: Timeline) -> dict[str, Any]:
    async with bench.server() as admin:
        db = await bench.fresh_database(admin)
        try:
            with line.installed():
                await bench.run_engine(db, orders, 1, warmup, bench.Recorder())
        finally:
            await bench.drop_database(admin, db)
    return line.report(orders)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--cpu", action="store_true", help="stamp with this thread's CPU clock")
    args = parser.parse_args()
    configure_logging(json=True, level="INFO")
    timeline = Timeline(time.thread_time if args.cpu else time.perf_counter)
    print(json.dumps(run_main(main(args.orders, args.warmup, timeline))))
