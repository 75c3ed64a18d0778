"""Issue 11, the batch and command-line items: `extractor batch` and `extractor extract` run
as real subprocesses against a real loopback server (extractor.testing.ChatServer).

- item 2: two jobs on one OUT (the second exits 2 naming the first; nothing is done
  twice), and a resume over files that already repeat an id;
- item 4: a folder input with a symlink loop and links leading out of it;
- item 8: outputs that cannot be written (one line, exit 2, before any request), and
  `extract` with its stdout on /dev/full;
- item 10: a plain class given as SCHEMA.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from extractor.testing import Answer, ChatServer, Item, RecordedRequest
from tests.processes import ROOT, child_env, command, spawn

SCHEMA = """\
from pydantic import BaseModel


class Person(BaseModel):
    name: str
    age: int


class NotAModel:
    name: str
    age: int
"""


@pytest.fixture
def schema(tmp_path: Path) -> str:
    """SCHEMA for the Person model, as a path a user would give."""
    path = tmp_path / "person.py"
    path.write_text(SCHEMA)
    return f"{path}:Person"


def document_of(request: RecordedRequest) -> str:
    return next(str(m["content"]) for m in request.messages if m.get("role") == "user")


def person_answer(request: RecordedRequest) -> Answer:
    name = document_of(request).split(" is ", 1)[0]
    return Answer(content=json.dumps({"name": name, "age": 30}))


def write_jsonl(path: Path, count: int) -> list[str]:
    ids = [f"d{i:04d}" for i in range(count)]
    with path.open("w") as out:
        for doc_id in ids:
            out.write(json.dumps({"id": doc_id, "text": f"P{doc_id} is 30 years old."}) + "\n")
    return ids


def read_ids(path: Path) -> list[Any]:
    return [json.loads(line)["id"] for line in path.read_text().splitlines()]


def batch_argv(server: ChatServer, *rest: str) -> list[str]:
    return ["batch", *rest, "--model", "openai/test-model", "--base-url", server.base_url]


def run_cli(*argv: str, **options: Any) -> subprocess.CompletedProcess[str]:
    """`python -m extractor ARGV...` to its end, as a user's shell runs it."""
    options = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, **options}
    return subprocess.run(
        command(*argv), cwd=ROOT, env=child_env(), text=True, timeout=60, check=False, **options
    )


def one_error_line(stderr: str) -> str:
    """The single `extractor: error: ...` line stderr must consist of."""
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("extractor: error: "), stderr
    return lines[0]


# --- item 2: one job per output -------------------------------------------------------------


@pytest.mark.skipif(sys.platform == "win32", reason="the output lock uses flock")
def test_a_second_job_on_the_same_output_exits_2_naming_the_first(
    server: ChatServer, tmp_path: Path, schema: str
) -> None:
    concurrency = 3
    gate = threading.Event()  # holds the first job's answers until the second has ended
    first_request = threading.Event()
    decided = threading.Event()  # the second job ended, or requests came from both jobs
    lock = threading.Lock()
    arrived = 0

    def handle(request: RecordedRequest) -> Item:
        nonlocal arrived
        with lock:
            arrived += 1
            if arrived > concurrency:  # more than one job can have in flight: two are sending
                decided.set()
        first_request.set()
        gate.wait(60)
        return person_answer(request)

    server.handler = handle
    source, out = tmp_path / "docs.jsonl", tmp_path / "out.jsonl"
    ids = write_jsonl(source, 10)
    argv = batch_argv(server, schema, str(source), "-o", str(out), "--concurrency", "3")
    first = spawn(*argv)
    second: subprocess.Popen[str] | None = None
    try:
        assert first_request.wait(30), "the first job never sent a request"
        second = spawn(*argv)
        threading.Thread(target=lambda: (second.wait(), decided.set()), daemon=True).start()
        assert decided.wait(30), "the second job neither ended nor sent anything"
        assert second.poll() is not None, "the second job is extracting the same documents"
        gate.set()
        _, second_err = second.communicate(timeout=30)
        _, first_err = first.communicate(timeout=60)
    finally:
        gate.set()
        for child in (first, second):
            if child is not None and child.poll() is None:
                child.kill()
                child.wait()
    assert second.returncode == 2, second_err
    line = one_error_line(second_err)
    assert f"{out} is in use by another batch job (pid {first.pid} on " in line
    assert "started " in line and "extractor batch" in line
    assert first.returncode == 0, first_err
    assert "complete: 10 extracted, 0 failed" in first_err
    sent = Counter(document_of(request) for request in server.requests)
    assert sorted(sent) == sorted(f"P{i} is 30 years old." for i in ids)
    assert set(sent.values()) == {1}  # each document once
    assert sorted(read_ids(out)) == ids  # each id once
    assert not (tmp_path / "out.jsonl.lock").exists()  # a finished job leaves no lock file


