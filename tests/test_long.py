"""Long documents: the merge rules, the chunk target, and extraction over HTTP.

The merge rules are checked on records given by hand; a property checks that splitting a
document of records and merging what each chunk holds gives back every record once, in
order; and the whole path runs against the loopback `ChatServer`, which answers each
request from the chunk text it carries.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from typing import Annotated, Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, Field

from extractor import (
    ChunkError,
    Client,
    ConfigurationError,
    RetryPolicy,
    WorkedExample,
    aextract_long,
    compile_schema,
    extract_long,
    worked_examples,
)
from extractor._chunks import Chunk, split
from extractor._merge import Merge, MergeError, Source, check, merge
from extractor._parts import chunk_target
from extractor.testing import Answer, ChatServer, Item, RecordedRequest

# --- records to merge -------------------------------------------------------------------------


class Vendor(BaseModel):
    name: str | None = None
    city: str | None = None


@Merge.key("number")
class Line(BaseModel):
    number: int
    text: str
    amount: float | None = None


class Entry(BaseModel):
    code: str
    note: str | None = None


class Invoice(BaseModel):
    number: str | None = None
    holder: Annotated[str | None, Merge.last] = None
    status: Annotated[str | None, Merge.most_frequent] = None
    currency: Annotated[str | None, Merge.error_on_conflict] = None
    vendor: Vendor | None = None
    lines: list[Line] = []
    entries: list[Entry] = []  # no key: duplicates go by equality
    keyed: Annotated[list[Entry], Merge.key("code")] = []


def chunk(index: int, start: int, end: int, page: int) -> Chunk:
    """A chunk made by hand, on one page, of text no value is found in."""
    return Chunk(index, "x" * (end - start), start, end, (page,), (start,))


# Four chunks, one a page, each sharing a little text with the next.
C = [chunk(i, i * 100 - (10 if i else 0), (i + 1) * 100, i + 1) for i in range(4)]


def test_a_scalar_takes_the_first_value_and_the_disagreement_is_reported() -> None:
    merged = merge(
        Invoice, [(C[0], Invoice(number="A-1")), (C[2], Invoice(number="A-7")), (C[1], Invoice())]
    )
    assert merged.value.number == "A-1"
    conflict = merged.conflicts["number"]
    assert conflict.chosen == "A-1"
    assert [(f.value, [s.pages for s in f.sources]) for f in conflict.values] == [
        ("A-1", [(1,)]),
        ("A-7", [(3,)]),
    ]
    assert "A-7" in str(conflict) and "page 3" in str(conflict)
    assert merged.provenance["number"] == Source(0, (1,))


def test_none_and_missing_never_count_as_values() -> None:
    merged = merge(Invoice, [(C[0], Invoice()), (C[1], Invoice(number="B-2")), (C[2], Invoice())])
    assert merged.value.number == "B-2"
    assert merged.conflicts == {}
    assert merged.provenance["number"] == Source(1, (2,))


def test_the_declared_policies_last_and_most_frequent() -> None:
    merged = merge(
        Invoice,
        [
            (C[0], Invoice(holder="Ann", status="open")),
            (C[1], Invoice(holder="Bea", status="paid")),
            (C[2], Invoice(holder="Cy", status="paid")),
            (C[3], Invoice(status="open")),
        ],
    )
    assert merged.value.holder == "Cy"  # last found; chunk 4 found none
    assert merged.provenance["holder"] == Source(2, (3,))
    assert merged.conflicts["holder"].policy == "last"
    # a tie (2 open, 2 paid) goes to the first found
    assert merged.value.status == "open"
    merged = merge(
        Invoice, [(C[0], Invoice(status="open"))] + [(c, Invoice(status="paid")) for c in C[1:]]
    )
    assert merged.value.status == "paid"
    assert merged.provenance["status"] == Source(1, (2,))
    assert len(merged.conflicts["status"].values) == 2


def test_error_on_conflict_refuses_to_choose() -> None:
    assert merge(Invoice, [(c, Invoice(currency="EUR")) for c in C]).value.currency == "EUR"
    with pytest.raises(
        MergeError, match=r"currency: \"EUR\" \(chunk 1, page 1\); \"USD\""
    ) as caught:
        merge(Invoice, [(C[0], Invoice(currency="EUR")), (C[3], Invoice(currency="USD"))])
    (conflict,) = caught.value.conflicts
    assert conflict.path == "currency"
    assert [f.value for f in conflict.values] == ["EUR", "USD"]


def test_a_nested_model_merges_field_by_field() -> None:
    merged = merge(
        Invoice,
        [
            (C[0], Invoice(vendor=Vendor(name="Corner Cafe"))),
            (C[1], Invoice(vendor=Vendor(city="Leeds"))),
            (C[2], Invoice(vendor=Vendor(name="Corner Café", city="Leeds"))),
        ],
    )
    assert merged.value.vendor == Vendor(name="Corner Cafe", city="Leeds")
    assert merged.provenance["vendor.city"] == Source(1, (2,))
    assert list(merged.conflicts) == ["vendor.name"]


def test_keyed_items_from_the_overlap_are_one_item_merged_field_by_field() -> None:
    merged = merge(
        Invoice,
        [
            (C[0], Invoice(lines=[Line(number=1, text="tea"), Line(number=2, text="cake")])),
            (
                C[1],
                Invoice(
                    lines=[Line(number=2, text="cake", amount=3.5), Line(number=3, text="jam")]
                ),
            ),
            (C[3], Invoice(lines=[Line(number=2, text="CAKE")])),  # far away: still item 2
        ],
    )
    assert merged.value.lines == [
        Line(number=1, text="tea"),
        Line(number=2, text="cake", amount=3.5),  # the amount only the second chunk saw
        Line(number=3, text="jam"),
    ]
    assert merged.provenance["lines[1]"] == Source(0, (1,))
    assert merged.provenance["lines[1].amount"] == Source(1, (2,))
    assert merged.provenance["lines[2]"] == Source(1, (2,))
    assert list(merged.conflicts) == ["lines[1].text"]


def test_unkeyed_items_drop_the_copies_of_the_chunk_before_only() -> None:
    a, b, c = Entry(code="a"), Entry(code="b"), Entry(code="c")
    merged = merge(
        Invoice,
        [
            (C[0], Invoice(entries=[a, b, b])),  # the same item twice in one chunk: both kept
            (C[1], Invoice(entries=[b, c])),  # b from the overlap: one copy goes
            (C[3], Invoice(entries=[a])),  # no overlap with chunk 2 (chunk 3 is missing)
        ],
    )
    assert merged.value.entries == [a, b, b, c, a]


def test_a_key_on_the_list_field_and_on_the_item_type() -> None:
    first = [Entry(code="a"), Entry(code="b", note="half")]
    second = [Entry(code="b", note="half"), Entry(code="c")]
    merged = merge(Invoice, [(C[0], Invoice(keyed=first)), (C[1], Invoice(keyed=second))])
    assert [e.code for e in merged.value.keyed] == ["a", "b", "c"]
    target = list[Annotated[Entry, Merge.key("code")]]
    parts = [(C[0], first), (C[2], [Entry(code="b", note="whole"), Entry(code="c")])]
    merged_list = merge(target, parts)
    assert [(e.code, e.note) for e in merged_list.value] == [
        ("a", None),
        ("b", "half"),
        ("c", None),
    ]
    assert list(merged_list.conflicts) == ["[1].note"]


def test_a_list_target_keeps_document_order_whatever_order_the_chunks_finish_in() -> None:
    parts = [(C[2], [Line(number=5, text="e")]), (C[0], [Line(number=1, text="a")]),
             (C[1], [Line(number=1, text="a"), Line(number=3, text="c")])]  # fmt: skip
    merged = merge(list[Line], parts)
    assert [line.number for line in merged.value] == [1, 3, 5]
    assert merged.provenance["[2]"] == Source(2, (3,))
    assert merged.provenance["[0].text"] == Source(0, (1,))


def test_scalar_lists_concatenate_and_a_policy_takes_a_list_whole() -> None:
    class Tagged(BaseModel):
        tags: list[str] = []
        first_tags: Annotated[list[str], Merge.first] = []

    merged = merge(
        Tagged,
        [
            (C[0], Tagged(tags=["x", "y"], first_tags=[])),
            (C[1], Tagged(tags=["y", "z"], first_tags=["p"])),
            (C[2], Tagged(first_tags=["q"])),
        ],
    )
    assert merged.value.tags == ["x", "y", "z"]
    assert merged.value.first_tags == ["p"]  # an empty list is not a value
    assert merged.conflicts["first_tags"].chosen == ["p"]


def test_provenance_narrows_to_the_page_where_the_value_is_written() -> None:
    text = "Invoice A-1 from Corner Cafe\fpage two: Leeds"
    (whole,) = split(text, budget_chars=100, overlap_chars=0)
    merged = merge(Invoice, [(whole, Invoice(number="A-1", vendor=Vendor(city="Leeds")))])
    assert whole.pages == (1, 2)
    assert merged.provenance["number"] == Source(0, (1,))
    assert merged.provenance["vendor.city"] == Source(0, (2,))


def test_a_json_schema_target_merges_by_the_data_shape() -> None:
    schema = {
        "type": "object",
        "properties": {
            "title": {"type": "string"},
            "items": {"type": "array", "items": {"type": "object"}},
            "meta": {"type": "object"},
        },
    }
    merged = merge(
        schema,
        [
            (C[0], {"title": "Q1", "items": [{"n": 1}], "meta": {"a": 1}}),
            (C[1], {"title": "Q2", "items": [{"n": 1}, {"n": 2}], "meta": {"b": 2}}),
        ],
    )
    assert merged.value == {"title": "Q1", "items": [{"n": 1}, {"n": 2}], "meta": {"a": 1, "b": 2}}
    assert list(merged.conflicts) == ["title"]


def test_a_merged_record_that_breaks_the_target_is_a_merge_error() -> None:
    class Strict(BaseModel):
        number: str
        total: float = Field(gt=0)

    relaxed = chunk_target(Strict)
    with pytest.raises(MergeError, match="number") as caught:
        merge(Strict, [(C[0], relaxed(total=3)), (C[1], relaxed())])
    assert caught.value.errors[0].path == "number"
    with pytest.raises(MergeError):
        merge(Strict, [])


@pytest.mark.parametrize(
    ("annotation", "message"),
    [
        (Annotated[str, Merge.key("code")], "Merge.key goes on a list of models"),
        (Annotated[list[str], Merge.key("code")], "not of str"),
        (Annotated[list[Entry], Merge.key("cod")], "Entry has no field 'cod'"),
        (Annotated[list[Entry], Merge.key("code"), Merge.first], "Merge.key or a policy"),
    ],
)
def test_markers_that_cannot_apply_are_refused_before_anything_is_sent(
    annotation: Any, message: str
) -> None:
    class Bad(BaseModel):
        field: annotation = None

    with pytest.raises(ConfigurationError, match=message):
        check(Bad)


def test_the_marker_helpers_check_what_they_are_given() -> None:
    with pytest.raises(ConfigurationError, match="one or more field names"):
        Merge.key()
    with pytest.raises(ConfigurationError, match="has no field 'nope'"):
        Merge.key("nope")(Entry)


# --- what each chunk is asked for -------------------------------------------------------------


class Receipt(BaseModel):
    """A till receipt."""

    store: str = Field(description="the shop's name", max_length=40)
    total: float = Field(alias="Total", gt=0)
    currency: str = "EUR"
    lines: list[Line]


def test_the_chunk_target_has_every_field_optional_and_keeps_the_rest() -> None:
    relaxed = chunk_target(Receipt)
    assert relaxed is chunk_target(Receipt)  # made once
    assert relaxed.__name__ == "Receipt" and relaxed.__doc__ == Receipt.__doc__
    empty = relaxed()
    assert (empty.store, empty.total, empty.currency, empty.lines) == (None, None, None, None)
    schema = compile_schema(relaxed).schema
    assert schema["properties"]["store"]["description"] == "the shop's name"
    assert "Total" in schema["properties"]
    assert relaxed.model_validate({"Total": 2}).total == 2
    with pytest.raises(ValueError, match="greater than 0"):
        relaxed.model_validate({"Total": -1})
    with pytest.raises(ValueError, match="at most 40"):
        relaxed(store="x" * 41)
    assert chunk_target(list[Receipt]) == list[Receipt]
    assert chunk_target({"type": "object"}) == {"type": "object"}


def test_the_chunk_target_shows_the_targets_worked_examples() -> None:
    @worked_examples(WorkedExample("Total due: 4.50", {"holder": "Ann"}))
    class Shown(BaseModel):
        holder: str

    assert compile_schema(chunk_target(Shown)).examples == compile_schema(Shown).examples

    @worked_examples(WorkedExample("Total: 4", {"Total": 4}))
    class Aliased(BaseModel):
        total: float = Field(alias="Total")

    # records are keyed by alias, as the schema names the fields: they read back the same
    assert compile_schema(chunk_target(Aliased)).examples == (("Total: 4", {"Total": 4.0}),)


# --- the round trip: split, extract what each chunk holds, merge -----------------------------

RECORD = re.compile(r"(?m)(?:^|\f)rec (\d+) ([a-z]+#\d+;)\n")


def records_in(text: str) -> list[dict[str, Any]]:
    """What a perfect model would read in a chunk: the records whose whole line it holds."""
    return [{"number": int(n), "text": t} for n, t in RECORD.findall(text)]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.text("abcdefghij", min_size=1, max_size=8), min_size=1, max_size=40),
    st.integers(min_value=80, max_value=200),
    st.booleans(),
    st.lists(st.sampled_from(["\n", "\f", "\n\n", "TOTALS\n\n"]), max_size=40),
)
def test_splitting_and_merging_gives_every_record_once_in_order(
    names: list[str], budget: int, keyed: bool, separators: list[str]
) -> None:
    # "#n;" makes each record's text occur once, so its page can be found: at most 19 chars
    lines = [f"rec {n} {name}#{n};\n" for n, name in enumerate(names)]
    text = "".join(
        line + (separators[i] if i < len(separators) else "") for i, line in enumerate(lines)
    )
    chunks = split(text, budget_chars=budget, overlap_chars=budget // 4)

    class Plain(BaseModel):
        number: int
        text: str

    target: Any = list[Line] if keyed else list[Plain]  # Line has a key, Plain does not
    merged = merge(target, [(c, records_in(c.text)) for c in chunks])
    assert [(r.number, r.text) for r in merged.value] == [
        (n, f"{name}#{n};") for n, name in enumerate(names)
    ]
    for index in range(len(names)):
        page = text[: text.index(lines[index])].count("\f") + 1
        assert merged.provenance[f"[{index}]"].pages == (page,)


# --- over HTTP --------------------------------------------------------------------------------


class Statement(BaseModel):
    holder: str
    lines: list[Line] = []


def statement_pages() -> list[str]:
    """Four pages of four lines; the third page names another holder."""
    pages = []
    for page in range(4):
        holder = "Ann Smith" if page == 2 else "Ann Lee"
        body = "".join(f"line {4 * page + n}: item {4 * page + n}\n" for n in range(1, 5))
        pages.append(f"Holder: {holder}\n\n{body}")
    return pages


def records_of(text: str) -> list[dict[str, Any]]:
    """The lines a chunk holds whole, as a model would read them."""
    return [
        {"number": int(n), "text": f"item {n}", "amount": None}
        for n in re.findall(r"(?m)^line (\d+): item \d+\n", text)
    ]


def read_chunk(request: RecordedRequest) -> Item:
    """The model, played by the server: what the chunk in the request says, as JSON."""
    text = request.messages[-1]["content"]
    holder = re.search(r"Holder: (.+)\n", text)
    record = {"holder": holder.group(1) if holder else None, "lines": records_of(text)}
    return Answer(content=json.dumps(record))


@pytest.fixture
def client(server: ChatServer) -> Iterator[Client]:
    made = Client(
        model="openai/test-model",
        api_key="sk-x",
        base_url=server.base_url,
        mode="json_schema",
        retry=RetryPolicy(sleep=lambda s: None),
    )
    yield made
    made.close()


def test_a_list_target_over_four_chunks_drops_the_overlap_copies_by_key(
    server: ChatServer, client: Client
) -> None:
    pages = statement_pages()
    document = "\f".join(pages)
    server.handler = lambda request: Answer(
        content=json.dumps({"items": records_of(request.messages[-1]["content"])})
    )
    result = extract_long(client, list[Line], document, context_chars=120, overlap_chars=40)

    # each chunk is a page and the last two lines of the page before
    assert [c.pages for c in result.chunks] == [(1,), (1, 2), (2, 3), (3, 4)]
    assert len(server.requests) == 4
    sent = [r.messages[-1]["content"] for r in server.requests]
    assert sorted(sent) == sorted(c.text for c in result.chunks)
    copies = sum(len(records_of(c.text)) for c in result.chunks)
    assert copies > 16  # the overlap repeats lines...
    assert [line.number for line in result.value] == list(range(1, 17))  # ...merged away
    for index, line in enumerate(result.value):
        assert result.provenance[f"[{index}]"].pages == ((line.number - 1) // 4 + 1,)
    assert result.usage.total_tokens == 4 * 15
    assert result.complete and result.missing_pages == ()
    assert result.model == "openai/test-model"


def test_a_scalar_the_chunks_disagree_on_keeps_the_first_and_reports_both_pages(
    server: ChatServer, client: Client
) -> None:
    document = "\f".join(statement_pages())
    server.handler = read_chunk
    result = asyncio.run(
        aextract_long(
            client, Statement, document, context_chars=120, overlap_chars=40, concurrency=2
        )
    )
    assert result.value.holder == "Ann Lee"
    assert [line.number for line in result.value.lines] == list(range(1, 17))
    conflict = result.conflicts["holder"]
    found = {f.value: sorted({p for s in f.sources for p in s.pages}) for f in conflict.values}
    assert found == {"Ann Lee": [1, 2, 4], "Ann Smith": [3]}
    assert result.provenance["holder"] == Source(0, (1,))
    # each chunk was asked for the statement with every field optional, in strict json_schema
    body = server.requests[0].body or {}
    schema = body["response_format"]["json_schema"]["schema"]
    assert body["response_format"]["json_schema"]["name"] == "Statement"
    assert {"type": "null"} in schema["properties"]["holder"]["anyOf"]


def test_a_chunk_that_fails_every_attempt_fails_the_document_naming_its_pages(
    server: ChatServer, client: Client
) -> None:
    document = "\f".join(statement_pages())

    def handle(request: RecordedRequest) -> Item:
        if "Ann Smith" in request.messages[-1]["content"]:
            return Answer(content="I cannot read this page.")
        return read_chunk(request)

    server.handler = handle
    with pytest.raises(
        ChunkError, match=r"chunk 3 of 4 \(pages 2-3\) failed: no valid record"
    ) as caught:
        extract_long(
            client, Statement, document, context_chars=120, overlap_chars=40, max_retries=0
        )
    assert caught.value.chunk.pages == (2, 3)
    assert caught.value.usage.total_tokens >= 15

    result = extract_long(
        client,
        Statement,
        document,
        context_chars=120,
        overlap_chars=40,
        max_retries=0,
        allow_partial=True,
    )
    assert not result.complete
    assert result.missing_pages == (3,)  # page 2 is in the chunks either side, page 3 is not whole
    assert [p.ok for p in result.parts] == [True, True, False, True]
    assert result.value.holder == "Ann Lee"
    numbers = [line.number for line in result.value.lines]
    assert 9 not in numbers and 16 in numbers
    assert result.usage.total_tokens == 4 * 15


def test_a_document_that_fits_is_one_request_for_the_target_itself(
    server: ChatServer, client: Client
) -> None:
    server.handler = read_chunk
    page = statement_pages()[0]
    result = extract_long(client, Statement, page)
    assert len(server.requests) == 1 and server.requests[0].messages[-1]["content"] == page
    schema = server.requests[0].body["response_format"]["json_schema"]["schema"]  # type: ignore[index]
    assert schema["properties"]["holder"] == {"type": "string"}  # required, as declared
    assert result.value.holder == "Ann Lee" and result.conflicts == {}


def test_blank_chunks_are_not_sent(server: ChatServer, client: Client) -> None:
    server.handler = read_chunk
    document = "Holder: Ann Lee\n" + "\n" * 150 + "line 1: item 1\n"
    result = extract_long(client, Statement, document, context_chars=60, overlap_chars=10)
    assert len(result.parts) == 4 and len(server.requests) == 2
    blank = result.parts[1]
    assert blank.ok and blank.extraction is None and not blank.chunk.text.strip()
    assert result.value == Statement(holder="Ann Lee", lines=[Line(number=1, text="item 1")])
    assert result.complete


def test_set_up_mistakes_are_raised_before_anything_is_sent(
    server: ChatServer, client: Client
) -> None:
    with pytest.raises(ConfigurationError, match="context_chars"):
        extract_long(client, Statement, "text", context_chars=0)
    with pytest.raises(ConfigurationError, match="overlap_chars"):
        extract_long(client, Statement, "text", context_chars=10, overlap_chars=10)

    class Bad(BaseModel):
        name: Annotated[str, Merge.key("x")]

    with pytest.raises(ConfigurationError, match=r"Merge\.key"):
        extract_long(client, Bad, "text")
    with pytest.raises(ConfigurationError, match="unknown mode"):
        extract_long(client, Statement, "text " * 100, context_chars=50, mode="nope")  # type: ignore[call-overload]
    assert server.requests == []

    async def inside_a_loop() -> None:
        extract_long(client, Statement, "text")

    with pytest.raises(ConfigurationError, match="running event loop"):
        asyncio.run(inside_a_loop())
