"""`extractor.ray`: a Ray Data pipeline against the loopback `ChatServer`.

The cluster tests share one local cluster (`ray.init(num_cpus=2)`), shut down when the
module ends, and check that none of its processes outlive it. The workers import this
checkout through `PYTHONPATH` (the package itself is installed in the venv they run).
The keeper's pacing, the callable class and the output folder are also tested alone,
without a cluster.
"""

from __future__ import annotations

import asyncio
import bisect
import functools
import json
import os
import re
import threading
import time
import types
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ray = pytest.importorskip("ray")
pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

from pydantic import BaseModel  # noqa: E402  # after the skips: nothing to test without ray

import extractor._ray_limit as limit  # noqa: E402
import extractor.ray as xray  # noqa: E402
from extractor import APIStatusError, Client, ConfigurationError, RetryPolicy, Usage  # noqa: E402
from extractor._arrow import FINGERPRINT_KEY, result_schema  # noqa: E402
from extractor.backend import Answer as Reply  # noqa: E402
from extractor.testing import Answer, ChatServer, Fault, RecordedRequest  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent

# Ray Data 2.60 warns about its own deprecated defaults when it makes its DataContext
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.data.context")

MODEL = {"model": "openai/test-model", "mode": "json_schema"}


class Person(BaseModel):
    name: str
    age: int


def quick_client() -> Client:
    """Retries without real waits (a 503 or a 429 is tried again at once)."""
    return Client(retry=RetryPolicy(initial=0.001, jitter=0.001, max_wait=0.01))


def number_of(request: RecordedRequest) -> int:
    """Documents read `Document #N: ...`."""
    text = next(str(m["content"]) for m in request.messages if m.get("role") == "user")
    found = re.search(r"Document #(\d+)", text)
    assert found is not None, text
    return int(found.group(1))


def record_of(number: int) -> str:
    return json.dumps({"name": f"P{number}", "age": number})


def documents(count: int) -> list[dict[str, Any]]:
    return [
        {"id": f"d{n:05d}", "text": f"Document #{n}: P{n} is {n} years old."} for n in range(count)
    ]


def busiest_second(stamps: list[float]) -> int:
    """The most requests in any one-second window [t, t + 1) starting at a request."""
    ordered = sorted(stamps)
    return max((bisect.bisect_left(ordered, t + 1.0) - i for i, t in enumerate(ordered)), default=0)


def _ray_descendants() -> list[int]:
    """Processes under this one whose command line names ray (raylet, GCS, workers)."""
    parents: dict[int, int] = {}
    commands: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            commands[int(entry.name)] = (entry / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        parents[int(entry.name)] = int(stat.rpartition(")")[2].split()[1])
    mine = {os.getpid()}
    grew = True
    while grew:
        found = {pid for pid, parent in parents.items() if parent in mine} - mine
        grew = bool(found)
        mine |= found
    return sorted(pid for pid in mine - {os.getpid()} if "ray" in commands.get(pid, ""))


@pytest.fixture(scope="module")
def cluster() -> Iterator[None]:
    if not Path("/proc").is_dir():
        pytest.skip("the process check reads /proc")
    before = set(_ray_descendants())
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}},
    )
    try:
        yield
    finally:
        ray.shutdown()
    deadline = time.monotonic() + 15
    while (left := set(_ray_descendants()) - before) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not left, f"Ray processes outlived ray.shutdown(): {sorted(left)}"


# --- the acceptance test ------------------------------------------------------------------------

DOCUMENTS = 2_000
PER_SECOND = 50


