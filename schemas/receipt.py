"""`Receipt`: the four key fields of a shop receipt, copied exactly as printed."""

from __future__ import annotations

from pydantic import BaseModel, Field

__all__ = ["Receipt"]


class Receipt(BaseModel):
    """The key information of a receipt. Every field is text copied as printed.

    Do not reformat, translate or correct anything: keep the receipt's spelling,
    capitalization and punctuation.
    """

    company: str = Field(
        description="Name of the shop or company that issued the receipt, as printed "
        "(usually the first line), e.g. 'KEDAI RUNCIT MAJU SDN BHD'."
    )
    date: str = Field(
        description="Date of the purchase as printed, without the time, "
        "e.g. '14/03/2019' or '2019-03-14'."
    )
    address: str = Field(
        description="The company's address as printed, its lines joined with a single "
        "space, without phone or tax numbers."
    )
    total: str = Field(
        description="Total amount paid, as printed: digits with two decimals like '9.00', "
        "without currency symbol or thousands separator."
    )
