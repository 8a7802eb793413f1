from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from engine.exceptions import MalformedMessage
from engine.venues import validation as v


@pytest.mark.parametrize(
    "text", ["NaN", "-NaN", "sNaN", "Infinity", "-Infinity", "1E+31", "-1E+40", "1E-31", "0E-50"]
)
def test_finite_refuses_what_no_venue_amount_is(text: str) -> None:
    with pytest.raises(MalformedMessage, match="price"):
        v.finite(Decimal(text), "price")


def test_the_sign_checks() -> None:
    assert v.positive(Decimal("0.00000001"), "qty") == Decimal("0.00000001")
    assert v.non_negative(Decimal(0), "fee") == 0
    assert v.finite(Decimal("-3.5"), "delta") == Decimal("-3.5")
    for check, text in ((v.positive, "0"), (v.positive, "-1"), (v.non_negative, "-0.1")):
        with pytest.raises(MalformedMessage):
            check(Decimal(text), "x")
    with pytest.raises(MalformedMessage):
        v.positive(Decimal("NaN"), "qty")  # not InvalidOperation from the comparison


def test_ms_timestamp_is_exact_and_bounded() -> None:
    assert v.ms_timestamp(1499405658657, "T") == datetime(2017, 7, 7, 5, 34, 18, 657000, UTC)
    for ms in (v.MIN_MS - 1, v.MAX_MS, 10**30, -(10**30)):
        with pytest.raises(MalformedMessage, match="T"):
            v.ms_timestamp(ms, "T")


def test_ids_strings_and_enums() -> None:
    assert v.int_id(0, "id") == 0
    assert v.int_id(-1, "id", minimum=-1) == -1
    for value in (-1, 2**63):
        with pytest.raises(MalformedMessage):
            v.int_id(value, "id")
    with pytest.raises(MalformedMessage):
        v.non_empty("", "symbol")
    assert v.known({"A": 1}, "A", "letter") == 1
    with pytest.raises(MalformedMessage, match="unknown letter 'B'"):
        v.known({"A": 1}, "B", "letter")


def test_messages_do_not_carry_a_megabyte_of_value() -> None:
    with pytest.raises(MalformedMessage) as caught:
        v.finite(Decimal("1" * 100_000), "qty")
    assert len(str(caught.value)) < 100
