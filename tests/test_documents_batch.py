"""Acceptance: a batch over a folder of mixed files, killed with SIGKILL, then rerun to the end.

The folder holds about 120 files: copies of the sample PDFs, DOCX and HTML page under
other names, generated text and Markdown notes, the hostile files of
`tests/data/documents` (encrypted, truncated, scanned, random bytes, zip bombs, a flate
bomb...) and a few odd ones (empty, not UTF-8, misnamed). A real `extractor batch`
subprocess reads it against a real loopback server, is killed with SIGKILL three times
at different points (as its first request arrives, after 30 and after 70 records), and
is rerun to the end. Then every file's id (its path in the folder) is in exactly one of
the two output files, every line of both parses, the records are those of the right
files, the unreadable files are failures saying why, and the exit status is the one
for a job with failures.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from extractor._exits import EXIT_FAILED
from extractor.testing import Answer, ChatServer, Delay, Item, RecordedRequest
from tests.processes import ROOT, child_env, sigkill_when

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX-only")

SCHEMA = """\
from pydantic import BaseModel


class Opening(BaseModel):
    first_line: str
    pages: int
"""

HOSTILE = ROOT / "tests" / "data" / "documents"

#: The sample documents, copied under other names: (source, copies) -> (first line, pages).
SAMPLES: dict[tuple[str, int], tuple[str, int]] = {
    ("samples/pdfs/invoice.pdf", 8): ("FERNHILL JOINERY LTD", 1),
    ("samples/pdfs/letter.pdf", 8): ("ALDER & WREN BUILDING SURVEYORS", 3),
    ("samples/pdfs/receipt.pdf", 8): ("THE COPPER KETTLE", 1),
    ("samples/pdfs/statement.pdf", 6): (
        "Harbour Lane Consulting · expense statement, April to June 2025 Receipt 1 of 60",
        60,
    ),
    ("samples/docs/purchase-order.docx", 8): ("Purchase order KCT-PO-0093", 1),
    ("samples/docs/orchard-news.html", 8): ("# Alder Row community orchard wins county grant", 1),
}

#: Files no reader can take, and what their failure must say.
UNREADABLE: dict[str, str] = {
    "hostile/encrypted.pdf": r"encrypted.*decrypt",
    "hostile/truncated.pdf": r"not a readable PDF",
    "hostile/scanned.pdf": r"no text layer.*OCR",
    "hostile/random.pdf": r"not a PDF",
    "hostile/random-after-header.pdf": r"not a readable PDF",
    "hostile/zip-bomb.docx": r"zip bomb",
    "hostile/zip-bomb-deflate.docx": r"zip bomb",
    "odd/empty.txt": r"empty",
    "odd/latin1.txt": r"not UTF-8",
    "odd/misnamed.docx": r"not a DOCX",
    "odd/archive.zip": r"not a document",
}

#: Hostile files a reader may read or refuse (tests/data/documents/README.md): the
#: first line of a record read from them.
READ_OR_REFUSED: dict[str, str] = {
    "hostile/page-cycle.pdf": "Round and round",
    "hostile/nested-arrays.pdf": "Deep",
    "hostile/flate-bomb.pdf": "Boom",
}


def opening(text: str) -> dict[str, Any]:
    """The record the server answers for a document: its first line and page count."""
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return {"first_line": first, "pages": text.count("\f") + 1}


def document_of(request: RecordedRequest) -> str:
    return next(str(m["content"]) for m in request.messages if m.get("role") == "user")


def count_lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def parse_all(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def recorded_ids(path: Path) -> set[str]:
    """The ids of the complete lines (a kill may have torn the last one, not yet repaired)."""
    if not path.exists():
        return set()
    return {json.loads(line)["id"] for line in path.read_bytes().split(b"\n")[:-1]}


def build_folder(folder: Path) -> dict[str, dict[str, Any]]:
    """Write the input folder; the record expected for each readable file, by id."""
    expected: dict[str, dict[str, Any]] = {}
    for (source, copies), (first, pages) in SAMPLES.items():
        path = ROOT / source
        kind = path.suffix.lstrip(".")
        (folder / kind).mkdir(exist_ok=True)
        for n in range(copies):
            suffix = ".htm" if kind == "html" and n % 2 else path.suffix
            name = f"{kind}/{path.stem}-{n:02d}{suffix}"
            shutil.copyfile(path, folder / name)
            expected[name] = {"first_line": first, "pages": pages}
    (folder / "notes" / "md").mkdir(parents=True)
    for n in range(40):
        name = f"notes/note-{n:03d}.txt"
        (folder / name).write_text(f"Note {n:03d}\nWritten on day {n} of the trial.\n")
        expected[name] = {"first_line": f"Note {n:03d}", "pages": 1}
    for n in range(20):
        name = f"notes/md/entry-{n:03d}.md"
        (folder / name).write_text(f"# Entry {n:03d}\n\nSome *Markdown* with a [link](#{n}).\n")
        expected[name] = {"first_line": f"# Entry {n:03d}", "pages": 1}
    (folder / "notes" / "a" / "b" / "c").mkdir(parents=True)
    (folder / "notes/a/b/c/deep.txt").write_text("Deep down\nfour folders in.\n")
    expected["notes/a/b/c/deep.txt"] = {"first_line": "Deep down", "pages": 1}

    (folder / "hostile").mkdir()
    for path in sorted(HOSTILE.iterdir()):
        if path.suffix in (".pdf", ".docx"):
            shutil.copyfile(path, folder / "hostile" / path.name)
    # anyone may open it (an empty user password): the sample invoice
    expected["hostile/encrypted-empty-password.pdf"] = {
        "first_line": "FERNHILL JOINERY LTD",
        "pages": 1,
    }

    odd = folder / "odd"
    odd.mkdir()
    (odd / "empty.txt").write_text(" \n\n")
    (odd / "latin1.txt").write_bytes("Zoë Brandt is 30.".encode("latin-1"))
    (odd / "misnamed.docx").write_text("A text file with the wrong name.\n")
    with zipfile.ZipFile(odd / "archive.zip", "w") as archive:
        archive.writestr("notes.txt", "a zip archive, not a DOCX")
    # a PDF under a text file's name is read as the PDF it is
    shutil.copyfile(ROOT / "samples/pdfs/receipt.pdf", odd / "receipt-as-text.txt")
    expected["odd/receipt-as-text.txt"] = {"first_line": "THE COPPER KETTLE", "pages": 1}
    return expected


def session_processes(session: int) -> list[str]:
    """The live processes (not zombies) of a session, as `PID COMMAND` (Linux only)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue  # it ended while we looked
        state, _ppid, _pgrp, sid = stat.rsplit(")", 1)[1].split()[:4]
        if int(sid) == session and state != "Z":
            found.append(f"{entry.name} {cmdline}")
    return found


