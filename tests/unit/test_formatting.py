from decimal import Decimal

from engine.domain import formatting as fmt


def test_plain_numbers_have_no_exponent_and_no_trailing_zeros() -> None:
    assert fmt.plain(Decimal("29.9755753900000000")) == "29.97557539"
    assert fmt.plain(Decimal("1E+1")) == "10"
    assert fmt.plain(Decimal("1E-7")) == "0.0000001"
    assert fmt.plain(Decimal("100")) == "100"
    assert fmt.plain(Decimal("-0.000")) == "0"
    assert fmt.plain(None) == "-"


def test_places_round_half_to_even_and_still_drop_trailing_zeros() -> None:
    assert fmt.plain(Decimal("2") / Decimal("3"), places=4) == "0.6667"
    assert fmt.plain(Decimal("0.125"), places=2) == "0.12"
    assert fmt.plain(Decimal("5.100001"), places=3) == "5.1"
    assert fmt.money(Decimal("0.43727272727272727273")) == "0.43727273"


def test_quantities_are_shown_to_the_instrument_step() -> None:
    assert fmt.quantity(Decimal("0.49950000001"), Decimal("0.00010000")) == "0.4995"
    assert fmt.quantity(Decimal("77.000"), Decimal("1")) == "77"
    assert fmt.quantity(Decimal("12.5"), Decimal("1E+1")) == "12"  # a step of 10: no decimals
    assert fmt.quantity(Decimal("0.123456789"), None) == "0.123456789"


def test_percent_and_latency() -> None:
    assert fmt.percent(Decimal("0.05")) == "5%"
    assert fmt.percent(Decimal("0.006097")) == "0.6%"
    assert fmt.percent(None) == "-"
    assert fmt.seconds(0.0199999) == "20ms"
    assert fmt.seconds(Decimal("1.23456")) == "1234.6ms"
