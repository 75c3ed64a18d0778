"""Stored records and their schema: fingerprints on every line, `extractor validate`, and a
resumed job that will not mix the lines of two schemas without being told to."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

from extractor import compile_schema
from extractor._exits import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from extractor.testing import Answer, ChatServer, RecordedRequest
from tests.processes import child_env

PERSON = """\
from pydantic import BaseModel


class Person(BaseModel):
    name: str
    age: int
"""
# the same model a release later: a field more, required
PERSON_V2 = PERSON + "    email: str\n"


def run(tmp_path: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "extractor", *argv],
        cwd=tmp_path,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )


def batch(
    tmp_path: Path, server: ChatServer, schema: str, *extra: str
) -> subprocess.CompletedProcess[str]:
    return run(
        tmp_path, "batch", f"{schema}:Person", "docs.jsonl", "-o", "out.jsonl",
        "--model", "openai/test-model", "--base-url", server.base_url, *extra,
    )  # fmt: skip


def answer(request: RecordedRequest) -> Answer:
    text = next(str(m["content"]) for m in request.messages if m.get("role") == "user")
    name = text.split(" is ", 1)[0]
    return Answer(content=json.dumps({"name": name, "age": 30, "email": f"{name}@example.com"}))


def write_docs(path: Path, names: list[str]) -> None:
    path.write_text("".join(json.dumps({"id": n, "text": f"{n} is 30."}) + "\n" for n in names))


def test_records_carry_the_schema_and_validate_says_what_no_longer_fits(
    server: ChatServer, tmp_path: Path
) -> None:
    (tmp_path / "person.py").write_text(PERSON)
    (tmp_path / "person2.py").write_text(PERSON_V2)
    write_docs(tmp_path / "docs.jsonl", ["Ann", "Bo"])
    server.handler = answer
    assert batch(tmp_path, server, "person.py").returncode == EXIT_OK
    lines = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    spec = importlib.util.spec_from_file_location("person_v1", tmp_path / "person.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert {line["schema"] for line in lines} == {compile_schema(module.Person).fingerprint}

    same = run(tmp_path, "validate", "person.py:Person", "out.jsonl")
    assert same.returncode == EXIT_OK and "2 record(s) checked, 0 do not fit" in same.stderr
    changed = run(tmp_path, "validate", "person2.py:Person", "out.jsonl")
    assert changed.returncode == EXIT_FAILED
    assert sorted(changed.stdout.splitlines()) == [
        "Ann: email: Field required",
        "Bo: email: Field required",
    ]
    assert "2 were written under another schema" in changed.stderr


def test_a_resumed_job_with_a_changed_schema_stops_unless_told(
    server: ChatServer, tmp_path: Path
) -> None:
    (tmp_path / "person.py").write_text(PERSON)
    (tmp_path / "person2.py").write_text(PERSON_V2)
    write_docs(tmp_path / "docs.jsonl", ["Ann"])
    server.handler = answer
    assert batch(tmp_path, server, "person.py").returncode == EXIT_OK
    write_docs(tmp_path / "docs.jsonl", ["Ann", "Bo"])

    stopped = batch(tmp_path, server, "person2.py")
    assert stopped.returncode == EXIT_USAGE
    assert "written under another schema" in stopped.stderr and "--restart" in stopped.stderr
    assert len((tmp_path / "out.jsonl").read_text().splitlines()) == 1  # nothing added

    kept = batch(tmp_path, server, "person2.py", "--schema-changed", "keep")
    assert kept.returncode == EXIT_OK
    schemas = [json.loads(x)["schema"] for x in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert len(schemas) == 2 and len(set(schemas)) == 2  # each line keeps its own

    restarted = batch(tmp_path, server, "person2.py", "--restart")
    assert restarted.returncode == EXIT_OK
    assert len((tmp_path / "out.jsonl").read_text().splitlines()) == 2
