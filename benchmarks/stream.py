"""What streaming costs: reading partial JSON after every delta, and a stream end to end.

Part A reads every prefix of an answer (a `{"items": [...]}` list of N contacts, cut in
deltas of `--delta` characters, as a model streams it) three ways: `read_partial` afresh
after each delta (what a naive reader does), `PartialReader` (complete values are
remembered), and `PartialReader` plus previews as `list[Contact]` (what `Client.stream`
does per delta). `json.loads` of the whole answer once is the floor.

Part B streams the same answers end to end from a `ChatServer` running in a separate
process (so its CPU is not counted) and compares `extract` (no streaming), `stream`
(every partial instance) and `stream_items` (each contact once complete): wall time and
this process's CPU time per call, and how many values each yielded.

Run from the repository root: ``python benchmarks/stream.py`` (``--help`` for options).
The ``## stream`` section of ``benchmarks/RESULTS.md`` is replaced unless ``--no-write``.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from results import (
    RESULTS_PATH,
    package_versions,
    section_header,
    write_section,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
SECTION = "stream"


class Contact(BaseModel):
    name: str
    email: str | None = None
    age: int | None = None


def answer(items: int) -> str:
    """The answer text: a wrapped list of `items` contacts, as the wire schema asks."""
    people = [
        {"name": f"Person number {i}", "email": f"person{i}@example.com", "age": i % 90}
        for i in range(items)
    ]
    return json.dumps({"items": people})


def best_ms(run: Callable[[], Any], repeats: int) -> float:
    """The fastest of `repeats` runs, in milliseconds (the least disturbed by other work)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times) * 1000


# --------------------------------------------------------------------------- part A


def measure_reading(sizes: Sequence[int], delta: int, repeats: int) -> list[list[str]]:
    """Rows of the reading table: per answer size, total and per-delta cost of each way."""
    from extractor._partial import PartialReader, Preview, read_partial

    rows = []
    for size in sizes:
        text = answer(size)
        ends = range(delta, len(text) + delta, delta)

        def afresh(text: str = text, ends: range = ends) -> None:
            for end in ends:
                read_partial(text[:end])

        def incremental(text: str = text, ends: range = ends) -> None:
            reader = PartialReader()
            for end in ends:
                reader.read(text[:end])

        def previews(text: str = text, ends: range = ends) -> None:
            reader, preview = PartialReader(), Preview(list[Contact], "items")
            for end in ends:
                preview(reader.read(text[:end]).value)

        floor = best_ms(lambda text=text: json.loads(text), repeats)
        fresh, cached, shown = (best_ms(f, repeats) for f in (afresh, incremental, previews))
        per = 1000 / len(ends)  # ms in all -> µs per delta
        rows.append(
            [
                str(size),
                f"{len(text):,}",
                f"{len(ends):,}",
                f"{fresh:,.1f} ({fresh * per:,.0f})",
                f"{cached:,.1f} ({cached * per:,.0f})",
                f"{shown:,.1f} ({shown * per:,.0f})",
                f"{floor:.2f}",
            ]
        )
    return rows


# --------------------------------------------------------------------------- part B

SERVER = """
import sys
from extractor.testing import Answer, ChatServer, Stream
text = open(sys.argv[1]).read()
server = ChatServer().start()
server.handler = lambda request: Stream(Answer(content=text), chunk_size=int(sys.argv[2]))
print(server.base_url, flush=True)
sys.stdin.read()
"""


def measure_end_to_end(sizes: Sequence[int], delta: int, calls: int) -> list[list[str]]:
    """Rows of the end-to-end table: per size and way, wall and CPU ms per call, values."""
    from extractor import Client

    rows = []
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    for size in sizes:
        path = Path(f"/tmp/extractor-stream-bench-{os.getpid()}-{size}.json")
        path.write_text(answer(size))
        server = subprocess.Popen(
            [sys.executable, "-c", SERVER, str(path), str(delta)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        try:
            assert server.stdout is not None
            base_url = server.stdout.readline().strip()
            client = Client("openai/test-model", base_url=base_url, mode="json_schema")
            ways: dict[str, Callable[[Client], int]] = {
                "extract (no stream)": lambda c: len(c.extract(list[Contact], "doc")),
                "stream (partials)": lambda c: sum(1 for _ in c.stream(list[Contact], "doc")),
                "stream_items": lambda c: sum(1 for _ in c.stream_items(list[Contact], "doc")),
            }
            for name, way in ways.items():
                way(client)  # warm-up: connection, schema cache
                walls, cpus, count = [], [], 0
                for _ in range(calls):
                    wall, cpu = time.perf_counter(), time.process_time()
                    count = way(client)
                    cpus.append(time.process_time() - cpu)
                    walls.append(time.perf_counter() - wall)
                rows.append(
                    [
                        str(size),
                        name,
                        f"{statistics.median(walls) * 1000:,.1f}",
                        f"{statistics.median(cpus) * 1000:,.1f}",
                        str(count),
                    ]
                )
            client.close()
        finally:
            if server.stdin is not None:
                server.stdin.close()
            server.wait(timeout=10)
            path.unlink(missing_ok=True)
    return rows


def table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(
        description="Cost of partial reading per delta, and streaming end to end over loopback."
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 400])
    parser.add_argument("--delta", type=int, default=4, help="characters per streamed delta")
    parser.add_argument("--repeats", type=int, default=3, help="part A: best of this many")
    parser.add_argument("--calls", type=int, default=5, help="part B: median of this many")
    parser.add_argument("--no-write", action="store_true", help="print only")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run both parts, print the tables, and update RESULTS.md unless ``--no-write``."""
    args = parse_args(argv)
    reading = measure_reading(args.sizes, args.delta, args.repeats)
    e2e = measure_end_to_end(args.sizes, args.delta, args.calls)
    body = "\n\n".join(
        [
            f"### A. Reading every prefix, {args.delta}-character deltas (best of "
            f"{args.repeats}; ms in all, µs per delta in brackets)",
            table(
                [
                    "contacts",
                    "answer chars",
                    "deltas",
                    "read_partial afresh",
                    "PartialReader",
                    "PartialReader + previews",
                    "json.loads once",
                ],
                reading,
            ),
            f"### B. End to end over loopback, server in another process (median of "
            f"{args.calls} calls; CPU is this process only)",
            table(["contacts", "call", "wall ms", "client CPU ms", "values yielded"], e2e),
        ]
    )
    print(body)
    extra = sys.argv[1:] if argv is None else list(argv)
    command = shlex.join(["python", "benchmarks/stream.py", *extra])
    if not args.no_write:
        packages = package_versions(["pydantic", "httpx"])
        header = section_header(SECTION, command, [f"- Packages: {packages}"])
        write_section(SECTION, "\n".join(header) + "\n" + body.rstrip() + "\n")
        print(f"\nWrote the '## {SECTION}' section of {RESULTS_PATH.relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
