"""`Invoice` and its `LineItem`s, with dates and amounts parsed."""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, Field

__all__ = ["Invoice", "LineItem"]


class LineItem(BaseModel):
    """One billed line of an invoice."""

    description: str = Field(description="What was billed, as the line describes it.")
    quantity: float | None = Field(
        default=None,
        description="How many units (hours, pieces, ...); leave out when the line has none.",
    )
    unit_price: float | None = Field(
        default=None,
        description="Price of one unit, without currency symbol; leave out when not printed.",
    )
    amount: float = Field(
        description="The line's total as a plain number, e.g. 1250.0 for '1,250.00 EUR'."
    )


class Invoice(BaseModel):
    """An invoice: who bills whom, when, for what and how much.

    Dates are calendar dates (YYYY-MM-DD) and amounts plain numbers in the invoice's
    currency, without symbols or thousands separators.
    """

    number: str = Field(description="The invoice number exactly as printed, e.g. 'INV-2024-0117'.")
    issue_date: dt.date = Field(description="Date the invoice was issued (YYYY-MM-DD).")
    due_date: dt.date | None = Field(
        default=None,
        description="Date payment is due (YYYY-MM-DD); leave out when the invoice gives none.",
    )
    seller: str = Field(description="Name of the company or person issuing the invoice.")
    buyer: str = Field(description="Name of the company or person being billed.")
    currency: str = Field(
        pattern=r"^[A-Z]{3}$",
        description="ISO 4217 currency code in capitals, e.g. 'EUR' for €, 'USD' for $.",
    )
    line_items: list[LineItem] = Field(
        description="Every billed line, in the order printed (not tax or total lines)."
    )
    total: float = Field(
        ge=0, description="The amount due including tax, as a plain number, e.g. 1512.5."
    )
