"""Batch throughput against a slow server, and memory as the job grows.

Part A: the transports. 1,000 requests at concurrency 100 against a loopback server
answering in 100 ms (ideal: 1.0 s), with no extraction around them: httpx's
`AsyncClient` as it comes, with 100 keep-alive connections, extractor's
`PooledTransport`, and the `httpx-aiohttp` transport where installed.

Part B: throughput. 5,000 documents at concurrency 100 against the same server (ideal:
5.0 s): extractor's `aextract_many`, extractor's `BatchJob` writing the output file
(what `extractor batch` runs), and instructor driven by `asyncio.gather` and a
semaphore. Each contender's records are checked; the share of the ideal is the goal
(at least 90%). Client CPU seconds are this process's own (the server runs apart).

Part C: memory. `extractor batch` over 10,000 and then 100,000 generated documents,
each in a fresh process, against the server with no latency; the peak RSS (`VmHWM`) of
each process (goal: within 20% of each other).

The server (`loopback_server.py`) runs in its own process so the client is measured
alone. Documents are generated here, never committed. Run from the repository root:

    python benchmarks/batch.py                  # the issue's sizes; writes RESULTS.md
    python benchmarks/batch.py --documents 500 --memory-sizes 1000 5000 --no-write
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from pydantic import BaseModel
from results import command_line, package_versions, section_header, write_section

REPO_ROOT = Path(__file__).resolve().parent.parent
SERVER = Path(__file__).resolve().parent / "loopback_server.py"
SECTION = "batch"
SHARE_GOAL = 0.90
RSS_GOAL = 0.20
VERSIONED = ("extractor", "httpx", "httpcore", "instructor", "openai", "httpx-aiohttp", "aiohttp")
RECORD = {"name": "Ann Lee", "age": 41}
SCHEMA_FILE = """\
from pydantic import BaseModel


class Contact(BaseModel):
    name: str
    age: int
"""


class Contact(BaseModel):
    """The record every document yields."""

    name: str
    age: int


def text_of(index: int) -> str:
    """A document: a few lines, so the prompt is not trivially small."""
    return (
        f"Note {index}. Thanks for coming to the meetup last night. Ann Lee, who is 41, ran "
        "the session on structured outputs; write to her at ann@example.com with questions."
    )


def server_cpus() -> tuple[set[int], set[int]] | None:
    """CPUs for the server and for the client, apart; None where there is only one.

    The server stands in for a provider on another machine: sharing the client's cores,
    its work and the scheduler's moves cost the client 3 to 5 points of throughput here
    (2 cores: 87-89% of ideal unpinned, 92-94% pinned, the same code).
    """
    if not hasattr(os, "sched_getaffinity"):
        return None
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None
    return {cpus[-1]}, set(cpus[:-1])


@contextmanager
def loopback(latency: float) -> Iterator[str]:
    """Start loopback_server.py in its own process (on a CPU of its own); yield its URL."""
    split = server_cpus()
    if split is not None:
        os.sched_setaffinity(0, split[1])
    server = subprocess.Popen(
        [sys.executable, str(SERVER), "--latency", str(latency), "--record", json.dumps(RECORD)],
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=(lambda: os.sched_setaffinity(0, split[0])) if split else None,
    )
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline().split()[1])
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        server.kill()
        server.wait()


@dataclass
class Run:
    """One contender's timed run."""

    name: str
    seconds: float | None
    cpu: float | None
    ok: int
    ideal: float
    note: str = ""

    @property
    def share(self) -> float | None:
        return self.ideal / self.seconds if self.seconds else None


class Stopwatch:
    """Wall and CPU time of the part of a run that counts: set-up and warm-up stay out."""

    def __init__(self) -> None:
        self.seconds = self.cpu = 0.0

    def __enter__(self) -> Stopwatch:
        self._wall, self._cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self._wall
        self.cpu = time.process_time() - self._cpu


async def timed(
    name: str, ideal: float, expected: int, body: Callable[[Stopwatch], Awaitable[int]]
) -> Run:
    """Run one contender; it starts `watch` after its warm-up and stops it when done."""
    watch = Stopwatch()
    ok = await body(watch)
    seconds, cpu = watch.seconds, watch.cpu
    if ok != expected:
        return Run(name, None, None, ok, ideal, f"only {ok} of {expected} valid")
    return Run(name, seconds, cpu, ok, ideal)


# --- part A: transports ------------------------------------------------------------------------


