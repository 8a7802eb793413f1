"""Kalshi's read and write token buckets, kept on our side so we wait instead of being refused.

Every request costs tokens (10 by default, a cancel 2); the read and write buckets refill
continuously at the tier's budget per second, up to a capacity. The venue's 429 carries no
``Retry-After``: after one the bucket is emptied, so the next request waits for a refill.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from engine.exceptions import ConfigError

DEFAULT_COST = 10
CANCEL_COST = 2


@dataclass(frozen=True, slots=True, kw_only=True)
class Tier:
    """Tokens per second per bucket (the docs' "Basic" tier by default) and burst seconds."""

    read_per_s: float = 200.0
    write_per_s: float = 100.0
    burst_s: float = 1.0
    #: the share of the budget we allow ourselves: requests reach the venue with jitter, so
    #: two sent a refill apart may arrive closer than that
    headroom: float = 0.8

    def __post_init__(self) -> None:
        if self.read_per_s <= 0 or self.write_per_s <= 0 or self.burst_s <= 0:
            raise ConfigError("kalshi rate tier budgets must be > 0")
        if not 0 < self.headroom <= 1:
            raise ConfigError("kalshi rate tier headroom must be in (0, 1]")


class TokenBucket:
    def __init__(
        self,
        rate: float,
        capacity: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.rate = rate
        self.capacity = capacity
        self._tokens = capacity
        self._clock = clock
        self._sleep = sleep
        self._at = clock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.capacity, self._tokens + (now - self._at) * self.rate)
        self._at = now

    @property
    def tokens(self) -> float:
        self._refill()
        return self._tokens

    async def take(self, cost: float) -> None:
        """Wait until ``cost`` tokens are there, then spend them."""
        cost = min(cost, self.capacity)
        while True:
            self._refill()
            if self._tokens >= cost:
                self._tokens -= cost
                return
            await self._sleep((cost - self._tokens) / self.rate)

    def try_take(self, cost: float) -> bool:
        """Spend ``cost`` tokens if they are there (the venue's side: refuse, never wait)."""
        self._refill()
        if self._tokens < cost:
            return False
        self._tokens -= cost
        return True

    def drain(self) -> None:
        """The venue said 429: assume the bucket is empty there."""
        self._refill()
        self._tokens = 0.0


class KalshiBudget:
    """The read and the write bucket of one API key, at ``headroom`` of the tier (the tier's
    own by default; the simulator enforces the whole tier)."""

    def __init__(
        self,
        tier: Tier | None = None,
        *,
        headroom: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.tier = tier or Tier()
        t = self.tier
        share = t.headroom if headroom is None else headroom
        read, write = t.read_per_s * share, t.write_per_s * share
        self.read = TokenBucket(read, read * t.burst_s, clock=clock, sleep=sleep)
        self.write = TokenBucket(write, write * t.burst_s, clock=clock, sleep=sleep)

    def bucket(self, *, write: bool) -> TokenBucket:
        return self.write if write else self.read

    def headroom(self) -> dict[str, float]:
        """The fraction of each bucket left (``tradectl_venue_rate_limit_headroom``); 0 right
        after a 429 emptied it."""
        return {
            "read_tokens": self.read.tokens / self.read.capacity,
            "write_tokens": self.write.tokens / self.write.capacity,
        }
