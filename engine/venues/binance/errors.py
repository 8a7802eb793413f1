"""Binance failures, translated once into :mod:`engine.exceptions` outcomes.

:func:`classify` is pure: (operation, HTTP status, venue code, venue message, Retry-After) in, one
outcome out. :func:`classify_transport` does the same for httpx exceptions, telling apart failures
where the request never left this process (nothing can have been placed) from failures after it
was sent (anything may have happened). Messages carry the venue's code and text, never a request's
parameters, so no signature or key can leak through an exception.
"""

from __future__ import annotations

from enum import StrEnum

import httpx

from engine.exceptions import (
    Ambiguous,
    AuthFailed,
    Definitive,
    NotFound,
    RateLimited,
    VenueError,
)


class Operation(StrEnum):
    """What the failed call was for: the same code can mean different things per operation."""

    SUBMIT = "submit"  #: a new order
    LOOKUP = "lookup"  #: query one order
    CANCEL = "cancel"
    READ = "read"  #: any other read (open orders, trades, account, rules, time)
    SUBSCRIBE = "subscribe"  #: user data stream subscription


#: -1021: timestamp outside recvWindow. The request was refused before processing, so the caller
#: may re-sync the clock and send again (for orders, nothing was placed).
INVALID_TIMESTAMP = -1021
#: -1007: the backend did not answer in time; the order may or may not exist.
BACKEND_TIMEOUT = -1007

#: default pause when the venue says "too many" without a Retry-After header
DEFAULT_RETRY_AFTER_S = 10.0

_AUTH_CODES = frozenset({-1002, -1022, -2014, -2015, -1099})
#: the request may have been executed: look it up rather than assume anything
_AMBIGUOUS_CODES = frozenset({-1000, -1001, -1006, BACKEND_TIMEOUT})
_RATE_CODES = frozenset({-1003, -1008, -1015, -1034})
_NOT_FOUND_CODES = frozenset({-2013, -2026})
#: -2011 means "cancel rejected": only the unknown-order variant is a lookup miss
_UNKNOWN_ORDER_TEXT = "unknown order"


def _describe(operation: Operation, http_status: int | None, code: int | None, msg: str) -> str:
    parts = [f"binance {operation.value} failed"]
    if http_status is not None:
        parts.append(f"HTTP {http_status}")
    if code is not None:
        parts.append(f"code {code}")
    text = " ".join(parts)
    return f"{text}: {msg}" if msg else text


def classify(
    *,
    operation: Operation,
    http_status: int | None,
    code: int | None,
    msg: str = "",
    retry_after: float | None = None,
) -> VenueError:
    """The outcome for one failed answer from the venue (REST or WebSocket API)."""
    text = _describe(operation, http_status, code, msg)

    if http_status in (418, 429) or code in _RATE_CODES:
        wait = retry_after if retry_after is not None else DEFAULT_RETRY_AFTER_S
        return RateLimited(text, retry_after=wait, code=code, http_status=http_status)
    if http_status in (401, 403) or code in _AUTH_CODES:
        return AuthFailed(text, code=code, http_status=http_status)
    if code in _AMBIGUOUS_CODES:
        return Ambiguous(text, code=code, http_status=http_status)
    if http_status is not None and http_status >= 500:
        # Binance: "the execution status is UNKNOWN and could have been a success".
        return Ambiguous(text, code=code, http_status=http_status)
    if code in _NOT_FOUND_CODES and operation in (Operation.LOOKUP, Operation.CANCEL):
        return NotFound(text, code=code, http_status=http_status)
    if code == -2011 and operation is Operation.CANCEL and _UNKNOWN_ORDER_TEXT in msg.lower():
        return NotFound(text, code=code, http_status=http_status)
    if http_status is not None and 400 <= http_status < 500:
        # A 4xx is the sender's fault and was refused (filters -1013, balance -2010, -11xx, ...).
        return Definitive(text, code=code, http_status=http_status)
    if code is not None:
        # WebSocket API errors carry a status too; a bare venue code without a 5xx is a refusal.
        return Definitive(text, code=code, http_status=http_status)
    return Ambiguous(text, code=code, http_status=http_status)


def classify_transport(exc: httpx.HTTPError, *, operation: Operation) -> VenueError:
    """Outcome for an httpx failure: before the request was sent, or possibly after."""
    name = type(exc).__name__
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout):
        # No byte of this request reached the venue: nothing can have been placed.
        return Definitive(f"binance {operation.value} not sent: {name} (could not connect)")
    if isinstance(exc, httpx.UnsupportedProtocol | httpx.InvalidURL):
        return Definitive(f"binance {operation.value} not sent: {name} (bad URL configuration)")
    # Read/write timeouts, resets and protocol errors can happen after the venue got the request.
    return Ambiguous(f"binance {operation.value} outcome unknown: {name} after sending")


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (Binance sends seconds); ``None`` if absent/odd."""
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return seconds if seconds >= 0 else None
