"""`Receipt`: the four key fields of a shop receipt, copied exactly as printed."""

from __future__ import annotations

from pydantic import BaseModel, Field

from extractor import WorkedExample, worked_examples

__all__ = ["Receipt"]

#: Dates as receipts print them: 25/12/2018, 30-12-17, 2018-01-15, 10 MAR 2018, 14/MAY/2017,
#: and with no separators, the year first or last: 20180428, 25032018.
DATE_PATTERN = (
    r"^(?:\d{1,2}[/.-]\d{1,2}[/.-]\d{2,4}|\d{4}[/.-]\d{1,2}[/.-]\d{1,2}"
    r"|\d{1,2}[ /.-]?[A-Za-z]{3,9}[ /.,-]{0,2}\d{2,4}"
    r"|(?:19|20)\d{2}[01]\d[0-3]\d|[0-3]\d[01]\d(?:19|20)\d{2})$"
)
#: An amount with two decimals, thousands optionally grouped: 9.00, 1,234.50, and -1.73
#: (a credit note's total is negative).
AMOUNT_PATTERN = r"^-?\d{1,3}(?:,?\d{3})*\.\d{2}$"


# Everything below is made up: the shops, the receipts, the field examples. A worked
# example shows a model where each value is found on a receipt and how far it runs; the
# field examples show a model that sees no worked example (a schema copied without them).

_RESTAURANT = """\
RESTORAN SELERA KAMPUNG
(JM0712345-T)
LOT 7, JALAN PASAR,
TAMAN SRI INDAH,
81200 JOHOR BAHRU, JOHOR.
TEL: 07-334 5566
INVOICE NO: 10023
DATE: 12-07-2018 TIME: 13:05
NASI LEMAK 2 5.50 11.00
TEH TARIK 2 2.20 4.40
TOTAL (EXCLUDING GST): 15.40
GST @6%: 0.92
TOTAL (INCLUSIVE OF GST): 16.32
ROUNDING: -0.02
TOTAL: 16.30
CASH: 20.00
CHANGE: 3.70
"""

_GROCER = """\
KEDAI RUNCIT MAJU JAYA SDN BHD
(123456-K)
NO. 12, JALAN BESAR 3, TAMAN MAJU,
43000 KAJANG, SELANGOR DARUL EHSAN
TEL: 03-8736 1122
GST NO: 001234567890
TAX INVOICE
INV NO: CS00012345 DATE: 05/03/2018 14:22
ITEM QTY PRICE AMOUNT
MILO 1KG 1 18.90 18.90
ROTI BUN 2 2.80 5.60
SUB TOTAL: 24.50
GST 6%: 1.47
ROUNDING: 0.03
TOTAL: 26.00
CASH: 50.00
CHANGE: 24.00
THANK YOU
"""

_HARDWARE = """\
LIM AH KOW
SYARIKAT PERNIAGAAN ANEKA (M) SDN BHD (654321-T)
NO. 8, JALAN INDUSTRI 2/5,
TAMAN PERINDUSTRIAN SEJATI,
81400 SENAI, JOHOR.
TEL: 07-599 1234 FAX: 07-599 1235
GST REG NO: 000987654321
CASH BILL
DOC NO: CB18/00421
DATE : 14/06/2018 10:42:17 AM
CASHIER: SITI
DESCRIPTION QTY U.PRICE AMOUNT
PVC PIPE 1/2" 3 4.50 13.50
GI WIRE 1KG 1 12.90 12.90
TOTAL QTY: 4
TOTAL SALES (INCL GST): 26.40
DISCOUNT: 0.00
ROUNDING ADJ: 0.00
TOTAL AMOUNT: 26.40
CASH TENDERED: 30.00
CHANGE: 3.60
GOODS SOLD ARE NOT RETURNABLE
"""


@worked_examples(
    WorkedExample(
        _RESTAURANT,
        {
            "company": "RESTORAN SELERA KAMPUNG",
            "date": "12-07-2018",
            "address": "LOT 7, JALAN PASAR, TAMAN SRI INDAH, 81200 JOHOR BAHRU, JOHOR.",
            "total": "16.30",
        },
    ),
    WorkedExample(
        _GROCER,
        {
            "company": "KEDAI RUNCIT MAJU JAYA SDN BHD",
            "date": "05/03/2018",
            "address": "NO. 12, JALAN BESAR 3, TAMAN MAJU, 43000 KAJANG, SELANGOR DARUL EHSAN",
            "total": "26.00",
        },
    ),
    WorkedExample(
        _HARDWARE,
        {
            "company": "SYARIKAT PERNIAGAAN ANEKA (M) SDN BHD",
            "date": "14/06/2018",
            "address": "NO. 8, JALAN INDUSTRI 2/5, TAMAN PERINDUSTRIAN SEJATI, 81400 SENAI, JOHOR.",
            "total": "26.40",
        },
    ),
)
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
        # a street address carries a number: a house, lot, floor or postcode
        pattern=r"\d",
        description="Address of the company, as printed.",
        examples=["NO. 12, JALAN BESAR 3, TAMAN MAJU, 43000 KAJANG, SELANGOR DARUL EHSAN"],
    )
    total: str = Field(
        pattern=AMOUNT_PATTERN,
        description="Total amount paid, as printed, without the currency.",
    )
