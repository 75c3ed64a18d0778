"""The client's cost of a provider batch job (`--via batch-api`), beside the online job.

`extractor batch SCHEMA docs.jsonl -o out.jsonl --via batch-api` runs in a fresh process
over `--documents` (100,000) generated documents (`"p00042 is 60 years old."`, a
`Person` of name and age), against `extractor.testing.ChatServer` running in a process
of its own (on a CPU of its own where there are two), which answers every request line
validly from the document's text. The online job (`--concurrency 100`, no `--via`) runs
over the same documents against the same kind of server. For each: wall seconds, the
client's CPU seconds (user + sys) and peak RSS (`wait4`'s rusage of that one child), the
batches and request lines it submitted, and the size of the batch files it wrote. Every
output line is checked against the document it came from, and the server's record of
the lines it ran shows whether a document was lost or submitted twice.

The batch job's time is split by the server's record of the batch calls (each call's
time is taken as the server records it): building the requests and uploading the file,
the provider at work, and downloading and validating the answers; the client's CPU and
RSS are sampled from /proc every 50 ms to apportion them. Smaller sizes (`--also`, by
default 10,000 and 50,000: one batch file holds 50,000 lines, and the batch job keeps
that many documents in flight) show whether memory stays flat as the input grows.

Each job gets a fresh server, so that its figures (batches, lines, files) are its own.

Run from the repository root:

    python benchmarks/batch_api.py                        # 10k, 50k and 100k; RESULTS.md
    python benchmarks/batch_api.py --documents 2000 --also --no-write   # a quick look
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from results import command_line, load_average, package_versions, section_header, write_section

REPO_ROOT = Path(__file__).resolve().parent.parent
SECTION = "batch_api"
VERSIONED = ("extractor", "httpx", "httpcore", "pydantic", "pydantic-core", "httpx-aiohttp")
MODEL = "openai/test-model"
SCHEMA_FILE = """\
from pydantic import BaseModel


class Person(BaseModel):
    name: str
    age: int
"""
#: What the server reads back out of a document to answer it.
PATTERN = re.compile(r"\b(p\d+) is (\d+) years old\.")
SAMPLE_SECONDS = 0.05
VIAS = ("batch-api", "online")


def name_of(index: int) -> str:
    """The name in document `index`."""
    return f"p{index:05d}"


def age_of(index: int) -> int:
    """The age in document `index`."""
    return 18 + index % 60


def doc_id(index: int) -> str:
    """The id of document `index` in the input file."""
    return f"doc-{index:07d}"


def write_documents(path: Path, count: int) -> int:
    """Write `count` `{"id", "text"}` lines to `path`; return the file's size."""
    with path.open("w") as out:
        for index in range(count):
            text = f"{name_of(index)} is {age_of(index)} years old."
            out.write(json.dumps({"id": doc_id(index), "text": text}) + "\n")
    return path.stat().st_size


# --- the server process ---------------------------------------------------------------------


