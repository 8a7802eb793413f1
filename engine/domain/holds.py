"""Hold runs: which holds get a ``decisions`` row, and how many identical ones each row stands for.

A strategy that does nothing says why at every decision (a quote strategy once a second). Those
reasons carry the figures they were decided on ("no edge: bid 0.54 ask 0.56 inside ..."), so two
holds are *identical* when their reasons differ only in numbers: :func:`reason_kind`. Per
(strategy, symbol), a hold is recorded when its kind differs from the previous decision's (a
buy, a sell, a cancel or a denial in between ends the run too); the identical holds after it
only raise that row's ``repeats`` and ``last_repeat_at``.

The counts are written when the run ends and at least every ``flush_every`` while it lasts, so a
crash loses at most that much of a count, never a row that said something new.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from engine.domain.types import DecisionId, StrategyId, Symbol

_NUMBER = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?")

DEFAULT_FLUSH_EVERY = timedelta(seconds=60)


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
    kind: str
    repeats: int = 0
    last_repeat_at: datetime | None = None
    written_repeats: int = 0
    written_at: datetime | None = None

    def pending(self) -> RepeatCount | None:
        if self.repeats == self.written_repeats or self.last_repeat_at is None:
            return None
        return RepeatCount(self.decision_id, self.repeats, self.last_repeat_at)


@dataclass(frozen=True, slots=True)
class HoldStep:
    """What to write for one decision: its row (``record``) and the counts that are due."""

    record: bool
    counts: tuple[RepeatCount, ...] = ()


class HoldRuns:
    """The open hold run of each (strategy, symbol) of one account, in memory."""

    def __init__(self, flush_every: timedelta = DEFAULT_FLUSH_EVERY) -> None:
        self.flush_every = flush_every
        self._runs: dict[tuple[StrategyId, Symbol], _Run] = {}

    def hold(
        self,
        strategy_id: StrategyId,
        symbol: Symbol,
        reason: str,
        decision_id: DecisionId,
        decided_at: datetime,
    ) -> HoldStep:
        key = (strategy_id, symbol)
        kind = reason_kind(reason)
        run = self._runs.get(key)
        if run is not None and run.kind == kind:
            run.repeats += 1
            run.last_repeat_at = decided_at
            if run.written_at is None or decided_at - run.written_at >= self.flush_every:
                return HoldStep(record=False, counts=self._written(run, decided_at))
            return HoldStep(record=False)
        ended = self._end(key, decided_at)
        self._runs[key] = _Run(decision_id=decision_id, kind=kind, written_at=decided_at)
        return HoldStep(record=True, counts=ended)

    def other(self, strategy_id: StrategyId, symbol: Symbol, decided_at: datetime) -> HoldStep:
        """A decision that is not a hold ends the (strategy, symbol)'s run."""
        return HoldStep(record=True, counts=self._end((strategy_id, symbol), decided_at))

    def flush(self, now: datetime) -> tuple[RepeatCount, ...]:
        """Every count not written yet (a stop)."""
        counts: list[RepeatCount] = []
        for run in self._runs.values():
            counts.extend(self._written(run, now))
        return tuple(counts)

    def _end(self, key: tuple[StrategyId, Symbol], now: datetime) -> tuple[RepeatCount, ...]:
        run = self._runs.pop(key, None)
        return () if run is None else self._written(run, now)

    @staticmethod
    def _written(run: _Run, now: datetime) -> tuple[RepeatCount, ...]:
        count = run.pending()
        run.written_at = now
        if count is None:
            return ()
        run.written_repeats = count.repeats
        return (count,)
