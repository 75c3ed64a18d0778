"""Fault-injection soak: `extractor batch` against a hostile server, killed and resumed.

`--documents` (5,000) generated documents go through the real command line, in
subprocesses, against `extractor.testing.ChatServer` on loopback. The server's handler
mixes normal answers with every fault of issue 11: 429/500/503 with Retry-After (negative,
absurd, and twice longer than `--deadline` too), dropped and truncated connections,
bodies and heads dripped slower than `--timeout`, heartbeat-only streams, the key echoed
in headers and bodies, malformed 200s, a 307, invalid answers that need a re-ask, a few
bodies over 16 MiB. The fault is decided by the document's id (in its text) and by how
many times the server has already seen that document, so transient faults pass on a
later try while some documents fail for good, deterministically.

The job is started twice at the same moment on the same output, and once more while a
job runs (each time the newcomer must refuse with exit 2: the running job holds the
output's lock), killed with SIGKILL three times at different points, rerun with the same
command each time, and finally let finish. Then: every input id is in exactly one of OUT
and its failures file, every line parses, each document ends where its faults say, the
key (a fresh random `OPENAI_API_KEY`) is in no file of the work folder and in no run's
stdout or stderr, no document outlived `--deadline`, and no run outlived its wall-clock
bound (`--run-bound`: such a run is killed and counted as hung). The script exits 1 when
any check fails.

Run from the repository root:

    python benchmarks/soak.py                                # 5,000 documents; RESULTS.md
    python benchmarks/soak.py --documents 300 --no-write     # a quick look
    python benchmarks/soak.py --documents 1000 --mode tools --work /tmp/soak --no-write
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import secrets
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path
from typing import Any

from results import command_line, package_versions, section_header, write_section

from extractor.testing import (
    Answer,
    ChatServer,
    Delay,
    Drip,
    Drop,
    Echo,
    Fault,
    Heartbeat,
    Item,
    Raw,
    RecordedRequest,
    Truncated,
)

REPO_ROOT = Path(__file__).resolve().parent.parent

SECTION = "soak"
VERSIONED = ("extractor", "httpx", "httpcore", "aiohttp", "httpx-aiohttp")
SCHEMA_FILE = """\
from pydantic import BaseModel


class Note(BaseModel):
    doc: str
    amount: int
"""
#: Seconds every answer waits at the server, so a job has its requests in flight.
LATENCY = 0.05
#: Over the client's 16 MiB cap on a response body.
OVERSIZE_BYTES = 17 * 1024 * 1024
#: Documents whose index has this remainder get the oversize body: 3 in 5,000, 1 in 300.
OVERSIZE_EVERY, OVERSIZE_AT = 2000, 77
#: Documents whose index has this remainder get a 429 longer than --deadline: 2 in 5,000.
LONG_WAIT_EVERY, LONG_WAIT_AT = 2500, 1234
#: Seconds a document may run past --deadline before it counts as outliving it, besides
#: the job's rate-limit pauses, which do not count toward a deadline (`backend.Budget`).
DEADLINE_SLACK = 1.5
#: The longest job-wide pause the soak's 429s ask for, as a multiple of --deadline
#: (`long_wait`), plus the short 429s a document may also sit out.
PAUSES = 1.5
SHORT_PAUSES = 3.0
#: Seconds a refused competing start may take to say so and exit.
REFUSAL_BOUND = 15.0
#: Environment variables that would send the job elsewhere than the soak's server.
FOREIGN_ENV = (
    "OPENAI_BASE_URL", "OPENROUTER_API_KEY", "MISTRAL_API_KEY", "EXTRACTOR_MODEL",
    "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy",
)  # fmt: skip
DOC_ID = re.compile(r"\bsoak-(\d{7})\b")


def doc_id(index: int) -> str:
    return f"soak-{index:07d}"


def text_of(index: int) -> str:
    """A document: its id, the amount to extract, a little padding."""
    return (
        f"Soak document {doc_id(index)}. The invoice amount is {index} euros; it was sent "
        "to the accounts team on Monday and is due at the end of the month."
    )


# --- the faults ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Visit:
    """One chat request, as the fault plan sees it."""

    index: int
    seen: int  # how many requests for this document the server had before this one
    request: RecordedRequest
    timeout: float
    deadline: float

    def record(self, valid: bool = True) -> dict[str, Any]:
        return {"doc": doc_id(self.index), "amount": self.index if valid else "unknown"}

    def answer(self, valid: bool = True, **fields: Any) -> Answer:
        """The document's own record, as the request's mode wants it."""
        if self.request.tools:
            return Answer(tool_call=self.record(valid), finish_reason="tool_calls", **fields)
        return Answer(content=json.dumps(self.record(valid)), **fields)


Plan = Callable[[Visit], Item]


@dataclass(frozen=True)
class Kind:
    """A way the server treats a document; `ends` is where it must end up."""

    name: str
    per_mille: int
    ends: str  # "record", "failure" or "either" (a malformed 200: a re-ask may save it)
    plan: Plan
    #: Never worth a second try (redirect, oversize, bad key): asked once per run at most.
    once: bool = False


def normal(visit: Visit) -> Item:
    return Delay(LATENCY, visit.answer())


def first(times: int, fault: Plan) -> Plan:
    """`fault` the first `times` the server sees the document, then a normal answer."""
    return lambda visit: fault(visit) if visit.seen < times else normal(visit)


def dripped(head: bool) -> Plan:
    # 20 bytes per --timeout: the ~400-byte response would take 20 timeouts to arrive
    return lambda visit: Drip(visit.answer(), interval=visit.timeout / 20, head=head)


def heartbeat(visit: Visit) -> Item:
    return Heartbeat(interval=visit.timeout / 4, seconds=visit.deadline + 10)


def key_rejected(visit: Visit) -> Item:
    """A 401 echoing the key in its headers and in its message, as OpenAI's message does."""
    key = visit.request.headers.get("authorization", "").removeprefix("Bearer ")
    body = {"error": {"message": f"Incorrect API key provided: {key}.", "code": "invalid_api_key"}}
    return Echo(Fault(401, body=body))


