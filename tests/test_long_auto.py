"""A document longer than the model takes, through `extract` and batch jobs: read in chunks.

The model's context is known (given as `context_tokens`), or learned from the provider's
refusal, with or without the window stated in it; every case runs over HTTP against the
loopback `ChatServer`, which refuses what is too long as providers do and otherwise reads
the chunk it was sent.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pydantic import BaseModel

from extractor import Client, DocumentTooLong, Extraction, LongExtraction, RetryPolicy
from extractor._context import forget
from extractor.batch import BatchJob, open_source
from extractor.testing import Answer, ChatServer, Fault, Item, RecordedRequest

ROOT = Path(__file__).resolve().parent.parent


class Line(BaseModel):
    number: int
    text: str


class Statement(BaseModel):
    holder: str
    lines: list[Line] = []


def statement(pages: int) -> str:
    """`pages` pages of six lines each, joined by form feeds; the first page names the
    holder, the last another one."""
    out = []
    for page in range(pages):
        head = {0: "Holder: Ann Lee\n\n", pages - 1: "Holder: Ann Smith\n\n"}.get(page, "")
        body = "".join(f"line {6 * page + n}: item {6 * page + n}\n" for n in range(1, 7))
        out.append(head + body)
    return "\f".join(out)


def document_of(request: RecordedRequest) -> str:
    return next(str(m["content"]) for m in request.messages if m.get("role") == "user")


def read_chunk(request: RecordedRequest) -> Item:
    """The model, played by the server: what the text it was sent says, as JSON."""
    text = document_of(request)
    holder = re.search(r"Holder: (.+)\n", text)
    lines = [
        {"number": int(n), "text": f"item {n}"}
        for n in re.findall(r"(?m)(?:^|\f)line (\d+): item \d+\n", text)
    ]
    return Answer(
        content=json.dumps({"holder": holder.group(1) if holder else None, "lines": lines})
    )


def refusing(limit: int, message: str) -> Callable[[RecordedRequest], Item]:
    """A server that refuses a document longer than `limit` characters, as providers do."""

    def handle(request: RecordedRequest) -> Item:
        if len(document_of(request)) > limit:
            error = {"message": message, "type": "invalid_request_error"}
            return Fault(400, body={"error": {**error, "code": "context_length_exceeded"}})
        return read_chunk(request)

    return handle


@pytest.fixture(autouse=True)
def nothing_learned() -> Iterator[None]:
    forget()
    yield
    forget()


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


def assert_whole(result: Extraction[Statement], pages: int) -> None:
    assert isinstance(result, LongExtraction)
    assert result.value.holder == "Ann Lee"  # the first found, in document order
    assert [line.number for line in result.value.lines] == list(range(1, 6 * pages + 1))
    assert "holder" in result.conflicts  # the last page said otherwise: reported, not hidden
    assert result.usage.total_tokens == 15 * len(result.attempts)


def test_a_known_context_sends_chunks_from_the_first_request(
    server: ChatServer, client: Client
) -> None:
    server.handler = read_chunk
    document = statement(40)
    result = client.extract_result(Statement, document, context_tokens=1500)
    assert_whole(result, 40)
    assert len(server.requests) == len(result.parts) > 2
    assert max(len(document_of(r)) for r in server.requests) < len(document) // 2
    # the chunks' pages, and each line's page, are known
    assert result.provenance["lines[0]"].pages == (1,)
    assert result.provenance[f"lines[{6 * 40 - 1}]"].pages == (40,)
    # extract gives the merged record itself
    assert client.extract(Statement, document, context_tokens=1500) == result.value


def test_a_stated_window_is_learned_from_the_refusal(server: ChatServer, client: Client) -> None:
    server.handler = refusing(
        2000,
        "This model's maximum context length is 1500 tokens. However, your messages "
        "resulted in 2345 tokens. Please reduce the length of the messages.",
    )
    result = client.extract_result(Statement, statement(40))
    assert_whole(result, 40)
    refused = [r for r in server.requests if len(document_of(r)) > 2000]
    assert len(refused) == 1  # the whole document, once; every chunk fitted

    before = len(server.requests)
    again = asyncio.run(client.aextract_result(Statement, statement(30)))
    assert_whole(again, 30)
    assert all(len(document_of(r)) <= 2000 for r in server.requests[before:])


def test_an_unstated_refusal_halves_until_the_chunks_fit(
    server: ChatServer, client: Client
) -> None:
    server.handler = refusing(900, "prompt is too long")
    result = client.extract_result(Statement, statement(40))
    assert_whole(result, 40)
    assert all(len(p.chunk.text) <= 900 for p in result.parts)

    before = len(server.requests)
    client.extract_result(Statement, statement(40))
    assert all(len(document_of(r)) <= 900 for r in server.requests[before:])  # learned


def test_extract_in_a_running_event_loop_still_reads_a_long_document(
    server: ChatServer, client: Client
) -> None:
    server.handler = read_chunk

    async def notebook_cell() -> Statement:
        return client.extract(Statement, statement(20), context_tokens=1500)

    value = asyncio.run(notebook_cell())
    assert [line.number for line in value.lines] == list(range(1, 121))


def test_a_stream_cannot_split_and_says_so(server: ChatServer, client: Client) -> None:
    server.handler = refusing(100, "maximum context length exceeded")
    with pytest.raises(DocumentTooLong, match="in chunks"):
        for _ in client.stream(Statement, statement(3)):
            pass


def test_a_batch_reads_a_long_pdf_in_chunks_with_its_pages(
    server: ChatServer, client: Client, tmp_path: Path
) -> None:
    class Expenses(BaseModel):
        receipts: list[str] = []

    def handle(request: RecordedRequest) -> Item:
        found = re.findall(r"Receipt \d+ of 60", document_of(request))
        return Answer(content=json.dumps({"receipts": found}))

    server.handler = handle
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "statement.pdf").write_bytes((ROOT / "samples/pdfs/statement.pdf").read_bytes())
    (folder / "note.txt").write_text("Receipt 1 of 60, kept apart.")
    out = tmp_path / "out.jsonl"
    job = BatchJob(
        client, Expenses, open_source(str(folder)), out, options={"context_tokens": 2000}
    )
    summary = job.run()
    assert (summary.done, summary.failed) == (2, 0)
    lines = {line["id"]: line for line in map(json.loads, out.read_text().splitlines())}
    pdf = lines["statement.pdf"]
    # 60 receipts, one a page, each once although the chunks overlap
    assert pdf["record"] == {"receipts": [f"Receipt {n} of 60" for n in range(1, 61)]}
    assert pdf["chunks"] > 5
    for index in range(60):  # each traced to its page of the PDF
        assert pdf["pages"][f"receipts[{index}]"] == [index + 1]
    assert "chunks" not in lines["note.txt"]
    assert len(server.requests) == pdf["chunks"] + 1
