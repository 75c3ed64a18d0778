"""The public API as user code writes it: `mypy --strict` must pass it without a word.

Run by `tests/test_typing.py`; never imported or executed. `assert_type` fails the
check when an inferred type is not exactly the one written.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

from pydantic import BaseModel
from typing_extensions import Unpack, assert_type

from extractor import (
    AsyncExtractionStream,
    Client,
    Extractable,
    Extraction,
    ExtractionStream,
    Options,
    aextract,
    aextract_stream,
    extract,
    extract_stream,
    extractable,
)
from extractor.batch import BatchResult

TEXT = "Invoice 7 from ACME, 12.50 EUR"
SCHEMA = {"type": "object", "properties": {"number": {"type": "string"}}}


class Line(BaseModel):
    number: str


@extractable(model="openai/gpt-4o-mini", mode="json_schema", max_retries=2, temperature=0)
class Invoice(Extractable, BaseModel):
    number: str
    total: float | None = None


@extractable
class Receipt(BaseModel, Extractable):  # the other order, and the bare decorator
    total: str


class Note(Extractable, BaseModel):  # no decorator: the methods, without defaults
    text: str


# --- an extractable class: its methods, each returning the class ---------------------------

assert_type(Invoice.extract(TEXT), Invoice)
assert_type(Invoice.extract(TEXT, temperature=0.5, seed=7, stop=["\n\n"]), Invoice)
assert_type(Invoice.extract(TEXT, mode="tools", max_retries=0, deadline=None), Invoice)
assert_type(Receipt.extract(TEXT, model="local/gemma-3-270m", mode="grounded"), Receipt)
assert_type(Note.extract(TEXT, model="openai/gpt-4o-mini", examples=[]), Note)
assert_type(Invoice.extract_result(TEXT), Extraction[Invoice])
assert_type(Invoice.extract_result(TEXT).value, Invoice)
assert_type(Invoice.stream(TEXT), ExtractionStream[Invoice])
assert_type(Invoice.stream_items(TEXT), ExtractionStream[Invoice])
assert_type(Invoice.astream(TEXT), AsyncExtractionStream[Invoice])
assert_type(Invoice.astream_items(TEXT), AsyncExtractionStream[Invoice])
for partial in Invoice.stream(TEXT):
    assert_type(partial, Invoice)

many = Invoice.extract_many(["a", "b"], concurrency=4, rpm=600, tpm=None, timeout=30)
assert_type(many, Iterator[BatchResult[Invoice]])
for result in Invoice.extract_many({"a": TEXT}):
    assert_type(result.value, Invoice)
    assert_type(result.extraction, Extraction[Invoice] | None)
    assert_type(result.ok, bool)
assert_type(Invoice.aextract_many([("a", TEXT)]), AsyncIterator[BatchResult[Invoice]])


async def extractable_async() -> None:
    assert_type(await Invoice.aextract(TEXT, temperature=0), Invoice)
    assert_type(await Invoice.aextract_result(TEXT), Extraction[Invoice])
    async for partial in Invoice.astream(TEXT):
        assert_type(partial, Invoice)
    async for item in Invoice.astream_items(TEXT):
        assert_type(item, Invoice)
    async for result in Invoice.aextract_many([TEXT], concurrency=2):
        assert_type(result.value, Invoice)


class Special(Invoice):  # a subclass's methods return the subclass
    pass


assert_type(Special.extract(TEXT), Special)


# --- a client ------------------------------------------------------------------------------

client = Client(model="openai/gpt-4o-mini", temperature=0)
assert_type(client.extract(Line, TEXT), Line)
assert_type(client.extract(Line, TEXT, mode="tools", max_retries=1, seed=3), Line)
assert_type(client.extract(list[Line], TEXT), list[Line])
assert_type(client.extract(SCHEMA, TEXT), dict[str, Any])
assert_type(client.extract_result(Line, TEXT), Extraction[Line])
assert_type(client.stream(Line, TEXT), ExtractionStream[Line])
assert_type(client.check(Line, model="openai/gpt-4o"), str)
for batch_result in client.extract_many(Line, [TEXT], concurrency=8, temperature=0):
    assert_type(batch_result, BatchResult[Line])
    assert_type(batch_result.value, Line)
for schema_result in client.extract_many(SCHEMA, [TEXT]):
    assert_type(schema_result.value, dict[str, Any])
configured = Client(model="openai/gpt-4o-mini", temperature=0.2, seed=7, stop=["\n"], top_p=1)


async def client_async() -> None:
    assert_type(await client.aextract(Line, TEXT, timeout=5.0), Line)
    assert_type(await client.aextract_result(Line, TEXT), Extraction[Line])
    assert_type(client.astream(Line, TEXT), AsyncExtractionStream[Line])
    async for batch_result in client.aextract_many(Line, [TEXT], rpm=60):
        assert_type(batch_result, BatchResult[Line])


# --- the functions ----------------------------------------------------------------------------

assert_type(extract(Line, TEXT, model="openai/gpt-4o-mini", temperature=0), Line)
assert_type(extract(SCHEMA, TEXT), dict[str, Any])
assert_type(extract_stream(Line, TEXT), ExtractionStream[Line])
assert_type(aextract_stream(Line, TEXT, top_p=0.9), AsyncExtractionStream[Line])


async def functions_async() -> None:
    assert_type(await aextract(Line, TEXT, max_completion_tokens=200), Line)
    assert_type(await aextract(SCHEMA, TEXT), dict[str, Any])


# --- options kept in a typed dict and passed on --------------------------------------------

settings: Options = {"model": "openai/gpt-4o-mini", "temperature": 0, "mode": "tools"}
assert_type(extract(Line, TEXT, **settings), Line)
assert_type(Invoice.extract(TEXT, **settings), Invoice)


def extract_line(document: str, **options: Unpack[Options]) -> Line:
    return client.extract(Line, document, **options)