def echoed(visit: Visit) -> Item:
    """The key echoed back in a header: on a 500 first, then on the answer."""
    if visit.seen < 1:
        return Echo(Fault(500, headers={"Retry-After": "0"}))
    return Echo(normal(visit))


MESSAGE_IS_TEXT = json.dumps({"choices": [{"message": "hello"}]})
TOOL_CALL_IS_TEXT = json.dumps(
    {
        "id": "chatcmpl-soak",
        "object": "chat.completion",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": None, "tool_calls": ["oops"]},
                "finish_reason": "tool_calls",
            }
        ],
    }
)
WORDS = {  # usage with string token counts
    "prompt_tokens": "many",
    "completion_tokens": "few",
    "total_tokens": "lots",
}


@cache
def oversize_body() -> bytes:
    """A chat completion over the 16 MiB cap, built once (the server sends the same bytes)."""
    head = b'{"object": "chat.completion", "choices": [{"message": {"content": "'
    return head + b"x" * OVERSIZE_BYTES + b'"}}]}'


def status(code: int, retry_after: str | None = None) -> Plan:
    headers = {} if retry_after is None else {"Retry-After": retry_after}
    return lambda visit: Fault(code, headers=headers)


def invalid(visit: Visit) -> Item:
    return Delay(LATENCY, visit.answer(valid=False))


def redirect(visit: Visit) -> Item:
    return Fault(307, headers={"Location": "http://127.0.0.1:9/v1/chat/completions"})


KINDS = (
    Kind("429, Retry-After: 0", 15, "record", first(1, status(429, "0"))),
    Kind("429, Retry-After: 1", 2, "record", first(1, status(429, "1"))),
    Kind("500 twice, Retry-After: 0.2", 30, "record", first(2, status(500, "0.2"))),
    Kind("503, Retry-After: -5", 15, "record", first(1, status(503, "-5"))),
    Kind("503, Retry-After: 999999 (absurd)", 5, "record", first(1, status(503, "999999"))),
    Kind("dropped connection", 30, "record", first(1, lambda v: Drop())),
    Kind("truncated body", 30, "record", first(1, lambda v: Truncated(v.answer(), keep=20))),
    Kind("body dripped past --timeout", 8, "record", first(1, dripped(head=False))),
    Kind("head dripped past --timeout", 4, "record", first(1, dripped(head=True))),
    Kind("SSE comments only (heartbeat)", 8, "record", first(1, heartbeat)),
    Kind("key echoed in headers (500, then 200)", 20, "record", echoed),
    Kind("invalid answer, re-asked", 50, "record", first(1, invalid)),
    Kind('200 `"message": "hello"`', 8, "either", first(1, lambda v: Raw(MESSAGE_IS_TEXT))),
    Kind('200 `"tool_calls": ["oops"]`', 8, "either", first(1, lambda v: Raw(TOOL_CALL_IS_TEXT))),
    Kind("200, usage counts as strings", 8, "either", first(1, lambda v: v.answer(usage=WORDS))),
    # for good
    Kind("500 every time", 4, "failure", status(500)),
    Kind("invalid every time", 8, "failure", invalid),
    Kind("307 redirect", 5, "failure", redirect, once=True),
    Kind("401 echoing the key", 5, "failure", key_rejected, once=True),
    Kind("body dripped every time", 2, "failure", dripped(head=False)),
)  # fmt: skip
OVERSIZE = Kind("body over 16 MiB", 0, "failure", lambda v: Raw(oversize_body()), once=True)
LONG_WAIT = Kind(
    "429, Retry-After: 1.5 x --deadline", 0, "either", first(1, lambda v: long_wait(v.deadline))
)
NORMAL = Kind("normal answer", 1000 - sum(k.per_mille for k in KINDS), "record", normal)
#: Faults that cost a request up to --timeout: dropped from the mix when the CLI has none.
SLOW = {"body dripped past --timeout", "head dripped past --timeout",
        "SSE comments only (heartbeat)", "body dripped every time"}  # fmt: skip


