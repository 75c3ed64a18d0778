"""`Contact`: how to reach one person, as a document gives it."""

from __future__ import annotations

from pydantic import BaseModel, Field

__all__ = ["Contact", "Contacts"]


class Contact(BaseModel):
    """One person and how to reach them, taken from a signature, letter or web page.

    Only the name is required; leave out whatever the document does not say rather than
    guessing it.
    """

    name: str = Field(description="The person's full name as written, e.g. 'Ann Lee'.")
    email: str | None = Field(
        default=None, description="Email address exactly as written, e.g. 'ann@example.com'."
    )
    phone: str | None = Field(
        default=None,
        description="Phone number as written, keeping the country code and spacing.",
    )
    organization: str | None = Field(
        default=None, description="Company, institution or team the person belongs to."
    )
    role: str | None = Field(
        default=None, description="Job title or role, e.g. 'Head of Procurement'."
    )


#: Every person in a document, in the order they appear (a list target).
Contacts = list[Contact]
