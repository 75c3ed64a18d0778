"""Batch jobs against a real loopback server (extractor.testing.ChatServer): sources, the
output files and resume, bad documents, pacing, the cost cap, Ctrl-C, `extract_many`,
and the chaos run of acceptance point 1 (1,000 documents, failures of every kind)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from extractor import Client, RetryPolicy, Usage, default_client, extractable
from extractor._cli import main
from extractor.backend import Answer as Reply
from extractor.batch import (
    BatchJob,
    Document,
    DocumentError,
    SourceError,
    Store,
    StoreError,
    open_source,
)
from extractor.batch._limiter import AdaptiveGate, Limiter, TokenBucket
from extractor.batch._sources import load
from extractor.testing import (
    Answer,
    ChatServer,
    Delay,
    Drop,
    Fault,
    Item,
    Raw,
    RecordedRequest,
)
from tests.processes import ROOT, child_env, command, spawn


class Person(BaseModel):
    name: str
    age: int


def document_of(request: RecordedRequest) -> str:
    return next(str(m["content"]) for m in request.messages if m.get("role") == "user")


def name_in(text: str) -> str:
    """Documents read `NAME is N years old.`: the expected record's name."""
    return text.split(" is ", 1)[0]


def person_answer(request: RecordedRequest, **extra: Any) -> Answer:
    name = name_in(document_of(request))
    return Answer(content=json.dumps({"name": name, "age": 30}), **extra)


def write_jsonl(path: Path, count: int, *, start: int = 0) -> list[str]:
    ids = [f"d{i:04d}" for i in range(start, start + count)]
    with path.open("w") as out:
        for doc_id in ids:
            out.write(json.dumps({"id": doc_id, "text": f"P{doc_id} is 30 years old."}) + "\n")
    return ids


def read_lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def quick_retry() -> RetryPolicy:
    return RetryPolicy(initial=0.001, jitter=0.001, max_wait=0.01)


def make_job(server: ChatServer, source: str, out: Path, **options: Any) -> BatchJob:
    client = Client("openai/test-model", base_url=server.base_url, retry=quick_retry())
    return BatchJob(client, Person, open_source(source), out, **options)


def exactly_once(out: Path, failures: Path) -> tuple[list[Any], list[Any]]:
    done = [line["id"] for line in read_lines(out)]
    failed = [line["id"] for line in read_lines(failures)]
    assert len(done) == len(set(done)), "an id is twice in the output"
    assert len(failed) == len(set(failed)), "an id is twice in the failures"
    assert not set(done) & set(failed), "an id is in both files"
    return done, failed


# --- sources ----------------------------------------------------------------------------------


def test_folder_source_reads_nested_files_with_relative_ids(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "one.txt").write_text("Ann is 30 years old.")
    (tmp_path / "two.txt").write_text("Bob is 40 years old.")
    (tmp_path / ".hidden").write_text("not a document")
    (tmp_path / "empty.txt").write_text("  \n")
    (tmp_path / "latin1.txt").write_bytes("Zoë is 3".encode("latin-1"))
    source = open_source(str(tmp_path))
    listed = {d.id: d for d in source}
    assert listed["two.txt"].path == str(tmp_path / "two.txt")  # read when its turn comes
    found = {i: load(d) for i, d in listed.items()}
    assert set(found) == {"a/one.txt", "two.txt", "empty.txt", "latin1.txt"}
    assert found["a/one.txt"] == Document("a/one.txt", "Ann is 30 years old.")
    assert "empty" in (found["empty.txt"].problem or "")
    assert "not UTF-8" in (found["latin1.txt"].problem or "")
    assert source.count() == 4


def test_jsonl_source_turns_bad_lines_into_failures(tmp_path: Path) -> None:
    path = tmp_path / "docs.jsonl"
    path.write_text(
        '{"id": "a", "text": "Ann is 30."}\n'
        "\n"
        '{"id": 7, "text": "Bob is 40."}\n'
        "not json\n"
        '{"text": "no id"}\n'
        '{"id": "c"}\n'
        '{"id": "d", "text": ""}\n'
    )
    documents = list(open_source(str(path)))
    assert [(d.id, d.text) for d in documents[:2]] == [("a", "Ann is 30."), (7, "Bob is 40.")]
    problems = {d.id: d.problem for d in documents[2:]}
    assert set(problems) == {"line 4", "line 5", "c", "d"}
    assert all(problems.values())


