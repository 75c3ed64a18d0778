"""The Ray Data path against `extractor batch`: the same documents, the engine's overhead.

Both extract `Contact` from the same generated documents against the loopback server
(`loopback_server.py`, in its own process, answering after a fixed latency) at the same
total concurrency, and both write Parquet. Nothing is pinned to a CPU: a Ray job is
several processes (driver, raylet, GCS, actors), and on two cores one of them each would
leave it one.

- `extractor batch docs.jsonl -o out.parquet --concurrency C` in a child process (the CLI
  job, as a user runs it); its CPU is the child's own (`wait4`). It runs over a few
  documents and over all of them: the difference is the steady state (docs/s, CPU per
  document), the rest of the small run its fixed cost (start-up, imports).
- `extractor.ray.extract(dataset, Contact, actors=A, concurrency_per_actor=C/A)` on a
  local cluster (`ray.init(num_cpus=2)`, timed on its own), with no limit, and with a
  job-wide limit far above what the run reaches (every request then takes its turn from
  the keeper actor). Each runs twice over all the documents: once with `output=` (the
  whole job, end to end, Parquet written), once lazily, its batches taken as they come:
  the steady state is what arrives between the first batch and the last, the time to the
  first batch its start-up (actors starting). Ray's CPU is every process under this one
  but the server, sampled every 0.1 s (a process that lives less than that is missed).

The ratios at the end are Ray's over the CLI's. Run from the repository root:

    python benchmarks/ray_vs_batch.py                 # 5,000 documents; writes RESULTS.md
    python benchmarks/ray_vs_batch.py --documents 1000 --no-write
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from batch import RECORD, SCHEMA_FILE, text_of, write_documents
from pydantic import BaseModel
from results import command_line, package_versions, section_header, write_section

REPO_ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent
SERVER = HERE / "loopback_server.py"
SECTION = "ray_vs_batch"
VERSIONED = ("extractor", "ray", "pyarrow", "httpx", "httpx-aiohttp")


class Contact(BaseModel):
    """The record every document yields (the same fields as batch.py's schema file)."""

    name: str
    age: int


@dataclass
class Run:
    """One timed run of one engine over `documents` documents."""

    engine: str
    documents: int
    seconds: float
    cpu: float
    valid: int
    #: Seconds before the first result came (the steady runs).
    start: float = 0.0
    #: The limit keeper's counts (the steady runs): requests booked, calls, 429s.
    keeper: dict[str, int] | None = None


@contextmanager
def loopback(latency: float) -> Iterator[str]:
    """loopback_server.py in its own process, on any CPU; yield its URL."""
    record = json.dumps(RECORD)
    argv = [sys.executable, str(SERVER), "--latency", str(latency), "--record", record]
    server = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline().split()[1])
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        server.kill()
        server.wait()


def _tree(skip: bytes = b"loopback_server.py") -> dict[int, float]:
    """CPU seconds (user + system) of this process and each process under it, by pid,
    but those whose command line names `skip` (the server)."""
    tick = os.sysconf("SC_CLK_TCK")
    parents: dict[int, int] = {}
    cpu: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
            command = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        pid = int(entry.name)
        parents[pid] = int(fields[1])
        if skip not in command:
            cpu[pid] = (int(fields[11]) + int(fields[12])) / tick
    mine = {os.getpid()}
    while found := {p for p, parent in parents.items() if parent in mine} - mine:
        mine |= found
    return {p: cpu[p] for p in mine if p in cpu}


class CPUMeter:
    """CPU seconds the process tree spends from `start()`, sampled every `interval`.

    Each process counts from its first sample to its last; one that ends between two
    samples keeps what was seen, one that lives less than `interval` is missed.
    """

    def __init__(self, interval: float = 0.1) -> None:
        self.interval = interval
        self._first: dict[int, float] = {}
        self._last: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> CPUMeter:
        self._first = _tree()
        self._last = dict(self._first)
        self._thread.start()
        return self

    def _sample(self) -> None:
        for pid, used in _tree().items():
            self._first.setdefault(pid, 0.0)  # started since: all its CPU counts
            self._last[pid] = used

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def read(self) -> float:
        """CPU seconds so far."""
        self._sample()
        return sum(self._last[p] - self._first[p] for p in self._last)

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return self.read()


def valid_rows(folder: Path) -> int:
    """Rows of a Parquet output folder holding the expected record."""
    import pyarrow.parquet as pq

    table = pq.read_table(folder, columns=["name", "age", "_error_type"])
    return sum(
        row["_error_type"] is None and row["name"] == RECORD["name"] and row["age"] == RECORD["age"]
        for row in table.to_pylist()
    )