def serve() -> None:
    """Run a ChatServer until stdin closes; print its URL, then one JSON line per `stats`.

    The handler builds each answer from the document's text; it and a watcher thread
    keep what the benchmark needs: every files/batch API call with the time it was
    recorded, the first and last line each batch ran, and how often each document was
    asked, online or in a batch.
    """
    from extractor.testing import Answer, ChatServer, RecordedRequest

    server = ChatServer().start()
    lock = threading.Lock()
    asked: dict[str, Counter[str]] = {"batch": Counter(), "online": Counter()}
    spans: dict[str, list[float]] = {}  # batch id -> [first line, last line]
    calls: list[dict[str, Any]] = []
    unreadable = [0]

    def handler(request: RecordedRequest) -> Answer:
        messages = request.messages
        text = messages[-1].get("content") if messages else None
        found = PATTERN.findall(text) if isinstance(text, str) else []
        now = time.time()
        with lock:
            if not found:
                unreadable[0] += 1
            else:
                asked["online" if request.batch_id is None else "batch"][found[-1][0]] += 1
            if request.batch_id is not None:
                spans.setdefault(request.batch_id, [now, now])[1] = now
        if not found:
            return Answer(content='{"error": "no document in the request"}')
        name, age = found[-1]
        return Answer(content=json.dumps({"name": name, "age": int(age)}))

    server.handler = handler
    stop = threading.Event()

    def watch() -> None:
        seen = 0
        while not stop.is_set():
            current = server.batch_calls
            if len(current) > seen:
                now = time.time()
                with lock:
                    for call in current[seen:]:
                        calls.append(
                            {
                                "method": call.method,
                                "path": call.path.split("?", 1)[0],
                                "t": now,
                                "bytes": len(call.raw),
                            }
                        )
                seen = len(current)
            time.sleep(0.002)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    print(f"URL {server.base_url}", flush=True)
    for command in sys.stdin:
        if command.strip() != "stats":
            continue
        with lock:
            report: dict[str, Any] = {
                "calls": [dict(call) for call in calls],
                "spans": {key: list(value) for key, value in spans.items()},
                "unreadable": unreadable[0],
            }
            for kind, counter in asked.items():
                report[kind] = {
                    "asked": sum(counter.values()),
                    "documents": len(counter),
                    "twice": sum(1 for count in counter.values() if count > 1),
                }
        for call in report["calls"]:
            match = re.fullmatch(r"/v1/files/([^/]+)/content", call["path"])
            if call["method"] == "GET" and match:
                try:
                    call["bytes"] = len(server.file_content(match.group(1)))
                except KeyError:
                    call["bytes"] = 0
        print(json.dumps(report), flush=True)
    stop.set()
    server.stop()


def server_cpus() -> tuple[set[int], set[int]] | None:
    """CPUs for the server and for the client, apart; None where there is only one."""
    if not hasattr(os, "sched_getaffinity"):
        return None
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None
    return {cpus[-1]}, set(cpus[:-1])


def process_cpu(pid: int) -> float:
    """User + system CPU seconds of process `pid` so far (0 where it cannot be read)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")


def machine_cpu() -> float:
    """CPU seconds every process on the machine has used since boot (/proc/stat)."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    except OSError:
        return 0.0
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def filesystem_of(path: Path) -> str:
    """The device and type of the file system `path` is on, from /proc/mounts."""
    best = ("", "unknown", "unknown")
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return "unknown"
    where = str(path.resolve())
    for line in mounts:
        device, point, kind = line.split()[:3]
        inside = where == point or where.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best[0]):
            best = (point, device, kind)
    return f"{best[2]} ({best[1]} on {best[0]})"


def child_env() -> dict[str, str]:
    """The environment of the children: this checkout's `extractor` first on the path."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    return env


class Server:
    """A `serve()` process: its URL, and its `stats()` when asked."""

    def __init__(self, process: subprocess.Popen[str], url: str) -> None:
        self.process = process
        self.url = url

    def cpu(self) -> float:
        """The server process's CPU seconds so far."""
        return process_cpu(self.process.pid)

    def stats(self) -> dict[str, Any]:
        """What the server recorded so far (see `serve`)."""
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.write("stats\n")
        self.process.stdin.flush()
        return dict(json.loads(self.process.stdout.readline()))


