"""Hold runs: which holds get a ``decisions`` row, and how many identical ones each row stands for.

A strategy that does nothing says why at every decision (a quote strategy once a second). Those
reasons carry the figures they were decided on ("no edge: bid 0.54 ask 0.56 inside ..."), so two
holds are *identical* when their reasons differ only in numbers: :func:`reason_kind`. Per
(strategy, symbol), a hold is recorded when its reason changes to one that has no row in the
last ``window`` (an hour); the identical holds after it only raise that row's ``repeats`` and
``last_repeat_at``. A reason that comes and goes (a quote strategy flipping between "no edge" and
"nothing held to sell" as the price wanders across its edge) therefore costs a row per hour,
not a row per flip; the rows still say every reason given, when it was first given in each hour,
how often, and when last.

The counts are written when a run ends and at least every ``flush_every`` while it lasts, so a
crash loses at most that much of a count, never a row that said something new.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from engine.domain.types import DecisionId, StrategyId, Symbol

_NUMBER = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?")

DEFAULT_FLUSH_EVERY = timedelta(seconds=10)
DEFAULT_WINDOW = timedelta(hours=1)


def reason_kind(reason: str) -> str:
    """The reason with every number replaced by ``#``: what the hold says, not its figures."""
    return _NUMBER.sub("#", reason)


@dataclass(frozen=True, slots=True)
class RepeatCount:
    """``decisions.repeats`` and ``last_repeat_at`` of the recorded hold ``decision_id``."""

    decision_id: DecisionId
    repeats: int
    last_repeat_at: datetime


@dataclass(slots=True)
class _Run:
    decision_id: DecisionId
    started_at: datetime
    written_at: datetime
    repeats: int = 0
    last_repeat_at: datetime | None = None
    written_repeats: int = 0

    def take(self, now: datetime) -> tuple[RepeatCount, ...]:
        """The count if it changed since it was last written (and mark it written)."""
        self.written_at = now
        if self.repeats == self.written_repeats or self.last_repeat_at is None:
            return ()
        self.written_repeats = self.repeats
        return (RepeatCount(self.decision_id, self.repeats, self.last_repeat_at),)


@dataclass(frozen=True, slots=True)
class HoldStep:
    """What to write for one hold: its row (``record``) and the counts that are due."""

    record: bool
    counts: tuple[RepeatCount, ...] = ()


class HoldRuns:
    """The open hold runs of each (strategy, symbol) of one account, one per reason kind."""

    def __init__(
        self, *, window: timedelta = DEFAULT_WINDOW, flush_every: timedelta = DEFAULT_FLUSH_EVERY
    ) -> None:
        self.window = window
        self.flush_every = flush_every
        self._runs: dict[tuple[StrategyId, Symbol], dict[str, _Run]] = {}

    def hold(
        self,
        strategy_id: StrategyId,
        symbol: Symbol,
        reason: str,
        decision_id: DecisionId,
        decided_at: datetime,
    ) -> HoldStep:
        runs = self._runs.setdefault((strategy_id, symbol), {})
        kind = reason_kind(reason)
        run = runs.get(kind)
        counts: list[RepeatCount] = []
        if run is not None and decided_at - run.started_at < self.window:
            run.repeats += 1
            run.last_repeat_at = decided_at
            record = False
        else:
            # A new reason, or one whose row is a window old: this hold gets a row. Runs a
            # window old end here, so the memory holds one window of reasons.
            for old_kind, old in list(runs.items()):
                if old_kind == kind or decided_at - old.started_at >= self.window:
                    counts.extend(old.take(decided_at))
                    del runs[old_kind]
            runs[kind] = _Run(decision_id=decision_id, started_at=decided_at, written_at=decided_at)
            record = True
        for other in runs.values():
            if decided_at - other.written_at >= self.flush_every:
                counts.extend(other.take(decided_at))
        return HoldStep(record=record, counts=tuple(counts))

    def flush(self, now: datetime) -> tuple[RepeatCount, ...]:
        """Every count not written yet (a stop)."""
        counts: list[RepeatCount] = []
        for runs in self._runs.values():
            for run in runs.values():
                counts.extend(run.take(now))
        return tuple(counts)
