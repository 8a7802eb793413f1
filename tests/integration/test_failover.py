"""A pool of engine processes over one Postgres, killed at random (issue 16's proof).

Three ``tradectl run`` processes with ``TRADECTL_ACCOUNTS=auto`` share N accounts, each account
on its own simulator in this process. Every few seconds one engine is SIGKILLed and a new one is
started (after a random delay, so sometimes the survivors take its accounts over, sometimes the
newcomer does, and sometimes the survivors hand accounts to the newcomer). Throughout:

- the leases never overlap: a trigger records every version of the leases table's rows, and per
  account the epoch never goes down, one epoch has one holder, and a new holder's lease starts
  no earlier than the previous version's expiry (a release, which sets the expiry to now,
  included). That is what the takeover's SQL promises; that an old owner writes nothing after
  a takeover is the fence's (engine/ledger/fence.py), checked by the chaos invariants below;
- each account of a killed engine trades again (a strategy decision recorded after the kill,
  under a new holder: so after the taker's recovery and reconciliation) within the lease TTL
  plus a few seconds;

and at the end, with the markets frozen and the ledgers caught up, every account's chaos
invariants (tests/chaos/invariants.py) hold.

The short version (6 accounts, about a minute) runs in ``make test``; ``FAILOVER_LONG=1`` runs 20
accounts for longer. The failover times measured are printed.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import random
import signal
import statistics
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import NoReturn

import pytest
from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.chaos import invariants
from tests.chaos.harness import PREFIX, EngineProcess, MarketClock, tail
from tests.helpers import eventually
from tests.integration.pool_helpers import (
    FAST,
    add_accounts,
    credentials_env,
    db_env,
    scalar,
    simulators,
)

LONG = os.environ.get("FAILOVER_LONG") == "1"
ACCOUNTS = [f"pool-{i:02d}" for i in range(20 if LONG else 6)]
ENGINES = 3
CHAOS_S = 150.0 if LONG else 30.0
#: from a settled pool to the next kill
KILL_AFTER_S = (1.0, 5.0)
#: before the killed engine's replacement starts
REPLACE_AFTER_S = (0.0, 5.0)
#: 20 accounts on one small machine stall event loops past a 2 s TTL (every lease then moves):
#: the long version runs with a longer one
TTL_S = 5.0 if LONG else float(FAST["TRADECTL_LEASE_TTL_S"])
#: "within the TTL plus a few seconds": the pool's tick (TTL/3), the taker's startup
#: (recovery, reconciliation) and its first decision window on a loaded machine (a survivor
#: taking several accounts at once starts them side by side: 10-14 s measured at load 12 on 2
#: cores, 5-9 s typical)
FAILOVER_SLACK_S = 15.0
CONVERGE_TIMEOUT_S = 60.0


@dataclass
class Ownership:
    """What the watcher saw of one account's lease."""

    epoch: int = 0
    holder: str = ""
    expires_at: datetime | None = None
    #: when the watcher first saw the current epoch
    since: datetime | None = None
    history: list[tuple[int, str]] = field(default_factory=list)


@dataclass
class Takeover:
    account: str
    dead: str
    killed_at: datetime
    seconds: float | None = None
    superseded: bool = False