class Faults:
    """One document in five is faulted, by its number: a 503 once, a 429 once
    (`Retry-After: 0`), an invalid answer once (reasked), or a 400 every time (a failure).
    Every request's arrival is stamped on the server's clock."""

    def __init__(self) -> None:
        self.stamps: list[float] = []
        self.tries: Counter[int] = Counter()
        self._lock = threading.Lock()

    def __call__(self, request: RecordedRequest) -> Any:
        stamp = time.monotonic()
        number = number_of(request)
        with self._lock:
            self.stamps.append(stamp)
            self.tries[number] += 1
            first = self.tries[number] == 1
        kind = number % 20
        if kind == 3:
            return Fault(400, body={"error": {"message": "no", "type": "invalid_request_error"}})
        if first and kind == 1:
            return Fault(503)
        if first and kind == 11:
            return Fault(429, headers={"Retry-After": "0"})
        if first and kind == 7:
            return Answer(content="I cannot answer that as JSON, sorry.")
        return Answer(content=record_of(number))


def test_every_id_once_within_the_rate_and_a_rerun_sends_nothing(
    cluster: None, server: ChatServer, tmp_path: Path
) -> None:
    faults = Faults()
    server.handler = faults
    output = tmp_path / "people.parquet"
    dataset = ray.data.from_items(documents(DOCUMENTS))
    options: dict[str, Any] = {"base_url": server.base_url, "max_retries": 1, **MODEL}

    results = xray.extract(
        dataset, Person, output=output, rpm=PER_SECOND * 60, client=quick_client, **options
    )

    table = pq.read_table(output)
    ids = Counter(table.column("id").to_pylist())
    assert ids == Counter(f"d{n:05d}" for n in range(DOCUMENTS)), "every id exactly once"
    assert results.count() == DOCUMENTS
    rows = {row["id"]: row for row in table.to_pylist()}
    failed = {i for i, row in rows.items() if row["_error_type"] is not None}
    assert failed == {f"d{n:05d}" for n in range(DOCUMENTS) if n % 20 == 3}
    assert {rows[i]["_error_type"] for i in failed} == {"APIStatusError"}
    for n in range(DOCUMENTS):
        row = rows[f"d{n:05d}"]
        if n % 20 != 3:
            assert (row["name"], row["age"], row["_mode"]) == (f"P{n}", n, "json_schema")
            assert row["_attempts"] == (2 if n % 20 == 7 else 1)
    # each fault costs one request more, except the 400s, which are not retried
    assert len(faults.stamps) == DOCUMENTS + 3 * DOCUMENTS // 20
    busiest = busiest_second(faults.stamps)
    assert busiest <= PER_SECOND * 1.1, f"{busiest} requests in one second"
    assert table.schema.metadata[FINGERPRINT_KEY]

    sent = len(server.requests)
    again = xray.extract(
        dataset, Person, output=output, rpm=PER_SECOND * 60, client=quick_client, **options
    )
    assert len(server.requests) == sent, "the second run sent requests"
    assert again.count() == DOCUMENTS


def test_a_429_pauses_every_actor(cluster: None, server: ChatServer) -> None:
    stamps: list[float] = []
    limited: list[float] = []
    lock = threading.Lock()

    def handle(request: RecordedRequest) -> Any:
        with lock:
            stamps.append(time.monotonic())
            if len(stamps) == 20:  # early: an actor may start during the pause
                limited.append(time.monotonic())
                return Fault(429, headers={"Retry-After": "1"})
        return Answer(content=record_of(number_of(request)))

    server.handler = handle
    dataset = ray.data.from_items(documents(400))
    results = xray.extract(
        dataset,
        Person,
        concurrency_per_actor=4,
        client=quick_client,
        base_url=server.base_url,
        **MODEL,
    )
    rows = results.take_all()
    assert len(rows) == 400
    assert all(row["_error_type"] is None for row in rows)
    (at,) = limited
    during = [t - at for t in stamps if at + 0.15 < t < at + 0.9]
    assert during == [], "requests went during the pause"
    assert [t for t in stamps if t > at + 0.9], "nothing after the pause"


# --- the pieces alone --------------------------------------------------------------------------


