"""The response cache (`Client(cache=...)`, `--cache PATH`): a rerun sends nothing.

Real HTTP to the loopback `ChatServer`; the cache is a real SQLite file, shared by real
processes in the concurrency test.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from extractor import Client, ResponseCache
from extractor._cli import main
from extractor.testing import Answer, ChatServer, Item, RecordedRequest
from tests.processes import child_env

ROOT = Path(__file__).resolve().parent.parent
KEY = "sk-cache-secret-0123456789"


class Person(BaseModel):
    name: str
    age: int


def name_of(request: RecordedRequest) -> str:
    document = next(str(m["content"]) for m in request.messages if m.get("role") == "user")
    return document.split(" is ", 1)[0]


def right(request: RecordedRequest) -> Item:
    return Answer(content=json.dumps({"name": name_of(request), "age": 30}))


def client(server: ChatServer, cache: Any, **options: Any) -> Client:
    return Client(
        "openai/test-model",
        base_url=server.base_url,
        api_key=KEY,
        mode="json_schema",
        cache=cache,
        **options,
    )


def test_a_second_extraction_of_the_same_request_is_answered_from_the_cache(
    server: ChatServer, tmp_path: Path
) -> None:
    server.handler = right
    cache = tmp_path / "answers.sqlite"
    with client(server, cache) as first:
        result = first.extract_result(Person, "Ann is 30 years old.")
    assert result.usage.total_tokens > 0 and result.usage.cached == 0
    assert len(server.requests) == 1

    server.reset()
    with client(server, cache) as second:  # another client, the same file: a rerun
        again = second.extract_result(Person, "Ann is 30 years old.")
    assert again.value == result.value == Person(name="Ann", age=30)
    assert not server.requests  # nothing sent
    assert again.cached and again.attempts[0].cached
    assert (again.usage.total_tokens, again.usage.cost, again.usage.cached) == (0, None, 1)


def test_anything_that_changes_the_request_misses(server: ChatServer, tmp_path: Path) -> None:
    server.handler = right
    cache = tmp_path / "answers.sqlite"
    with client(server, cache) as extractor:
        extractor.extract(Person, "Ann is 30 years old.")
        extractor.extract(Person, "Bob is 30 years old.")  # another document
        extractor.extract(Person, "Ann is 30 years old.", temperature=0.5)  # a parameter
        extractor.extract(Person, "Ann is 30 years old.", mode="tools")  # a mode
    with Client("openai/other-model", base_url=server.base_url, cache=cache) as other:
        other.extract(Person, "Ann is 30 years old.", mode="json_schema")  # another model
    assert len(server.requests) == 5
    assert len(ResponseCache(cache)) == 5


def test_reasks_are_kept_too_so_a_rerun_of_a_fixed_answer_sends_nothing(
    server: ChatServer, tmp_path: Path
) -> None:
    seen: list[str] = []

    def wrong_first(request: RecordedRequest) -> Item:
        seen.append(name_of(request))
        if len(seen) == 1:
            return Answer(content='{"name": "Ann", "age": "thirty"}')
        return right(request)

    server.handler = wrong_first
    cache = tmp_path / "answers.sqlite"
    with client(server, cache) as first:
        result = first.extract_result(Person, "Ann is 30 years old.")
    assert len(result.attempts) == 2 and len(server.requests) == 2
    server.reset()
    with client(server, cache) as second:
        again = second.extract_result(Person, "Ann is 30 years old.")
    assert not server.requests
    assert len(again.attempts) == 2 and again.usage.cached == 2 and again.value == result.value


def test_answers_cut_off_or_refused_are_not_kept(server: ChatServer, tmp_path: Path) -> None:
    cache = tmp_path / "answers.sqlite"
    server.script(
        Answer(content='{"name": "Ann", "ag', finish_reason="length"),
        Answer(content='{"name": "Ann", "age": 30}'),
    )
    with client(server, cache, max_retries=1) as extractor:
        extractor.extract(Person, "Ann is 30 years old.")
    kept = ResponseCache(cache)
    assert len(kept) == 1  # the whole answer, not the cut one
    stored = sqlite3.connect(cache).execute("SELECT answer FROM answers").fetchone()[0]
    assert json.loads(stored)["finish_reason"] != "length"


def test_the_api_key_never_reaches_the_cache_file(server: ChatServer, tmp_path: Path) -> None:
    server.handler = right
    cache = tmp_path / "answers.sqlite"
    with client(server, cache) as extractor:
        for name in ("Ann", "Bob", "Eve"):
            extractor.extract(Person, f"{name} is 30 years old.")
    for path in tmp_path.iterdir():  # the file and its WAL
        assert KEY.encode() not in path.read_bytes(), path.name


def test_a_stream_answered_from_the_cache_streams_the_answer(
    server: ChatServer, tmp_path: Path
) -> None:
    server.handler = right
    cache = tmp_path / "answers.sqlite"
    with client(server, cache) as extractor:
        first = list(extractor.stream(Person, "Ann is 30 years old."))
        server.reset()
        again = list(extractor.stream(Person, "Ann is 30 years old."))
    assert not server.requests
    assert again[-1] == first[-1] == Person(name="Ann", age=30)


def test_async_extractions_share_the_cache(server: ChatServer, tmp_path: Path) -> None:
    server.handler = right
    cache = tmp_path / "answers.sqlite"
    docs = [f"P{i} is 30 years old." for i in range(20)]

    async def twice() -> tuple[list[Any], list[Any], int]:
        async with client(server, cache) as extractor:
            first = [r async for r in extractor.aextract_many(Person, docs, concurrency=8)]
            sent = len(server.requests)
            again = [r async for r in extractor.aextract_many(Person, docs, concurrency=8)]
        return first, again, sent

    first, again, sent = asyncio.run(twice())
    assert sent == 20 and len(server.requests) == 20  # the second pass sent nothing
    assert sorted(r.value.name for r in again) == sorted(r.value.name for r in first)
    assert all(r.usage.cached == 1 for r in again)


WORKER = """
import sys
from pydantic import BaseModel
from extractor import Client

