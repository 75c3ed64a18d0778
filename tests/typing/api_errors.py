"""Mistakes `mypy --strict` must catch in user code: each marked line is an error.

A line ending in `# E: <code>` must get exactly that error code (several codes are
separated by commas) and every other line none; `tests/test_typing.py` compares mypy's
output with these markers, so a mistake that stops being caught fails the suite.
Never imported or executed.
"""

from __future__ import annotations

from pydantic import BaseModel

from extractor import Client, Extractable, Options, aextract, extract, extract_stream, extractable

TEXT = "Invoice 7 from ACME, 12.50 EUR"


class Line(BaseModel):
    number: str


@extractable(model="openai/gpt-4o-mini", temperature=0)
class Invoice(Extractable, BaseModel):
    number: str


client = Client(model="openai/gpt-4o-mini")

# --- a misspelled option ---------------------------------------------------------------------

Invoice.extract(TEXT, temprature=0)  # E: call-arg
client.extract(Line, TEXT, temprature=0)  # E: call-overload
extract(Line, TEXT, max_retry=2)  # E: call-overload
Invoice.extract_many([TEXT], concurency=4)  # E: call-arg
Client(model="openai/gpt-4o-mini", temprature=0)  # E: call-arg
settings: Options = {"model": "openai/gpt-4o-mini", "temprature": 0}  # E: typeddict-unknown-key


@extractable(temprature=0)  # E: call-overload
class Misspelt(BaseModel):
    name: str


# --- a wrong type ----------------------------------------------------------------------------

Invoice.extract(TEXT, max_retries="2")  # E: arg-type
Invoice.extract(TEXT, mode="jsn")  # E: arg-type
Invoice.extract(TEXT, deadline="soon")  # E: arg-type
Invoice.stream(TEXT, stop=3)  # E: arg-type
client.extract(Line, TEXT, max_retries="2")  # E: call-overload
client.extract(Line, TEXT, mode="jsn")  # E: call-overload
client.stream(Line, TEXT, seed="7")  # E: call-overload
extract_stream(Line, TEXT, temperature="hot")  # E: call-overload
Invoice.extract_many([TEXT], concurrency="8")  # E: arg-type
client.extract_many(Line, [TEXT], rpm="600")  # E: call-overload
Client(model="openai/gpt-4o-mini", seed="7")  # E: arg-type
mode: str = "tools"
Invoice.extract(TEXT, mode=mode)  # E: arg-type (a plain str is not one of the modes)


@extractable(mode="jsn")  # E: call-overload
class WrongMode(BaseModel):
    name: str


@extractable(max_retries="2")  # E: call-overload
class WrongRetries(BaseModel):
    name: str


# --- what comes back -------------------------------------------------------------------------

wrong_record: Line = Invoice.extract(TEXT)  # E: assignment
wrong_line: Invoice = client.extract(Line, TEXT)  # E: assignment
wrong_dict: Line = client.extract({"type": "object"}, TEXT)  # E: assignment
wrong_function: Invoice = extract(Line, TEXT)  # E: assignment
print(Invoice.extract(TEXT).total)  # E: attr-defined
print(Invoice.extract_result(TEXT).value.total)  # E: attr-defined
for result in Invoice.extract_many([TEXT]):
    print(result.value.total)  # E: attr-defined
    wrong_item: Line = result.value  # E: assignment
for partial in Invoice.stream(TEXT):
    print(partial.total)  # E: attr-defined


async def asynchronous() -> None:
    await Invoice.aextract(TEXT, temprature=0)  # E: call-arg
    await aextract(Line, TEXT, mode="jsn")  # E: call-overload
    await client.aextract(Line, TEXT, max_retries="2")  # E: call-overload
    not_awaited: Invoice = Invoice.aextract(TEXT)  # E: assignment
    wrong_async: Line = await Invoice.aextract(TEXT)  # E: assignment
    print(not_awaited, wrong_async)
    async for item in Invoice.astream_items(TEXT):
        print(item.total)  # E: attr-defined
    async for result in Invoice.aextract_many([TEXT], rpm="60"):  # E: arg-type
        print(result.value.total)  # E: attr-defined
    for result in Invoice.aextract_many([TEXT]):  # E: attr-defined
        print(result)


# --- what a type checker cannot see: a decorated class that does not inherit Extractable -------


@extractable
class Plain(BaseModel):
    name: str


Plain.extract(TEXT)  # E: attr-defined
