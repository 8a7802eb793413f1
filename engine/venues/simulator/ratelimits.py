"""The simulator's own request-weight and order-count windows (Binance's real limits)."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass


class RateLimits:
    """Request weight per wall-clock minute, as Binance counts it (``X-MBX-USED-WEIGHT-1M``
    starts again from zero at each minute, which is what the engine's budget plans on); sliding
    windows for new orders (10 s and 1 day)."""

    def __init__(self) -> None:
        self._minute = -1
        self._weight_used = 0
        self._orders_10s: deque[float] = deque()
        self._orders_1d: deque[float] = deque()

    def _roll(self) -> None:
        minute = int(time.time() // 60)
        if minute != self._minute:
            self._minute, self._weight_used = minute, 0

    def add_weight(self, weight: int) -> int:
        self._roll()
        self._weight_used += weight
        return self._weight_used

    def add_order(self) -> tuple[int, int]:
        now = time.monotonic()
        self._orders_10s.append(now)
        self._orders_1d.append(now)
        while self._orders_10s and self._orders_10s[0] < now - 10:
            self._orders_10s.popleft()
        while self._orders_1d and self._orders_1d[0] < now - 86_400:
            self._orders_1d.popleft()
        return len(self._orders_10s), len(self._orders_1d)

    def used_weight(self) -> int:
        self._roll()
        return self._weight_used


@dataclass(slots=True)
class Block:
    status: int
    until: float  #: time.monotonic()
