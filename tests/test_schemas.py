"""The ready-made receipt schema takes what receipts print and refuses what they don't."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from schemas.receipt import Receipt

PLACE = {"company": "KEDAI MAJU", "address": "NO. 1, JALAN BESAR"}


@pytest.mark.parametrize(
    "date",
    [
        "25/12/2018",
        "30-12-17",
        "2018-01-15",
        "10 MAR 2018",
        "14/MAY/2017",
        "24 MAR 18",
        "20180428",
        "25032018",
    ],
)
def test_receipt_dates_as_printed_are_accepted(date: str) -> None:
    assert Receipt(**PLACE, date=date, total="9.00").date == date


@pytest.mark.parametrize(
    "date", ["25/12/2018 10:31", "10:31", "yesterday", "00440010036", "12345678"]
)
def test_receipt_dates_with_a_time_or_no_date_are_refused(date: str) -> None:
    with pytest.raises(ValidationError, match="date"):
        Receipt(**PLACE, date=date, total="9.00")


@pytest.mark.parametrize("total", ["9.00", "1,234.50", "1234.50", "-1.73"])
def test_receipt_totals_as_printed_are_accepted(total: str) -> None:
    # a credit note's total is negative: it must be extractable, not a validation failure
    assert Receipt(**PLACE, date="25/12/2018", total=total).total == total


@pytest.mark.parametrize("total", ["RM 4.00", "4", "4.0", "4.00 RM", "--4.00"])
def test_receipt_totals_with_a_currency_or_without_two_decimals_are_refused(total: str) -> None:
    with pytest.raises(ValidationError, match="total"):
        Receipt(**PLACE, date="25/12/2018", total=total)
