"""The chaos campaign: every selected seed runs once per session, several at a time.

``CHAOS_VENUE`` picks the venues: ``both`` (default), ``binance`` or ``kalshi``. Binance seeds:
``CHAOS_SEEDS`` (default 50) starting at ``CHAOS_SEED_START`` (default 0). Kalshi seeds
(tests/chaos/kalshi.py): ``CHAOS_KALSHI_SEEDS`` (default 10) from ``CHAOS_KALSHI_SEED_START``
(default 0); with ``CHAOS_VENUE=kalshi``, ``CHAOS_SEEDS`` / ``CHAOS_SEED_START`` count Kalshi
seeds (``CHAOS_VENUE=kalshi CHAOS_SEEDS=100`` is the Kalshi campaign). Each venue's regression
seeds (:data:`REGRESSION_SEEDS`, :data:`KALSHI_REGRESSION_SEEDS`, unless ``CHAOS_REGRESSION=0``)
run whatever the range; ``CHAOS_JOBS`` seeds run concurrently (default 4), each in its own
database and with its own simulator. The seeds run when the first chaos test asks for them;
each test then reports its own seed, and the terminal summary, per venue, says how often each
fault fired.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy.engine import URL

from tests.chaos.harness import (
    BINANCE,
    ChaosVenueKind,
    SeedOutcome,
    replay_command,
    run_seed,
    total_counts,
)
from tests.chaos.kalshi import KALSHI


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    return int(raw) if raw else default


VENUES = os.environ.get("CHAOS_VENUE", "both")
if VENUES not in ("both", "binance", "kalshi"):
    raise pytest.UsageError(f"CHAOS_VENUE must be both, binance or kalshi, not {VENUES!r}")
SEED_START = _env_int("CHAOS_SEED_START", 0)
SEED_COUNT = _env_int("CHAOS_SEEDS", 50)
KALSHI_SEED_START = SEED_START if VENUES == "kalshi" else _env_int("CHAOS_KALSHI_SEED_START", 0)
KALSHI_SEED_COUNT = SEED_COUNT if VENUES == "kalshi" else _env_int("CHAOS_KALSHI_SEEDS", 10)
JOBS = max(1, _env_int("CHAOS_JOBS", 4))
_REGRESSION = os.environ.get("CHAOS_REGRESSION", "1") != "0"
#: seeds that failed once, kept in every run: 5, 30 and 60 hung a graceful stop under faults
#: (a cancel lost in asyncio.wait_for); 81 opened false balance-drift incidents (a fill fetch
#: refused with 503 was taken as "nothing missing")
REGRESSION_SEEDS = (5, 30, 60, 81) if _REGRESSION else ()
#: Kalshi seeds that failed once: 3 stopped gracefully right after a create answered "filled 4"
#: (Kalshi's answer carries no fills; the stream brings them) and left the ledger without them;
#: 1 and 3 then overran the graceful-stop bound while that wait took the whole grace
_KALSHI_FAILED_ONCE: tuple[int, ...] = (1, 3)
KALSHI_REGRESSION_SEEDS = _KALSHI_FAILED_ONCE if _REGRESSION else ()
#: per fixture name: the venue its seeds run on and the seeds
KINDS: dict[str, ChaosVenueKind] = {"chaos_seed": BINANCE, "kalshi_seed": KALSHI}


def _seeds(fixture: str) -> list[int]:
    if fixture == "chaos_seed":
        if VENUES == "kalshi":
            return []
        return sorted({*range(SEED_START, SEED_START + SEED_COUNT), *REGRESSION_SEEDS})
    if VENUES == "binance":
        return []
    start, count = KALSHI_SEED_START, KALSHI_SEED_COUNT
    return sorted({*range(start, start + count), *KALSHI_REGRESSION_SEEDS})


@dataclass(slots=True)
class Campaign:
    #: per venue and seed
    outcomes: dict[tuple[str, int], SeedOutcome] = field(default_factory=dict)
    seconds: float = 0.0
    jobs: int = JOBS


_campaigns: list[Campaign] = []


#: Kalshi seeds that fail on main today, each with the bug it shows (an open issue, not a pass):
#: they still run and report XFAIL, and the campaign summary still counts them as failing.
KALSHI_KNOWN_FAILING: dict[int, str] = {}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    for fixture, kind in KINDS.items():
        if fixture in metafunc.fixturenames:
            seeds = _seeds(fixture)
            prefix = "seed" if kind is BINANCE else f"{kind.name}-seed"
            known = KALSHI_KNOWN_FAILING if kind is KALSHI else {}
            params = [
                pytest.param(s, marks=pytest.mark.xfail(reason=known[s])) if s in known else s
                for s in seeds
            ]
            metafunc.parametrize(fixture, params, ids=[f"{prefix}{s}" for s in seeds])


@pytest.fixture(scope="session")
async def chaos_campaign(
    request: pytest.FixtureRequest,
    pg_server_url: URL,
    template_database: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Campaign:
    """Runs every seed the session selected (``-k`` included), ``JOBS`` at a time."""
    runs = sorted(
        {
            (fixture, item.callspec.params[fixture])
            for item in request.session.items
            if hasattr(item, "callspec")
            for fixture in KINDS
            # an empty parametrization (a venue not selected) holds a NOTSET marker
            if isinstance(item.callspec.params.get(fixture), int)
        },
        key=lambda run: (run[1], run[0]),  # the venues' seeds interleaved
    )
    root = tmp_path_factory.mktemp("chaos")
    campaign = Campaign()
    limit = asyncio.Semaphore(JOBS)

    async def one(kind: ChaosVenueKind, seed: int) -> None:
        async with limit:
            workdir: Path = root / f"{kind.name}-seed{seed}"
            try:
                outcome = await run_seed(
                    seed,
                    server=pg_server_url,
                    template=template_database,
                    workdir=workdir,
                    kind=kind,
                )
            except Exception as exc:  # setting one seed up failed: that seed fails, not all
                outcome = SeedOutcome(seed=seed, venue=kind.name, workdir=workdir)
                outcome.violations.append(f"harness error: {type(exc).__name__}: {exc}")
            campaign.outcomes[kind.name, seed] = outcome

    started = time.monotonic()
    async with asyncio.TaskGroup() as group:
        for fixture, seed in runs:
            kind = KINDS[fixture]
            group.create_task(one(kind, seed), name=f"chaos-{kind.name}-seed-{seed}")
    campaign.seconds = time.monotonic() - started
    _campaigns.append(campaign)
    return campaign


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for campaign in _campaigns:
        venues = sorted({venue for venue, _ in campaign.outcomes})
        for venue in venues:
            outcomes = [o for (v, _), o in sorted(campaign.outcomes.items()) if v == venue]
            _summary(terminalreporter, venue, outcomes, campaign)


def _summary(
    reporter: pytest.TerminalReporter,
    venue: str,
    outcomes: list[SeedOutcome],
    campaign: Campaign,
) -> None:
    failed = [o.seed for o in outcomes if not o.ok]
    counts = total_counts(outcomes)
    orders = sum(o.venue_orders for o in outcomes)
    trades = sum(o.venue_trades for o in outcomes)
    settlements = sum(o.settlements for o in outcomes)
    reporter.section(f"chaos summary ({venue})")
    reporter.write_line(
        f"chaos {venue}: {len(outcomes)} seeds ({outcomes[0].seed}..{outcomes[-1].seed}) in a "
        f"campaign of {campaign.seconds:.0f}s, {campaign.jobs} at a time; {orders} venue "
        f"orders, {trades} trades"
        + (f", {settlements} settlements" if venue != "binance" else "")
        + f"; {len(failed)} failing seed(s) {failed}"
    )
    reporter.write_line(
        f"chaos {venue} faults fired: " + ", ".join(f"{k}={v}" for k, v in sorted(counts.items()))
    )
    stops = [
        life.stop_seconds for o in outcomes for life in o.lives if life.stop_seconds is not None
    ]
    if stops:
        reporter.write_line(
            f"chaos {venue} graceful stops: {len(stops)}, slowest {max(stops):.1f}s, "
            f"median {sorted(stops)[len(stops) // 2]:.1f}s"
        )
    for seed in failed:
        reporter.write_line(f"replay {venue} seed {seed}: {replay_command(seed, venue)}")
