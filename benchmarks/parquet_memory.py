"""Peak memory and speed of the Parquet output against the JSONL one, on the same rows.

The writers alone, without the network: a fresh process per run makes 10,000 and then
100,000 result rows of receipt-like records (a merchant, an address, a date, amounts,
two to eight line items: about 1 KB of JSON each), as `BatchJob` hands them to its
store, and writes them through `Store` (`-o out.jsonl`) or `ParquetStore`
(`-o out.parquet`: the journal, then a part file of 10,000 rows at a time).

Memory is the process's peak RSS (`VmHWM` from /proc/self/status, read in the process
itself: `wait4`'s `ru_maxrss` would also count pages shared with this parent before the
exec), beside its RSS once the imports are done and the store is open, so the growth
while writing is apart from what importing pyarrow costs; a one-row Parquet output shows
what the first part costs whatever the rows. tracemalloc would miss
pyarrow's own allocations (C++, outside Python's allocator), which are the ones that
matter here. The longest single `write` is the longest a job's event loop stands still:
the call that turns the journal into a part.

Run from the repository root (a minute or two on 2 cores):

    python benchmarks/parquet_memory.py              # 10k and 100k rows; writes RESULTS.md
    python benchmarks/parquet_memory.py --sizes 2000 --no-write
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from results import command_line, package_versions, section_header, write_section

REPO_ROOT = Path(__file__).resolve().parent.parent
SECTION = "parquet_memory"
#: Growth of the peak from the smaller size to the larger one that still counts as flat.
FLAT_GOAL = 0.20

#: Runs in the child: makes `count` rows, writes them through one store, prints figures.
CHILD = """\
import json, random, sys, time
from pathlib import Path
from pydantic import BaseModel

kind, count, folder = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])


class LineItem(BaseModel):
    description: str
    quantity: int
    unit_price: float
    amount: float


class Receipt(BaseModel):
    merchant: str
    address: str
    date: str
    invoice_number: str | None = None
    currency: str = "MYR"
    items: list[LineItem]
    subtotal: float
    tax: float | None = None
    total: float
    payment_method: str | None = None


def rss(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1])
    return 0


from extractor import compile_schema
from extractor.batch._parquet import ParquetStore
from extractor.batch._store import Store

fingerprint = compile_schema(Receipt).fingerprint
random.seed(7)
WORDS = ["NASI LEMAK", "TEH TARIK", "MILO 1KG", "ROTI BUN", "KOPI O", "MEE GORENG", "AIR"]


def row(index):
    items = []
    for _ in range(random.randint(2, 8)):
        qty = random.randint(1, 5)
        price = round(random.uniform(0.5, 40), 2)
        items.append({"description": random.choice(WORDS), "quantity": qty,
                      "unit_price": price, "amount": round(qty * price, 2)})
    subtotal = round(sum(i["amount"] for i in items), 2)
    return {
        "id": f"receipts/{index:07d}.txt",
        "record": {
            "merchant": f"KEDAI RUNCIT {index % 997} SDN BHD",
            "address": f"NO. {index % 300}, JALAN BESAR {index % 9}, 43000 KAJANG, SELANGOR",
            "date": f"{1 + index % 28:02d}/{1 + index % 12:02d}/2018",
            "invoice_number": f"CS{index:08d}",
            "currency": "MYR",
            "items": items,
            "subtotal": subtotal,
            "tax": round(subtotal * 0.06, 2),
            "total": round(subtotal * 1.06, 2),
            "payment_method": random.choice(["CASH", "VISA", None]),
        },
        "usage": {"prompt_tokens": 812, "completion_tokens": 164, "total_tokens": 976,
                  "cost": 0.000123, "cached": 0},
        "attempts": 1,
        "model": "openai/gpt-4o-mini",
        "mode": "json_schema",
        "elapsed_s": 1.234,
        "schema": fingerprint,
    }


failures = folder / "out.failures.jsonl"
if kind == "jsonl":
    output = folder / "out.jsonl"
    store = Store(output, failures, restart=True)
else:
    output = folder / "out.parquet"
    store = ParquetStore(output, failures, Receipt, restart=True)
baseline = rss("VmRSS:")
longest = 0.0
started = time.perf_counter()
for index in range(count):
    line = row(index)
    before = time.perf_counter()
    store.write(line, ok=True)
    longest = max(longest, time.perf_counter() - before)