def test_a_folder_of_mixed_and_hostile_files_survives_sigkills_and_a_rerun(
    server: ChatServer, tmp_path: Path
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    expected = build_folder(folder)
    all_ids = set(expected) | set(UNREADABLE) | set(READ_OR_REFUSED)
    assert len(all_ids) >= 120
    (tmp_path / "opening.py").write_text(SCHEMA)
    out, failures = tmp_path / "out.jsonl", tmp_path / "out.failures.jsonl"

    # the generated notes have a first line of their own: which runs asked for each
    unique = {
        record["first_line"]: doc_id
        for doc_id, record in expected.items()
        if doc_id.startswith("notes/")
    }
    asked: dict[str, list[int]] = {doc_id: [] for doc_id in unique.values()}
    run = [0]
    arrived = threading.Event()

    def handle(request: RecordedRequest) -> Item:
        arrived.set()
        record = opening(document_of(request))
        if record["first_line"] in unique:
            asked[unique[record["first_line"]]].append(run[0])
        return Delay(0.05, Answer(content=json.dumps(record)))

    server.handler = handle
    argv = [
        sys.executable, "-m", "extractor", "batch", str(tmp_path / "opening.py") + ":Opening",
        str(folder), "-o", str(out), "--concurrency", "8",
        "--model", "openai/test-model", "--base-url", server.base_url,
    ]  # fmt: skip
    recorded_before: list[set[str]] = []  # by run: the ids out.jsonl held when it started

    def start(stderr: int = subprocess.DEVNULL) -> subprocess.Popen[str]:
        recorded_before.append(recorded_ids(out))
        run[0] = len(recorded_before) - 1
        arrived.clear()
        return subprocess.Popen(
            argv, cwd=tmp_path, env=child_env(), stdout=subprocess.DEVNULL, stderr=stderr,
            text=True, start_new_session=True,
        )  # fmt: skip

    def kill_when(ready: Callable[[], bool]) -> None:
        child = start()
        sigkill_when(child, ready)
        if Path("/proc/self/stat").exists():  # the PDF worker does not outlive the job
            deadline = time.monotonic() + 20
            while left := session_processes(child.pid):
                assert time.monotonic() < deadline, f"left running after kill -9: {left}"
                time.sleep(0.05)

    kill_when(arrived.is_set)  # as its first request arrives
    kill_when(lambda: count_lines(out) >= 30)
    after_second = count_lines(out) + count_lines(failures)
    kill_when(lambda: count_lines(out) >= 70)
    assert after_second < count_lines(out) + count_lines(failures) < len(all_ids)

    final = start(subprocess.PIPE)
    try:
        _, stderr = final.communicate(timeout=120)
    finally:
        final.kill()
        final.wait()
    assert final.returncode == EXIT_FAILED, stderr  # some files are failures, none lost

    records, failed = parse_all(out), parse_all(failures)  # every line of both parses
    done_ids = [line["id"] for line in records]
    failed_ids = [line["id"] for line in failed]
    assert len(done_ids) == len(set(done_ids)), "an id is twice in out.jsonl"
    assert len(failed_ids) == len(set(failed_ids)), "an id is twice in the failures"
    assert not set(done_ids) & set(failed_ids), "an id is in both files"
    assert set(done_ids) | set(failed_ids) == all_ids, "a file is in neither file"

    by_id = {line["id"]: line for line in records}
    records_of = {doc_id: line["record"] for doc_id, line in by_id.items()}
    wrong = {i: records_of.get(i) for i in expected if records_of.get(i) != expected[i]}
    assert not wrong, f"readable files without their own record: {wrong}"
    errors = {line["id"]: line["error"] for line in failed}
    for doc_id, pattern in UNREADABLE.items():
        assert doc_id in errors, f"{doc_id} has a record: {by_id.get(doc_id)}"
        error = errors[doc_id]
        assert error["type"] == "DocumentError", (doc_id, error)
        assert re.search(pattern, error["message"]), (doc_id, error)
    for doc_id, first in READ_OR_REFUSED.items():
        if doc_id in by_id:
            assert by_id[doc_id]["record"]["first_line"] == first
        else:
            assert errors[doc_id]["type"] == "DocumentError" and errors[doc_id]["message"]
    assert set(failed_ids) <= set(UNREADABLE) | set(READ_OR_REFUSED)

    # a rerun skips what is recorded: no recorded note was asked for again
    redone = {
        doc_id: runs
        for doc_id, runs in asked.items()
        if any(doc_id in recorded_before[k] for k in runs)
    }
    assert not redone, f"recorded documents sent to the model again (by run): {redone}"
    assert all(asked.values()), "a note was never sent to the model"