def test_the_keeper_spaces_requests_evenly_and_holds_them_in_a_pause() -> None:
    async def run() -> None:
        keeper = limit.Keeper(rpm=600, tpm=None)  # 10 a second
        delays, pause = await keeper.reserve([0] * 5)
        assert pause == 0
        assert delays == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4], abs=0.01)
        more, _ = await keeper.reserve([0] * 2)
        assert more == pytest.approx([0.5, 0.6], abs=0.01)
        watching = asyncio.ensure_future(keeper.watch(keeper.version))
        await asyncio.sleep(0.01)
        assert not watching.done()
        _, round_, pause = await keeper.limited(2.0, seen_round=0)
        assert round_ == 1 and pause == pytest.approx(2.0, abs=0.01)
        assert (await watching)[1:] == (1, pytest.approx(2.0, abs=0.05))
        after, _ = await keeper.reserve([0])
        assert after[0] >= 1.9  # after the pause
        _, round_, _ = await keeper.limited(None, seen_round=0)  # an older round: no halving
        assert round_ == 1

    asyncio.run(run())


class LocalHandle:
    """A `Keeper` in this process, called as through a Ray actor handle."""

    def __init__(self, keeper: Any) -> None:
        self.keeper = keeper

    def __getattr__(self, name: str) -> Any:
        return types.SimpleNamespace(remote=getattr(self.keeper, name))


def test_a_429_one_pacer_sees_pauses_the_others_and_those_that_start_later() -> None:
    async def run() -> None:
        keeper = LocalHandle(limit.Keeper(rpm=None, tpm=None))
        first, second = limit.SharedPacer(keeper, 4), limit.SharedPacer(keeper, 4)
        sent: list[float] = []

        async def ok() -> Reply:
            sent.append(time.monotonic())
            return Reply("{}", "stop", None, Usage(), None)

        async def limited() -> Reply:
            raise APIStatusError(429, "slow down", retry_after=0.3)

        await second.send(ok, lambda: 0)  # started, and listening
        with pytest.raises(APIStatusError):
            await first.send(limited, lambda: 0)
        at = time.monotonic()
        await asyncio.sleep(0.01)  # the long poll answers
        await second.send(ok, lambda: 0)
        late = limit.SharedPacer(keeper, 4)  # an actor starting in the pause
        await late.send(ok, lambda: 0)
        assert [t - at for t in sent[1:]] == [pytest.approx(0.3, abs=0.05)] * 2
        # one round of 429s: each pacer running then halves once; one started after, not
        assert (first.gate.limit, second.gate.limit, late.gate.limit) == (2, 2, 4)

    asyncio.run(run())


def test_the_keeper_counts_tokens_and_corrects_its_estimates() -> None:
    async def run() -> None:
        keeper = limit.Keeper(rpm=None, tpm=6_000)  # 100 tokens a second
        delays, _ = await keeper.reserve([50, 50, 100])
        assert delays == pytest.approx([0.0, 0.5, 1.0], abs=0.01)
        delays, _ = await keeper.reserve([10], correction=-100)  # the answers used less
        assert delays == pytest.approx([1.0], abs=0.01)

    asyncio.run(run())


def test_extract_alone_makes_one_row_per_document_whatever_happens(server: ChatServer) -> None:
    def handle(request: RecordedRequest) -> Any:
        number = number_of(request)
        return Fault(400) if number == 2 else Answer(content=record_of(number))

    server.handler = handle
    step = xray.Extract(
        Person, client=quick_client, skip=["d00004"], base_url=server.base_url, **MODEL
    )
    batch = pa.table(
        {
            "id": ["d00000", "d00001", "d00002", "d00003", "d00004", None],
            "text": ["Document #0: P0.", None, "Document #2: P2.", "  ", "Document #4", "x"],
        }
    )
    table = asyncio.run(step(batch))
    assert table.schema == result_schema(Person)
    rows = {row["id"]: row for row in table.to_pylist()}
    assert list(rows) == ["d00000", "d00001", "d00002", "d00003", None]  # d00004 is skipped
    assert (rows["d00000"]["name"], rows["d00000"]["_error_type"]) == ("P0", None)
    assert rows["d00001"]["_error_message"] == "the 'text' value is null"
    assert rows["d00002"]["_error_type"] == "APIStatusError"
    assert rows["d00003"]["_error_message"] == "the document is empty"
    assert rows[None]["_error_message"] == "the id is null"
    assert len(server.requests) == 2

    broken = asyncio.run(step(pa.table({"id": ["a", "b"], "body": ["x", "y"]})))
    assert broken.column("_error_type").to_pylist() == ["ConfigurationError"] * 2