before = time.perf_counter()
store.close()
longest = max(longest, time.perf_counter() - before)
seconds = time.perf_counter() - started
files = [output] if output.is_file() else list(output.iterdir())
print("FIGURES", json.dumps({
    "peak_kib": rss("VmHWM:"), "baseline_kib": baseline, "seconds": seconds,
    "longest_write_s": longest, "bytes": sum(f.stat().st_size for f in files),
    "files": len(files),
}))
"""


def run_child(kind: str, count: int, folder: Path) -> dict[str, Any]:
    """One writer over `count` rows in a fresh process; its figures."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env.pop("EXTRACTOR_PARQUET_ROWS", None)  # the default part size is what is measured
    done = subprocess.run(
        [sys.executable, "-c", CHILD, kind, str(count), str(folder)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0 or "FIGURES" not in done.stdout:
        raise SystemExit(f"the {kind} writer failed ({done.returncode}): {done.stderr}")
    figures: dict[str, Any] = json.loads(done.stdout.split("FIGURES", 1)[1])
    figures["rows_per_s"] = count / figures["seconds"]
    return figures


def mib(kib: float) -> str:
    return f"{kib / 1024:.1f}"


def build_section(
    sizes: Sequence[int], runs: dict[tuple[str, int], Any], one: dict[str, Any], command: str
) -> str:
    lines = section_header(
        SECTION,
        command,
        [
            f"- Packages: {package_versions(('extractor', 'pyarrow', 'pydantic'))}",
            "- Rows: receipt-like records (2 to 8 line items, about 1 KB of JSON each), "
            "written through the store alone (no network); one fresh process per run",
        ],
    )
    lines += [
        "| output | rows | peak RSS (MiB) | RSS before writing (MiB) | growth (MiB) | "
        "rows/s | longest write (ms) | on disk (MiB) | files |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for kind in ("jsonl", "parquet"):
        for size in sizes:
            r = runs[(kind, size)]
            growth = r["peak_kib"] - r["baseline_kib"]
            lines.append(
                f"| {kind} | {size:,} | {mib(r['peak_kib'])} | {mib(r['baseline_kib'])} | "
                f"{mib(growth)} | {r['rows_per_s']:,.0f} | {r['longest_write_s'] * 1000:.0f} | "
                f"{r['bytes'] / 2**20:.1f} | {r['files']} |"
            )
    lines.append("")
    fixed = one["peak_kib"] - one["baseline_kib"]
    lines.append(
        f"- A Parquet output of one row grows by {mib(fixed)} MiB too: most of the growth is "
        "pyarrow's Parquet writer (its code and memory pool) coming in at the first part, "
        "whatever the rows; what the rows add is the difference between the sizes"
    )
    if len(sizes) >= 2:
        low, high = sizes[0], sizes[-1]
        for kind in ("jsonl", "parquet"):
            a, b = runs[(kind, low)]["peak_kib"], runs[(kind, high)]["peak_kib"]
            growth = (b - a) / a
            mark = "✅" if abs(growth) <= FLAT_GOAL else "❌"
            lines.append(
                f"- {kind}: peak from {low:,} to {high:,} rows {growth:+.1%} "
                f"(goal: within {FLAT_GOAL:.0%}) {mark}"
            )
        lines.append("")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    runs: dict[tuple[str, int], Any] = {}
    with tempfile.TemporaryDirectory(prefix="extractor-parquet-bench-") as tmp:
        for size in args.sizes:
            for kind in ("jsonl", "parquet"):
                folder = Path(tmp) / f"{kind}-{size}"
                folder.mkdir()
                wall = time.perf_counter()
                runs[(kind, size)] = r = run_child(kind, size, folder)
                print(
                    f"{kind} {size:,}: peak {mib(r['peak_kib'])} MiB "
                    f"(before writing {mib(r['baseline_kib'])}), {r['rows_per_s']:,.0f} rows/s, "
                    f"{time.perf_counter() - wall:.1f} s",
                    file=sys.stderr,
                )
        folder = Path(tmp) / "parquet-1"
        folder.mkdir()
        one = run_child("parquet", 1, folder)
    command = command_line("parquet_memory.py", argv)
    section = build_section(args.sizes, runs, one, command)
    print(section)
    if not args.no_write:
        write_section(SECTION, section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