def test_jsonl_source_names_the_fields_when_the_first_line_lacks_one(tmp_path: Path) -> None:
    path = tmp_path / "docs.jsonl"
    path.write_text('{"doc": "a", "body": "Ann is 30."}\n')
    with pytest.raises(SourceError, match=r"no 'id' field \(fields: doc, body\).*--id-field"):
        open_source(str(path))
    documents = list(open_source(str(path), id_field="doc", text_field="body"))
    assert documents == [Document("a", "Ann is 30.")]


def test_csv_source_reads_quoted_multiline_text_and_flags_bad_bytes(tmp_path: Path) -> None:
    path = tmp_path / "docs.csv"
    path.write_bytes(
        b'id,text\r\na,"Ann is 30,\r\nand lives in Delft."\r\nb,Bob \xff is 40\r\nc,\r\n'
    )
    documents = {d.id: d for d in open_source(str(path))}
    assert documents["a"].text == "Ann is 30,\r\nand lives in Delft."
    assert "not UTF-8" in (documents["b"].problem or "")
    assert "empty" in (documents["c"].problem or "")
    with pytest.raises(SourceError, match="'body'"):
        open_source(str(path), text_field="body")


def test_open_source_refuses_other_files(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(SourceError, match="neither a folder nor"):
        open_source(str(tmp_path / "notes.txt"))
    with pytest.raises(SourceError, match="does not exist"):
        open_source(str(tmp_path / "missing.jsonl"))


# --- the store --------------------------------------------------------------------------------


def test_store_cuts_off_a_torn_last_line_and_keeps_the_rest(tmp_path: Path) -> None:
    out, failures = tmp_path / "out.jsonl", tmp_path / "out.failures.jsonl"
    out.write_text('{"id": "a", "record": {}}\n{"id": "b", "record": {}}\n{"id": "c", "rec')
    failures.write_text('{"id": "x", "error": {}}\n')
    with Store(out, failures) as store:
        assert store.done == {"a": True, "b": True, "x": False}
        assert store.repaired == {str(out): len('{"id": "c", "rec')}
        store.write({"id": "c", "record": {}}, ok=True)
    assert [line["id"] for line in read_lines(out)] == ["a", "b", "c"]


def test_store_refuses_a_broken_line_in_the_middle(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    out.write_text('{"id": "a"}\ngarbage\n{"id": "b"}\n')
    with pytest.raises(StoreError, match=r"out.jsonl, line 2: .*fix or delete that line"):
        Store(out, tmp_path / "f.jsonl")
    assert out.read_text() == '{"id": "a"}\ngarbage\n{"id": "b"}\n'  # nothing touched


def test_store_restart_starts_from_empty_files(tmp_path: Path) -> None:
    out, failures = tmp_path / "out.jsonl", tmp_path / "f.jsonl"
    out.write_text('{"id": "a"}\n')
    failures.write_text('{"id": "b"}\n')
    with Store(out, failures, restart=True) as store:
        assert store.done == {}
    assert out.read_text() == failures.read_text() == ""


# --- jobs: resume, bad documents ------------------------------------------------------------


def test_job_writes_one_line_per_document_and_resumes(server: ChatServer, tmp_path: Path) -> None:
    server.handler = person_answer
    source, out = tmp_path / "docs.jsonl", tmp_path / "out.jsonl"
    ids = write_jsonl(source, 20)
    summary = make_job(server, str(source), out, concurrency=4).run()
    assert (summary.status, summary.done, summary.failed) == ("complete", 20, 0)
    lines = read_lines(out)
    assert sorted(line["id"] for line in lines) == ids
    first = lines[0]
    assert set(first) == {
        "id",
        "record",
        "usage",
        "attempts",
        "model",
        "mode",
        "elapsed_s",
        "schema",
    }
    assert first["record"] == {"name": f"P{first['id']}", "age": 30}
    assert (first["attempts"], first["model"], first["mode"]) == (
        1,
        "openai/test-model",
        "json_schema",
    )
    assert first["usage"]["total_tokens"] == 15

    requests = len(server.requests)
    write_jsonl(source, 25)  # five more documents appear in the input
    again = make_job(server, str(source), out, concurrency=4).run()
    assert (again.skipped, again.done) == (20, 5)
    assert len(server.requests) == requests + 5
    done, failed = exactly_once(out, tmp_path / "out.failures.jsonl")
    assert sorted(done) == [f"d{i:04d}" for i in range(25)] and failed == []


def test_bad_documents_become_failures_and_do_not_change_the_mode(
    server: ChatServer, tmp_path: Path
) -> None:
    def handle(request: RecordedRequest) -> Item:
        if len(document_of(request)) > 1000:
            message = "This model's maximum context length is 128 tokens."
            error = {"message": message, "type": "invalid_request_error"}
            return Fault(400, body={"error": {**error, "code": "context_length_exceeded"}})
        return person_answer(request)

    server.handler = handle
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "ann.txt").write_text("Ann is 30 years old.")
    (folder / "empty.txt").write_text("")
    (folder / "latin1.txt").write_bytes("Zoë is 3".encode("latin-1"))
    (folder / "long.txt").write_text("Lee is 9. " * 200)
    (folder / "zed.txt").write_text("Zed is 30 years old.")
    out = tmp_path / "out.jsonl"
    summary = make_job(server, str(folder), out, concurrency=1).run()
    assert summary.status == "complete"
    done, failed = exactly_once(out, tmp_path / "out.failures.jsonl")
    # the over-long document was refused once, then read in chunks the server takes
    assert sorted(done) == ["ann.txt", "long.txt", "zed.txt"]
    assert sorted(failed) == ["empty.txt", "latin1.txt"]
    by_id = {line["id"]: line for line in read_lines(tmp_path / "out.failures.jsonl")}
    assert by_id["empty.txt"]["error"]["type"] == "DocumentError"
    too_long = [r for r in server.requests if len(document_of(r)) > 1000]
    assert len(too_long) == 1 and len(server.requests) > 4
    # and it was not taken for a rejection of the mode
    assert {r.response_format["type"] for r in server.requests if r.response_format} == {
        "json_schema"
    }


# --- the chaos run (acceptance 1) -------------------------------------------------------------

KINDS = ("429", "500", "503", "drop", "malformed", "length", "invalid")


def chaos(always_invalid: set[str]) -> tuple[Callable[[RecordedRequest], Item], Counter[str]]:
    """30% of each document's first and second requests fail, in a kind chosen per document."""
    counts: Counter[str] = Counter()
    injected: Counter[str] = Counter()
    lock = threading.Lock()

    def handle(request: RecordedRequest) -> Item:
        text = document_of(request)
        name = name_in(text)
        with lock:
            counts[name] += 1
            attempt = counts[name]
        if name in always_invalid:
            return Answer(content=json.dumps({"name": name, "age": "unknown"}))
        digest = hashlib.sha256(f"{name}/{attempt}".encode()).digest()
        if attempt <= 2 and digest[0] < 0.3 * 256:
            kind = KINDS[digest[1] % len(KINDS)]
            with lock:
                injected[kind] += 1
            return {
                "429": Fault(429, headers={"Retry-After": "0"}),
                "500": Fault(500),
                "503": Fault(503),
                "drop": Drop(),
                "malformed": Raw(b'{"id": "chatcmpl-1", "choices": [{"index": 0, "mess'),
                "length": Answer(content='{"name": "' + name[:3], finish_reason="length"),
                "invalid": Answer(content=json.dumps({"name": name})),
            }[kind]
        return Answer(content=json.dumps({"name": name, "age": 30}))

    return handle, injected


def test_chaos_thousand_documents_every_id_exactly_once(server: ChatServer, tmp_path: Path) -> None:
    source, out = tmp_path / "docs.jsonl", tmp_path / "out.jsonl"
    ids = write_jsonl(source, 1000)
    always_invalid = {f"P{doc_id}" for doc_id in ids[::97]}  # 11 documents
    server.handler, injected = chaos(always_invalid)
    summary = make_job(server, str(source), out, concurrency=32).run()

    done, failed = exactly_once(out, tmp_path / "out.failures.jsonl")
    assert sorted(done + failed) == ids
    assert {f"P{doc_id}" for doc_id in failed} == always_invalid
    assert set(injected) == set(KINDS) and sum(injected.values()) > 300  # about 30% + 30% of 30%
    for line in read_lines(out):  # no record was given to the wrong document
        assert line["record"] == {"name": f"P{line['id']}", "age": 30}
    for line in read_lines(tmp_path / "out.failures.jsonl"):
        assert line["error"]["type"] == "RetriesExhausted"
        assert (line["attempts"], json.loads(line["raw"])["age"]) == (3, "unknown")
    assert summary.rate_limited == injected["429"]
    assert (summary.done, summary.failed) == (1000 - len(always_invalid), len(always_invalid))


# --- pacing -------------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_token_bucket_spreads_a_burst_over_the_minute() -> None:
    clock = Clock()
    bucket = TokenBucket(60, clock=clock)  # one a second, a second's worth of burst
    assert [bucket.reserve(1) for _ in range(4)] == [0.0, 1.0, 2.0, 3.0]
    clock.now = 10.0
    assert bucket.reserve(1) == 0.0
    tokens = TokenBucket(6000, clock=clock)  # 100 a second
    assert tokens.reserve(300) == pytest.approx(2.0)
    tokens.adjust(-300)  # the estimate was too high: given back
    assert tokens.reserve(50) == 0.0


def test_gate_halves_on_demand_and_grows_back_one_slot_per_round() -> None:
    gate = AdaptiveGate(8)
    gate.shrink()
    gate.shrink()
    assert gate.limit == 2
    for _ in range(2):
        gate.succeeded()
    assert gate.limit == 3
    for _ in range(3 + 4 + 5 + 6 + 7):
        gate.succeeded()
    assert gate.limit == 8


def test_a_429_pauses_every_request_for_its_retry_after(server: ChatServer, tmp_path: Path) -> None:
    arrivals: list[tuple[float, str]] = []
    lock = threading.Lock()
    first = threading.Event()

    def handle(request: RecordedRequest) -> Item:
        with lock:
            arrivals.append((time.monotonic(), name_in(document_of(request))))
            if not first.is_set():
                first.set()
                return Fault(429, headers={"Retry-After": "0.5"})
        return Delay(0.05, person_answer(request))

    server.handler = handle
    source, out = tmp_path / "docs.jsonl", tmp_path / "out.jsonl"
    write_jsonl(source, 12)
    summary = make_job(server, str(source), out, concurrency=4).run()
    assert (summary.done, summary.rate_limited) == (12, 1)
    limited_at, limited = arrivals[0]
    first_window = {name for _, name in arrivals[:4]}  # sent together, before the 429 came back
    later = [t for t, name in arrivals[1:] if name not in first_window or name == limited]
    assert len(later) == 9  # the retry, and the eight documents after the first window
    assert min(later) >= limited_at + 0.45


def test_rpm_spaces_requests(server: ChatServer, tmp_path: Path) -> None:
    server.handler = person_answer
    source, out = tmp_path / "docs.jsonl", tmp_path / "out.jsonl"
    write_jsonl(source, 8)
    started = time.monotonic()
    summary = make_job(server, str(source), out, concurrency=8, rpm=240).run()  # 4 a second
    assert summary.done == 8
    assert time.monotonic() - started >= 0.95  # 4 at once (a second's worth), then 0.25 s apart


def test_tpm_waits_for_the_tokens_a_request_needs() -> None:
    sleeps: list[float] = []

    async def answer() -> Reply:
        return Reply("{}", "stop", None, Usage(total_tokens=1200), None)

    clock = Clock()

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        clock.now += seconds

    limiter = Limiter(2, tpm=60_000, clock=clock, sleep=sleep)  # 1,000 a second

    async def main() -> None:
        for _ in range(3):
            await limiter.send(answer, lambda: 4004)  # 1,001 tokens: a hair over the bucket

    asyncio.run(main())
    # the first fits the bucket; each answer reports 1,200 tokens, so each next one
    # waits for the 200 it overdrew and its own 1,000: 1.2 s at 1,000 a second
    assert sleeps[0] < 0.02
    assert sleeps[1:] == [pytest.approx(1.2, abs=0.02)] * 2


# --- the cost cap -------------------------------------------------------------------------------


def test_max_cost_stops_starting_documents(server: ChatServer, tmp_path: Path) -> None:
    usage = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15, "cost": 0.01}
    server.handler = lambda request: person_answer(request, usage=usage)
    source, out = tmp_path / "docs.jsonl", tmp_path / "out.jsonl"
    ids = write_jsonl(source, 20)
    summary = make_job(server, str(source), out, concurrency=1, max_cost=0.05).run()
    assert (summary.status, summary.done) == ("max_cost", 5)
    assert summary.usage.cost == pytest.approx(0.05)
    rest = make_job(server, str(source), out, concurrency=4).run()
    assert (rest.status, rest.skipped, rest.done) == ("complete", 5, 15)
    done, _ = exactly_once(out, tmp_path / "out.failures.jsonl")
    assert sorted(done) == ids