def run_cli(url: str, count: int, concurrency: int, folder: Path) -> Run:
    source = folder / f"cli-{count}.jsonl"
    write_documents(source, count)
    schema = folder / "contact.py"
    schema.write_text(SCHEMA_FILE)
    out = folder / f"cli-{count}.parquet"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    argv = [
        sys.executable, "-m", "extractor", "batch", f"{schema}:Contact", str(source),
        "-o", str(out), "--restart", "--concurrency", str(concurrency),
        "--model", "openai/bench", "--base-url", url,
    ]  # fmt: skip
    wall = time.perf_counter()
    child = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - wall
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        assert child.stderr is not None
        raise SystemExit(f"extractor batch failed ({child.returncode}): {child.stderr.read()}")
    return Run("cli", count, seconds, usage.ru_utime + usage.ru_stime, valid_rows(out))


def run_ray(
    url: str, count: int, args: argparse.Namespace, folder: Path, rpm: float | None
) -> tuple[Run, Run]:
    """The whole job with `output=` (end to end), then lazily (the steady state)."""
    import ray.data

    import extractor.ray

    def dataset() -> ray.data.Dataset:
        rows = [{"id": f"doc-{i:07d}", "text": text_of(i)} for i in range(count)]
        return ray.data.from_items(rows)

    options = {
        "actors": args.actors,
        "concurrency_per_actor": args.concurrency // args.actors,
        "batch_size": args.batch_size,
        "rpm": rpm,
        "model": "openai/bench",
        "base_url": url,
    }
    engine = "ray" if rpm is None else "ray-limit"
    out = folder / f"{engine}-{count}.parquet"
    meter, wall = CPUMeter().start(), time.perf_counter()
    extractor.ray.extract(dataset(), Contact, output=out, **options)
    whole = Run(engine, count, time.perf_counter() - wall, meter.stop(), valid_rows(out))

    name = f"bench-{engine}"
    results = extractor.ray.extract(dataset(), Contact, limit_name=name, **options)
    meter, wall = CPUMeter().start(), time.perf_counter()
    first = first_rows = first_cpu = 0.0
    valid = seen = 0
    for batch in results.iter_batches(batch_format="pyarrow", batch_size=None):
        seen += batch.num_rows
        valid += sum(name == RECORD["name"] for name in batch.column("name").to_pylist())
        if not first:
            first, first_rows, first_cpu = time.perf_counter(), seen, meter.read()
    last, cpu = time.perf_counter(), meter.stop()
    steady = Run(engine, seen - int(first_rows), last - first, cpu - first_cpu, valid)
    steady.start = first - wall
    keeper = ray.get_actor(name)
    steady.keeper = ray.get(keeper.stats.remote())
    ray.kill(keeper)
    return whole, steady


@dataclass
class Engine:
    """One engine's figures: the whole job, its fixed cost, its steady state."""

    name: str
    whole: Run
    fixed: float  # seconds of the whole job beyond its documents at the steady rate
    rate: float  # documents per second once running
    cpu_ms: float  # CPU milliseconds per document once running
    first: float | None = None  # seconds to the first result (Ray's lazy run)
    keeper: dict[str, int] | None = None  # the limit keeper's counts (Ray's lazy run)

    @classmethod
    def of_cli(cls, name: str, small: Run, full: Run) -> Engine:
        rate = (full.documents - small.documents) / (full.seconds - small.seconds)
        cpu_ms = (full.cpu - small.cpu) / (full.documents - small.documents) * 1000
        return cls(name, full, full.seconds - full.documents / rate, rate, cpu_ms)

    @classmethod
    def of_ray(cls, name: str, whole: Run, steady: Run) -> Engine:
        rate = steady.documents / steady.seconds
        cpu_ms = steady.cpu / steady.documents * 1000
        fixed = whole.seconds - whole.documents / rate
        return cls(name, whole, fixed, rate, cpu_ms, steady.start, steady.keeper)


