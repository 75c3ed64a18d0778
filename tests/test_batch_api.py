"""`--via batch-api`: the online job's requests through a provider's batch API.

Against the loopback `ChatServer`'s batch endpoints (OpenAI's and Mistral's shapes):
the records are those of the online job, each line's body is byte for byte the online
body, invalid answers are re-asked in a later batch, failed and expired lines are sent
again, and a job killed while its batch runs finds that batch again instead of
submitting its documents twice.
"""

from __future__ import annotations

import json
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import BaseModel

from extractor import Client, ConfigurationError, RetryPolicy
from extractor.batch import BatchJob, open_source
from extractor.batch._api import BatchAPIBackend
from extractor.testing import Answer, BatchOutcome, ChatServer, Fault, Item, RecordedRequest
from tests.processes import child_env
from tests.test_batch_server import valid
from tests.wire import check_mistral_body, check_openai_body

SCHEMA = """\
from pydantic import BaseModel


class Person(BaseModel):
    name: str
    age: int
"""


class Person(BaseModel):
    name: str
    age: int


def document_of(request: RecordedRequest) -> str:
    return next(str(m["content"]) for m in request.messages if m.get("role") == "user")


def name_of(request: RecordedRequest) -> str:
    return document_of(request).split(" is ", 1)[0]


def write_docs(path: Path, count: int) -> list[str]:
    ids = [f"p{i:03d}" for i in range(count)]
    with path.open("w") as out:
        for doc_id in ids:
            out.write(json.dumps({"id": doc_id, "text": f"{doc_id} is 30 years old."}) + "\n")
    return ids


def lines(path: Path) -> dict[str, dict[str, Any]]:
    if not path.exists():
        return {}
    return {line["id"]: line for line in map(json.loads, path.read_text().splitlines())}


def job(
    server: ChatServer, tmp_path: Path, source: Path, provider: str = "openai", **limits: int
) -> BatchJob:
    backend = BatchAPIBackend(
        tmp_path / "state.sqlite", tmp_path / "parts", linger=0.2, poll=(0.01, 0.05), **limits
    )
    client = Client(
        f"{provider}/test-model",
        base_url=server.base_url,
        api_key="sk-batch",
        mode="json_schema",
        backend=backend,
        deadline=None,
        retry=RetryPolicy(initial=0.0, jitter=0.0, max_elapsed=None),
    )
    return BatchJob(
        client, Person, open_source(str(source)), tmp_path / "out.jsonl", concurrency=500
    )


@pytest.mark.parametrize("provider", ["openai", "mistral"])
def test_records_come_back_as_online_and_invalid_answers_are_reasked_in_a_later_batch(
    server: ChatServer, tmp_path: Path, provider: str
) -> None:
    ids = write_docs(tmp_path / "docs.jsonl", 40)
    wrong_once = set(ids[::7])
    seen: Counter[str] = Counter()

    def handle(request: RecordedRequest) -> Item:
        name = name_of(request)
        seen[name] += 1
        if name in wrong_once and seen[name] == 1:
            return Answer(content='{"name": "' + name + '", "age": "thirty"}')
        return Answer(content=json.dumps({"name": name, "age": 30}))

    server.handler = handle
    summary = job(server, tmp_path, tmp_path / "docs.jsonl", provider).run()
    assert (summary.done, summary.failed) == (40, 0)
    out = lines(tmp_path / "out.jsonl")
    assert set(out) == set(ids) and out["p007"]["attempts"] == 2
    assert out["p001"]["record"] == {"name": "p001", "age": 30}

    batch_lines = server.batch_lines
    assert len(batch_lines) == 40 + len(wrong_once)  # one line per request, reasks included
    assert len({r.custom_id for r in batch_lines}) == len(batch_lines)
    assert len({r.batch_id for r in batch_lines}) == 2  # the first round, then the reasks
    assert not server.requests  # nothing went to the online endpoint
    for recorded in batch_lines:
        body = recorded.body or {}
        if provider == "openai":  # the line as OpenAI's spec defines it, and its body
            assert body["model"] == "test-model"
            valid("BatchRequestInput", json.loads(recorded.raw))
            check_openai_body(body)
        else:  # Mistral takes the model on the job
            assert "model" not in body
            assert set(json.loads(recorded.raw)) == {"custom_id", "body"}
            check_mistral_body({**body, "model": "test-model"})


