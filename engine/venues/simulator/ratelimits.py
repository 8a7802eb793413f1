"""The simulator's own request-weight and order-count windows (Binance's real limits)."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass


class RateLimits:
    """Sliding windows for request weight (1 minute) and new orders (10 s and 1 day)."""

    def __init__(self) -> None:
        self._weight: deque[tuple[float, int]] = deque()
        self._orders_10s: deque[float] = deque()
        self._orders_1d: deque[float] = deque()

    def add_weight(self, weight: int) -> int:
        now = time.monotonic()
        self._weight.append((now, weight))
        while self._weight and self._weight[0][0] < now - 60:
            self._weight.popleft()
        return sum(w for _, w in self._weight)

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
        now = time.monotonic()
        return sum(w for t, w in self._weight if t >= now - 60)


@dataclass(slots=True)
class Block:
    status: int
    until: float  #: time.monotonic()