def test_a_resume_over_repeated_ids_keeps_the_first_and_says_so(
    server: ChatServer, tmp_path: Path, schema: str
) -> None:
    server.handler = person_answer
    source, out = tmp_path / "docs.jsonl", tmp_path / "out.jsonl"
    failures = tmp_path / "out.failures.jsonl"
    ids = write_jsonl(source, 5)

    def record(doc_id: str, age: int) -> str:
        return json.dumps({"id": doc_id, "record": {"name": f"P{doc_id}", "age": age}}) + "\n"

    # what two jobs at once left behind before the lock: ids twice, in both files
    out.write_text(
        record("d0000", 1) + record("d0001", 1) + record("d0000", 2) + record("d0000", 3)
    )
    failure = json.dumps({"id": "d0002", "error": {"type": "InvalidAnswer", "message": "x"}})
    failures.write_text(f"{failure}\n{failure}\n")
    summary = tmp_path / "summary.json"
    done = run_cli(
        *batch_argv(server, schema, str(source), "-o", str(out)), "--summary-json", str(summary)
    )
    assert done.returncode == 1, done.stderr  # d0002 is a failure from before
    assert "Traceback" not in done.stderr
    warnings = [line for line in done.stderr.splitlines() if "repeating an id" in line]
    assert warnings == [
        f"{failures}: ignored 1 line(s) repeating an id of an earlier line (left by an older "
        "version or a crash); the first line of each id counts",
        f"{out}: ignored 2 line(s) repeating an id of an earlier line (left by an older "
        "version or a crash); the first line of each id counts",
    ]
    assert f"ignored 2 line(s) of {out} repeating an earlier id" in done.stderr
    assert json.loads(summary.read_text())["repeated_lines"] == {str(failures): 1, str(out): 2}
    assert "complete: 2 extracted, 0 failed" in done.stderr
    assert sorted(document_of(r) for r in server.requests) == [
        f"P{i} is 30 years old." for i in ids[3:]
    ]  # nothing redone for the repeated ids
    lines = read_ids(out)  # the earlier lines untouched, the two new ones after them
    assert lines[:4] == ["d0000", "d0001", "d0000", "d0000"]
    assert sorted(lines[4:]) == ["d0003", "d0004"]


# --- item 4: folder inputs and symbolic links -------------------------------------------------


@pytest.mark.skipif(sys.platform == "win32", reason="symbolic links need privileges on Windows")
def test_a_folder_with_a_symlink_loop_and_links_outside_reads_each_file_once(
    server: ChatServer, tmp_path: Path, schema: str
) -> None:
    server.handler = person_answer
    docs, outside = tmp_path / "docs", tmp_path / "outside"
    (docs / "sub").mkdir(parents=True)
    outside.mkdir()
    (docs / "a.txt").write_text("Ann is 30 years old.")
    (docs / "sub" / "b.txt").write_text("Bob is 30 years old.")
    (outside / "c.txt").write_text("Cyd is 30 years old.")
    (docs / "sub" / "loop").symlink_to("..")  # round and round
    (docs / "sub" / "here").symlink_to(".")
    (docs / "alias.txt").symlink_to("a.txt")  # a second name for a file inside
    (docs / "escape").symlink_to(outside)  # out of the folder
    (docs / "secret.txt").symlink_to(outside / "c.txt")
    (outside / "back").symlink_to(docs)
    out = tmp_path / "out.jsonl"
    done = run_cli(*batch_argv(server, schema, str(docs), "-o", str(out)))
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert sorted(read_ids(out)) == ["a.txt", "sub/b.txt"]
    assert sorted(document_of(r) for r in server.requests) == [
        "Ann is 30 years old.",
        "Bob is 30 years old.",
    ]
    said = [line for line in done.stderr.splitlines() if "outside the folder" in line]
    assert len(said) == 1, done.stderr  # once, however many links
    assert said[0].startswith(f"{docs}: skipping symbolic links that lead outside the folder")


