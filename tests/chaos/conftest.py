"""The chaos campaign: every selected seed runs once per session, several at a time.

``CHAOS_SEEDS`` (default 50) seeds starting at ``CHAOS_SEED_START`` (default 0), plus the
regression seeds (:data:`REGRESSION_SEEDS`, unless ``CHAOS_REGRESSION=0``) whatever the
range; ``CHAOS_JOBS`` seeds run concurrently (default 4), each in its own database and with its
own simulator. The
seeds run when the first chaos test asks for them; each ``test_seed`` then reports its own seed,
and the terminal summary says how often each fault fired.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy.engine import URL

from tests.chaos.harness import SeedOutcome, replay_command, run_seed, total_counts


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    return int(raw) if raw else default


SEED_START = _env_int("CHAOS_SEED_START", 0)
SEED_COUNT = _env_int("CHAOS_SEEDS", 50)
JOBS = max(1, _env_int("CHAOS_JOBS", 4))
#: seeds that failed once, kept in every run: 5, 30 and 60 hung a graceful stop under faults
#: (a cancel lost in asyncio.wait_for); 81 opened false balance-drift incidents (a fill fetch
#: refused with 503 was taken as "nothing missing")
REGRESSION_SEEDS = (5, 30, 60, 81) if os.environ.get("CHAOS_REGRESSION", "1") != "0" else ()


@dataclass(slots=True)
class Campaign:
    outcomes: dict[int, SeedOutcome] = field(default_factory=dict)
    seconds: float = 0.0
    jobs: int = JOBS


_campaigns: list[Campaign] = []


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "chaos_seed" in metafunc.fixturenames:
        seeds = sorted({*range(SEED_START, SEED_START + SEED_COUNT), *REGRESSION_SEEDS})
        metafunc.parametrize("chaos_seed", seeds, ids=[f"seed{s}" for s in seeds])


@pytest.fixture(scope="session")
async def chaos_campaign(
    request: pytest.FixtureRequest,
    pg_server_url: URL,
    template_database: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Campaign:
    """Runs every seed the session selected (``-k`` included), ``JOBS`` at a time."""
    seeds = sorted(
        {
            item.callspec.params["chaos_seed"]
            for item in request.session.items
            if hasattr(item, "callspec") and "chaos_seed" in item.callspec.params
        }
    )
    root = tmp_path_factory.mktemp("chaos")
    campaign = Campaign()
    limit = asyncio.Semaphore(JOBS)

    async def one(seed: int) -> None:
        async with limit:
            workdir: Path = root / f"seed{seed}"
            campaign.outcomes[seed] = await run_seed(
                seed, server=pg_server_url, template=template_database, workdir=workdir
            )

    started = time.monotonic()
    async with asyncio.TaskGroup() as group:
        for seed in seeds:
            group.create_task(one(seed), name=f"chaos-seed-{seed}")
    campaign.seconds = time.monotonic() - started
    _campaigns.append(campaign)
    return campaign


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for campaign in _campaigns:
        outcomes = [campaign.outcomes[s] for s in sorted(campaign.outcomes)]
        if not outcomes:
            continue
        failed = [o.seed for o in outcomes if not o.ok]
        counts = total_counts(outcomes)
        orders = sum(o.venue_orders for o in outcomes)
        trades = sum(o.venue_trades for o in outcomes)
        terminalreporter.section("chaos summary")
        terminalreporter.write_line(
            f"chaos: {len(outcomes)} seeds ({outcomes[0].seed}..{outcomes[-1].seed}) in "
            f"{campaign.seconds:.0f}s, {campaign.jobs} at a time; {orders} venue orders, "
            f"{trades} trades; {len(failed)} failing seed(s) {failed}"
        )
        terminalreporter.write_line(
            "chaos faults fired: " + ", ".join(f"{k}={v}" for k, v in sorted(counts.items()))
        )
        stops = [
            life.stop_seconds for o in outcomes for life in o.lives if life.stop_seconds is not None
        ]
        if stops:
            terminalreporter.write_line(
                f"chaos graceful stops: {len(stops)}, slowest {max(stops):.1f}s, "
                f"median {sorted(stops)[len(stops) // 2]:.1f}s"
            )
        for seed in failed:
            terminalreporter.write_line(f"replay seed {seed}: {replay_command(seed)}")