class Person(BaseModel):
    name: str
    age: int

base_url, cache, first = sys.argv[1], sys.argv[2], int(sys.argv[3])
docs = [f"P{(first + i) % 60} is 30 years old." for i in range(60)]
with Client("openai/test-model", base_url=base_url, mode="json_schema", cache=cache) as c:
    for result in c.extract_many(Person, docs, concurrency=8):
        assert result.ok, result.error
        assert result.value.name == docs[result.id].split(" is ")[0]
"""


def test_several_processes_share_one_cache_file_safely(server: ChatServer, tmp_path: Path) -> None:
    server.handler = right
    cache = tmp_path / "answers.sqlite"
    (tmp_path / "worker.py").write_text(WORKER)
    workers = [
        subprocess.Popen(
            [sys.executable, "worker.py", server.base_url, str(cache), str(start)],
            cwd=tmp_path,
            env=child_env(),
            stderr=subprocess.PIPE,
            text=True,
        )
        for start in (0, 15, 30, 45)
    ]
    for worker in workers:
        _, err = worker.communicate(timeout=120)
        assert worker.returncode == 0, err
    assert len(ResponseCache(cache)) == 60  # each request kept once, none lost or torn
    sent = len(server.requests)
    assert 60 <= sent <= 240
    server.reset()
    rerun = subprocess.run(
        [sys.executable, "worker.py", server.base_url, str(cache), "7"],
        cwd=tmp_path,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert rerun.returncode == 0, rerun.stderr
    assert not server.requests


def test_a_batch_job_rerun_with_the_cache_sends_nothing_and_says_so(
    server: ChatServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server.handler = right
    docs = tmp_path / "docs.jsonl"
    docs.write_text(
        "".join(json.dumps({"id": i, "text": f"P{i} is 30."}) + "\n" for i in range(30))
    )
    (tmp_path / "person.py").write_text(
        "from pydantic import BaseModel\n\nclass Person(BaseModel):\n    name: str\n    age: int\n"
    )
    out = tmp_path / "out.jsonl"
    argv = [
        "batch", f"{tmp_path / 'person.py'}:Person", str(docs), "-o", str(out),
        "--model", "openai/test-model", "--base-url", server.base_url, "--mode", "json_schema",
        "--cache", str(tmp_path / "answers.sqlite"),
    ]  # fmt: skip
    assert main(argv) == 0
    first = {line["id"]: line for line in map(json.loads, out.read_text().splitlines())}
    server.reset()
    capsys.readouterr()
    assert main([*argv, "--restart"]) == 0  # the same job from scratch
    assert not server.requests
    assert "30 answer(s) from the cache" in capsys.readouterr().err
    again = {line["id"]: line for line in map(json.loads, out.read_text().splitlines())}
    assert {k: v["record"] for k, v in again.items()} == {k: v["record"] for k, v in first.items()}
    assert all(
        line["usage"]["cached"] == 1 and line["usage"]["total_tokens"] == 0
        for line in again.values()
    )


def test_an_eval_over_the_same_data_twice_sends_nothing_the_second_time(
    server: ChatServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(ROOT)
    monkeypatch.syspath_prepend(str(ROOT))
    dataset = tmp_path / "gold.jsonl"
    rows = [
        {"id": "a", "text": "Ann Lee, ann@example.com", "gold": {"name": "Ann Lee"}},
        {"id": "b", "text": "Bob Ray, bob@example.com", "gold": {"name": "Bob Ray"}},
    ]
    dataset.write_text("".join(json.dumps(row) + "\n" for row in rows))

    def contact(request: RecordedRequest) -> Item:
        text = next(str(m["content"]) for m in request.messages if m.get("role") == "user")
        name, email = text.split(", ")
        return Answer(content=json.dumps({"name": name, "email": email}))

    server.handler = contact
    argv = [
        "eval", "schemas/contact.py:Contact", str(dataset), "--model", "openai/test-model",
        "--base-url", server.base_url, "--json", "--cache", str(tmp_path / "answers.sqlite"),
    ]  # fmt: skip
    assert main(argv) == 0
    first = json.loads(capsys.readouterr().out)
    assert len(server.requests) == 2 and first["cached_answers"] == 0
    server.reset()
    assert main(argv) == 0
    second = json.loads(capsys.readouterr().out)
    assert not server.requests
    assert second["cached_answers"] == 2 and second["tokens"]["total"] == 0
    assert second["overall"] == first["overall"]


def test_a_cache_path_that_cannot_be_a_file_says_what_to_do(tmp_path: Path) -> None:
    from extractor import ConfigurationError

    with pytest.raises(ConfigurationError, match="is a folder; name a file"):
        Client("openai/x", cache=tmp_path)