# --- item 8: outputs that cannot be written ---------------------------------------------------


def _unwritable_folder(tmp_path: Path) -> Path | None:
    """A read-only folder, or None where permissions do not stop writes (root)."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        (folder / "probe").write_text("")
    except PermissionError:
        return folder
    (folder / "probe").unlink()
    return None


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX paths and permissions")
def test_unwritable_outputs_are_one_line_and_exit_2_before_any_request(
    server: ChatServer, tmp_path: Path, schema: str
) -> None:
    server.handler = person_answer
    source, out = tmp_path / "docs.jsonl", tmp_path / "out.jsonl"
    write_jsonl(source, 3)
    blocker = tmp_path / "somefile"  # a regular file: nothing can be written under it
    blocker.write_text("")
    read_only = _unwritable_folder(tmp_path)
    try:
        cases = [
            (["-o", str(blocker / "out.jsonl")], f"{blocker} is a file, not a folder"),
            (
                ["-o", str(out), "--failures", str(blocker / "f.jsonl")],
                f"{blocker} is a file, not a folder",
            ),
            (
                ["-o", str(out), "--summary-json", str(blocker / "summary.json")],
                f"cannot write {blocker / 'summary.json'}: {blocker} is a file, not a folder",
            ),
        ]
        if read_only is not None:
            cases += [
                (["-o", str(read_only / "out.jsonl")], "Permission denied"),
                (
                    ["-o", str(out), "--summary-json", str(read_only / "s.json")],
                    "Permission denied",
                ),
            ]
        for flags, expected in cases:
            done = run_cli(*batch_argv(server, schema, str(source), *flags))
            assert done.returncode == 2, (flags, done.stderr)
            assert expected in one_error_line(done.stderr), flags
            assert server.requests == [], flags  # found before the first request
            assert not out.exists(), flags
    finally:
        if read_only is not None:
            read_only.chmod(0o755)


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_extract_with_stdout_on_a_full_device_is_one_line_and_exit_2(
    server: ChatServer, tmp_path: Path, schema: str
) -> None:
    server.handler = person_answer
    document = tmp_path / "ann.txt"
    document.write_text("Ann is 30 years old.")
    argv = ["extract", schema, str(document), "--model", "openai/test-model"]
    with open("/dev/full", "w") as full:
        done = run_cli(*argv, "--base-url", server.base_url, stdout=full)
    assert done.returncode == 2, done.stderr
    line = one_error_line(done.stderr)  # no traceback, no "Exception ignored" at exit
    assert line == (
        "extractor: error: cannot write to standard output: No space left on device; "
        "send it to a file or pipe that can take it"
    )


# --- item 10: a plain class as SCHEMA ---------------------------------------------------------


def test_a_plain_class_as_schema_is_one_line_saying_what_schema_must_be(
    server: ChatServer, tmp_path: Path, schema: str
) -> None:
    source = tmp_path / "docs.jsonl"
    write_jsonl(source, 2)
    plain = schema.replace(":Person", ":NotAModel")
    for argv in (
        batch_argv(server, plain, str(source), "-o", str(tmp_path / "out.jsonl")),
        ["schema", plain],
    ):
        done = run_cli(*argv)
        assert done.returncode == 2, done.stderr
        line = one_error_line(done.stderr)
        assert line == (
            f"extractor: error: {plain} is a plain class, not a Pydantic model; SCHEMA must "
            "name a model class (a Pydantic BaseModel), a type such as list[Model], or a "
            "JSON Schema (a dict, or a .json file)"
        )
    assert server.requests == []