def long_wait(deadline: float) -> Item:
    """A 429 asking for a wait longer than the deadline: nobody may wait it out."""
    return Fault(429, headers={"Retry-After": f"{1.5 * deadline:g}"})


def left_out(kind: Kind) -> Kind:
    """`kind` as a normal answer if it is slow, for a CLI without --timeout (same shares)."""
    if kind.name not in SLOW:
        return kind
    return replace(kind, name=f"{kind.name} (left out)", ends="record", plan=normal)


def kind_of(index: int, kinds: Sequence[Kind]) -> Kind:
    """The document's kind: exact shares in every block of 1,000 documents, spread out."""
    if index % OVERSIZE_EVERY == OVERSIZE_AT:
        return OVERSIZE
    if index % LONG_WAIT_EVERY == LONG_WAIT_AT:
        return LONG_WAIT
    bucket = (index * 7919) % 1000  # 7919 is prime to 1000: a permutation of each block
    for kind in kinds:
        if bucket < kind.per_mille:
            return kind
        bucket -= kind.per_mille
    return NORMAL


class Server:
    """The soak's `ChatServer` and what it saw: every request, per document and per run."""

    def __init__(self, kinds: Sequence[Kind], timeout: float, deadline: float, key: str) -> None:
        self.kinds = kinds
        self.timeout, self.deadline = timeout, deadline
        self.authorization = f"Bearer {key}"
        self.chat = ChatServer()
        self.chat.handler = self.handle
        self.lock = threading.Lock()
        #: document index -> (run number, time.monotonic()) of each request for it
        self.visits: dict[int, list[tuple[int, float]]] = {}
        self.total = self.without_key = self.unknown = 0
        self.run = 0

    def handle(self, request: RecordedRequest) -> Item:
        user = next((m for m in request.messages if m.get("role") == "user"), {})
        found = DOC_ID.search(str(user.get("content")))
        with self.lock:
            self.total += 1
            self.without_key += request.headers.get("authorization") != self.authorization
            if found is None:
                self.unknown += 1
                return Fault(400, body={"error": {"message": "soak: no document id"}})
            index = int(found.group(1))
            visits = self.visits.setdefault(index, [])
            seen = len(visits)
            visits.append((self.run, time.monotonic()))
        visit = Visit(index, seen, request, self.timeout, self.deadline)
        return kind_of(index, self.kinds).plan(visit)

    def __enter__(self) -> Server:
        self.chat.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.chat.stop()


# --- the runs -----------------------------------------------------------------------------------


class Lines:
    """Newlines in a growing file, read incrementally (a resume may cut its tail: recount)."""

    def __init__(self, path: Path) -> None:
        self.path, self.offset, self.count = path, 0, 0

    def __call__(self) -> int:
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            self.offset = self.count = 0
            return 0
        if size < self.offset:
            self.offset = self.count = 0
        if size > self.offset:
            with self.path.open("rb") as handle:
                handle.seek(self.offset)
                data = handle.read(size - self.offset)
            self.offset += len(data)
            self.count += data.count(b"\n")
        return self.count


