"""Venue-side metrics: requests, rate-limit headroom, stream health, skipped messages and
market-data freshness, every series labelled with the account it belongs to.

One :class:`VenueMetrics` per venue connection of one account. It is made where the account is
known (``engine.runtime.open_venue``) and handed to the adapter, whose request, stream and
decoding code updates it as it does the thing. It also remembers which streams are up: the
engine's ``/readyz`` reads that, so readiness and ``tradectl_stream_connected`` cannot disagree.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any, Protocol

from prometheus_client import REGISTRY, Counter, Gauge

from engine.exceptions import (
    Ambiguous,
    AuthFailed,
    Definitive,
    MalformedMessage,
    NotFound,
    RateLimited,
)

#: the account label of a venue built without one (a library user's, or a test's adapter)
UNASSIGNED = "unassigned"

#: stream label values; ``/readyz`` waits for both
MARKET = "market"
USER = "user"

#: ``source`` label values of skipped messages
REST = "rest"
MARKET_STREAM = "market_stream"
USER_STREAM = "user_stream"


def _metric(kind: type[Any], name: str, doc: str, labels: tuple[str, ...]) -> Any:
    # A re-imported module (tests) must not register the same name twice: reuse it.
    existing = REGISTRY._names_to_collectors.get(name)
    if existing is not None:
        return existing
    return kind(name, doc, labels)


REQUESTS = _metric(
    Counter,
    "tradectl_venue_requests",
    "Requests sent to the venue (REST and WebSocket API), by endpoint and outcome",
    ("account", "venue", "endpoint", "outcome"),
)
#: the budgets (``tradectl_venue_rate_limit_headroom`` limits) that reads draw on
READ_BUDGETS = ("request_weight_1m", "read_tokens")
RATE_LIMIT_HEADROOM = _metric(
    Gauge,
    "tradectl_venue_rate_limit_headroom",
    "Fraction of the venue's request-weight or order-count budget left in its window "
    "(0 while the venue's back-off is in force)",
    ("account", "venue", "limit"),
)
RATE_LIMIT_WAITS = _metric(
    Counter,
    "tradectl_venue_rate_limit_waits",
    "Requests our own budget held back until the venue's window rolled over, by limit",
    ("account", "venue", "limit"),
)
STREAM_RECONNECTS = _metric(
    Counter,
    "tradectl_stream_reconnects",
    "Venue streams re-established after a drop or a rotation",
    ("account", "venue", "stream"),
)
STREAM_CONNECTED = _metric(
    Gauge,
    "tradectl_stream_connected",
    "1 while the venue stream is connected (and subscribed), else 0",
    ("account", "venue", "stream"),
)
MALFORMED_MESSAGES = _metric(
    Counter,
    "tradectl_malformed_messages",
    "Venue messages that could not be decoded or held unknown values; logged and skipped",
    ("account", "venue", "source"),
)
CIRCUIT_STATE = _metric(
    Gauge,
    "tradectl_circuit_state",
    "The venue circuit breaker of an endpoint class (orders, reads, streams): "
    "0 closed, 1 half-open, 2 open",
    ("account", "venue", "endpoint"),
)
ORDERBOOK_GAPS = _metric(
    Counter,
    "tradectl_orderbook_gaps",
    "Order book sequence gaps (messages lost, or a delta the book cannot take), each answered "
    "by resubscribing for fresh snapshots",
    ("account", "venue"),
)
MARKETDATA_AGE = _metric(
    Gauge,
    "tradectl_marketdata_age_seconds",
    "Seconds since the newest market data of the symbol was received",
    ("account", "symbol"),
)


def outcome_of(exc: BaseException | None) -> str:
    """The ``outcome`` label of a request that raised ``exc`` (``ok`` when it did not)."""
    if exc is None:
        return "ok"
    for kind, name in _OUTCOMES:
        if isinstance(exc, kind):
            return name
    return "error"


# Most specific first: RateLimited and NotFound are also VenueErrors.
_OUTCOMES: tuple[tuple[type[BaseException], str], ...] = (
    (RateLimited, "rate_limited"),
    (AuthFailed, "auth_failed"),
    (NotFound, "not_found"),
    (MalformedMessage, "malformed"),
    (Ambiguous, "ambiguous"),
    (Definitive, "rejected"),
    (TimeoutError, "timeout"),
)


class VenueObserver(Protocol):
    """Told about every request outcome and stream change the adapter reports (the circuit
    breakers and the auth-failure halt of engine/venue_guard.py)."""

    def request(self, endpoint: str, exc: BaseException | None) -> None: ...

    def stream(self, stream: str, up: bool) -> None: ...


class VenueMetrics:
    """One account's view of one venue connection."""

    def __init__(self, *, account: str, venue: str) -> None:
        self.account = account
        self.venue = venue
        self._connected: dict[str, bool] = {}
        #: monotonic time each stream went down (absent while up, or never connected)
        self._down_since: dict[str, float] = {}
        self.observers: list[VenueObserver] = []
        #: connections established per stream in this process (more than one: it reconnected)
        self.connections: dict[str, int] = {}
        #: the REST client's budget, read live (its windows roll with the clock)
        self.budget: Callable[[], Mapping[str, float]] | None = None

    def __repr__(self) -> str:
        return f"VenueMetrics(account={self.account!r}, venue={self.venue!r})"

    def request(self, endpoint: str, exc: BaseException | None = None) -> None:
        REQUESTS.labels(self.account, self.venue, endpoint, outcome_of(exc)).inc()
        for observer in self.observers:
            observer.request(endpoint, exc)

    def read_headroom(self) -> float:
        """The fraction left of the venue budget that reads spend (Binance's request weight,
        Kalshi's read tokens); 1.0 for a venue that reports none."""
        if self.budget is None:
            return 1.0
        budget = self.budget()
        return min((budget[k] for k in READ_BUDGETS if k in budget), default=1.0)

    def rate_limit_wait(self, limit: str) -> None:
        RATE_LIMIT_WAITS.labels(self.account, self.venue, limit).inc()

    def rate_limit_headroom(self, headroom: Mapping[str, float]) -> None:
        for limit, fraction in headroom.items():
            RATE_LIMIT_HEADROOM.labels(self.account, self.venue, limit).set(fraction)

    def stream_up(self, stream: str) -> None:
        """The stream connected (and, for the user stream, subscribed). A stream that was up
        before in this process came back: a reconnect."""
        was = self._connected.get(stream)
        if was is False:
            STREAM_RECONNECTS.labels(self.account, self.venue, stream).inc()
        self._connected[stream] = True
        self.connections[stream] = self.connections.get(stream, 0) + 1
        self._down_since.pop(stream, None)
        STREAM_CONNECTED.labels(self.account, self.venue, stream).set(1)
        for observer in self.observers:
            observer.stream(stream, True)

    def stream_down(self, stream: str) -> None:
        if self._connected.get(stream):
            self._connected[stream] = False
            self._down_since[stream] = time.monotonic()
            for observer in self.observers:
                observer.stream(stream, False)
        STREAM_CONNECTED.labels(self.account, self.venue, stream).set(0)

    def down_for_s(self, stream: str, now: float | None = None) -> float | None:
        """How long ``stream`` has been down after having been up; ``None`` while it is up
        or before it first connected (a stream never opened is not a lost connection)."""
        since = self._down_since.get(stream)
        if since is None:
            return None
        return (time.monotonic() if now is None else now) - since

    def circuit_state(self, endpoint: str, value: int) -> None:
        CIRCUIT_STATE.labels(self.account, self.venue, endpoint).set(value)

    @asynccontextmanager
    async def connection(self, stream: str) -> AsyncIterator[None]:
        """Around one connection of ``stream``: however it ends (a drop, a rotation, the
        consumer closing the stream), the stream is down when it has."""
        try:
            yield
        finally:
            self.stream_down(stream)

    def is_connected(self, stream: str) -> bool:
        return self._connected.get(stream, False)

    def malformed(self, source: str) -> None:
        MALFORMED_MESSAGES.labels(self.account, self.venue, source).inc()

    def orderbook_gap(self, count: int = 1) -> None:
        """``count`` gaps (0 when a book starts: the series shows 0, not nothing)."""
        ORDERBOOK_GAPS.labels(self.account, self.venue).inc(count)

    def marketdata_age(self, symbol: str, seconds: float) -> None:
        MARKETDATA_AGE.labels(self.account, symbol).set(seconds)