class Watcher:
    def __init__(self, url: URL) -> None:
        self.url = url
        self.seen: dict[str, Ownership] = {}
        self.violations: list[str] = []
        self.takeovers: list[Takeover] = []
        self.last_decision: dict[str, datetime] = {}
        self.quiet: list[str] = []

    async def run(self) -> None:
        conn = await invariants.connect(self.url)
        try:
            while True:
                await self.poll(conn)
                await asyncio.sleep(0.25)
        finally:
            await conn.close()

    async def poll(self, conn: object) -> None:
        rows = await conn.fetch(  # type: ignore[attr-defined]
            "SELECT account, holder, epoch, heartbeat_at, expires_at FROM leases"
        )
        for r in rows:
            own = self.seen.setdefault(r["account"], Ownership())
            epoch, holder = int(r["epoch"]), r["holder"]
            if epoch < own.epoch:
                self.violations.append(f"{r['account']}: epoch went back {own.epoch} -> {epoch}")
            elif epoch == own.epoch and holder != own.holder:
                self.violations.append(
                    f"{r['account']}: epoch {epoch} held by {own.holder} and {holder}"
                )
            elif epoch > own.epoch:
                # whether the new lease started after the old one's end is checked on every
                # version of the row (lease_overlaps): a poll can miss a release (expires_at
                # set to now) that a taker acts on within 250 ms
                own.history.append((epoch, holder))
                own.since = datetime.now(UTC)
            own.epoch, own.holder, own.expires_at = epoch, holder, r["expires_at"]
        rows = await conn.fetch(  # type: ignore[attr-defined]
            # trading: the account's engine decides, or records what its orders did
            "SELECT account, max(t) AS last FROM ("
            " SELECT account, greatest(decided_at, last_repeat_at) AS t FROM decisions"
            " UNION ALL SELECT account, recorded_at FROM order_events) x GROUP BY account"
        )
        last = {r["account"]: r["last"] for r in rows}
        self.last_decision = last
        for t in self.takeovers:
            if t.seconds is not None or t.superseded:
                continue
            own = self.seen.get(t.account)
            placed = last.get(t.account)
            if own and own.holder != t.dead and placed is not None and placed > t.killed_at:
                t.seconds = (placed - t.killed_at).total_seconds()

    def settled(self, accounts: int) -> bool:
        # every account held, and trading under its current owner (a strategy that holds
        # for a while records nothing new, so "recently" would not do)
        now = datetime.now(UTC)
        self.quiet = sorted(
            a
            for a, own in self.seen.items()
            if own.expires_at is None
            or own.expires_at <= now
            or own.since is None
            or self.last_decision.get(a, own.since) <= own.since
        )
        return (
            all(t.seconds is not None or t.superseded for t in self.takeovers)
            and len(self.seen) == accounts
            and not self.quiet
        )

    def held_by(self, pid: int) -> list[str]:
        # leases it held when killed (one it had released is another engine's to take already)
        now = datetime.now(UTC)
        return [
            a
            for a, o in self.seen.items()
            if o.holder.split(":")[1:2] == [str(pid)] and o.expires_at and o.expires_at > now
        ]


# Every version of every lease row, in the order they were written: the row is locked while
# it changes, so one account's versions take their ids in that order.
LEASE_HISTORY_DDL = (
    "CREATE TABLE lease_history (id bigserial PRIMARY KEY, account text, holder text,"
    " epoch bigint, heartbeat_at timestamptz, expires_at timestamptz)",
    "CREATE FUNCTION record_lease() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
    " INSERT INTO lease_history (account, holder, epoch, heartbeat_at, expires_at)"
    " VALUES (NEW.account, NEW.holder, NEW.epoch, NEW.heartbeat_at, NEW.expires_at);"
    " RETURN NULL; END $$",
    "CREATE TRIGGER record_lease AFTER INSERT OR UPDATE ON leases"
    " FOR EACH ROW EXECUTE FUNCTION record_lease()",
)


async def record_lease_history(db: AsyncEngine) -> None:
    async with db.begin() as conn:
        for statement in LEASE_HISTORY_DDL:
            await conn.execute(text(statement))


@dataclass(frozen=True)
class LeaseVersion:
    account: str
    holder: str
    epoch: int
    heartbeat_at: datetime
    expires_at: datetime


def lease_overlaps(history: list[LeaseVersion]) -> list[str]:
    """Per account, in the order written: the epoch never goes down, one epoch has one holder,
    and a new holder's lease starts no earlier than the previous version's expiry (a release
    writes expiry = now, so a hand-off is a version of its own)."""
    found: list[str] = []
    last: dict[str, LeaseVersion] = {}
    for v in history:
        prev = last.get(v.account)
        last[v.account] = v
        if prev is None:
            continue
        if v.epoch < prev.epoch:
            found.append(f"{v.account}: epoch went back {prev.epoch} -> {v.epoch}")
        elif v.epoch == prev.epoch and v.holder != prev.holder:
            found.append(f"{v.account}: epoch {v.epoch} held by {prev.holder} and {v.holder}")
        elif v.epoch > prev.epoch and v.holder != prev.holder and v.heartbeat_at < prev.expires_at:
            found.append(
                f"{v.account}: {v.holder} took epoch {v.epoch} at {v.heartbeat_at} "
                f"while {prev.holder}'s epoch {prev.epoch} ran to {prev.expires_at}"
            )
    return found