@contextmanager
def chat_server() -> Iterator[Server]:
    """Start `serve()` in its own process, on a CPU of its own where there are two."""
    split = server_cpus()
    process = subprocess.Popen(
        [sys.executable, __file__, "--serve"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=child_env(),
        preexec_fn=(lambda: os.sched_setaffinity(0, split[0])) if split else None,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line.startswith("URL "):
            raise SystemExit(f"the server did not start: {line!r}")
        yield Server(process, line.split()[1])
    finally:
        if process.stdin is not None:
            process.stdin.close()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# --- one job ----------------------------------------------------------------------------------


@dataclass
class Sample:
    """The client process at one moment: wall clock, CPU seconds so far, RSS."""

    t: float
    cpu: float
    rss_kib: int
    hwm_kib: int


@dataclass
class Phase:
    """A stretch of a batch job between two of the server's events."""

    name: str
    start: float
    end: float
    cpu: float
    peak_rss_kib: int

    @property
    def seconds(self) -> float:
        return self.end - self.start


@dataclass
class JobRun:
    """One `extractor batch` process and what it cost."""

    via: str
    documents: int
    command: list[str]
    load: float
    wall: float = 0.0
    user: float = 0.0
    sys: float = 0.0
    maxrss_kib: int = 0
    hwm_kib: int = 0
    server_cpu: float = 0.0
    others_cpu: float = 0.0
    exit_code: int = 0
    batches: int | None = None
    lines: int | None = None
    part_files: int = 0
    part_bytes: int = 0
    downloaded_bytes: int = 0
    state_bytes: int = 0
    log_lines: int = 0
    retries: int = 0
    phases: list[Phase] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    stderr_tail: list[str] = field(default_factory=list)

    @property
    def cpu(self) -> float:
        return self.user + self.sys

    @property
    def peak_mib(self) -> float:
        return self.maxrss_kib / 1024


class Sampler(threading.Thread):
    """Reads a process's CPU time and RSS from /proc every `SAMPLE_SECONDS`."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.samples: list[Sample] = []
        self.stopped = threading.Event()
        self.tick = os.sysconf("SC_CLK_TCK")

    def run(self) -> None:
        while not self.stopped.is_set():
            try:
                stat = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
                status = Path(f"/proc/{self.pid}/status").read_text()
            except (OSError, IndexError):
                self.stopped.wait(SAMPLE_SECONDS)
                continue
            found = dict(
                line.split(":", 1) for line in status.splitlines() if line.startswith("Vm")
            )
            if "VmRSS" in found:
                self.samples.append(
                    Sample(
                        time.time(),
                        (int(stat[11]) + int(stat[12])) / self.tick,
                        int(found["VmRSS"].split()[0]),
                        int(found["VmHWM"].split()[0]),
                    )
                )
            self.stopped.wait(SAMPLE_SECONDS)


def read_lines(stream: IO[str], into: list[str]) -> None:
    """Keep every line of `stream` (the job's stderr) until it closes."""
    for line in stream:
        into.append(line.rstrip("\n"))


def job_command(
    via: str, url: str, folder: Path, source: Path, concurrency: int
) -> tuple[list[str], Path]:
    """The `python -m extractor batch` command of one job, and its output path."""
    out = folder / "out.jsonl"
    argv = [
        sys.executable, "-m", "extractor", "-v", "batch", f"{folder.parent / 'person.py'}:Person",
        str(source), "-o", str(out), "--model", MODEL, "--base-url", url, "--mode", "json_schema",
    ]  # fmt: skip
    argv += ["--via", "batch-api"] if via == "batch-api" else ["--concurrency", str(concurrency)]
    return argv, out


def run_job(via: str, count: int, source: Path, root: Path, concurrency: int) -> JobRun:
    """Run one job in a fresh process against a fresh server; measure and check it."""
    folder = root / f"{via}-{count}"
    if folder.exists():
        shutil.rmtree(folder)  # a kept --folder of an earlier run
    folder.mkdir()
    with chat_server() as server:
        argv, out = job_command(via, server.url, folder, source, concurrency)
        run = JobRun(via, count, argv, os.getloadavg()[0])
        stderr: list[str] = []
        start = time.time()
        machine, served = machine_cpu(), server.cpu()
        wall = time.perf_counter()
        process = subprocess.Popen(
            argv,
            cwd=REPO_ROOT,
            env=child_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        sampler = Sampler(process.pid)
        sampler.start()
        assert process.stderr is not None
        reader = threading.Thread(target=read_lines, args=(process.stderr, stderr), daemon=True)
        reader.start()
        _, status, usage = os.wait4(process.pid, 0)
        run.wall = time.perf_counter() - wall
        end = time.time()
        machine, served = machine_cpu() - machine, server.cpu() - served
        process.returncode = os.waitstatus_to_exitcode(status)
        sampler.stopped.set()
        sampler.join()
        reader.join()
        run.exit_code = process.returncode
        run.user, run.sys = usage.ru_utime, usage.ru_stime
        run.maxrss_kib = usage.ru_maxrss  # KiB on Linux
        run.hwm_kib = max((s.hwm_kib for s in sampler.samples), default=0)
        run.server_cpu = served
        run.others_cpu = max(0.0, machine - served - run.cpu)
        stats = server.stats()
    read_log(run, stderr)
    check(run, out, stats)
    measure_files(run, out)
    if via == "batch-api":
        run.phases = phases(stats, sampler.samples, start, end, run.cpu)
    return run


def read_log(run: JobRun, stderr: list[str]) -> None:
    """Batches and lines from the job's own summary line; retries from its log."""
    run.log_lines = len(stderr)
    run.retries = sum("retrying" in line for line in stderr)
    run.stderr_tail = stderr[-8:]
    for line in stderr:
        found = re.search(r"batch API: (\d+) batch\(es\), (\d+) request line", line)
        if found:
            run.batches, run.lines = int(found.group(1)), int(found.group(2))


def check(run: JobRun, out: Path, stats: dict[str, Any]) -> None:
    """Every document once in OUT with its own record; each asked once of the server."""
    count = run.documents
    if run.exit_code != 0:
        run.problems.append(f"exit status {run.exit_code}: {' | '.join(run.stderr_tail)}")
    ids: Counter[str] = Counter()
    wrong = 0
    if out.exists():
        with out.open() as lines:
            for line in lines:
                row = json.loads(line)
                ids[row["id"]] += 1
                index = int(row["id"].split("-")[1])
                wrong += row.get("record") != {"name": name_of(index), "age": age_of(index)}
    missing = sum(1 for index in range(count) if doc_id(index) not in ids)
    twice = sum(1 for n in ids.values() if n > 1)
    if missing or twice or wrong:
        run.problems.append(
            f"output: {missing:,} documents missing, {twice:,} written twice, "
            f"{wrong:,} with a record not of their document"
        )
    failures = out.with_name(out.name + ".failures.jsonl")
    if failures.exists() and failures.stat().st_size:
        failed = sum(1 for _ in failures.open())
        run.problems.append(f"{failed:,} lines in {failures.name}")
    kind = "batch" if run.via == "batch-api" else "online"
    asked = stats[kind]
    if asked["documents"] != count or asked["twice"] or asked["asked"] != count:
        run.problems.append(
            f"server: {asked['asked']:,} {kind} requests for {asked['documents']:,} of "
            f"{count:,} documents, {asked['twice']:,} documents asked more than once"
        )
    if stats["unreadable"]:
        run.problems.append(f"server: {stats['unreadable']} requests without a document")
    if run.via == "batch-api" and run.lines is not None and run.lines != count:
        run.problems.append(f"the job says it submitted {run.lines:,} lines for {count:,}")
    if run.retries:
        run.problems.append(f"{run.retries:,} retries logged")


def measure_files(run: JobRun, out: Path) -> None:
    """Sizes of the batch files, the downloaded answers and the state file beside OUT."""
    folder = out.with_name(out.name + ".batch-api")
    if folder.is_dir():
        for path in folder.iterdir():
            if re.fullmatch(r"part-\d+\.jsonl", path.name):
                run.part_files += 1
                run.part_bytes += path.stat().st_size
            else:
                run.downloaded_bytes += path.stat().st_size
    for suffix in (".batch-api.sqlite", ".batch-api.sqlite-wal"):
        state = out.with_name(out.name + suffix)
        if state.exists():
            run.state_bytes += state.stat().st_size


def cpu_at(samples: Sequence[Sample], moment: float) -> float:
    """The client's CPU seconds at `moment`, interpolated between samples."""
    before = [s for s in samples if s.t <= moment]
    after = [s for s in samples if s.t > moment]
    if not before:
        return after[0].cpu if after else 0.0
    if not after:
        return before[-1].cpu
    low, high = before[-1], after[0]
    return low.cpu + (high.cpu - low.cpu) * (moment - low.t) / (high.t - low.t)


def phases(
    stats: dict[str, Any], samples: Sequence[Sample], start: float, end: float, total_cpu: float
) -> list[Phase]:
    """The job's stretches between uploads (`POST /files`) and downloads (file contents)."""
    events: list[tuple[float, str]] = []
    for call in stats["calls"]:
        if call["method"] == "POST" and call["path"] == "/v1/files":
            events.append((call["t"], "upload"))
        elif call["method"] == "GET" and call["path"].endswith("/content"):
            events.append((call["t"], "download"))
    events.sort()
    names = {
        ("start", "upload"): "start, build the requests, write and upload the file",
        ("upload", "download"): "the provider at work (the client waits)",
        ("download", "upload"): "download, validate, write records; build and upload the next",
        ("download", "end"): "download the answers, validate, write the records",
    }
    found = []
    marks = [(start, "start"), *events, (end, "end")]
    for (t0, kind0), (t1, kind1) in itertools.pairwise(marks):
        cpu0 = cpu_at(samples, t0)
        cpu1 = total_cpu if kind1 == "end" else cpu_at(samples, t1)
        inside = [s.rss_kib for s in samples if t0 <= s.t <= t1]
        name = names.get((kind0, kind1), f"{kind0} to {kind1}")
        found.append(Phase(name, t0 - start, t1 - start, cpu1 - cpu0, max(inside, default=0)))
    return found


# --- the machine's load ---------------------------------------------------------------------


def wait_for_quiet(limit: float, patience: float) -> tuple[float, float, float]:
    """Wait (up to `patience` s) for the 1-minute load to fall below `limit`.

    Returns the load before, the load when done waiting, and the seconds waited.
    """
    before = os.getloadavg()[0]
    began = time.monotonic()
    load = before
    print(f"load average {load_average()} (1/5/15 min)", file=sys.stderr)
    while load >= limit and time.monotonic() - began < patience:
        print(f"  1-minute load {load:.2f} >= {limit}: waiting", file=sys.stderr)
        time.sleep(min(15.0, max(0.0, patience - (time.monotonic() - began))))
        load = os.getloadavg()[0]
    return before, load, time.monotonic() - began


# --- report -----------------------------------------------------------------------------------


def mib(size: int) -> str:
    return f"{size / 2**20:,.1f}"


def build_section(
    args: argparse.Namespace,
    runs: list[JobRun],
    load: tuple[float, float, float],
    command: str,
    input_bytes: dict[int, int],
    folder: Path,
) -> str:
    before, after, waited = load
    waited_text = f"waited {waited:.0f} s for it to fall to {after:.2f}" if waited >= 1 else ""
    lines = section_header(
        SECTION,
        command,
        [
            f"- Packages: {package_versions(VERSIONED)}",
            f"- 1-minute load before the timed runs: {before:.2f}"
            + (f" ({waited_text})" if waited_text else "")
            + f"; goal below {args.max_load}",
            f"- Job files on: {filesystem_of(folder)} (the batch job commits its state "
            "file once per answered line: the disk's flush time is in its wall time)",
        ],
    )
    sizes = sorted({run.documents for run in runs})
    top = max(sizes)
    lines += [
        "Each job is `python -m extractor -v batch person.py:Person docs.jsonl -o out.jsonl "
        f"--model {MODEL} --base-url URL --mode json_schema`, with `--via batch-api` (its "
        f"default concurrency: 50,000 documents in flight, one batch file) or with "
        f"`--concurrency {args.concurrency}` (online), in a fresh process; the client is "
        "pinned apart from the server (`extractor.testing.ChatServer` in its own process, a "
        "fresh one per job), which answers every line at once. CPU and peak RSS are the "
        "job process's own (`wait4`). A batch job's wall time here has no provider delay "
        "in it: a real batch takes minutes to hours.",
        "",
        "### Jobs",
        "",
        "| documents | via | wall s | client CPU s | CPU ms/doc | peak RSS MiB | server CPU s "
        "| others' CPU s | load | check |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    ordered = sorted(runs, key=lambda r: (r.documents, r.via))
    for run in ordered:
        lines.append(
            f"| {run.documents:,} | {run.via} | {run.wall:.1f} | {run.cpu:.1f} | "
            f"{run.cpu / run.documents * 1000:.2f} | {run.peak_mib:,.0f} | "
            f"{run.server_cpu:.1f} | {run.others_cpu:.1f} | {run.load:.2f} | "
            f"{'✅' if not run.problems else '❌'} |"
        )
    lines += [
        "",
        "Server CPU: the fake provider's, on its own CPU. Others' CPU: what every other "
        "process on the machine used during the job (/proc/stat less client and server; "
        "this script's own sampling is in it). Load: the 1-minute load average as the job "
        "started (the previous job's client and server are in it). Check: every document "
        "in OUT once with its own record, no failures, no retries, and the server asked "
        "each document once.",
        "",
        "| documents | batches | lines submitted | batch files MiB (files) "
        "| answers downloaded MiB | state MiB | input MiB |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for run in ordered:
        if run.via != "batch-api":
            continue
        submitted = "?" if run.lines is None else f"{run.lines:,}"
        lines.append(
            f"| {run.documents:,} | {run.batches} | {submitted} | "
            f"{mib(run.part_bytes)} ({run.part_files}) | {mib(run.downloaded_bytes)} | "
            f"{mib(run.state_bytes)} | {mib(input_bytes[run.documents])} |"
        )
    lines += [
        "",
        "Batches and lines: the job's own count (its last stderr line). Batch files: the "
        "request files it wrote; answers: the output files it downloaded; state: "
        "`OUT.batch-api.sqlite` and its WAL; input: the documents' JSONL.",
        "",
    ]
    problems = [run for run in runs if run.problems]
    if problems:
        lines += ["Problems:", ""]
        for run in problems:
            lines += [f"- {run.documents:,} via {run.via}: {p}" for p in run.problems]
        lines.append("")
    by_key = {(run.documents, run.via): run for run in runs}
    pairs = [(n, by_key.get((n, "batch-api")), by_key.get((n, "online"))) for n in sizes]
    pairs = [(n, b, o) for n, b, o in pairs if b and o]
    if pairs:
        lines += [
            "### batch-api / online",
            "",
            "| documents | client CPU | peak RSS | wall |",
            "| ---: | ---: | ---: | ---: |",
        ]
        for n, b, o in pairs:
            lines.append(
                f"| {n:,} | {b.cpu / o.cpu:.2f} | {b.maxrss_kib / o.maxrss_kib:.2f} | "
                f"{b.wall / o.wall:.2f} |"
            )
        lines.append("")
    for via in VIAS:
        series = [by_key[(n, via)] for n in sizes if (n, via) in by_key]
        if len(series) >= 2:
            low, high = series[0], series[-1]
            steps = ", ".join(f"{r.documents:,}: {r.peak_mib:,.0f} MiB" for r in series)
            lines.append(
                f"- Peak RSS, {via}: {steps}; {high.maxrss_kib / low.maxrss_kib - 1:+.0%} from "
                f"{low.documents:,} to {high.documents:,} documents."
            )
    lines.append("")
    full = by_key.get((top, "batch-api"))
    if full and full.phases:
        lines += [
            f"### Where the batch job's time goes ({top:,} documents)",
            "",
            "Stretches between the server's record of each upload (`POST /v1/files`, "
            "recorded once the file is in) and each download (`GET /v1/files/ID/content`, "
            "recorded before the bytes go out); the client's CPU in each, from /proc "
            f"samples every {SAMPLE_SECONDS * 1000:.0f} ms. After the first batch, "
            "validating one batch's answers and building the next batch's requests "
            "interleave: each finished document lets the next one start.",
            "",
            "| from s | to s | stretch | wall s | client CPU s | peak RSS MiB in it |",
            "| ---: | ---: | --- | ---: | ---: | ---: |",
        ]
        for phase in full.phases:
            lines.append(
                f"| {phase.start:.1f} | {phase.end:.1f} | {phase.name} | {phase.seconds:.1f} | "
                f"{phase.cpu:.1f} | {phase.peak_rss_kib / 1024:,.0f} |"
            )
        lines.append("")
    lines.append(
        "Peak RSS cross-check (`VmHWM` sampled from /proc, MiB): "
        + ", ".join(f"{r.documents:,} {r.via} {r.hwm_kib / 1024:,.0f}" for r in runs)
        + "."
    )
    lines.append("")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Writes the `## batch_api` section of benchmarks/RESULTS.md unless --no-write.",
    )
    add = parser.add_argument
    add("--documents", type=int, default=100_000, help="the full run's size (default: 100000)")
    add(
        "--also",
        type=int,
        nargs="*",
        default=[10_000, 50_000],
        metavar="N",
        help="smaller sizes run too, to see whether memory stays flat (default: 10000 50000; "
        "give none for the full size only)",
    )
    add("--via", choices=(*VIAS, "both"), default="both", help="which jobs (default: both)")
    add("--concurrency", type=int, default=100, help="the online job's (default: 100)")
    add("--max-load", type=float, default=1.0, help="wait for a 1-minute load below this")
    add(
        "--wait-load",
        type=float,
        default=600.0,
        metavar="SECONDS",
        help="wait at most this long for it before the timed runs (default: 600; 0: don't)",
    )
    add("--folder", type=Path, help="where the documents and jobs go (default: a temp folder)")
    add("--keep", action="store_true", help="keep the folder afterwards, to look at")
    add("--no-write", action="store_true", help="print only; leave RESULTS.md alone")
    add("--serve", action="store_true", help=argparse.SUPPRESS)  # the server process
    return parser.parse_args(argv)


def show(run: JobRun) -> None:
    """One line per job on stderr as it finishes."""
    verdict = "ok" if not run.problems else "; ".join(run.problems)
    print(
        f"  {run.documents:,} via {run.via}: {run.wall:.1f} s, CPU {run.cpu:.1f} s, "
        f"peak RSS {run.peak_mib:,.0f} MiB, batches {run.batches}, lines {run.lines}: {verdict}",
        file=sys.stderr,
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.serve:
        serve()
        return 0
    split = server_cpus()
    if split is not None:
        os.sched_setaffinity(0, split[1])  # the jobs inherit it; the server takes the other
    sizes = sorted({*(args.also or []), args.documents})
    vias = VIAS if args.via == "both" else (args.via,)
    root = Path(args.folder or tempfile.mkdtemp(prefix="extractor-batch-api-bench-"))
    root.mkdir(parents=True, exist_ok=True)
    (root / "person.py").write_text(SCHEMA_FILE)
    input_bytes = {}
    sources = {}
    for size in sizes:
        sources[size] = root / f"docs-{size}.jsonl"
        input_bytes[size] = write_documents(sources[size], size)
    load = wait_for_quiet(args.max_load, args.wait_load)
    runs = []
    try:
        for size in sizes:
            for via in vias:
                print(f"{size:,} documents via {via}", file=sys.stderr)
                run = run_job(via, size, sources[size], root, args.concurrency)
                show(run)
                runs.append(run)
    finally:
        if args.keep:
            print(f"kept {root}", file=sys.stderr)
        elif args.folder is None:
            shutil.rmtree(root, ignore_errors=True)
    command = command_line("batch_api.py", argv)
    section = build_section(args, runs, load, command, input_bytes, root)
    print(section)
    if not args.no_write:
        write_section(SECTION, section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