def test_extract_alone_reads_files_named_in_a_path_column(
    server: ChatServer, tmp_path: Path
) -> None:
    server.handler = lambda request: Answer(content=record_of(number_of(request)))
    (tmp_path / "seven.txt").write_text("Document #7: P7 is 7 years old.")
    step = xray.Extract(
        Person, path_column="path", client=quick_client, base_url=server.base_url, **MODEL
    )
    paths = [str(tmp_path / "seven.txt"), str(tmp_path / "missing.txt")]
    table = asyncio.run(step(pa.table({"id": [7, 8], "path": paths})))
    rows = table.to_pylist()
    assert [(r["id"], r["name"], r["_error_type"]) for r in rows] == [
        ("7", "P7", None),
        ("8", None, "DocumentError"),
    ]


def test_no_api_key_travels_in_a_ray_object() -> None:
    with pytest.raises(ConfigurationError, match="OPENAI_API_KEY"):
        xray.Extract(Person, api_key="sk-secret", **MODEL)


def test_resume_reads_whole_parts_and_sets_torn_ones_aside(tmp_path: Path) -> None:
    schema = result_schema(Person)
    folder = tmp_path / "out.parquet"
    folder.mkdir()
    rows = {name: [None] * 2 for name in schema.names}
    rows["id"] = ["a", "b"]
    pq.write_table(pa.table(rows, schema=schema), folder / "part-x-00000.parquet")
    (folder / "part-x-00001.parquet").write_bytes(b"PAR1 torn by a kill")
    (folder / ".part-x-00002.parquet.tmp").write_bytes(b"PAR1 half")
    fingerprint = schema.metadata[FINGERPRINT_KEY].decode()

    assert xray._written_ids(str(folder), fingerprint) == ["a", "b"]
    assert sorted(p.name for p in folder.iterdir()) == [
        ".part-x-00001.parquet.torn",
        "part-x-00000.parquet",
    ]
    with pytest.raises(ConfigurationError, match="another schema"):
        xray._written_ids(str(folder), "0123456789abcdef")
    assert xray._written_ids(str(tmp_path / "nothing-yet")) == []


def test_the_schedule_never_lets_a_second_hold_more_than_its_rate() -> None:
    schedule = limit.Schedule(per_minute=3_000)
    instants = []
    for at in [0.0] * 40 + [0.3] * 40 + [5.0] * 20:  # bursts of asks
        start = max(at, schedule.next)
        schedule.take(start, 1)
        instants.append(start)
    assert busiest_second(instants) <= 51
    assert functools.reduce(max, instants) == pytest.approx(5.0 + 19 / 50)


def test_with_no_provider_each_actor_runs_the_embedded_model(cluster: None) -> None:
    pytest.importorskip("llama_cpp")

    class Memo(BaseModel):
        sender: str

    texts = {f"m{i}": f"From: Ann Lee{i}\nSee you on Tuesday." for i in range(6)}
    dataset = ray.data.from_items([{"id": k, "text": v} for k, v in texts.items()])
    rows = xray.extract(dataset, Memo, actors=2, concurrency_per_actor=2).take_all()
    assert sorted(row["id"] for row in rows) == sorted(texts)
    for row in rows:
        assert row["_error_type"] is None, row["_error_message"]
        assert row["_model"] == "local/gemma-3-270m" and row["_mode"] == "grounded"
        assert row["sender"] and row["sender"] in texts[row["id"]]  # copied from its document
