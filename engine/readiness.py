"""Readiness: the parts that must all be ready before ``/readyz`` answers 200.

:class:`Readiness` holds one check per part; the runtime registers them where it knows the
answer (:func:`watch_engine`), and ``engine.ops_http`` reports them. A check returns ``None``
when its part is ready, else what is wrong, in words an operator can act on.
"""

from __future__ import annotations

from collections.abc import Callable

from engine.controls import LeaseKeeper
from engine.exceptions import LeaseLost
from engine.outage import LedgerHealth
from engine.venues.metrics import MARKET, USER, VenueMetrics

#: a part's check returns None when the part is ready, else what is wrong with it
Check = Callable[[], str | None]


class Readiness:
    """The parts that must all be ready for ``/readyz`` to answer 200, each a check the runtime
    registers where it knows the answer. With no part registered yet the engine is starting."""

    def __init__(self) -> None:
        self._checks: dict[str, Check] = {}

    def add(self, part: str, check: Check) -> None:
        self._checks[part] = check

    def discard(self, part: str) -> None:
        """Stop reporting ``part`` (a pool engine that stopped running an account)."""
        self._checks.pop(part, None)

    def problems(self) -> dict[str, str]:
        """What is not ready, by part; empty when the engine is ready."""
        if not self._checks:
            return {"engine": "starting: the database and the venue are not open yet"}
        problems: dict[str, str] = {}
        for part, check in self._checks.items():
            try:
                problem = check()
            except Exception as exc:  # a broken check must not read as ready
                problem = f"check failed: {type(exc).__name__}: {exc}"
            if problem is not None:
                problems[part] = problem
        return problems

    def report(self) -> dict[str, object]:
        problems = self.problems()
        parts = {part: problems.get(part, "ok") for part in self._checks} | problems
        return {"ready": not problems, "parts": parts}


def watch_engine(
    readiness: Readiness,
    *,
    lease: LeaseKeeper,
    health: LedgerHealth,
    streams: VenueMetrics,
    started: Callable[[], bool],
) -> None:
    """The engine's parts: lease held, startup reconciliation done, ledger reachable (and
    reconciled after an outage), market and user streams connected."""

    def lease_problem() -> str | None:
        if lease.lost:
            return "lost: another engine took this account over"
        try:
            lease.epoch  # noqa: B018 - raises until acquired
        except LeaseLost:
            return "not held yet (acquiring it, or standby while another engine holds it)"
        return None

    def ledger_problem() -> str | None:
        down = health.down_for_s
        if down is None:
            return None
        return f"unavailable, or reconciling after an outage, for {down:.0f}s; not trading"

    def streams_problem() -> str | None:
        down = [s for s in (MARKET, USER) if not streams.is_connected(s)]
        return f"{' and '.join(down)} stream not connected" if down else None

    readiness.add("lease", lease_problem)
    readiness.add("startup", lambda: None if started() else "startup reconciliation not done yet")
    readiness.add("ledger", ledger_problem)
    readiness.add("streams", streams_problem)