# --- extract_many -------------------------------------------------------------------------------


def test_extract_many_yields_each_id_with_real_concurrency(server: ChatServer) -> None:
    in_flight = peak = 0
    lock = threading.Lock()

    def handle(request: RecordedRequest) -> Item:
        nonlocal in_flight, peak
        with lock:
            in_flight += 1
            peak = max(peak, in_flight)

        def leave(_: RecordedRequest) -> Item:
            nonlocal in_flight
            with lock:
                in_flight -= 1
            return person_answer(request)

        return Delay(0.15, leave)

    server.handler = handle
    client = Client("openai/test-model", base_url=server.base_url, retry=quick_retry())
    texts = [f"P{i} is 30 years old." for i in range(24)] + [""]
    results = list(client.extract_many(Person, texts, concurrency=8))
    assert sorted(r.id for r in results) == list(range(25))
    by_id = {r.id: r for r in results}
    assert by_id[3].value == Person(name="P3", age=30)
    assert not by_id[24].ok and isinstance(by_id[24].error, DocumentError)
    with pytest.raises(DocumentError):
        _ = by_id[24].value
    assert peak == 8


def test_aextract_many_and_the_decorator(server: ChatServer) -> None:
    server.handler = person_answer

    @extractable(model="openai/test-model", base_url=server.base_url)
    class Member(BaseModel):
        name: str
        age: int

    pairs = [(f"m{i}", f"M{i} is 30 years old.") for i in range(5)]

    async def collect() -> dict[str, str]:
        found = {}
        async for result in Member.aextract_many(pairs, concurrency=3):  # type: ignore[attr-defined]
            found[result.id] = result.value.name
        await default_client().aclose()  # its pool belongs to this loop, which ends here
        return found

    assert asyncio.run(collect()) == {f"m{i}": f"M{i}" for i in range(5)}
    names = {r.id: r.value.name for r in Member.extract_many(dict(pairs))}  # type: ignore[attr-defined]
    assert names == {f"m{i}": f"M{i}" for i in range(5)}


