"""Acceptance 2: `extractor batch` killed with SIGKILL three times, then rerun to the end.

A real subprocess against a real loopback server; the kills land at different points
(right after the first request of a run, and after 40 and 150 written lines). After
the final run, every input id is in exactly one of the two files, every line of both
parses, and the failures are exactly the documents the server always answers wrongly.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from extractor.testing import Answer, ChatServer, Delay, Item, RecordedRequest
from tests.processes import child_env, sigkill_when

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX-only")

SCHEMA = """\
from pydantic import BaseModel


class Person(BaseModel):
    name: str
    age: int
"""


def count_lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def parse_all(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_three_sigkills_then_a_rerun_leave_every_id_exactly_once(
    server: ChatServer, tmp_path: Path
) -> None:
    ids = [f"doc-{i:03d}" for i in range(400)]
    always_invalid = set(ids[::31])  # 13 documents
    source = tmp_path / "docs.jsonl"
    source.write_text(
        "".join(json.dumps({"id": i, "text": f"{i} is 30 years old."}) + "\n" for i in ids)
    )
    (tmp_path / "person.py").write_text(SCHEMA)
    out, failures = tmp_path / "out.jsonl", tmp_path / "out.failures.jsonl"
    arrived = threading.Event()

    def handle(request: RecordedRequest) -> Item:
        arrived.set()
        text = next(m["content"] for m in request.messages if m.get("role") == "user")
        name = text.split(" is ", 1)[0]
        age: Any = "unknown" if name in always_invalid else 30
        return Delay(0.04, Answer(content=json.dumps({"name": name, "age": age})))

    server.handler = handle
    argv = [
        sys.executable, "-m", "extractor", "batch", str(tmp_path / "person.py") + ":Person",
        str(source), "-o", str(out), "--concurrency", "16",
        "--model", "openai/test-model", "--base-url", server.base_url,
    ]  # fmt: skip

    def kill_when(ready: Callable[[], bool]) -> None:
        arrived.clear()
        child = subprocess.Popen(
            argv, cwd=tmp_path, env=child_env(), stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        sigkill_when(child, ready)

    kill_when(lambda: count_lines(out) >= 40)
    first = count_lines(out) + count_lines(failures)
    kill_when(arrived.is_set)  # a run killed as its first request is answered
    kill_when(lambda: count_lines(out) >= 150)
    assert first < count_lines(out) + count_lines(failures) < len(ids)
    with out.open("ab") as torn:  # what a kill in the middle of a write leaves behind
        torn.write(b'{"id": "doc-399", "record": {"na')

    final = subprocess.run(
        argv, cwd=tmp_path, env=child_env(), capture_output=True, text=True, timeout=120,
        check=False,
    )  # fmt: skip
    assert final.returncode == 1, final.stderr  # 1: some documents are failures
    assert "cut off a torn last line" in final.stderr
    records, failed = parse_all(out), parse_all(failures)  # every line parses
    done_ids = [line["id"] for line in records]
    failed_ids = [line["id"] for line in failed]
    assert sorted(done_ids + failed_ids) == ids  # each id once, across both files
    assert set(failed_ids) == always_invalid
    assert all(line["record"] == {"name": line["id"], "age": 30} for line in records)