def transports() -> dict[str, Callable[[], httpx.AsyncBaseTransport | None]]:
    from extractor._pool import PooledTransport

    found: dict[str, Callable[[], httpx.AsyncBaseTransport | None]] = {
        "httpx AsyncClient, default limits (100 connections, 20 kept alive)": lambda: None,
        "httpx AsyncClient, 100 connections kept alive": lambda: httpx.AsyncHTTPTransport(
            limits=httpx.Limits(max_connections=100, max_keepalive_connections=100)
        ),
        "extractor PooledTransport (20 pools x 5 connections)": PooledTransport,
    }
    try:
        import aiohttp
        from httpx_aiohttp import AiohttpTransport
    except ImportError:
        pass
    else:
        found["httpx-aiohttp AiohttpTransport"] = lambda: AiohttpTransport(
            client=lambda: aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=100))
        )
    return found


async def raw_requests(
    url: str, transport: httpx.AsyncBaseTransport | None, count: int, concurrency: int
) -> tuple[int, float, float]:
    """Send `count` requests, `concurrency` at a time: (answers, seconds, CPU seconds)."""
    body = json.dumps({"model": "m", "messages": [{"role": "user", "content": text_of(0)}]})
    async with httpx.AsyncClient(transport=transport) as client:
        gate = asyncio.Semaphore(concurrency)

        async def one() -> int:
            async with gate:
                response = await client.post(f"{url}/chat/completions", content=body)
                return int("choices" in response.json())

        await asyncio.gather(*(one() for _ in range(concurrency)))  # connect first
        wall, cpu = time.perf_counter(), time.process_time()
        ok = sum(await asyncio.gather(*(one() for _ in range(count))))
        return ok, time.perf_counter() - wall, time.process_time() - cpu


def measure_transports(url: str, count: int, concurrency: int, latency: float) -> list[Run]:
    ideal = count / concurrency * latency
    runs = []
    for name, make in transports().items():

        async def body(make: Any = make) -> tuple[int, float, float]:
            return await raw_requests(url, make(), count, concurrency)

        ok, seconds, cpu = asyncio.run(body())
        runs.append(Run(name, seconds, cpu, ok, ideal))
        print(f"  {name}: {seconds:.2f} s ({ideal / seconds:.0%} of ideal)", file=sys.stderr)
    return runs


# --- part B: throughput -------------------------------------------------------------------------


async def extractor_many(
    url: str, count: int, concurrency: int, transport: httpx.AsyncBaseTransport, watch: Stopwatch
) -> int:
    from extractor import Client

    async with Client("openai/bench", base_url=url, async_transport=transport) as client:
        # warm, as part A does: schema compiled, every connection of the pool open
        warm = (client.aextract(Contact, text_of(-1)) for _ in range(concurrency))
        await asyncio.gather(*warm)
        documents = ((i, text_of(i)) for i in range(count))
        ok = 0
        with watch:
            async for result in client.aextract_many(Contact, documents, concurrency=concurrency):
                ok += result.ok and result.value.name == RECORD["name"]
        return ok


async def extractor_job(
    url: str, count: int, concurrency: int, folder: Path, watch: Stopwatch
) -> int:
    from extractor import Client
    from extractor._pool import default_async_transport
    from extractor.batch import BatchJob, open_source

    source = folder / "throughput.jsonl"
    write_documents(source, count)
    out = folder / "throughput-out.jsonl"
    client = Client(
        "openai/bench",
        base_url=url,
        async_transport=default_async_transport(max_connections=concurrency),
    )
    job = BatchJob(
        client, Contact, open_source(str(source)), out, concurrency=concurrency, restart=True
    )
    warm = (client.aextract(Contact, text_of(-1)) for _ in range(concurrency))
    await asyncio.gather(*warm)  # as the others: every connection of the pool open
    with watch:
        summary = await job.arun()
    valid = sum(json.loads(line)["record"] == RECORD for line in out.open())
    return valid if summary.done == count else 0


async def instructor_gather(url: str, count: int, concurrency: int, watch: Stopwatch) -> int:
    import instructor
    import openai

    client = instructor.from_openai(
        openai.AsyncOpenAI(base_url=url, api_key="sk-bench"), mode=instructor.Mode.TOOLS
    )
    gate = asyncio.Semaphore(concurrency)

    async def one(index: int) -> int:
        async with gate:
            contact = await client.chat.completions.create(
                model="bench",
                response_model=Contact,
                messages=[{"role": "user", "content": text_of(index)}],
            )
            return int(contact.name == RECORD["name"])

    await asyncio.gather(*(one(-1) for _ in range(concurrency)))  # warm: connections open
    with watch:
        return sum(await asyncio.gather(*(one(i) for i in range(count))))


