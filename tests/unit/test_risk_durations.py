"""How a verdict writes a duration (the freshness checks' limit and observed age)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from engine.domain.risk.checks import _seconds, _text


def test_durations_are_written_in_seconds_without_trailing_zeros() -> None:
    assert _seconds(timedelta(0)) == "0s"
    assert _seconds(timedelta(minutes=5)) == "300s"
    assert _seconds(timedelta(seconds=1, milliseconds=500)) == "1.5s"
    assert _seconds(timedelta(microseconds=7)) == "0.000007s"
    assert _seconds(timedelta(microseconds=-1500)) == "-0.0015s"  # a quote stamped ahead of now


@given(st.timedeltas(min_value=timedelta(days=-1000), max_value=timedelta(days=1000)))
def test_a_duration_reads_as_the_decimal_number_of_seconds_the_ledger_always_stored(
    delta: timedelta,
) -> None:
    # the Decimal formulation the verdicts were written with before (stored text unchanged)
    micros = delta // timedelta(microseconds=1)
    assert _seconds(delta) == f"{_text(Decimal(micros).scaleb(-6))}s"
