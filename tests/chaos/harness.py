"""One chaos run per seed: the engine as a subprocess against a simulator that outlives it.

The venue is a :class:`ChaosVenueKind`: :data:`BINANCE` here (the Binance-protocol simulator),
or ``tests/chaos/kalshi.py``'s Kalshi-protocol simulator with its market settlements.

For a seed, everything random comes from ``random.Random(seed)`` (the fault plan's variation,
which crash point and when, the random kill delays) and from the simulator's own seed (which
request each fault hits, the market walk). A run:

1. starts the simulator in this process with the seed's fault plan, the market stepped by us;
2. runs the engine ``FAULTY_LIVES`` times, each ended by SIGKILL: either at an armed crash point
   (``TRADECTL_CRASH_POINT=<point>:<N>``, the process exits 137 by itself) or after a seeded
   random delay (which may land in startup, recovery or trading); or, now and then, by a SIGINT
   while the faults go on, which must stop the engine within ``GRACEFUL_STOP_S`` with exit code
   0 and the lease released;
3. stops the faults, runs the engine once more, freezes the market and waits until the ledger
   has caught up with the venue (:func:`invariants.converged`), stops it with SIGINT (the same
   bound and checks);
4. checks every invariant (:func:`invariants.check`) on the quiet world, among them that every
   incident still open is true of the venue's ground truth.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import random
import signal
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import BinaryIO, Protocol

import httpx
from sqlalchemy.engine import URL

from engine.crashpoints import CrashPoint
from engine.demo import simulator_config
from engine.domain.types import Symbol
from engine.runtime import SHUTDOWN_DEADLINE_S
from engine.venues.simulator import (
    DEFAULT_API_KEY,
    DEFAULT_API_SECRET,
    FaultPlan,
    SimulatorHandle,
    run_simulator,
)
from tests.chaos import invariants
from tests.chaos.databases import dump_ledger, seed_database
from tests.helpers import eventually

ROOT = Path(__file__).resolve().parents[2]
RESOURCES = ROOT / "tests" / "resources" / "chaos"
STRATEGIES_FILE = RESOURCES / "strategies.toml"
FAULTS_FILE = RESOURCES / "faults.toml"
SYMBOLS = (Symbol("BTCUSDT"), Symbol("PRES-YES"))
ACCOUNT = "chaos"
PREFIX = "tctl"

FAULTY_LIVES = 3
#: seconds between market steps while the market runs
MARKET_STEP_S = 0.25
#: an armed crash point that has not fired by then is replaced by a plain SIGKILL
CRASH_WAIT_S = 10.0
#: random kills land this many seconds after the process started (startup takes 1.5 s of
#: CPU, several seconds of wall time when seeds run side by side) or after it was ready
KILL_FROM_SPAWN_S = (0.2, 3.0)
KILL_FROM_READY_S = (0.3, 4.0)
READY_TIMEOUT_S = 45.0
CONVERGE_TIMEOUT_S = 45.0
STOP_TIMEOUT_S = 20.0
#: a SIGINT must end the engine within this: its own shutdown deadline plus closing the venue
#: session and the database pool
GRACEFUL_STOP_S = SHUTDOWN_DEADLINE_S + 2.0
#: share of random kills replaced by a graceful stop (SIGINT) at the same moment
GRACEFUL_SHARE = 0.35


def replay_command(seed: int, venue: str = "binance") -> str:
    return (
        f"CHAOS_VENUE={venue} CHAOS_SEEDS=1 CHAOS_SEED_START={seed} CHAOS_REGRESSION=0 "
        ".venv/bin/python -m pytest tests/chaos -q"
    )


@dataclass(slots=True, kw_only=True)
class Life:
    index: int
    #: "crash_point", "random_kill", "graceful_stop" or "final"
    mode: str
    #: ``point:N`` for a crash point, the delay for a random kill
    detail: str = ""
    exit_code: int | None = None
    #: the armed crash point fired (exit 137 without our SIGKILL)
    crashed_itself: bool = False
    log: Path | None = None
    #: the engine got through startup (printed "tradectl running") before it died
    started: bool = False
    #: how long a graceful stop took, SIGINT to exit
    stop_seconds: float | None = None


@dataclass(slots=True, kw_only=True)
class SeedOutcome:
    seed: int
    venue: str = "binance"
    violations: list[str] = field(default_factory=list)
    fault_counts: dict[str, int] = field(default_factory=dict)
    lives: list[Life] = field(default_factory=list)
    venue_orders: int = 0
    venue_trades: int = 0
    #: markets the venue settled during the seed (Kalshi)
    settlements: int = 0
    seconds: float = 0.0
    workdir: Path | None = None

    @property
    def ok(self) -> bool:
        return not self.violations

    def describe(self) -> str:
        lives = ", ".join(
            f"{life.mode}({life.detail})->{life.exit_code}"
            + (" fired" if life.crashed_itself else "")
            + ("" if life.started else " before ready")
            for life in self.lives
        )
        lines = [
            f"{self.venue} seed {self.seed}: {len(self.violations)} violation(s); lives: "
            f"{lives}; {self.venue_orders} venue orders, {self.venue_trades} trades, "
            f"{self.settlements} settlements; logs in {self.workdir}",
            *(f"  - {v}" for v in self.violations[:40]),
        ]
        if len(self.violations) > 40:
            lines.append(f"  ... and {len(self.violations) - 40} more")
        lines.append(f"replay: {replay_command(self.seed, self.venue)}")
        return "\n".join(lines)


def seeded_plan(base: FaultPlan, rng: random.Random) -> FaultPlan:
    """The base plan with each probability scaled by a seeded factor; a rule is now and then
    left out, so seeds differ in what they stress."""
    rules = []
    for rule in base.rules:
        factor = rng.uniform(0.5, 1.5)
        if rng.random() < 0.15:
            continue
        rules.append(dataclasses.replace(rule, probability=min(1.0, rule.probability * factor)))
    return FaultPlan(rules=tuple(rules))


def plan_lives(rng: random.Random) -> list[Life]:
    """Life 0 dies at a crash point, life 1 at a random moment, later ones either way.

    A random kill lands after a seeded delay counted from the process start (``spawn+``: often
    inside startup or recovery) or, more often, from the moment it is ready (``ready+``).
    """
    lives = []
    for i in range(FAULTY_LIVES):
        by_point = i == 0 or (i > 1 and rng.random() < 0.5)
        if by_point:
            point = rng.choice(list(CrashPoint))
            detail = f"{point.value}:{rng.randint(1, 4)}"
            lives.append(Life(index=i, mode="crash_point", detail=detail))
        elif rng.random() < 0.3:
            detail = f"spawn+{rng.uniform(*KILL_FROM_SPAWN_S):.3f}"
            lives.append(Life(index=i, mode="random_kill", detail=detail))
        else:
            detail = f"ready+{rng.uniform(*KILL_FROM_READY_S):.3f}"
            mode = "graceful_stop" if rng.random() < GRACEFUL_SHARE else "random_kill"
            lives.append(Life(index=i, mode=mode, detail=detail))
    return lives


# -- the market and the engine process ------------------------------------------------------------


class MarketClock:
    """Steps the simulator's market until frozen: the chaos run decides when the world is quiet."""

    def __init__(self, step: Callable[[], None]) -> None:
        self._step = step
        self._frozen = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name="chaos-market")

    async def _run(self) -> None:
        while not self._frozen.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._frozen.wait(), timeout=MARKET_STEP_S)
            if not self._frozen.is_set():
                self._step()

    async def freeze(self) -> None:
        self._frozen.set()
        await self._task