def measure_throughput(
    url: str, count: int, concurrency: int, latency: float, folder: Path
) -> list[Run]:
    from extractor._pool import PooledTransport, default_async_transport

    ideal = count / concurrency * latency
    default = type(default_async_transport()).__name__
    contenders: dict[str, Callable[[Stopwatch], Awaitable[int]]] = {
        "extractor `aextract_many`, PooledTransport": lambda watch: extractor_many(
            url, count, concurrency, PooledTransport(concurrency), watch
        ),
    }
    if default != "PooledTransport":
        contenders["extractor `aextract_many`, httpx-aiohttp (the `aiohttp` extra)"] = (
            lambda watch: extractor_many(
                url, count, concurrency, default_async_transport(concurrency), watch
            )
        )
    contenders[f"extractor `BatchJob` (what `extractor batch` runs), {default}"] = lambda watch: (
        extractor_job(url, count, concurrency, folder, watch)
    )
    try:
        import instructor  # noqa: F401  # only to know whether it can run
    except ImportError:
        instructor_note = "instructor not installed"
    else:
        instructor_note = ""
        contenders["instructor 1.x, `asyncio.gather` + `Semaphore`"] = lambda watch: (
            instructor_gather(url, count, concurrency, watch)
        )
    runs = []
    for name, body in contenders.items():
        run = asyncio.run(timed(name, ideal, count, body))
        runs.append(run)
        shown = f"{run.seconds:.2f} s" if run.seconds else run.note
        print(f"  {name}: {shown}", file=sys.stderr)
    if instructor_note:
        runs.append(Run("instructor", None, None, 0, ideal, instructor_note))
    return runs


# --- part C: memory -----------------------------------------------------------------------------


def write_documents(path: Path, count: int) -> None:
    with path.open("w") as out:
        for index in range(count):
            out.write(json.dumps({"id": f"doc-{index:07d}", "text": text_of(index)}) + "\n")


#: Runs `extractor batch` and then prints the process's peak RSS. `VmHWM` is read inside
#: the process because it starts afresh at exec, where `wait4`'s `ru_maxrss` also counts
#: the pages the child shared with this (large) benchmark process before its exec.
PEAK_WRAPPER = """\
import sys
from extractor._cli import main
code = main(sys.argv[1:])
for line in open("/proc/self/status"):
    if line.startswith("VmHWM:"):
        print("PEAK_KIB", line.split()[1])
sys.exit(code)
"""


def peak_rss(url: str, count: int, concurrency: int, folder: Path) -> tuple[float, float, int]:
    """Run `extractor batch` over `count` documents in a fresh process: (MiB, seconds, lines)."""
    source = folder / f"memory-{count}.jsonl"
    write_documents(source, count)
    schema = folder / "contact.py"
    schema.write_text(SCHEMA_FILE)
    out = folder / f"memory-{count}-out.jsonl"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    argv = [
        sys.executable, "-c", PEAK_WRAPPER, "batch", f"{schema}:Contact", str(source),
        "-o", str(out), "--restart", "--concurrency", str(concurrency),
        "--model", "openai/bench", "--base-url", url,
    ]  # fmt: skip
    wall = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - wall
    if done.returncode != 0 or "PEAK_KIB" not in done.stdout:
        raise SystemExit(f"extractor batch failed ({done.returncode}): {done.stderr}")
    peak_kib = int(done.stdout.split("PEAK_KIB", 1)[1].split()[0])
    lines = sum(1 for _ in out.open())
    source.unlink()
    out.unlink()
    return peak_kib / 1024, seconds, lines


def measure_memory(url: str, sizes: Sequence[int], concurrency: int, folder: Path) -> list[Any]:
    rows = []
    for size in sizes:
        mib, seconds, lines = peak_rss(url, size, concurrency, folder)
        rows.append((size, mib, seconds, lines))
        print(f"  {size:,} documents: peak RSS {mib:.1f} MiB, {seconds:.1f} s", file=sys.stderr)
    return rows


# --- report -------------------------------------------------------------------------------------


def mark(ok: bool) -> str:
    return "✅" if ok else "❌"


