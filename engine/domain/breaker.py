"""A circuit breaker: closed / open / half-open, from request outcomes and a monotonic clock.

Pure (never awaits, reads no clock): the caller passes ``now`` in seconds of a monotonic clock.

- **closed**: requests flow; ``failure_threshold`` failures in a row open it.
- **open**: the venue is failing; callers hold back new work (new orders are denied, lookups
  back off) until ``recovery_timeout_s`` has passed since it opened.
- **half-open**: after the timeout, requests flow again as probes; ``success_threshold``
  successes in a row close it, any failure opens it again (with a fresh timeout).

Only failures that say the venue is unwell count (5xx, timeouts, connection errors, rate
limits); a refusal that names our request (a bad order, an unknown id) is an answer, a success.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class BreakerState(StrEnum):
    CLOSED = "closed"
    HALF_OPEN = "half-open"
    OPEN = "open"

    @property
    def gauge(self) -> int:
        """``tradectl_circuit_state``: 0 closed, 1 half-open, 2 open."""
        return _GAUGE[self]


_GAUGE = {BreakerState.CLOSED: 0, BreakerState.HALF_OPEN: 1, BreakerState.OPEN: 2}


@dataclass(frozen=True, slots=True)
class BreakerConfig:
    failure_threshold: int = 5
    recovery_timeout_s: float = 30.0
    success_threshold: int = 2

    def __post_init__(self) -> None:
        if self.failure_threshold < 1 or self.success_threshold < 1:
            raise ValueError("breaker thresholds must be at least 1")
        if not self.recovery_timeout_s > 0:
            raise ValueError("breaker recovery timeout must be positive")


class Breaker:
    """One endpoint class of one venue connection."""

    def __init__(self, config: BreakerConfig) -> None:
        self.config = config
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._successes = 0
        self._opened_at: float | None = None
        #: times it opened (a half-open probe failing counts again)
        self.trips = 0
        self.last_failure = ""

    def state(self, now: float) -> BreakerState:
        """The state at ``now``: an open breaker whose timeout passed is half-open."""
        if self._state is BreakerState.OPEN and self.retry_in(now) <= 0:
            self._state = BreakerState.HALF_OPEN
            self._successes = 0
        return self._state

    def allows(self, now: float) -> bool:
        """Whether new work may go out now (closed, or half-open probing)."""
        return self.state(now) is not BreakerState.OPEN

    def retry_in(self, now: float) -> float:
        """Seconds until an open breaker turns half-open; 0 when not open."""
        if self._state is not BreakerState.OPEN or self._opened_at is None:
            return 0.0
        return max(0.0, self._opened_at + self.config.recovery_timeout_s - now)

    def success(self, now: float) -> BreakerState:
        state = self.state(now)
        if state is BreakerState.HALF_OPEN:
            self._successes += 1
            if self._successes >= self.config.success_threshold:
                self._close()
        elif state is BreakerState.CLOSED:
            self._failures = 0
        # open: an answer to a request sent before it opened proves nothing about now
        return self._state

    def failure(self, now: float, what: str = "") -> BreakerState:
        state = self.state(now)
        self.last_failure = what or self.last_failure
        if state is BreakerState.HALF_OPEN:
            self._open(now)
        elif state is BreakerState.CLOSED:
            self._failures += 1
            if self._failures >= self.config.failure_threshold:
                self._open(now)
        return self._state

    def _open(self, now: float) -> None:
        self._state = BreakerState.OPEN
        self._opened_at = now
        self._failures = 0
        self._successes = 0
        self.trips += 1

    def _close(self) -> None:
        self._state = BreakerState.CLOSED
        self._opened_at = None
        self._failures = 0
        self._successes = 0
