"""Ready-made targets for common documents, usable from Python or the command line.

- `contact.Contact` (and `contact.Contacts`, a list of them): a person's name, email,
  phone, organization and role, as found in a signature, a letter or a web page.
- `invoice.Invoice` with `invoice.LineItem`: number, dates, parties, currency, line items
  and total, with dates and amounts parsed into `date` and `float`.
- `receipt.Receipt`: company, date, address and total of a shop receipt, each copied as
  printed (strings), the usual key-information task for scanned receipts.

From the shell::

    extractor extract schemas/receipt.py:Receipt samples/receipts/*.txt
    extractor schema schemas.invoice:Invoice --dialect openai-strict

From Python::

    from extractor import extract
    from schemas.contact import Contact

    contact = extract(Contact, text, model="openai/gpt-4o-mini")
"""

from __future__ import annotations

from schemas.contact import Contact, Contacts
from schemas.invoice import Invoice, LineItem
from schemas.receipt import Receipt

__all__ = ["Contact", "Contacts", "Invoice", "LineItem", "Receipt"]