def build_section(args: argparse.Namespace, parts: dict[str, Any], command: str) -> str:
    lines = section_header(SECTION, command, [f"- Packages: {package_versions(VERSIONED)}"])
    if "transports" in parts:
        runs = parts["transports"]
        ideal = runs[0].ideal
        lines += [
            f"### A. Transports: {args.transport_requests:,} requests at concurrency "
            f"{args.concurrency}, {args.latency * 1000:.0f} ms latency (ideal {ideal:.2f} s)",
            "",
            "| transport | seconds | share of ideal | client CPU s |",
            "| --- | ---: | ---: | ---: |",
        ]
        for run in runs:
            share = run.share or 0.0
            lines.append(f"| {run.name} | {run.seconds:.2f} | {share:.0%} | {run.cpu:.2f} |")
        lines.append("")
    if "throughput" in parts:
        runs = parts["throughput"]
        ideal = runs[0].ideal
        lines += [
            f"### B. Throughput: {args.documents:,} documents at concurrency {args.concurrency}, "
            f"{args.latency * 1000:.0f} ms latency (ideal {ideal:.2f} s; goal ≥ "
            f"{SHARE_GOAL:.0%})",
            "",
            f"Each contender first makes {args.concurrency} calls at once, which opens every "
            "connection (as part A does); the clock runs from the first document to the last. "
            "The server runs on a CPU of its own, as a provider would on its own machine "
            "(`server_cpus()`; the client keeps the others).",
            "",
            "| contender | seconds | documents/s | share of ideal | client CPU s |",
            "| --- | ---: | ---: | ---: | ---: |",
        ]
        for run in runs:
            if run.seconds is None:
                lines.append(f"| {run.name} | not measured ({run.note}) | | | |")
                continue
            share = run.share or 0.0
            goal = f" {mark(share >= SHARE_GOAL)}" if run.name.startswith("extractor") else ""
            lines.append(
                f"| {run.name} | {run.seconds:.2f} | {run.ok / run.seconds:,.0f} | "
                f"{share:.0%}{goal} | {run.cpu:.2f} |"
            )
        timed_runs = {run.name: run.seconds for run in runs if run.seconds}
        rival = next((s for n, s in timed_runs.items() if n.startswith("instructor")), None)
        if rival:
            lines.append("")
            lines += [
                f"- {name}: {seconds / rival:.2f} of instructor's time "
                f"({rival / seconds:.1f}x its throughput)"
                for name, seconds in timed_runs.items()
                if name.startswith("extractor")
            ]
        lines.append("")
    if "memory" in parts:
        rows = parts["memory"]
        lines += [
            f"### C. Peak memory of `extractor batch` (fresh process each; concurrency "
            f"{args.concurrency}, no latency)",
            "",
            "| documents | peak RSS (MiB) | seconds | output lines |",
            "| ---: | ---: | ---: | ---: |",
        ]
        for size, mib, seconds, count in rows:
            lines.append(f"| {size:,} | {mib:.1f} | {seconds:.1f} | {count:,} |")
        if len(rows) >= 2:
            low, high = rows[0][1], rows[-1][1]
            growth = (high - low) / low
            lines += [
                "",
                f"Growth from {rows[0][0]:,} to {rows[-1][0]:,} documents: {growth:+.1%} "
                f"(goal: within {RSS_GOAL:.0%}) {mark(abs(growth) <= RSS_GOAL)}",
            ]
        lines.append("")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--documents", type=int, default=5000, help="part B documents (default: 5000)")
    add("--concurrency", type=int, default=100, help="default: 100")
    add("--latency", type=float, default=0.1, help="server seconds per answer (default: 0.1)")
    add("--transport-requests", type=int, default=1000, help="part A requests (default: 1000)")
    add(
        "--memory-sizes",
        type=int,
        nargs="+",
        default=[10_000, 100_000],
        help="part C documents per run (default: 10000 100000)",
    )
    add("--parts", default="ABC", help="which parts to run (default: ABC)")
    add("--no-write", action="store_true", help="print only; leave RESULTS.md alone")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    parts: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="extractor-batch-bench-") as tmp:
        folder = Path(tmp)
        with loopback(args.latency) as url:
            if "A" in args.parts:
                print("A. transports", file=sys.stderr)
                parts["transports"] = measure_transports(
                    url, args.transport_requests, args.concurrency, args.latency
                )
            if "B" in args.parts:
                print("B. throughput", file=sys.stderr)
                parts["throughput"] = measure_throughput(
                    url, args.documents, args.concurrency, args.latency, folder
                )
        if "C" in args.parts:
            print("C. memory", file=sys.stderr)
            with loopback(0.0) as url:
                parts["memory"] = measure_memory(url, args.memory_sizes, args.concurrency, folder)
    command = command_line("batch.py", argv)
    section = build_section(args, parts, command)
    print(section)
    if not args.no_write:
        write_section(SECTION, section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