def test_each_line_carries_the_online_body_byte_for_byte(
    server: ChatServer, tmp_path: Path
) -> None:
    write_docs(tmp_path / "docs.jsonl", 3)
    server.handler = lambda request: Answer(
        content=json.dumps({"name": name_of(request), "age": 30})
    )
    job(server, tmp_path, tmp_path / "docs.jsonl").run()
    batch_bodies = {name_of(r): r for r in server.batch_lines}

    online = Client(
        "openai/test-model", base_url=server.base_url, api_key="sk-batch", mode="json_schema"
    )
    for doc_id in ("p000", "p001", "p002"):
        online.extract(Person, f"{doc_id} is 30 years old.")
    assert len(server.requests) == 3
    for request in server.requests:  # the online body, whole, inside the batch line
        assert request.raw in batch_bodies[name_of(request)].raw
    online.close()


def test_failed_and_expired_lines_are_sent_again_and_every_document_ends_once(
    server: ChatServer, tmp_path: Path
) -> None:
    ids = write_docs(tmp_path / "docs.jsonl", 60)
    flaky = set(ids[::10])
    seen: Counter[str] = Counter()

    def handle(request: RecordedRequest) -> Item:
        name = name_of(request)
        seen[name] += 1
        if name in flaky and seen[name] == 1:
            return Fault(500)
        return Answer(content=json.dumps({"name": name, "age": 30}))

    server.handler = handle
    server.batch_script(BatchOutcome(expire_after=45))  # the first batch runs 45 of its lines
    summary = job(server, tmp_path, tmp_path / "docs.jsonl").run()
    assert (summary.done, summary.failed) == (60, 0)
    assert set(lines(tmp_path / "out.jsonl")) == set(ids)
    per_doc = Counter(name_of(r) for r in server.batch_lines)
    assert all(per_doc[i] in (1, 2) for i in ids)
    assert all(per_doc[i] == 2 for i in flaky)
    assert len({r.custom_id for r in server.batch_lines}) == len(server.batch_lines)


