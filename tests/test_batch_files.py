"""Batch inputs that name files: JSONL and CSV rows with a `path`, and folders read lazily.

A file is read when its document's turn comes, in a thread: a job resumed over the same
input skips the documents already written without reading their files again.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
from pydantic import BaseModel

from extractor import Client, RetryPolicy
from extractor.batch import BatchJob, SourceError, open_source
from extractor.testing import Answer, ChatServer, Item, RecordedRequest

ROOT = Path(__file__).resolve().parent.parent


class Letter(BaseModel):
    first_line: str


def document_of(request: RecordedRequest) -> str:
    return next(str(m["content"]) for m in request.messages if m.get("role") == "user")


def first_line(request: RecordedRequest) -> Item:
    text = document_of(request).strip()
    return Answer(content=json.dumps({"first_line": text.splitlines()[0]}))


def job(server: ChatServer, source: str, out: Path, **fields: str) -> BatchJob:
    client = Client("openai/test-model", base_url=server.base_url, retry=RetryPolicy(attempts=1))
    return BatchJob(client, Letter, open_source(source, **fields), out, concurrency=4)


def lines(path: Path) -> dict[str, dict[str, object]]:
    if not path.exists():
        return {}
    return {line["id"]: line for line in map(json.loads, path.read_text().splitlines())}


@pytest.fixture
def files(tmp_path: Path) -> Path:
    """A folder with a PDF, a DOCX, an HTML page and a text file."""
    folder = tmp_path / "files"
    folder.mkdir()
    shutil.copy(ROOT / "samples/pdfs/letter.pdf", folder / "letter.pdf")
    shutil.copy(ROOT / "samples/docs/purchase-order.docx", folder / "report.docx")
    shutil.copy(ROOT / "samples/docs/orchard-news.html", folder / "page.html")
    (folder / "note.txt").write_text("Dear Ann,\nsee you at noon.\n")
    return folder


def test_jsonl_rows_name_files_relative_to_the_input(
    server: ChatServer, files: Path, tmp_path: Path
) -> None:
    server.handler = first_line
    rows = [
        {"id": "letter", "path": "files/letter.pdf"},
        {"id": "report", "path": str(files / "report.docx")},  # absolute
        {"id": "page", "path": "files/page.html"},
        {"id": "inline", "text": "Inline text, no file.\n"},
        {"id": "missing", "path": "files/nowhere.pdf"},
        {"id": "neither", "title": "no text, no path"},
    ]
    source = tmp_path / "docs.jsonl"
    source.write_text("".join(json.dumps(row) + "\n" for row in rows))
    out = tmp_path / "out.jsonl"
    summary = job(server, str(source), out).run()
    assert (summary.done, summary.failed) == (4, 2)
    done, failed = lines(out), lines(tmp_path / "out.failures.jsonl")
    assert set(done) == {"letter", "report", "page", "inline"}
    assert done["inline"]["record"] == {"first_line": "Inline text, no file."}
    sent = {document_of(r).splitlines()[0] for r in server.requests}
    assert len(sent) == 4 and all(line.strip() for line in sent)  # the files' text went out
    assert "cannot read" in str(failed["missing"]["error"])
    assert "'text' or 'path'" in str(failed["neither"]["error"])


def test_csv_rows_name_files_under_a_renamed_column(
    server: ChatServer, files: Path, tmp_path: Path
) -> None:
    server.handler = first_line
    source = tmp_path / "docs.csv"
    with source.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "file"])
        writer.writerow(["letter", "files/letter.pdf"])
        writer.writerow(["note", "files/note.txt"])
    out = tmp_path / "out.jsonl"
    summary = job(server, str(source), out, text_field="body", path_field="file").run()
    assert (summary.done, summary.failed) == (2, 0)
    assert lines(out)["note"]["record"] == {"first_line": "Dear Ann,"}


def test_an_input_without_text_or_path_is_refused_naming_both_flags(tmp_path: Path) -> None:
    source = tmp_path / "docs.jsonl"
    source.write_text(json.dumps({"id": 1, "body": "x"}) + "\n")
    with pytest.raises(SourceError, match="--text-field or --path-field"):
        open_source(str(source))


def test_a_resumed_folder_job_does_not_read_the_files_already_written(
    server: ChatServer, files: Path, tmp_path: Path
) -> None:
    server.handler = first_line
    out = tmp_path / "out.jsonl"
    first = job(server, str(files), out).run()
    assert first.done == 4
    # a file already written is not read again: gone, it would be a failure if it were
    (files / "letter.pdf").unlink()
    (files / "late.txt").write_text("Added later.\n")
    again = job(server, str(files), out).run()
    assert (again.skipped, again.done, again.failed) == (3, 1, 0)
    assert set(lines(out)) == {"letter.pdf", "report.docx", "page.html", "note.txt", "late.txt"}
