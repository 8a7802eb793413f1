"""Kalshi failures, translated once into :mod:`engine.exceptions` outcomes.

Pure: (operation, HTTP status, venue code, message) in, one outcome out. Kalshi answers errors as
``{code, message, details}`` with string codes, and a 429 as ``{"error": "too many requests"}``
without ``Retry-After``. The rules that matter for exactly-once:

- a **409 on create** is "a client order id among our open orders already has it": the first
  attempt of this very order may be on the venue, so it is :class:`Ambiguous` (look it up),
  never a rejection;
- a **5xx**, a timeout or a reset after sending is :class:`Ambiguous`;
- ``market_inactive`` / ``market_closed`` / a maintenance pause are definitive for a new order.
"""

from __future__ import annotations

from enum import StrEnum

import httpx

from engine.exceptions import Ambiguous, AuthFailed, Definitive, NotFound, RateLimited, VenueError

#: the venue gives no Retry-After; its buckets refill continuously, so a short pause is enough
#: (the adapter's own bucket then paces what follows)
DEFAULT_RETRY_AFTER_S = 1.0


class Operation(StrEnum):
    SUBMIT = "submit"
    LOOKUP = "lookup"
    CANCEL = "cancel"
    READ = "read"
    SUBSCRIBE = "subscribe"


#: codes that refuse a new order for the market's or the exchange's state (nothing placed)
_STATE_CODES = frozenset(
    {"market_inactive", "market_closed", "exchange_paused", "trading_is_paused", "exchange_closed"}
)
_NOT_FOUND_CODES = frozenset({"not_found", "order_not_found", "market_not_found"})


def _describe(operation: Operation, status: int | None, code: str | None, msg: str) -> str:
    parts = [f"kalshi {operation.value} failed"]
    if status is not None:
        parts.append(f"HTTP {status}")
    if code:
        parts.append(f"code {code}")
    text = " ".join(parts)
    return f"{text}: {msg}" if msg else text


def classify(
    *, operation: Operation, http_status: int | None, code: str | None, msg: str = ""
) -> VenueError:
    """The outcome of one failed answer."""
    text = _describe(operation, http_status, code, msg)
    lowered = (code or "").lower()
    if http_status == 429:
        return RateLimited(text, retry_after=DEFAULT_RETRY_AFTER_S, http_status=http_status)
    if http_status in (401, 403):
        return AuthFailed(text, http_status=http_status)
    if http_status is not None and http_status >= 500:
        return Ambiguous(text, http_status=http_status)
    if http_status == 409 and operation is Operation.SUBMIT:
        # the same client order id is open: perhaps this order's own first attempt
        return Ambiguous(text, http_status=http_status)
    if http_status == 404 or lowered in _NOT_FOUND_CODES:
        if operation in (Operation.LOOKUP, Operation.CANCEL):
            return NotFound(text, http_status=http_status)
        return Definitive(text, http_status=http_status)
    if lowered in _STATE_CODES:
        return Definitive(text, http_status=http_status)
    if http_status is not None and 400 <= http_status < 500:
        return Definitive(text, http_status=http_status)
    return Ambiguous(text, http_status=http_status)


def classify_transport(exc: httpx.HTTPError, *, operation: Operation) -> VenueError:
    """An httpx failure: before the request left (nothing happened) or possibly after."""
    name = type(exc).__name__
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout):
        return Definitive(f"kalshi {operation.value} not sent: {name} (could not connect)")
    if isinstance(exc, httpx.UnsupportedProtocol | httpx.InvalidURL):
        return Definitive(f"kalshi {operation.value} not sent: {name} (bad URL configuration)")
    return Ambiguous(f"kalshi {operation.value} outcome unknown: {name} after sending")