def test_a_job_killed_while_its_batch_runs_finds_it_again(
    server: ChatServer, tmp_path: Path
) -> None:
    ids = write_docs(tmp_path / "docs.jsonl", 25)
    (tmp_path / "person.py").write_text(SCHEMA)
    server.handler = lambda request: Answer(
        content=json.dumps({"name": name_of(request), "age": 30})
    )
    server.batch_script(BatchOutcome(polls=10_000))  # the first batch never ends on its own
    argv = [
        sys.executable, "-m", "extractor", "batch", str(tmp_path / "person.py") + ":Person",
        str(tmp_path / "docs.jsonl"), "-o", str(tmp_path / "out.jsonl"), "--via", "batch-api",
        "--model", "openai/test-model", "--base-url", server.base_url, "--mode", "json_schema",
    ]  # fmt: skip
    child = subprocess.Popen(argv, cwd=tmp_path, env=child_env(), stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while len(server.batch_lines) < 25:  # submitted: the batch is being polled
            assert child.poll() is None and time.monotonic() < deadline
            time.sleep(0.02)
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.wait()
    assert not lines(tmp_path / "out.jsonl")

    # the rerun must wait for that batch, not submit the documents again
    batch_id = server.batch_lines[0].batch_id
    server.batch_handler = None
    # end it: cancelled, it keeps what it answered (here: every line, at its first poll)
    httpx.post(f"{server.base_url}/batches/{batch_id}/cancel").raise_for_status()
    done = subprocess.run(argv, cwd=tmp_path, env=child_env(), capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr.decode()
    assert set(lines(tmp_path / "out.jsonl")) == set(ids)
    # every document was submitted once, in the batch of the killed run
    assert len(server.batch_lines) == 25
    assert {r.batch_id for r in server.batch_lines} == {batch_id}


def test_a_provider_without_a_batch_api_says_so_and_points_to_the_online_job(
    tmp_path: Path,
) -> None:
    write_docs(tmp_path / "docs.jsonl", 1)
    (tmp_path / "person.py").write_text(SCHEMA)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "extractor",
            "batch",
            str(tmp_path / "person.py") + ":Person",
            str(tmp_path / "docs.jsonl"),
            "-o",
            str(tmp_path / "out.jsonl"),
            "--via",
            "batch-api",
            "--model",
            "openrouter/mistralai/mistral-large-2407",
        ],
        cwd=tmp_path,
        env={**child_env(), "OPENROUTER_API_KEY": "sk-or-test"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert re.search(r"openrouter has no batch API; run the online job", done.stderr)
    assert not (tmp_path / "out.jsonl").exists() or not (tmp_path / "out.jsonl").read_text()


def test_the_batch_api_backend_refuses_blocking_calls(tmp_path: Path) -> None:
    backend = BatchAPIBackend(tmp_path / "s.sqlite", tmp_path / "parts")
    client = Client("openai/test-model", api_key="sk-x", backend=backend)
    with pytest.raises(ConfigurationError, match="batch jobs only"):
        client.extract(Person, "Ann is 3")
    backend.close()


def test_two_thousand_documents_with_faults_and_three_kills_end_once_and_none_sent_twice(
    server: ChatServer, tmp_path: Path
) -> None:
    """Killed (kill -9) during the upload, during the polling and during the download."""
    rng = random.Random(15)
    ids = write_docs(tmp_path / "docs.jsonl", 2000)
    invalid = set(rng.sample(ids, 200))  # 10%: a wrong answer first, then the right one
    failing = set(rng.sample(sorted(set(ids) - invalid), 60))  # 3%: an error-file line first
    (tmp_path / "person.py").write_text(SCHEMA)
    seen: Counter[str] = Counter()
    lock = threading.Lock()

    def handle(request: RecordedRequest) -> Item:
        name = name_of(request)
        with lock:
            seen[name] += 1
            first = seen[name] == 1
        if first and name in invalid:
            return Answer(content=json.dumps({"name": name, "age": "thirty"}))
        if first and name in failing:
            return Fault(500)
        return Answer(content=json.dumps({"name": name, "age": 30}))

    server.handler = handle
    # the first batch expires after 1,500 of its lines; later ones take a few polls each
    server.batch_script(BatchOutcome(expire_after=1500, polls=3))
    server.batch_handler = lambda submission: BatchOutcome(polls=rng.randint(1, 4))
    argv = [
        sys.executable, "-m", "extractor", "batch", str(tmp_path / "person.py") + ":Person",
        str(tmp_path / "docs.jsonl"), "-o", str(tmp_path / "out.jsonl"), "--via", "batch-api",
        "--model", "openai/test-model", "--base-url", server.base_url, "--mode", "json_schema",
        "--max-retries", "2",
    ]  # fmt: skip

    def uploading(call: RecordedRequest) -> bool:  # the file is stored; its id never arrives
        return call.method == "POST" and call.path.endswith("/files")

    polls = Counter[str]()

    def polling(call: RecordedRequest) -> bool:  # the batch runs; its second status fetch
        if call.method != "GET" or not re.search(r"/batches/[^/?]+$", call.path):
            return False
        polls[call.path] += 1
        return polls[call.path] == 2

    def downloading(call: RecordedRequest) -> bool:  # the output file asked for
        return call.method == "GET" and call.path.endswith("/content")

    for phase, delay in ((uploading, 0.0), (polling, 0.0), (downloading, rng.uniform(0, 0.1))):
        child = subprocess.Popen(argv, cwd=tmp_path, env=child_env(), stderr=subprocess.DEVNULL)
        fired = threading.Event()

        def kill(
            call: RecordedRequest,
            phase: Any = phase,
            child: Any = child,
            fired: threading.Event = fired,
            delay: float = delay,
        ) -> None:
            if not fired.is_set() and phase(call):
                fired.set()
                time.sleep(delay)  # the download: while its lines are read and settled
                child.send_signal(signal.SIGKILL)

        server.on_batch_call = kill
        try:
            child.wait(timeout=120)
        finally:
            server.on_batch_call = None
            child.kill()
        assert fired.is_set() and child.returncode == -signal.SIGKILL, phase.__name__
    done = subprocess.run(argv, cwd=tmp_path, env=child_env(), capture_output=True, timeout=300)
    assert done.returncode == 0, done.stderr.decode()[-2000:]

    out = lines(tmp_path / "out.jsonl")
    assert set(out) == set(ids)  # every document once, all extracted
    assert not lines(tmp_path / "out.failures.jsonl")
    assert all(out[i]["attempts"] == 2 for i in invalid)  # re-asked once
    custom_ids = [r.custom_id for r in server.batch_lines]
    assert len(custom_ids) == len(set(custom_ids))  # no line sent twice
    # no request was submitted twice: a body goes again only after its line failed
    sent = Counter((name_of(r), r.raw.split(b'"body": ', 1)[1]) for r in server.batch_lines)
    first_batch = [r for r in server.batch_lines if r.batch_id == server.batch_lines[0].batch_id]
    expired = {name_of(r) for r in first_batch[1500:]}  # the lines it never ran
    for (name, _body), count in sent.items():
        assert count == 1 or (count == 2 and (name in failing or name in expired)), name
    batches = [c for c in server.batch_calls if c.method == "POST" and c.path.endswith("/batches")]
    assert len({json.dumps(c.body) for c in batches}) == len(batches)  # no part created twice


def cli(tmp_path: Path, server: ChatServer, *extra: str) -> subprocess.CompletedProcess[str]:
    """`extractor batch ... --via batch-api` over docs.jsonl, as a user runs it."""
    argv = [
        sys.executable, "-m", "extractor", "batch", str(tmp_path / "person.py") + ":Person",
        str(tmp_path / "docs.jsonl"), "-o", str(tmp_path / "out.jsonl"), "--via", "batch-api",
        "--model", "openai/test-model", "--base-url", server.base_url, "--mode", "json_schema",
        *extra,
    ]  # fmt: skip
    return subprocess.run(
        argv, cwd=tmp_path, env=child_env(), capture_output=True, text=True, timeout=120
    )


def test_reask_online_sends_the_reasks_online_at_once(server: ChatServer, tmp_path: Path) -> None:
    ids = write_docs(tmp_path / "docs.jsonl", 12)
    (tmp_path / "person.py").write_text(SCHEMA)
    wrong = set(ids[:4])

    def handle(request: RecordedRequest) -> Item:
        name = name_of(request)
        if name in wrong and request.custom_id is not None:  # the batch line: wrong
            return Answer(content=json.dumps({"name": name, "age": "thirty"}))
        return Answer(content=json.dumps({"name": name, "age": 30}))

    server.handler = handle
    done = cli(tmp_path, server, "--reask", "online")
    assert done.returncode == 0, done.stderr
    assert set(lines(tmp_path / "out.jsonl")) == set(ids)
    assert len(server.batch_lines) == 12 and len({r.batch_id for r in server.batch_lines}) == 1
    assert sorted(name_of(r) for r in server.requests) == sorted(wrong)  # the reasks, online
    assert "1 batch(es) submitted, 0 in flight, 12 lines sent, 12 answered" in done.stderr
    assert "4 re-asked" in done.stderr


def test_status_and_cancel_show_and_stop_the_batches_in_flight(
    server: ChatServer, tmp_path: Path
) -> None:
    write_docs(tmp_path / "docs.jsonl", 5)
    (tmp_path / "person.py").write_text(SCHEMA)
    assert cli(tmp_path, server, "--status").returncode == 2  # no job yet: said so
    server.handler = lambda request: Answer(
        content=json.dumps({"name": name_of(request), "age": 30})
    )
    server.batch_script(BatchOutcome(polls=10_000, lines_per_poll=2))
    argv = [
        sys.executable, "-m", "extractor", "batch", str(tmp_path / "person.py") + ":Person",
        str(tmp_path / "docs.jsonl"), "-o", str(tmp_path / "out.jsonl"), "--via", "batch-api",
        "--model", "openai/test-model", "--base-url", server.base_url, "--mode", "json_schema",
    ]  # fmt: skip
    child = subprocess.Popen(argv, cwd=tmp_path, env=child_env(), stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while len(server.batch_lines) < 2:
            assert child.poll() is None and time.monotonic() < deadline
            time.sleep(0.02)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    status = cli(tmp_path, server, "--status")
    assert status.returncode == 0 and re.search(
        r"part-00000: 5 lines, .*in_progress", status.stdout
    )
    cancelled = cli(tmp_path, server, "--cancel")
    assert cancelled.returncode == 0 and "cancel" in cancelled.stdout
    done = cli(tmp_path, server)  # reads what the batch answered, sends the rest again
    assert done.returncode == 0, done.stderr
    assert len(lines(tmp_path / "out.jsonl")) == 5


def test_inputs_past_a_files_line_or_byte_limit_are_split_across_batches(
    server: ChatServer, tmp_path: Path
) -> None:
    ids = write_docs(tmp_path / "docs.jsonl", 25)
    server.handler = lambda request: Answer(
        content=json.dumps({"name": name_of(request), "age": 30})
    )
    summary = job(server, tmp_path, tmp_path / "docs.jsonl", max_lines=10).run()
    assert summary.done == 25
    per_batch = Counter(r.batch_id for r in server.batch_lines)
    assert sorted(per_batch.values()) == [5, 10, 10]

    one_line = len((tmp_path / "parts" / "part-00000.jsonl").read_bytes().splitlines()[0])
    server.reset()
    server.handler = lambda request: Answer(
        content=json.dumps({"name": name_of(request), "age": 30})
    )
    second = tmp_path / "second"
    second.mkdir()
    summary = job(server, second, tmp_path / "docs.jsonl", max_bytes=4 * one_line + 10).run()
    assert summary.done == 25 and set(lines(second / "out.jsonl")) == set(ids)
    assert max(Counter(r.batch_id for r in server.batch_lines).values()) == 4


def test_a_second_job_on_the_same_account_never_takes_the_first_ones_batches(
    server: ChatServer, tmp_path: Path
) -> None:
    server.handler = lambda request: Answer(
        content=json.dumps({"name": name_of(request), "age": 30})
    )
    for name in ("first", "second"):
        folder = tmp_path / name
        folder.mkdir()
        with (folder / "docs.jsonl").open("w") as out:  # the same ids, other people
            for i in range(5):
                out.write(json.dumps({"id": f"d{i}", "text": f"{name}{i} is 30 years old."}) + "\n")
        assert job(server, folder, folder / "docs.jsonl").run().done == 5
        records = lines(folder / "out.jsonl")
        assert {r["record"]["name"] for r in records.values()} == {f"{name}{i}" for i in range(5)}
    assert len({r.batch_id for r in server.batch_lines}) == 2


def test_max_cost_holds_across_rounds_and_runs_and_a_rerun_goes_on(
    server: ChatServer, tmp_path: Path
) -> None:
    ids = write_docs(tmp_path / "docs.jsonl", 60)
    (tmp_path / "person.py").write_text(SCHEMA)
    server.handler = lambda request: Answer(
        content=json.dumps({"name": name_of(request), "age": 30})
    )
    prices = ("--prices", "100,200")  # USD per million prompt and completion tokens
    report = tmp_path / "summary.json"

    first = cli(tmp_path, server, *prices, "--max-cost", "1", "--summary-json", str(report))
    assert first.returncode == 3, first.stderr  # stopped by --max-cost
    assert "held back by the cost cap" in first.stderr
    done = lines(tmp_path / "out.jsonl")
    assert 0 < len(done) < 60  # the estimate let some through, not all
    assert not lines(tmp_path / "out.failures.jsonl")  # the rest is left for a rerun
    figures = json.loads(report.read_text())["batch_api"]
    assert figures["lines_submitted"] == len(done) and figures["held_by_cost_cap"] > 0
    assert figures["cost_spent"] + figures["cost_estimated_in_flight"] <= 1
    # the cost of each record, from its tokens at the prices given, and under the cap
    for line in done.values():
        usage = line["usage"]
        expected = (usage["prompt_tokens"] * 100 + usage["completion_tokens"] * 200) / 1e6
        assert usage["cost"] == pytest.approx(expected)
    spent = sum(line["usage"]["cost"] for line in done.values())
    assert spent == pytest.approx(figures["cost_spent"])

    # the same cap again: what was spent counts, and answers are known smaller now
    again = cli(tmp_path, server, *prices, "--max-cost", "1")
    assert again.returncode in (0, 3), again.stderr
    assert len(lines(tmp_path / "out.jsonl")) > len(done)
    last = cli(tmp_path, server, *prices, "--max-cost", "100")
    assert last.returncode == 0, last.stderr
    assert set(lines(tmp_path / "out.jsonl")) == set(ids)
    names = [name_of(r) for r in server.batch_lines]
    assert sorted(names) == sorted(ids)  # each document submitted once over the three runs


def test_max_cost_on_the_batch_api_needs_the_prices(server: ChatServer, tmp_path: Path) -> None:
    write_docs(tmp_path / "docs.jsonl", 3)
    (tmp_path / "person.py").write_text(SCHEMA)
    done = cli(tmp_path, server, "--max-cost", "1")
    assert done.returncode == 2
    assert "--max-cost with --via batch-api needs --prices IN,OUT" in done.stderr
    assert not server.batch_calls  # refused before anything was sent
    bad = cli(tmp_path, server, "--prices", "cheap")
    assert bad.returncode == 2 and "not two prices" in bad.stderr


def test_a_batch_api_job_writes_parquet_and_resumes_from_it(
    server: ChatServer, tmp_path: Path
) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    ids = write_docs(tmp_path / "docs.jsonl", 30)
    (tmp_path / "person.py").write_text(SCHEMA)
    server.handler = lambda request: Answer(
        content=json.dumps({"name": name_of(request), "age": 30})
    )
    argv = [
        sys.executable, "-m", "extractor", "batch", str(tmp_path / "person.py") + ":Person",
        str(tmp_path / "docs.jsonl"), "-o", str(tmp_path / "out.parquet"), "--via", "batch-api",
        "--model", "openai/test-model", "--base-url", server.base_url, "--mode", "json_schema",
    ]  # fmt: skip
    for _ in range(2):  # the second run finds everything done
        done = subprocess.run(argv, cwd=tmp_path, env=child_env(), capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
    table = pq.read_table(tmp_path / "out.parquet")  # the folder holds part files only
    assert sorted(table.column("id").to_pylist()) == ids
    assert set(table.column("age").to_pylist()) == {30}
    assert len(server.batch_lines) == 30  # the rerun submitted nothing