def handed_over(history: list[LeaseVersion]) -> int:
    """Releases (the expiry lowered within an epoch) another holder took over from: a pool's
    hand-offs, not the releases of the final stop."""
    count = 0
    for account in {v.account for v in history}:
        versions = [v for v in history if v.account == account]
        for i, (prev, v) in enumerate(itertools.pairwise(versions)):
            released = v.epoch == prev.epoch and v.expires_at < prev.expires_at
            after = versions[i + 2] if i + 2 < len(versions) else None
            if released and after is not None and after.holder != v.holder:
                count += 1
    return count


async def lease_history(db: AsyncEngine) -> list[LeaseVersion]:
    async with db.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT account, holder, epoch, heartbeat_at, expires_at FROM lease_history"
                " ORDER BY id"
            )
        )
        return [LeaseVersion(*r) for r in rows]


def _engine_env(url: URL) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("TRADECTL_") and k not in ("DATABASE_URL", "PYTHONWARNINGS")
    }
    env.update(db_env(url))
    env.update(FAST)
    env["TRADECTL_LEASE_TTL_S"] = str(TTL_S)
    if LONG:
        # seven accounts per process: the chaos suite's sub-second loops would be most of the CPU
        env.update({"TRADECTL_RECONCILE_INTERVAL_S": "5", "TRADECTL_RESOLVE_INTERVAL_S": "1"})
    env.update(credentials_env(ACCOUNTS))
    env.update(
        {
            "TRADECTL_ACCOUNTS": "auto",
            "TRADECTL_MAX_ACCOUNTS": str(len(ACCOUNTS)),
            "TRADECTL_ORDER_ID_PREFIX": PREFIX,
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


async def test_a_pool_of_engines_killed_at_random_keeps_every_account_owned_once_and_trading(
    database_url: URL, db_engine: AsyncEngine, tmp_path: Path
) -> None:
    rng = random.Random(int(os.environ.get("FAILOVER_SEED", "16")))
    # FAILOVER_DIR keeps the engines' logs for a look afterwards
    workdir = Path(os.environ.get("FAILOVER_DIR") or tmp_path)
    workdir.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - once, before anything runs
    env = _engine_env(database_url)
    engines: list[EngineProcess] = []
    spawned = 0

    async def spawn() -> EngineProcess:
        nonlocal spawned
        spawned += 1
        engine = EngineProcess(env, workdir / f"engine-{spawned}.log")
        await engine.start()
        engines.append(engine)
        return engine

    async with simulators(ACCOUNTS, market_interval=None) as sims:
        markets = [MarketClock(sim.step) for sim in sims.values()]
        initial = {
            a: {asset: Decimal(v) for asset, v in sim.state.config.balances.items()}
            for a, sim in sims.items()
        }
        await add_accounts(db_engine, sims)
        await record_lease_history(db_engine)
        watcher = Watcher(database_url)
        watching = asyncio.create_task(watcher.run())
        try:
            for _ in range(ENGINES):
                await spawn()

            async def all_trading() -> bool:
                n = await scalar(db_engine, "SELECT count(DISTINCT account) FROM fills")
                return int(n) == len(ACCOUNTS)

            await eventually(all_trading, timeout=30 + 6 * len(ACCOUNTS), interval=0.5,
                             message="every account fills")  # fmt: skip
            deadline = time.monotonic() + CHAOS_S
            while time.monotonic() < deadline:
                # a kill lands on a settled pool: every account trading, every takeover done
                # (a cascade of kills measures the machine's load, not the failover)
                try:
                    await eventually(
                        lambda: watcher.settled(len(ACCOUNTS)),
                        timeout=TTL_S + FAILOVER_SLACK_S + 60,
                        interval=0.2,
                    )
                except AssertionError:
                    await _stuck(engines, watcher, f"the pool never settled: quiet {watcher.quiet}")
                await asyncio.sleep(rng.uniform(*KILL_AFTER_S))
                live = [e for e in engines if e.running]
                victim = rng.choice(live)
                assert victim.proc is not None
                owned = watcher.held_by(victim.proc.pid)
                holder = {watcher.seen[a].holder for a in owned}
                victim.send(signal.SIGKILL)
                killed_at = datetime.now(UTC)
                await victim.close()
                # a taker killed before it traded: the clock starts again at this kill
                for t in watcher.takeovers:
                    if t.seconds is None and t.account in owned:
                        t.superseded = True
                watcher.takeovers += [
                    Takeover(account=a, dead=next(iter(holder)), killed_at=killed_at) for a in owned
                ]
                await asyncio.sleep(rng.uniform(*REPLACE_AFTER_S))
                await spawn()
            # every killed engine's accounts trade again
            try:
                await eventually(
                    lambda: all(t.seconds is not None or t.superseded for t in watcher.takeovers),
                    timeout=TTL_S + FAILOVER_SLACK_S + 30,
                    interval=0.2,
                )
            except AssertionError:
                await _stuck(engines, watcher, "an account never traded again after a kill")
            for market in markets:
                await market.freeze()

            async def caught_up() -> bool:
                for account, sim in sims.items():
                    world = await invariants.observe(
                        sim.state, initial[account], database_url, account=account, prefix=PREFIX
                    )
                    if invariants.converged(world):
                        return False
                return True

            await eventually(caught_up, timeout=CONVERGE_TIMEOUT_S, interval=0.3,
                             message="ledgers caught up with their venues")  # fmt: skip
        finally:
            for engine in engines:
                engine.send(signal.SIGINT)
            for engine in engines:
                if engine.running:
                    with contextlib.suppress(TimeoutError):
                        await engine.wait(15)
                await engine.close()
            watching.cancel()
            for market in markets:
                await market.freeze()
        history = await lease_history(db_engine)
        violations = list(watcher.violations) + lease_overlaps(history)
        for account, sim in sims.items():
            world = await invariants.observe(
                sim.state, initial[account], database_url, account=account, prefix=PREFIX
            )
            violations += [f"{account}: {v}" for v in invariants.check(world)]
    engine_logs = [e.log for e in engines]
    times = [t.seconds for t in watcher.takeovers if t.seconds is not None]
    handed = handed_over(history)
    report = (
        f"{len(ACCOUNTS)} accounts, {spawned} engines started, {len(watcher.takeovers)} takeovers, "
        f"{len(history)} lease versions, {handed} handed over on release; "
        f"failover s: min {min(times):.1f} median {statistics.median(times):.1f} "
        f"max {max(times):.1f}"
        if times
        else "no takeovers"
    )
    print(report)
    slow = [t for t in watcher.takeovers if (t.seconds or 0) > TTL_S + FAILOVER_SLACK_S]
    assert watcher.takeovers, "no engine was killed while it owned accounts"
    violations += [
        f"{t.account}: trading again {t.seconds:.1f}s after {t.dead} was killed"
        for t in slow
        if t.seconds is not None
    ]
    if violations:
        logs = "\n".join(f"{log}:\n{tail(log, 15)}" for log in engine_logs)
        pytest.fail("\n".join(violations) + "\n" + report + "\n" + logs)


async def _stuck(engines: list[EngineProcess], watcher: Watcher, what: str) -> NoReturn:
    """Fail with the takeovers still waiting, the leases, and each live engine's task stacks in
    its log (engine/task_dump.py): where a stuck engine waits is the diagnosis."""
    for engine in engines:
        if engine.running:
            await engine.dump_tasks()
    waiting = [t for t in watcher.takeovers if t.seconds is None and not t.superseded]
    leases = [(a, o.holder, o.epoch) for a, o in watcher.seen.items()]
    pytest.fail(f"{what}; takeovers waiting {waiting}; leases {leases}")


def _version(holder: str, epoch: int, start: int, end: int) -> LeaseVersion:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    return LeaseVersion(
        "a", holder, epoch, t0 + timedelta(seconds=start), t0 + timedelta(seconds=end)
    )


def test_a_lease_taken_before_the_previous_one_expired_is_an_overlap() -> None:
    found = lease_overlaps([_version("x", 1, 0, 2), _version("y", 2, 1, 3)])
    assert len(found) == 1
    assert "y took epoch 2" in found[0]


def test_a_lease_taken_after_a_release_is_not_an_overlap() -> None:
    # x renews at 0:01 to 0:04, releases at 0:03 (expiry = now), y takes it at 0:03
    history = [_version("x", 1, 0, 2), _version("x", 1, 1, 4), _version("x", 1, 1, 3)]
    assert lease_overlaps([*history, _version("y", 2, 3, 5)]) == []
    assert handed_over([*history, _version("y", 2, 3, 5)]) == 1
    assert handed_over(history) == 0  # released at a stop, taken by nobody


def test_a_lease_epoch_that_goes_back_or_has_two_holders_is_reported() -> None:
    assert lease_overlaps([_version("x", 2, 0, 2), _version("x", 1, 3, 5)])
    assert lease_overlaps([_version("x", 2, 0, 2), _version("y", 2, 3, 5)])
