"""Request-weight and order-count budgets, fed back from the venue's response headers.

Binance counts IP request weight per wall-clock minute and account orders per 10 seconds, and
reports both on every answer (``X-MBX-USED-WEIGHT-1M``, ``X-MBX-ORDER-COUNT-10S``). The budget
waits for the next window when a request would cross a safety margin below the limit, rather than
hitting the limit. After a 429/418 it refuses to send at all until ``Retry-After`` has passed:
ignoring a 429 is what turns into an IP ban (418).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

import structlog

from engine.exceptions import RateLimited

log = structlog.get_logger("tradectl.venue")

WEIGHT_HEADER = "x-mbx-used-weight-1m"
ORDER_COUNT_HEADER = "x-mbx-order-count-10s"


@dataclass(frozen=True, slots=True, kw_only=True)
class Endpoint:
    method: str
    path: str
    weight: int
    #: counts against the account's order rate limit
    is_order: bool = False


SERVER_TIME = Endpoint(method="GET", path="/api/v3/time", weight=1)
EXCHANGE_INFO = Endpoint(method="GET", path="/api/v3/exchangeInfo", weight=20)
NEW_ORDER = Endpoint(method="POST", path="/api/v3/order", weight=1, is_order=True)
QUERY_ORDER = Endpoint(method="GET", path="/api/v3/order", weight=4)
CANCEL_ORDER = Endpoint(method="DELETE", path="/api/v3/order", weight=1)
OPEN_ORDERS = Endpoint(method="GET", path="/api/v3/openOrders", weight=6)
#: openOrders without a symbol is far heavier
OPEN_ORDERS_ALL = Endpoint(method="GET", path="/api/v3/openOrders", weight=80)
MY_TRADES = Endpoint(method="GET", path="/api/v3/myTrades", weight=20)
ALL_ORDERS = Endpoint(method="GET", path="/api/v3/allOrders", weight=20)
ACCOUNT = Endpoint(method="GET", path="/api/v3/account", weight=20)


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    weight_per_minute: int = 6000
    orders_per_10s: int = 100
    #: fraction of a limit we allow ourselves; the rest absorbs other processes on the same IP
    #: and requests in flight whose weight the venue has not reported yet
    headroom: float = 0.9


class RateBudget:
    """Waits before a limit instead of hitting it; refuses outright during a venue back-off.

    ``clock`` is the wall clock in seconds (the venue's windows are aligned to wall-clock minutes
    and 10-second marks); ``sleep`` is awaited when the budget must wait. Both are injectable so
    tests never sleep.
    """

    def __init__(
        self,
        limits: Limits | None = None,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.limits = limits or Limits()
        self._clock = clock
        self._sleep = sleep
        self._weight_window = -1
        self._weight_used = 0
        self._order_window = -1
        self._orders_used = 0
        self._blocked_until = 0.0
        self._orders_blocked_until = 0.0
        #: told (the limit) each time a request waits for the next window
        self.on_wait: Callable[[str], None] | None = None

    # -- accounting -------------------------------------------------------------------------

    def _roll(self, now: float) -> None:
        minute = int(now // 60)
        if minute != self._weight_window:
            self._weight_window = minute
            self._weight_used = 0
        tens = int(now // 10)
        if tens != self._order_window:
            self._order_window = tens
            self._orders_used = 0

    @property
    def weight_used(self) -> int:
        self._roll(self._clock())
        return self._weight_used

    @property
    def orders_used(self) -> int:
        self._roll(self._clock())
        return self._orders_used

    def blocked_for(self, *, is_order: bool = False) -> float:
        """Seconds left in a venue-imposed back-off (0 when sending is allowed)."""
        now = self._clock()
        until = max(self._blocked_until, self._orders_blocked_until if is_order else 0.0)
        return max(0.0, until - now)

    async def acquire(self, endpoint: Endpoint) -> None:
        """Reserve the endpoint's weight, waiting for the next window when near a limit.

        Raises :class:`RateLimited` (without waiting) while the venue's back-off is in force.
        """
        while True:
            blocked = self.blocked_for(is_order=endpoint.is_order)
            if blocked > 0:
                raise RateLimited(
                    f"binance rate limit back-off in force; not sending {endpoint.method} "
                    f"{endpoint.path} for another {blocked:.1f}s",
                    retry_after=blocked,
                )
            now = self._clock()
            self._roll(now)
            wait = 0.0
            weight_cap = math.floor(self.limits.weight_per_minute * self.limits.headroom)
            if self._weight_used + endpoint.weight > weight_cap and self._weight_used > 0:
                wait = max(wait, 60 - (now % 60))
            if endpoint.is_order:
                order_cap = math.floor(self.limits.orders_per_10s * self.limits.headroom)
                if self._orders_used + 1 > order_cap and self._orders_used > 0:
                    wait = max(wait, 10 - (now % 10))
            if wait <= 0:
                self._weight_used += endpoint.weight
                if endpoint.is_order:
                    self._orders_used += 1
                return
            # said out loud: to someone watching, a request held to the next window (up to a
            # minute) looks like an engine that stopped
            limit = "orders_10s" if wait < 10 and endpoint.is_order else "request_weight_1m"
            log.warning(
                "binance.rate_budget_wait",
                endpoint=f"{endpoint.method} {endpoint.path}",
                limit=limit,
                weight_used=self._weight_used,
                orders_used=self._orders_used,
                wait_s=round(wait, 3),
            )
            if self.on_wait is not None:
                self.on_wait(limit)
            await self._sleep(wait)

    def observe(self, headers: Mapping[str, str]) -> None:
        """Take the venue's own counts: they include other processes sharing our IP/account."""
        self._roll(self._clock())
        used = _int_header(headers, WEIGHT_HEADER)
        if used is not None:
            self._weight_used = max(self._weight_used, used)
        orders = _int_header(headers, ORDER_COUNT_HEADER)
        if orders is not None:
            self._orders_used = max(self._orders_used, orders)

    def back_off(self, retry_after: float | None, *, orders_only: bool = False) -> float:
        """Stop sending for ``retry_after`` seconds; returns the back-off actually applied.

        A 429 without ``Retry-After`` is the order-count limit: orders wait for the next
        10-second window, other requests may go on.
        """
        now = self._clock()
        if retry_after is None:
            seconds = max(1.0, 10 - (now % 10))
            self._orders_blocked_until = max(self._orders_blocked_until, now + seconds)
            return seconds
        if orders_only:
            self._orders_blocked_until = max(self._orders_blocked_until, now + retry_after)
        else:
            self._blocked_until = max(self._blocked_until, now + retry_after)
        return retry_after

    def headroom(self) -> dict[str, float]:
        """The fraction of each venue limit left in its current window; 0 while a venue
        back-off is in force (nothing may be sent, whatever the counts say)."""
        now = self._clock()
        self._roll(now)
        weight = 1 - self._weight_used / self.limits.weight_per_minute
        orders = 1 - self._orders_used / self.limits.orders_per_10s
        if self._blocked_until > now:
            weight = orders = 0.0
        elif self._orders_blocked_until > now:
            orders = 0.0
        return {"request_weight_1m": max(0.0, weight), "orders_10s": max(0.0, orders)}

    def configure(self, limits: Limits) -> None:
        self.limits = limits


def _int_header(headers: Mapping[str, str], name: str) -> int | None:
    value = headers.get(name)
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        return None