def test_extract_many_stops_at_a_set_up_mistake_before_sending(server: ChatServer) -> None:
    client = Client("nowhere/model")
    with pytest.raises(Exception, match="unknown provider"):
        client.extract_many(Person, ["Ann is 30."])
    assert server.requests == []


# --- the command --------------------------------------------------------------------------------


def batch_argv(server: ChatServer, *rest: str) -> list[str]:
    return ["batch", *rest, "--model", "openai/test-model", "--base-url", server.base_url]


def test_cli_batch_runs_resumes_and_reports(
    server: ChatServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server.handler = person_answer
    source, out = tmp_path / "docs.jsonl", tmp_path / "out.jsonl"
    write_jsonl(source, 6)
    with source.open("a") as more:
        more.write(json.dumps({"id": "empty", "text": " "}) + "\n")
    out.write_text('{"id": "d0000", "record": {"name": "Pd0000", "age": 30}}\n{"id": "d00')
    summary_path = tmp_path / "summary.json"
    schema = "tests.test_batch:Person"
    code = main(
        batch_argv(server, schema, str(source), "-o", str(out), "--summary-json", str(summary_path))
    )
    err = capsys.readouterr().err
    assert code == 1  # the empty document is a failure
    assert "complete: 5 extracted, 1 failed" in err
    assert "\x1b[K" not in err  # stderr is not a terminal: a summary, no progress line
    assert "cut off a torn last line" in err
    report = json.loads(summary_path.read_text())
    assert report["documents"] == {
        "seen": 7,
        "done": 5,
        "failed": 1,
        "skipped": 1,
        "failed_before": 0,
        "duplicates": 0,
        "abandoned": 0,
    }
    done, failed = exactly_once(out, tmp_path / "out.failures.jsonl")
    assert sorted(done) == [f"d{i:04d}" for i in range(6)] and failed == ["empty"]
    # nothing left to do, and a failure from before still counts in the exit status
    assert main(batch_argv(server, schema, str(source), "-o", str(out))) == 1
    assert "skipped 7 already in the output files, 1 of them failures" in capsys.readouterr().err


def test_cli_batch_usage_errors_exit_2(
    server: ChatServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "docs.jsonl"
    source.write_text('{"doc": "a", "text": "x"}\n')
    schema = "tests.test_batch:Person"
    argv = batch_argv(server, schema, str(source), "-o", str(tmp_path / "o.jsonl"))
    assert main(argv) == 2
    assert "--id-field" in capsys.readouterr().err
    assert main([*argv, "--concurrency", "0"]) == 2
    assert "above 0" in capsys.readouterr().err
    assert server.requests == []


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child is POSIX-only")
def test_ctrl_c_finishes_in_flight_documents_and_the_rerun_completes(
    server: ChatServer, tmp_path: Path
) -> None:
    started = threading.Event()
    count = 0
    lock = threading.Lock()

    def slow(request: RecordedRequest) -> Item:
        nonlocal count
        with lock:
            count += 1
        started.set()
        return Delay(0.6, person_answer(request))

    server.handler = slow
    source, out = tmp_path / "docs.jsonl", tmp_path / "out.jsonl"
    ids = write_jsonl(source, 12)
    argv = batch_argv(server, "tests.test_batch:Person", str(source), "-o", str(out))
    child = spawn(*argv, "--concurrency", "3")
    with child:
        try:
            assert started.wait(20), "the child never sent a request"
            time.sleep(0.1)
            child.send_signal(signal.SIGINT)
            _, err = child.communicate(timeout=20)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
    assert child.returncode == 130
    assert "stopping: finishing 3 document(s) in flight" in err
    assert "interrupted: 3 extracted, 0 failed" in err
    assert "Traceback" not in err
    assert len(read_lines(out)) == 3 == count  # the three in flight finished; none started after

    server.handler = person_answer
    rerun = subprocess.run(
        command(*argv),
        cwd=ROOT,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert rerun.returncode == 0, rerun.stderr
    done, failed = exactly_once(out, tmp_path / "out.failures.jsonl")
    assert sorted(done) == ids and failed == []


@pytest.mark.skipif(sys.platform == "win32", reason="pseudo-terminals are POSIX-only")
def test_progress_shows_on_a_terminal(server: ChatServer, tmp_path: Path) -> None:
    import pty

    server.handler = lambda request: Delay(0.25, person_answer(request))
    source, out = tmp_path / "docs.jsonl", tmp_path / "out.jsonl"
    write_jsonl(source, 8)
    argv = batch_argv(server, "tests.test_batch:Person", str(source), "-o", str(out))
    primary, secondary = pty.openpty()
    child = subprocess.Popen(
        command(*argv, "--concurrency", "2"),
        cwd=ROOT,
        env=child_env(),
        stdout=subprocess.DEVNULL,
        stderr=secondary,
    )
    os.close(secondary)
    shown = b""
    try:
        while True:
            try:
                chunk = os.read(primary, 4096)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            shown += chunk
    finally:
        os.close(primary)
        child.wait(timeout=30)
    text = shown.decode()
    assert child.returncode == 0
    progress = [line for line in text.split("\r\x1b[K") if " of 8 · " in line]
    assert progress, text
    assert any("0 failed · " in line and "/s · " in line and "left" in line for line in progress)
    assert "complete: 8 extracted, 0 failed" in text


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child is POSIX-only")
def test_a_second_ctrl_c_abandons_documents_in_flight(server: ChatServer, tmp_path: Path) -> None:
    arrived = threading.Semaphore(0)

    def stall(request: RecordedRequest) -> Item:
        arrived.release()
        return Delay(30.0, person_answer(request))  # cut short when the server stops

    server.handler = stall
    source, out = tmp_path / "docs.jsonl", tmp_path / "out.jsonl"
    ids = write_jsonl(source, 5)
    argv = batch_argv(server, "tests.test_batch:Person", str(source), "-o", str(out))
    child = spawn(*argv, "--concurrency", "2")
    with child:
        try:
            assert arrived.acquire(timeout=20) and arrived.acquire(timeout=20)
            child.send_signal(signal.SIGINT)
            time.sleep(0.3)
            child.send_signal(signal.SIGINT)
            _, err = child.communicate(timeout=20)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
    assert child.returncode == 130
    assert "interrupted: 0 extracted, 0 failed, 2 abandoned (they run next time)" in err
    assert read_lines(out) == [] and len(server.requests) == 2

    server.handler = person_answer
    assert main(argv) == 0
    done, failed = exactly_once(out, tmp_path / "out.failures.jsonl")
    assert sorted(done) == ids and failed == []


def test_cli_max_cost_exits_3_and_a_rerun_goes_on(
    server: ChatServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    usage = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15, "cost": 0.02}
    server.handler = lambda request: person_answer(request, usage=usage)
    source, out = tmp_path / "docs.jsonl", tmp_path / "out.jsonl"
    ids = write_jsonl(source, 6)
    argv = batch_argv(server, "tests.test_batch:Person", str(source), "-o", str(out))
    assert main([*argv, "--concurrency", "1", "--max-cost", "0.05"]) == 3
    err = capsys.readouterr().err
    assert "stopped at --max-cost: 3 extracted" in err and "cost $0.0600" in err
    assert main(argv) == 0
    assert sorted(exactly_once(out, tmp_path / "out.failures.jsonl")[0]) == ids


def test_a_failing_provider_stops_the_job_and_retry_failures_runs_them_again(
    server: ChatServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server.handler = lambda request: Fault(503)
    source, out = tmp_path / "docs.jsonl", tmp_path / "out.jsonl"
    failures = tmp_path / "out.failures.jsonl"
    ids = write_jsonl(source, 30)
    summary = make_job(server, str(source), out, concurrency=1).run()
    assert (summary.status, summary.done, summary.failed) == ("provider_failing", 0, 20)
    assert "stopped: the provider keeps failing" in summary.text()
    assert len(read_lines(failures)) == 20 and read_lines(out) == []  # 10 never started

    server.handler = person_answer
    argv = batch_argv(server, "tests.test_batch:Person", str(source), "-o", str(out))
    assert main([*argv, "--retry-failures"]) == 0
    assert "complete: 30 extracted, 0 failed" in capsys.readouterr().err
    done, failed = exactly_once(out, failures)
    assert sorted(done) == ids and failed == []


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child is POSIX-only")
def test_stdin_input_and_ctrl_c_while_the_pipe_is_silent(
    server: ChatServer, tmp_path: Path
) -> None:
    arrived = threading.Event()

    def handle(request: RecordedRequest) -> Item:
        arrived.set()
        return person_answer(request)

    server.handler = handle
    out = tmp_path / "out.jsonl"
    argv = batch_argv(server, "tests.test_batch:Person", "-", "-o", str(out))
    child = spawn(*argv, stdin=subprocess.PIPE)
    with child:
        try:
            assert child.stdin is not None
            child.stdin.write(json.dumps({"id": "a", "text": "Ann is 30 years old."}) + "\n")
            child.stdin.flush()  # and then nothing more: the pipe stays open
            assert arrived.wait(20), "the child never sent its request"
            deadline = time.monotonic() + 20
            while not read_lines(out) and time.monotonic() < deadline:
                time.sleep(0.02)
            assert read_lines(out), "the finished document waited for more input"
            child.send_signal(signal.SIGINT)
            _, err = child.communicate(timeout=20)  # must not hang on the silent pipe
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
    assert child.returncode == 130
    assert "interrupted: 1 extracted, 0 failed" in err
    assert read_lines(out) == [
        {**read_lines(out)[0], "id": "a", "record": {"name": "Ann", "age": 30}}
    ]
