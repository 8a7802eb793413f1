"""Numbers for people: what the CLI and the status print.

Decimals from NUMERIC columns keep the scale they were computed with (``29.9755753900000000``)
and ``Decimal.normalize`` alone turns round numbers into exponents (``1E+1``). People read
neither: every number shown is plain positional notation without trailing zeros, quantities
are rounded to the instrument's step where it is known, and derived figures (averages,
ratios, basis points) to a few places.
"""

from __future__ import annotations

import contextlib
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation

#: what a missing value prints as
MISSING = "-"


def plain(value: Decimal | int | float | None, *, places: int | None = None) -> str:
    """``value`` in positional notation, without trailing zeros or exponent.

    ``places`` rounds (half to even) to at most that many decimals first: for figures derived
    by division, whose last digits say nothing. A float (a latency percentile from SQL) is
    taken at its shortest repr.
    """
    if value is None:
        return MISSING
    number = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    if not number.is_finite():
        return str(number)
    if places is not None:
        # more digits than the context holds: the number is already precise enough as it is
        with contextlib.suppress(InvalidOperation):
            number = number.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_EVEN)
    text = f"{number:f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def quantity(value: Decimal | None, step: Decimal | None = None) -> str:
    """A quantity, rounded to the instrument's ``step`` when it is known (a position net of
    fees in the base asset can have more digits than the venue trades)."""
    if value is None:
        return MISSING
    if step is None or not step.is_finite() or step <= 0:
        return plain(value)
    places = max(0, -step.normalize().as_tuple().exponent)  # type: ignore[operator]
    return plain(value, places=places)


def money(value: Decimal | None, places: int = 8) -> str:
    """An amount in a quote asset: exact up to ``places`` decimals."""
    return plain(value, places=places)


def percent(value: Decimal | float | None, places: int = 1) -> str:
    """A ratio (0.5) as a percentage (``50%``)."""
    if value is None:
        return MISSING
    number = Decimal(repr(value)) if isinstance(value, float) else value
    return f"{plain(number * 100, places=places)}%"


def seconds(value: Decimal | float | None) -> str:
    """A duration in seconds as milliseconds, the scale latencies live at."""
    if value is None:
        return MISSING
    number = Decimal(repr(value)) if isinstance(value, float) else value
    return f"{plain(number * 1000, places=1)}ms"
