"""How numbers are written for people (report/units.py): no exponent notation at any
magnitude, the unit chosen after rounding, and money that says when it is not known."""

from __future__ import annotations

import pytest

from selfcode.report.units import fmt_cost, fmt_sample


@pytest.mark.parametrize(("value", "shown"), [
    (0, "0"),
    (0.5, "0.500"),
    (7, "7.00"),
    (12.345, "12.3"),
    (999.4, "999"),
    (999.5, "1.00 k"),  # the rounding carries into the next unit
    (1_000, "1.00 k"),
    (12_345, "12.3 k"),
    (999_499, "999 k"),
    (999_500, "1.00 M"),
    (997e6, "997 M"),  # was '1e+03 M'
    (999.4e6, "999 M"),
    (999.5e6, "1.00 G"),
    (1e9, "1.00 G"),
    (3.14159e9, "3.14 G"),
    (999.5e9, "1.00 T"),
    (1.234e15, "1230 T"),  # beyond the largest unit: more digits, still no exponent
    (-5e6, "-5.00 M"),
])
def test_counts_read_in_human_units(value: float, shown: str) -> None:
    assert fmt_sample("instructions", value) == shown


@pytest.mark.parametrize(("value", "shown"), [
    (0, "0 s"),
    (2.5e-10, "0.250 ns"),
    (0.0000004, "400 ns"),
    (0.0009995, "1.00 ms"),
    (0.110, "110 ms"),
    (0.1994, "199 ms"),
    (0.9994, "999 ms"),
    (0.9995, "1.00 s"),
    (1.234, "1.23 s"),
    (999.5, "1000 s"),
    (12_345.0, "12300 s"),
])
def test_times_read_in_human_units(value: float, shown: str) -> None:
    assert fmt_sample("cpu_time", value) == shown


@pytest.mark.parametrize("metric", ["instructions", "cpu_time", "wall_time", "score"])
@pytest.mark.parametrize("exponent", range(-12, 19))
def test_no_magnitude_is_written_with_an_exponent(metric: str, exponent: int) -> None:
    for mantissa in (1.0, 9.994, 9.995, 9.9999):
        text = fmt_sample(metric, mantissa * 10.0**exponent)
        assert "e+" not in text and "e-" not in text and "E" not in text, text


@pytest.mark.parametrize(("cost", "known", "shown"), [
    (0.0, True, "$0"),  # a replay: really free
    (0.01234, True, "$0.0123"),
    (0.0, False, "unpriced"),  # a model without a price: the cost is unknown, not zero
    (0.01234, False, "$0.0123 (some unpriced)"),
])
def test_cost(cost: float, known: bool, shown: str) -> None:
    assert fmt_cost(cost, known) == shown
