"""Named crash points, armed from the environment in tests.

``TRADECTL_CRASH_POINT=after_submit_before_ack`` (optionally ``name:N`` to crash on the N-th hit)
makes the process die exactly there with ``os._exit`` — no cleanup, no finally blocks, like a
SIGKILL — so that a restart has to converge from whatever was committed. In-process tests arm
``mode="raise"`` instead, which raises :class:`SimulatedCrash` (a ``BaseException``, so ordinary
error handling cannot swallow it) and the test abandons the engine object.
"""

from __future__ import annotations

import os
from collections import Counter
from enum import StrEnum


class CrashPoint(StrEnum):
    AFTER_RESERVE = "after_reserve"  #: order row committed, nothing sent
    AFTER_SUBMIT_BEFORE_ACK = "after_submit_before_ack"  #: venue accepted, ACK not written
    AFTER_FILL_BEFORE_COMMIT = "after_fill_before_commit"  #: fill received, not yet written
    AFTER_CANCEL_BEFORE_ACK = "after_cancel_before_ack"  #: cancel sent, answer not written


class SimulatedCrash(BaseException):
    """Raised at an armed crash point in ``raise`` mode."""


class CrashPoints:
    def __init__(self, armed: str | None = None, *, mode: str = "exit") -> None:
        self._target: CrashPoint | None = None
        self._after = 1
        self._hits: Counter[CrashPoint] = Counter()
        self.mode = mode
        if armed:
            name, _, count = armed.partition(":")
            self._target = CrashPoint(name)
            self._after = int(count) if count else 1

    @classmethod
    def from_env(cls) -> CrashPoints:
        return cls(os.environ.get("TRADECTL_CRASH_POINT") or None)

    def hit(self, point: CrashPoint) -> None:
        if point is not self._target:
            return
        self._hits[point] += 1
        if self._hits[point] < self._after:
            return
        if self.mode == "exit":
            os._exit(137)
        raise SimulatedCrash(point.value)


NO_CRASH = CrashPoints()