@dataclass
class Run:
    """One `extractor batch` process: how it ended and what it printed (files in logs/)."""

    label: str
    process: subprocess.Popen[bytes]
    stdout: Path
    stderr: Path
    bound: float
    started: float = field(default_factory=time.monotonic)
    seconds: float = 0.0
    exit: int | None = None
    killed: bool = False
    hung: bool = False
    lines_at_end: int = 0
    summary: dict[str, Any] | None = None
    note: str = ""

    def poll(self) -> bool:
        """Whether it has ended (and, once, note when)."""
        if self.exit is None and self.process.poll() is not None:
            self.exit = self.process.returncode
            self.seconds = time.monotonic() - self.started
        return self.exit is not None

    def kill(self, hung: bool = False) -> None:
        if self.poll():
            return
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()
        self.poll()
        self.killed, self.hung = True, hung


class Soak:
    """The work folder, the server and the runs of one soak."""

    def __init__(self, args: argparse.Namespace, folder: Path, server: Server, key: str) -> None:
        self.args, self.folder, self.server, self.key = args, folder, server, key
        self.source = folder / "documents.jsonl"
        self.out = folder / "out.jsonl"
        self.failures = folder / "out.failures.jsonl"
        self.summary = folder / "summary.json"
        self.logs = folder / "logs"
        self.logs.mkdir()
        self.lines_out, self.lines_failed = Lines(self.out), Lines(self.failures)
        self.runs: list[Run] = []
        self.argv = [
            sys.executable, "-m", "extractor", "batch", "note.py:Note", self.source.name,
            "-o", self.out.name, "--model", "openai/soak", "--base-url", server.chat.base_url,
            "--concurrency", str(args.concurrency), "--summary-json", self.summary.name, "-v",
        ]  # fmt: skip
        if args.mode:
            self.argv[-1:-1] = ["--mode", args.mode]
        if args.deadlines:
            self.argv[-1:-1] = [
                "--timeout",
                f"{args.timeout:g}",
                "--deadline",
                f"{args.deadline:g}",
            ]
        env = {k: v for k, v in os.environ.items() if k not in FOREIGN_ENV}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
        env["OPENAI_API_KEY"] = key
        env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
        self.env = env

    def lines(self) -> int:
        return self.lines_out() + self.lines_failed()

    def start(self, label: str) -> Run:
        number = len(self.runs) + 1
        self.server.run = number
        stdout, stderr = self.logs / f"run-{number}.stdout", self.logs / f"run-{number}.stderr"
        self.summary.unlink(missing_ok=True)  # an earlier run's: only a finished run writes it
        with stdout.open("wb") as out, stderr.open("wb") as err:
            process = subprocess.Popen(
                self.argv, cwd=self.folder, env=self.env, stdout=out, stderr=err
            )
        run = Run(f"{number}. {label}", process, stdout, stderr, self.args.run_bound)
        self.runs.append(run)
        return run

    def watch(self, runs: Sequence[Run], until: Callable[[], bool] | None = None) -> bool:
        """Wait for `until` (True), or for every run to end (False); kill any past its bound."""
        while True:
            if until is not None and until():
                return True
            if all(run.poll() for run in runs):
                return False
            for run in runs:
                if not run.poll() and time.monotonic() - run.started > run.bound:
                    run.kill(hung=True)
                    run.note = f"still running after {run.bound:g} s: killed, counted as hung"
            time.sleep(0.02)

    def finish(self, run: Run) -> None:
        run.lines_at_end = self.lines()
        if run.exit is not None and not run.killed and self.summary.exists():
            try:
                run.summary = json.loads(self.summary.read_text())
            except ValueError:
                run.note = "its --summary-json does not parse"

    def killed_at(self, runs: Sequence[Run], until: Callable[[], bool], point: str) -> None:
        """Let `runs` go on until `until`, then SIGKILL them; say if they ended first."""
        reached = self.watch(runs, until)
        for run in runs:
            if run.poll():
                if not run.hung and not run.note:
                    run.note = f"ended (exit {run.exit}) before the kill point: {point}"
            else:
                run.kill()
                run.note = f"SIGKILL {point}"
            self.finish(run)
        if not reached:
            self.say(f"  the kill point ({point}) never came")

    def say(self, message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    def play(self) -> dict[str, dict[str, Any]]:
        """Competing starts, three kills, the final run(s); how each competing start ended."""
        total = self.args.documents
        first_kill = max(1, total * 15 // 100)
        self.say(f"1. two jobs at once; SIGKILL once {first_kill:,} lines are written")
        pair = [self.start("competing start A"), self.start("competing start B")]
        self.server.run = 1  # one run for the server: what both jobs ask is asked twice in it
        ended: list[Run] = []

        def first_end_or_kill_point() -> bool:
            ended.extend(run for run in pair if not ended and run.poll())
            return self.lines() >= first_kill

        self.killed_at(pair, first_end_or_kill_point, f"after {first_kill:,} lines")
        competing = {"at once": refusal(ended[0] if ended else None)}

        requests_before = self.server.total
        burst = 2 * self.args.concurrency
        self.say(f"2. rerun; SIGKILL after {burst} requests of its own (its window full)")
        self.killed_at(
            [self.start("rerun, killed with a window in flight")],
            lambda: self.server.total - requests_before >= burst,
            f"after {burst} requests of its own",
        )

        at = self.lines()
        third = at + max(2, (total - at) // 2)
        intrude = (at + third) // 2
        self.say(f"3. rerun; another job at {intrude:,} lines; SIGKILL at {third:,} lines")
        run = self.start("rerun, killed half way")
        runs = [run]
        if self.watch(runs, lambda: self.lines() >= intrude):
            intruder = self.start("competing start while a job runs")
            self.server.run = len(self.runs) - 1  # the intruder must not ask for anything
            runs.append(intruder)
            self.killed_at(
                runs,
                lambda: (
                    self.lines() >= third
                    and (intruder.poll() or time.monotonic() - intruder.started > REFUSAL_BOUND)
                ),
                f"at {third:,} lines",
            )
            competing["mid-run"] = refusal(intruder)
        else:
            self.killed_at(runs, lambda: True, f"at {third:,} lines")
            competing["mid-run"] = refusal(None)
        self.say(f"   competing starts: {competing}")

        for attempt in range(1, 1 + self.args.finishing_runs):
            self.say(f"4. rerun to the end (finishing run {attempt})")
            run = self.start("rerun to the end" if attempt == 1 else "rerun to the end, again")
            self.watch([run])
            self.finish(run)
            status = (run.summary or {}).get("status")
            if run.hung or status != "provider_failing":
                break  # only a job that stopped itself early is worth one more run
        return competing


def last_line(path: Path) -> str:
    """The last line a run wrote to stderr (cut to 200 characters): why it stopped."""
    said = path.read_text(errors="replace").strip().splitlines() if path.exists() else []
    return said[-1][:200] if said else ""


def refusal(run: Run | None) -> dict[str, Any]:
    """How a competing start ended: refused means exit 2, saying the output is in use."""
    if run is None:
        message = "not tried: the running job ended before the point it was due"
        return {"refused": False, "exit": None, "message": message}
    if not run.poll():
        return {"refused": False, "exit": None, "message": "it did not end: both jobs ran"}
    said = run.stderr.read_text(errors="replace")
    return {
        "refused": run.exit == 2 and "in use by another batch job" in said,
        "exit": run.exit,
        "message": last_line(run.stderr)[:100],
        "run": run.label,
        "seconds": round(run.seconds, 1),
    }


# --- the checks ---------------------------------------------------------------------------------


def read_lines(path: Path) -> tuple[list[dict[str, Any]], int]:
    """The JSON objects of `path`'s lines, and how many lines are not one."""
    parsed, broken = [], 0
    if not path.exists():
        return parsed, broken
    for line in path.read_bytes().splitlines():
        try:
            value = json.loads(line)
        except ValueError:
            broken += 1
            continue
        if isinstance(value, dict):
            parsed.append(value)
        else:
            broken += 1
    return parsed, broken


def extractor_errors() -> set[str]:
    """Names of every `ExtractorError` class: a failure of any other type is a bug."""
    import extractor.batch  # noqa: F401  # its errors (DocumentError, StoreError) count too
    from extractor._errors import ExtractorError

    names, todo = set(), [ExtractorError]
    while todo:
        cls = todo.pop()
        names.add(cls.__name__)
        todo.extend(cls.__subclasses__())
    return names


def leaks(folder: Path, key: str) -> tuple[list[str], list[str]]:
    """Files of `folder` holding the key or 12 characters of its random part: (logs, others)."""
    secret = key.removeprefix("sk-soak-").encode()
    needles = [key.encode()] + [secret[i : i + 12] for i in range(len(secret) - 11)]
    logs, others = [], []
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            data = path.read_bytes()
            if any(needle in data for needle in needles):
                (logs if path.parent.name == "logs" else others).append(
                    str(path.relative_to(folder))
                )
    return logs, others


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


def verify(
    soak: Soak, kinds: Sequence[Kind], competing: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    """Every figure of the soak and the checks on them."""
    args, server = soak.args, soak.server
    records, broken_out = read_lines(soak.out)
    failed, broken_failed = read_lines(soak.failures)
    lines = Counter([line.get("id") for line in records] + [line.get("id") for line in failed])
    expected = {doc_id(i): i for i in range(args.documents)}
    lost = sorted(set(expected) - set(lines))
    duplicated = sorted(str(i) for i, n in lines.items() if n > 1)
    unknown = sorted(str(i) for i in set(lines) - set(expected))
    wrong = [
        line["id"]
        for line in records
        if line.get("id") in expected
        and line.get("record") != {"doc": line["id"], "amount": expected[line["id"]]}
    ]
    types = Counter(str((line.get("error") or {}).get("type")) for line in failed)
    elapsed = sorted(
        ((float(line.get("elapsed_s") or 0), str(line.get("id"))) for line in records + failed),
        reverse=True,
    )
    bound = args.deadline * (1 + PAUSES) + SHORT_PAUSES + DEADLINE_SLACK
    overdue = [f"{doc} {seconds:.1f} s" for seconds, doc in elapsed if seconds > bound]
    foreign = sorted(set(types) - extractor_errors())

    ended: dict[str, Counter[str]] = {}
    where = {line.get("id"): "record" for line in records}
    where.update({line.get("id"): "failure" for line in failed if line.get("id") not in where})
    misplaced: list[str] = []
    for index in range(args.documents):
        kind = kind_of(index, kinds)
        end = where.get(doc_id(index), "lost")
        ended.setdefault(kind.name, Counter())[end] += 1
        if kind.ends != "either" and end not in (kind.ends, "lost"):
            misplaced.append(f"{doc_id(index)} ({kind.name}: a {end})")
    requests_of: Counter[str] = Counter()
    asked_twice: list[str] = []
    waits: dict[str, float] = {}
    for index, visits in server.visits.items():
        kind = kind_of(index, kinds)
        requests_of[kind.name] += len(visits)
        runs = Counter(run for run, _ in visits)
        if kind.once and max(runs.values()) > 1:
            asked_twice.append(f"{doc_id(index)} ({kind.name}: {max(runs.values())} in one run)")
        if kind is not NORMAL and len(visits) > 1:  # the wait before the first retry
            (run_a, at_a), (run_b, at_b) = visits[:2]
            if run_a == run_b:
                waits[kind.name] = min(waits.get(kind.name, 1e9), at_b - at_a)

    logs, files = leaks(soak.folder, soak.key)
    stderr = [run.stderr.read_text(errors="replace") for run in soak.runs]
    tracebacks = sum(text.count("Traceback (most recent call last)") for text in stderr)
    unexpected = sum(text.count("failed unexpectedly") for text in stderr)
    hung = [run.label for run in soak.runs if run.hung]
    final = soak.runs[-1]
    status = (final.summary or {}).get("status")
    odd = [waits[name] for name in waits if name.startswith("503")]  # negative, absurd
    astray = lost + duplicated + unknown
    checks = [
        Check(
            "every input id in exactly one of the two files",
            not astray,
            f"{len(lost)} lost, {len(duplicated)} duplicated, {len(unknown)} unknown"
            + (f" (e.g. {astray[:5]})" if astray else ""),
        ),
        Check("every line parses", not (broken_out or broken_failed),
              f"{broken_out} broken lines in OUT, {broken_failed} in the failures file"),
        Check("every record is its own document's", not wrong,
              f"{len(wrong)} wrong" + (f": {wrong[:5]}" if wrong else "")),
        Check("each document ends where its faults say", not misplaced,
              f"{len(misplaced)} misplaced" + (f": {misplaced[:6]}" if misplaced else "")),
        Check("failures are ExtractorErrors", not foreign,
              "types: " + ", ".join(f"{t} {n}" for t, n in sorted(types.items()))),
        Check("no key in any run's stdout or stderr", not logs, ", ".join(logs) or "none"),
        Check("no key in any other file of the work folder", not files, ", ".join(files) or "none"),
        Check("every request carried the key", server.without_key == 0,
              f"{server.without_key} of {server.total} without it"),
        Check(
            "no document outlived --deadline (and the job's rate-limit pauses)",
            not overdue or not args.deadlines,
            f"{len(overdue)} over {bound:g} s" + (f": {overdue[:4]}" if overdue else "")
            + (f"; longest {elapsed[0][0]:.1f} s" if elapsed else ""),
        ),
        Check("no run hung", not hung, ", ".join(hung) or f"each within {args.run_bound:g} s"),
        *(
            Check(f"a competing start ({when}) refused with exit 2", bool(how["refused"]),
                  f"{how['run']}: exit {how['exit']} after {how['seconds']} s: {how['message']}"
                  if how["exit"] is not None else how["message"])
            for when, how in competing.items()
        ),
        Check("the last run finished the job", final.exit in (0, 1) and status == "complete",
              f"exit {final.exit}, status {status}"
              + ("" if status == "complete" else f": {last_line(final.stderr)}")),
        Check("non-retryable faults asked once per run", not asked_twice,
              ", ".join(asked_twice[:5]) or "redirect, oversize and 401 each asked once"),
        Check("a negative or absurd Retry-After: the normal backoff", min(odd, default=1) >= 0.25,
              f"shortest wait {min(odd):.2f} s" if odd else "no retry of one seen"),
        Check("no traceback, no 'failed unexpectedly' on stderr", not (tracebacks or unexpected),
              f"{tracebacks} tracebacks, {unexpected} unexpected failures"),
        Check("--timeout and --deadline given (slow faults in the mix)", args.deadlines,
              "yes" if args.deadlines else "the CLI has no --timeout/--deadline yet: drips and "
              "heartbeats left out, the CLI's defaults apply"),
    ]  # fmt: skip
    return {
        "documents": args.documents,
        "records": len(records),
        "failures": len(failed),
        "lost": len(lost),
        "duplicated": len(duplicated),
        "unknown": len(unknown),
        "broken_lines": broken_out + broken_failed,
        "wrong_records": len(wrong),
        "misplaced": misplaced,
        "failure_types": dict(sorted(types.items())),
        "foreign_failure_types": foreign,
        "key_in_logs": logs,
        "key_in_files": files,
        "hung": len(hung),
        "competing": competing,
        "requests": server.total,
        "requests_by_kind": dict(requests_of),
        "ended_by_kind": {k: dict(v) for k, v in ended.items()},
        "first_retry_waits": waits,
        "requests_without_id": server.unknown,
        "overdue": overdue,
        "longest_s": elapsed[0][0] if elapsed else None,
        "visits": {  # the runs that asked for each document with a fault, for diagnosis
            doc_id(index): [run for run, _ in visits]
            for index, visits in sorted(server.visits.items())
            if kind_of(index, kinds) is not NORMAL
        },
        "tracebacks": tracebacks,
        "unexpected": unexpected,
        "runs": [
            {
                "run": run.label,
                "exit": run.exit,
                "seconds": round(run.seconds, 1),
                "lines": run.lines_at_end,
                "status": (run.summary or {}).get("status"),
                "note": run.note,
                "last_line": last_line(run.stderr),
            }
            for run in soak.runs
        ],
        "checks": [{"name": c.name, "ok": c.ok, "detail": c.detail} for c in checks],
        "ok": all(c.ok for c in checks),
    }


# --- report -------------------------------------------------------------------------------------


def mark(ok: bool) -> str:
    return "✅" if ok else "❌"


def build_section(report: dict[str, Any], args: argparse.Namespace, command: str) -> str:
    faults = report["faults_per_mille"]
    lines = section_header(
        SECTION,
        command,
        [
            f"- Packages: {package_versions(VERSIONED)}",
            f"- {args.documents:,} documents, {faults / 10:.1f}% of them with faults; "
            f"each run bounded at {args.run_bound:g} s",
            f"- The job: `{report['batch_command']}`",
        ],
    )
    lines += [
        f"Wall time {report['wall_s']:.0f} s; the server saw {report['requests']:,} requests; "
        f"{report['records']:,} records and {report['failures']:,} failure lines; "
        f"lost {report['lost']}, duplicated {report['duplicated']}, hung {report['hung']}.",
        "",
        "| check | result | |",
        "| --- | --- | --- |",
    ]
    lines += [f"| {c['name']} | {c['detail']} | {mark(c['ok'])} |" for c in report["checks"]]
    lines += ["", "| run | exit | seconds | lines after | status | what happened |"]
    lines += ["| --- | ---: | ---: | ---: | --- | --- |"]
    for run in report["runs"]:
        lines.append(
            f"| {run['run']} | {run['exit']} | {run['seconds']:.1f} | {run['lines']:,} | "
            f"{run['status'] or ''} | {run['note']} |"
        )
    lines += ["", "| fault | documents | records | failures | requests | must end as |"]
    lines += ["| --- | ---: | ---: | ---: | ---: | --- |"]
    every = (NORMAL, *KINDS, *map(left_out, KINDS), OVERSIZE, LONG_WAIT)
    shown = {kind.name: kind for kind in every}
    for kind in shown.values():
        ended = report["ended_by_kind"].get(kind.name)
        if not ended:
            continue
        lines.append(
            f"| {kind.name} | {sum(ended.values()):,} | {ended.get('record', 0):,} | "
            f"{ended.get('failure', 0):,} | {report['requests_by_kind'].get(kind.name, 0):,} | "
            f"{kind.ends} |"
        )
    types = ", ".join(f"{t} {n:,}" for t, n in report["failure_types"].items()) or "none"
    lines += ["", f"Failures by type: {types}.", ""]
    return "\n".join(lines)


def cli_has_deadlines() -> bool:
    """Whether `extractor batch` takes --timeout and --deadline (being added: issue 11)."""
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    shown = subprocess.run(
        [sys.executable, "-m", "extractor", "batch", "--help"],
        env=env, capture_output=True, text=True, check=False,
    ).stdout  # fmt: skip
    return "--timeout" in shown and "--deadline" in shown


def write_documents(path: Path, count: int) -> None:
    with path.open("w") as out:
        for index in range(count):
            out.write(json.dumps({"id": doc_id(index), "text": text_of(index)}) + "\n")


def soak(args: argparse.Namespace) -> dict[str, Any]:
    """Run the whole soak in a fresh work folder (or `--work`); every figure and check."""
    key = f"sk-soak-{secrets.token_hex(16)}"
    kinds = KINDS if args.deadlines else tuple(map(left_out, KINDS))
    started = time.monotonic()
    with contextlib.ExitStack() as stack:
        if args.work is None:
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="soak-")))
        else:
            folder = Path(args.work).resolve()
            folder.mkdir(parents=True)  # a fresh folder: its files are the soak's alone
        write_documents(folder / "documents.jsonl", args.documents)
        (folder / "note.py").write_text(SCHEMA_FILE)
        server = stack.enter_context(Server(kinds, args.timeout, args.deadline, key))
        play = Soak(args, folder, server, key)
        try:
            competing = play.play()
        finally:
            for run in play.runs:
                run.kill()
        report = verify(play, kinds, competing)
        shown = ["python", *play.argv[1:]]
        report["batch_command"] = shlex.join(shown).replace(server.chat.base_url, "<server>")
    report["wall_s"] = wall = time.monotonic() - started
    report["faults_per_mille"] = sum(kind.per_mille for kind in kinds)
    report["checks"].append(
        {
            "name": "the soak finished within its bound",
            "ok": wall <= args.total_bound,
            "detail": f"{wall:.0f} s (bound {args.total_bound:g} s)",
        }
    )
    report["ok"] = all(check["ok"] for check in report["checks"])
    return report


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--documents", type=int, default=5000, help="documents in the input (default: 5000)")
    add("--concurrency", type=int, default=64, help="the job's --concurrency (default: 64)")
    add("--timeout", type=float, default=2.0, help="the job's --timeout (default: 2)")
    add("--deadline", type=float, default=20.0, help="the job's --deadline (default: 20)")
    add("--run-bound", type=float, default=300.0, help="seconds a run may take (default: 300)")
    add("--total-bound", type=float, default=900.0, help="seconds for it all (default: 900)")
    add("--finishing-runs", type=int, default=2,
        help="runs to the end at most, when one stops itself (default: 2)")  # fmt: skip
    add("--mode", help="the job's --mode (default: none given, auto)")
    add("--work", help="the work folder, kept afterwards (default: a temporary one)")
    add("--report-json", help="also write every figure as JSON to this path")
    add("--no-write", action="store_true", help="print only; leave RESULTS.md alone")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    args.deadlines = cli_has_deadlines()
    if not args.deadlines:
        print(
            "note: `extractor batch` has no --timeout/--deadline yet: the slow faults (drips, "
            "heartbeats) are left out and the run cannot pass",
            file=sys.stderr,
        )
    report = soak(args)
    command = command_line("soak.py", argv)
    section = build_section(report, args, command)
    print(section)
    if args.report_json:
        Path(args.report_json).write_text(json.dumps(report, indent=2) + "\n")
    if not args.no_write:
        write_section(SECTION, section)
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
