"""`Receipt`: the four key fields of a shop receipt, copied exactly as printed."""

from __future__ import annotations

from pydantic import BaseModel, Field

__all__ = ["Receipt"]

#: Dates as receipts print them: 25/12/2018, 30-12-17, 2018-01-15, 10 MAR 2018, 14/MAY/2017.
DATE_PATTERN = (
    r"^(?:\d{1,2}[/.-]\d{1,2}[/.-]\d{2,4}|\d{4}[/.-]\d{1,2}[/.-]\d{1,2}"
    r"|\d{1,2}[ /.-]?[A-Za-z]{3,9}[ /.,-]{0,2}\d{2,4})$"
)
#: An amount with two decimals, thousands optionally grouped: 9.00, 1,234.50, and -1.73
#: (a credit note's total is negative).
AMOUNT_PATTERN = r"^-?\d{1,3}(?:,?\d{3})*\.\d{2}$"


# The examples below are made up. A local model sees them as a record from another
# document, which shows it how far a company name or an address runs.


class Receipt(BaseModel):
    """The key information of a receipt. Every field is text copied as printed.

    Do not reformat, translate or correct anything: keep the receipt's spelling,
    capitalization and punctuation.
    """

    company: str = Field(
        description="Name of the shop or company that issued the receipt, as printed.",
        examples=["KEDAI RUNCIT MAJU JAYA SDN BHD"],
    )
    date: str = Field(
        pattern=DATE_PATTERN,
        description="Date of the purchase as printed, without the time.",
    )
    address: str = Field(
        description="Address of the company, as printed.",
        examples=["NO. 12, JALAN BESAR 3, TAMAN MAJU, 43000 KAJANG, SELANGOR DARUL EHSAN"],
    )
    total: str = Field(
        pattern=AMOUNT_PATTERN,
        description="Total amount paid, as printed, without the currency.",
    )
