"""Checks on values a venue sent us, shared by every adapter's decoders.

A typed decoder (msgspec) only says a field is *a* ``Decimal`` or *an* ``int``: ``"NaN"``,
``"Infinity"``, ``"-1"`` and ``1E+999999999`` all decode. Anything that reaches the ledger must be
a number Postgres and ``Decimal`` arithmetic can hold, with the sign the field's meaning allows,
so each decoder passes its fields through these before building a report. Every failure is a
:class:`MalformedMessage` naming the field; the caller attaches the raw payload.

Pure and cheap, but still a function call per field: the market-data hot path inlines the two
method calls it needs instead (see ``engine.venues.binance.market_frames.parse_book_ticker``).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TypeVar

from engine.exceptions import MalformedMessage

#: 2000-01-01T00:00:00Z and 2100-01-01T00:00:00Z in epoch milliseconds: no venue timestamp we
#: can act on lies outside, and both ends are far inside what ``datetime`` can represent
MIN_MS = 946_684_800_000
MAX_MS = 4_102_444_800_000
#: ids end up in Postgres ``bigint`` columns or are compared as such
MAX_ID = 2**63 - 1
#: |value| < 10**31 and no digit below 10**-30: far beyond any price, size or fee, and small
#: enough that Decimal arithmetic (default context: 28 digits, Emax 999999) cannot overflow and
#: Postgres ``numeric`` stores it (a string of a million digits decodes to a *finite* Decimal)
MAX_INTEGER_DIGITS = 30
MAX_SCALE = 30

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

E = TypeVar("E")


def _show(value: object) -> str:
    # The offending value goes into the error message; never a megabyte of it.
    text = str(value)
    return text if len(text) <= 40 else f"{text[:37]}..."


def finite(value: Decimal, what: str) -> Decimal:
    """``value`` if it is a finite number of a sane magnitude and scale."""
    if not value.is_finite():
        raise MalformedMessage(f"{what} is not a finite number: {_show(value)}")
    exponent = value.as_tuple().exponent
    if value.adjusted() >= MAX_INTEGER_DIGITS or (
        isinstance(exponent, int) and exponent < -MAX_SCALE
    ):
        raise MalformedMessage(f"{what} {_show(value)} is out of range")
    return value


def positive(value: Decimal, what: str) -> Decimal:
    """A finite ``value`` > 0 (a trade, fill or order size)."""
    if finite(value, what) <= 0:
        raise MalformedMessage(f"{what} must be > 0, got {_show(value)}")
    return value


def non_negative(value: Decimal, what: str) -> Decimal:
    """A finite ``value`` >= 0 (a price, a fee, a cumulative quantity, a balance)."""
    if finite(value, what) < 0:
        raise MalformedMessage(f"{what} must be >= 0, got {_show(value)}")
    return value


def ms_timestamp(ms: int, what: str) -> datetime:
    """Epoch milliseconds → aware UTC datetime, exactly (no float), within 2000..2100."""
    if not MIN_MS <= ms < MAX_MS:
        raise MalformedMessage(f"{what} {_show(ms)} ms is outside 2000..2100")
    return _EPOCH + timedelta(milliseconds=ms)


def int_id(value: int, what: str, *, minimum: int = 0) -> int:
    """An integer id within ``minimum``..2**63-1."""
    if not minimum <= value <= MAX_ID:
        raise MalformedMessage(f"{what} {_show(value)} is out of range")
    return value


def non_empty(value: str, what: str) -> str:
    """A string that must say something (a symbol, an order id)."""
    if not value:
        raise MalformedMessage(f"{what} is empty")
    return value


def known(mapping: Mapping[str, E], value: str, what: str) -> E:
    """The member ``value`` names; an unknown name is malformed, not a ``KeyError``."""
    try:
        return mapping[value]
    except KeyError:
        raise MalformedMessage(f"unknown {what} {_show(repr(value))}") from None