class EngineProcess:
    """``python -m engine run`` with the chaos environment; output goes to a log file."""

    def __init__(self, env: Mapping[str, str], log: Path) -> None:
        self.env = dict(env)
        self.log = log
        self.proc: asyncio.subprocess.Process | None = None
        self._out: BinaryIO | None = None

    async def start(self) -> None:
        self._out = self.log.open("wb")
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "engine",
            "run",
            cwd=ROOT,
            env=self.env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=self._out,
            stderr=asyncio.subprocess.STDOUT,
        )

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    def ready(self) -> bool:
        return b"tradectl running" in self.log.read_bytes()

    async def wait_ready_or_exit(self) -> None:
        try:
            await eventually(
                lambda: self.ready() or not self.running, timeout=READY_TIMEOUT_S, interval=0.05
            )
        except AssertionError:
            # the seed's failure, not the campaign's; the log gets where each task stood
            await self.dump_tasks()
            raise EngineDied(
                f"engine never printed 'tradectl running' within {READY_TIMEOUT_S:.0f}s", self.log
            ) from None

    async def wait_ready(self) -> None:
        await self.wait_ready_or_exit()
        if not self.ready():
            raise EngineDied(f"engine exited with {self.returncode} before it was ready", self.log)

    async def dump_tasks(self) -> None:
        """SIGUSR1: the engine logs every task's stack (engine/task_dump.py)."""
        self.send(signal.SIGUSR1)
        with contextlib.suppress(AssertionError):
            await eventually(lambda: b"engine.tasks_dumped" in self.log.read_bytes(), timeout=5)

    def send(self, sig: signal.Signals) -> None:
        if self.running:
            assert self.proc is not None
            self.proc.send_signal(sig)

    async def wait(self, timeout: float) -> int:
        assert self.proc is not None
        try:
            await asyncio.wait_for(self.proc.wait(), timeout=timeout)
        except TimeoutError:
            self.send(signal.SIGKILL)
            await self.proc.wait()
            raise
        return self.returncode

    @property
    def returncode(self) -> int:
        assert self.proc is not None
        assert self.proc.returncode is not None
        return self.proc.returncode

    async def close(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
        if self._out is not None:
            self._out.close()
            self._out = None


class EngineDied(Exception):
    def __init__(self, message: str, log: Path) -> None:
        super().__init__(f"{message}; last lines of {log}:\n{tail(log)}")


def tail(log: Path, lines: int = 25) -> str:
    try:
        text = log.read_text("utf-8", errors="replace")
    except OSError:
        return "<no log>"
    return "\n".join("    | " + line for line in text.splitlines()[-lines:])


def base_env(database_url: URL, crash_point: str | None) -> dict[str, str]:
    """The engine's environment without the venue's part: ours, the chaos timings, the arm."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("TRADECTL_") and k not in ("DATABASE_URL", "PYTHONWARNINGS")
    }
    env.update(
        {
            "DATABASE_URL": database_url.render_as_string(hide_password=False),
            "TRADECTL_ACCOUNT": ACCOUNT,
            "TRADECTL_ORDER_ID_PREFIX": PREFIX,
            "TRADECTL_LEASE_TTL_S": "2",
            "TRADECTL_CONSISTENCY_WINDOW_S": "0.5",
            "TRADECTL_RESOLVE_INTERVAL_S": "0.3",
            "TRADECTL_RECONCILE_INTERVAL_S": "0.7",
            "TRADECTL_STATUS_INTERVAL_S": "3600",
            "TRADECTL_LOG_LEVEL": "INFO",
            "PYTHONUNBUFFERED": "1",
        }
    )
    if crash_point is not None:
        env["TRADECTL_CRASH_POINT"] = crash_point
    return env


def engine_env(sim: SimulatorHandle, database_url: URL, crash_point: str | None) -> dict[str, str]:
    env = base_env(database_url, crash_point)
    env.update(
        {
            "TRADECTL_VENUE": "binance",
            "TRADECTL_BINANCE_REST_URL": sim.rest_url,
            "TRADECTL_BINANCE_WS_API_URL": sim.ws_api_url,
            "TRADECTL_BINANCE_STREAM_URL": sim.stream_url,
            "TRADECTL_BINANCE_API_KEY": DEFAULT_API_KEY,
            "TRADECTL_BINANCE_API_SECRET": DEFAULT_API_SECRET,
            "TRADECTL_STRATEGIES_FILE": str(STRATEGIES_FILE),
        }
    )
    return env


# -- the venue of a run ---------------------------------------------------------------------------


class ChaosVenue(Protocol):
    """One seed's running simulator, as the run drives and observes it."""

    def engine_env(self, database_url: URL, crash_point: str | None) -> dict[str, str]: ...

    def step(self) -> None:
        """One market step (the :class:`MarketClock` calls it until the world is frozen)."""

    async def quiet(self) -> None:
        """Before the final life, with the engine down: the faults stop."""

    async def observe(self, database_url: URL) -> invariants.World: ...

    def record(self, outcome: SeedOutcome, workdir: Path) -> None:
        """The venue's counts into the outcome, its ground truth into the workdir."""


class ChaosVenueKind(Protocol):
    name: str
    faults_file: Path

    def open(
        self, seed: int, plan: FaultPlan, rng: random.Random
    ) -> AbstractAsyncContextManager[ChaosVenue]: ...


class BinanceChaosVenue:
    def __init__(self, sim: SimulatorHandle, initial: Mapping[str, Decimal]) -> None:
        self.sim = sim
        self.initial = initial

    def engine_env(self, database_url: URL, crash_point: str | None) -> dict[str, str]:
        return engine_env(self.sim, database_url, crash_point)

    def step(self) -> None:
        self.sim.step()

    async def quiet(self) -> None:
        await _set_faults(self.sim.admin_url, FaultPlan())

    async def observe(self, database_url: URL) -> invariants.World:
        return await invariants.observe(
            self.sim.state, self.initial, database_url, account=ACCOUNT, prefix=PREFIX
        )

    def record(self, outcome: SeedOutcome, workdir: Path) -> None:
        state = self.sim.state
        _write(workdir / "venue.json", json.dumps(state.ground_truth(), indent=1))
        outcome.fault_counts = dict(state.fault_counts())
        outcome.venue_orders = len(state.orders())
        outcome.venue_trades = len(state.trades())


class BinanceKind:
    name = "binance"
    faults_file = FAULTS_FILE

    @contextlib.asynccontextmanager
    async def open(
        self, seed: int, plan: FaultPlan, rng: random.Random
    ) -> AsyncIterator[ChaosVenue]:
        config = dataclasses.replace(
            simulator_config(SYMBOLS, seed=seed), market_interval=None, faults=plan
        )
        initial = {asset: Decimal(amount) for asset, amount in config.balances.items()}
        async with run_simulator(config) as sim:
            yield BinanceChaosVenue(sim, initial)


BINANCE: ChaosVenueKind = BinanceKind()


# -- one seed ------------------------------------------------------------------------------------


async def run_seed(
    seed: int, *, server: URL, template: str, workdir: Path, kind: ChaosVenueKind = BINANCE
) -> SeedOutcome:
    started = time.monotonic()
    rng = random.Random(seed)
    outcome = SeedOutcome(seed=seed, venue=kind.name, workdir=workdir)
    _mkdir(workdir)
    plan = seeded_plan(FaultPlan.load(kind.faults_file), rng)
    outcome.lives = plan_lives(rng)
    async with (
        seed_database(server, template, seed) as database_url,
        kind.open(seed, plan, rng) as venue,
    ):
        market = MarketClock(venue.step)
        try:
            for life in outcome.lives:
                await _faulty_life(life, venue, database_url, workdir, outcome)
            await venue.quiet()
            final = Life(index=len(outcome.lives), mode="final")
            outcome.lives.append(final)
            await _final_life(final, venue, market, database_url, workdir, outcome)
        except EngineDied as exc:
            outcome.violations.append(str(exc))
        except Exception as exc:  # a harness error fails this seed, not all seeds
            outcome.violations.append(f"harness error: {type(exc).__name__}: {exc}")
        finally:
            with contextlib.suppress(Exception):
                await market.freeze()
        with contextlib.suppress(Exception):
            await dump_ledger(database_url, workdir / "ledger.txt")
        venue.record(outcome, workdir)
    outcome.seconds = time.monotonic() - started
    return outcome


async def _faulty_life(
    life: Life, venue: ChaosVenue, database_url: URL, workdir: Path, outcome: SeedOutcome
) -> None:
    armed = life.detail if life.mode == "crash_point" else None
    life.log = workdir / f"life{life.index}-{life.mode}.log"
    engine = EngineProcess(venue.engine_env(database_url, armed), life.log)
    await engine.start()
    try:
        if armed is not None:
            # the point may fire during recovery already; otherwise give it time to trade
            await engine.wait_ready_or_exit()
            try:
                life.exit_code = await engine.wait(CRASH_WAIT_S)
                life.crashed_itself = life.exit_code == 137
            except TimeoutError:
                life.exit_code = engine.returncode  # killed by us: the point never fired
        else:
            anchor, _, delay = life.detail.partition("+")
            if anchor == "ready":
                await engine.wait_ready_or_exit()
            # the one sleep in the suite: the seeded moment of a random SIGKILL is the point
            await asyncio.sleep(float(delay))
            if life.mode == "graceful_stop":
                await _graceful_stop(engine, life, database_url, outcome)
                return
            engine.send(signal.SIGKILL)
            life.exit_code = await engine.wait(STOP_TIMEOUT_S)
        if life.exit_code not in (137, -signal.SIGKILL):
            outcome.violations.append(
                f"life {life.index} ({life.mode} {life.detail}): the engine exited with "
                f"{life.exit_code} on its own; last lines:\n{tail(life.log)}"
            )
    finally:
        await engine.close()
        life.started = engine.ready()


async def _final_life(
    life: Life,
    venue: ChaosVenue,
    market: MarketClock,
    database_url: URL,
    workdir: Path,
    outcome: SeedOutcome,
) -> None:
    life.log = workdir / f"life{life.index}-final.log"
    engine = EngineProcess(venue.engine_env(database_url, None), life.log)
    await engine.start()
    try:
        await engine.wait_ready()
        life.started = True
        # A quiet world: no market moves, so nothing fills that the engine cannot see at once.
        await market.freeze()

        async def caught_up() -> bool:
            if not engine.running:
                raise EngineDied(f"engine exited with {engine.returncode}", life.log)  # type: ignore[arg-type]
            world = await venue.observe(database_url)
            return not invariants.converged(world)

        try:
            await eventually(caught_up, timeout=CONVERGE_TIMEOUT_S, interval=0.1)
        except AssertionError:
            world = await venue.observe(database_url)
            outcome.violations.extend(
                f"not converged after {CONVERGE_TIMEOUT_S:g}s: {v}"
                for v in invariants.converged(world)
            )
        await _graceful_stop(engine, life, database_url, outcome)
    finally:
        await engine.close()
    world = await venue.observe(database_url)
    outcome.violations.extend(invariants.check(world))


async def _graceful_stop(
    engine: EngineProcess, life: Life, database_url: URL, outcome: SeedOutcome
) -> None:
    """SIGINT: the engine must be gone within ``GRACEFUL_STOP_S``, with exit code 0 and its
    lease released (a restart must not wait out the TTL)."""
    assert life.log is not None
    started = time.monotonic()
    engine.send(signal.SIGINT)
    try:
        life.exit_code = await engine.wait(GRACEFUL_STOP_S)
    except TimeoutError:
        outcome.violations.append(
            f"life {life.index}: the engine did not stop within {GRACEFUL_STOP_S:g}s of SIGINT; "
            f"last lines:\n{tail(life.log)}"
        )
        return
    life.stop_seconds = time.monotonic() - started
    if life.exit_code != 0:
        outcome.violations.append(
            f"life {life.index}: graceful stop exited with {life.exit_code}; last lines:\n"
            f"{tail(life.log)}"
        )
    if await invariants.lease_held(database_url, ACCOUNT):
        outcome.violations.append(f"life {life.index}: graceful stop left the lease held")


async def _set_faults(admin_url: str, plan: FaultPlan) -> None:
    async with httpx.AsyncClient(base_url=admin_url, timeout=10) as client:
        response = await client.put("/faults", json=plan.to_mapping())
        response.raise_for_status()


def _write(target: Path, text: str) -> None:
    target.write_text(text, "utf-8")


def _mkdir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)


def total_counts(outcomes: list[SeedOutcome]) -> Counter[str]:
    counts: Counter[str] = Counter()
    for outcome in outcomes:
        counts.update({k: v for k, v in outcome.fault_counts.items() if v})
        for life in outcome.lives:
            if life.mode == "crash_point":
                name = life.detail.partition(":")[0]
                counts[
                    f"crash:{name}" if life.crashed_itself else f"crash:{name}(not reached)"
                ] += 1
            elif life.mode in ("random_kill", "graceful_stop"):
                counts[life.mode] += 1
            if not life.started:
                counts["life_killed_before_ready"] += 1
    return counts