def build_section(
    args: argparse.Namespace,
    init: tuple[float, float],
    warm: Run,
    engines: list[Engine],
    command: str,
) -> str:
    ideal = args.documents / args.concurrency * args.latency
    ideal_rate = args.concurrency / args.latency
    lines = section_header(SECTION, command, [f"- Packages: {package_versions(VERSIONED)}"])
    lines += [
        f"{args.documents:,} documents at concurrency {args.concurrency} ({args.actors} Ray "
        f"actors x {args.concurrency // args.actors}, batches of "
        f"{args.batch_size or 4 * (args.concurrency // args.actors)}), "
        f"{args.latency * 1000:.0f} ms latency: ideal {ideal:.2f} s, {ideal_rate:,.0f} docs/s. "
        "Both write Parquet; nothing is pinned to a CPU (the server shares the two cores). "
        "*Steady* is the engine once running: for the CLI the difference between this run "
        f"and one over {args.small:,} documents, for Ray what arrives between the first "
        "result and the last of a lazy run. *Fixed* is the rest of the whole job's time: "
        "start-up (for Ray: actors; the cluster is already up), and for Ray also the output "
        "read back. CPU counts every process of the engine (Ray: driver, raylet, GCS, "
        "actors), not the server's.",
        "",
        f"Ray's start, in none of the figures below: `ray.init(num_cpus=2)` {init[0]:.2f} s "
        f"({init[1]:.2f} CPU s), then a first job of {warm.documents:,} documents "
        f"{warm.seconds:.2f} s ({warm.cpu:.2f} CPU s; the workers Ray starts with the cluster "
        "are still importing).",
        "",
        "| engine | whole job s | valid | whole job CPU s | fixed s | first result s "
        "| steady docs/s | share of ideal | steady CPU ms/doc |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for e in engines:
        first = "" if e.first is None else f"{e.first:.2f}"
        lines.append(
            f"| {e.name} | {e.whole.seconds:.2f} | {e.whole.valid:,} | {e.whole.cpu:.2f} | "
            f"{e.fixed:.2f} | {first} | {e.rate:,.0f} | {e.rate / ideal_rate:.0%} | "
            f"{e.cpu_ms:.2f} |"
        )
    base = engines[0]
    lines.append("")
    for e in engines:
        if e.keeper and e.keeper["calls"]:
            lines.append(
                f"- {e.name}: {e.keeper['calls']:,} calls to the limit's actor for "
                f"{e.whole.documents:,} requests ({e.whole.documents / e.keeper['calls']:.1f} "
                f"a call; {e.keeper['requests']:,} turns booked, the rest booked ahead and "
                "not taken in time)"
            )
    for e in engines[1:]:
        lines.append(
            f"- {e.name} over {base.name}: steady throughput x{e.rate / base.rate:.2f}, "
            f"CPU per document x{e.cpu_ms / base.cpu_ms:.2f}, whole job "
            f"x{e.whole.seconds / base.whole.seconds:.2f} ({e.fixed - base.fixed:+.1f} s fixed)"
        )
    lines.append("")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--documents", type=int, default=5000, help="documents of the full runs (default: 5000)")
    add("--small", type=int, default=500, help="documents of the CLI's small run (default: 500)")
    add("--concurrency", type=int, default=32, help="requests in flight in all (default: 32)")
    add("--actors", type=int, default=2, help="Ray actors (default: 2)")
    add("--batch-size", type=int, default=None, help="Ray batch size (default: extract's)")
    add("--latency", type=float, default=0.05, help="server seconds per answer (default: 0.05)")
    add("--limit-rpm", type=float, default=600_000, help="the non-binding job-wide limit")
    add("--no-write", action="store_true", help="print only; leave RESULTS.md alone")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import ray

    with tempfile.TemporaryDirectory(prefix="extractor-ray-bench-") as tmp:
        folder = Path(tmp)
        with loopback(args.latency) as url:
            print("extractor batch", file=sys.stderr)
            small, full = (
                run_cli(url, n, args.concurrency, folder) for n in (args.small, args.documents)
            )
            engines = [Engine.of_cli("`extractor batch` (CLI)", small, full)]
            print("ray.init", file=sys.stderr)
            meter, wall = CPUMeter().start(), time.perf_counter()
            ray.init(
                num_cpus=2,
                include_dashboard=False,
                log_to_driver=False,
                runtime_env={"env_vars": {"PYTHONPATH": f"{HERE}{os.pathsep}{REPO_ROOT}"}},
            )
            init = (time.perf_counter() - wall, meter.stop())
            try:
                print("first job", file=sys.stderr)
                warm = run_ray(url, args.small, args, folder, None)[0]
                for rpm, name in (
                    (None, "`extractor.ray.extract`, no limit"),
                    (args.limit_rpm, f"`extractor.ray.extract`, {args.limit_rpm:,.0f} rpm limit"),
                ):
                    print(name, file=sys.stderr)
                    engines.append(
                        Engine.of_ray(name, *run_ray(url, args.documents, args, folder, rpm))
                    )
            finally:
                ray.shutdown()
    for engine in engines:
        print(json.dumps({**engine.__dict__, "whole": engine.whole.__dict__}), file=sys.stderr)
    command = command_line("ray_vs_batch.py", argv)
    section = build_section(args, init, warm, engines, command)
    print(section)
    if not args.no_write:
        write_section(SECTION, section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
