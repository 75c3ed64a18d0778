"""Which llama.cpp build and thread count to run the embedded model with, measured side by side.

The question this answers: how fast is each build a user can safely get on this machine
(the portable AVX2 build, an AVX-512 build without AMX, the native build with what the
probe allows), with one thread and with two, on an idle machine and beside a second busy
process? Each build of the installed llama-cpp-python version is compiled once into
``benchmarks/.wheels/NAME`` (a few minutes each; kept, and ignored by git), installed
into ``benchmarks/.builds/NAME``, and measured in a child process of its own, so that a
build this CPU cannot run fails one row rather than the run.

Per build and thread count: prompt tokens/s (one forward pass over each receipt's text),
median seconds per receipt for grounded extraction of the same receipts, their ratio,
and the norm accuracy (a check that every build chooses alike). "Busy" repeats the
latency with another process spinning on one core, as a second job would.

Run: ``python benchmarks/builds.py`` (``--help`` for options). The ``## builds`` section of
``benchmarks/RESULTS.md`` is replaced unless ``--no-write`` is given.
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
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from results import RESULTS_PATH, section_header, write_section

REPO_ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent
DEFAULT_DATASET = REPO_ROOT.parent / "shared" / "data" / "sroie" / "dev.jsonl"
SCHEMA = "schemas/receipt.py:Receipt"
SECTION = "builds"


@dataclass(frozen=True)
class Build:
    """One way to compile llama.cpp: its name, CMake options, and the CPU flags it needs."""

    name: str
    cmake: str
    needs: tuple[str, ...] = ()
    about: str = ""


BUILDS = (
    Build("portable", "-DGGML_NATIVE=OFF", (), "AVX2/FMA/F16C, runs on any x86-64-v3"),
    Build(
        "avx512",
        "-DGGML_NATIVE=OFF -DGGML_AVX512=ON -DGGML_AVX512_VBMI=ON -DGGML_AVX512_VNNI=ON "
        "-DGGML_AVX512_BF16=ON -DGGML_AVX_VNNI=ON",
        ("avx512f", "avx512vbmi", "avx512_vnni", "avx512_bf16", "avx_vnni"),
        "the AVX-512 family without AMX",
    ),
    Build("native", "", (), "pip's default (GGML_NATIVE=ON: -march=native)"),
)


def cpu_flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.partition(":")[2].split())
    except OSError:
        pass
    return set()


def llama_version() -> str:
    from importlib.metadata import version

    return version("llama-cpp-python")


def wheel_for(build: Build, wheels: Path, version: str) -> Path:
    """The build's wheel, compiled first if it is not there yet."""
    folder = wheels / build.name
    found = sorted(folder.glob(f"llama_cpp_python-{version}-*.whl"))
    if found:
        return found[0]
    print(
        f"{build.name}: compiling llama-cpp-python {version} ({build.cmake or 'defaults'})...",
        file=sys.stderr,
        flush=True,
    )
    env = {**os.environ, "CMAKE_ARGS": build.cmake}
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-cache-dir",
            "-w",
            str(folder),
            f"llama-cpp-python=={version}",
        ],
        env=env,
        check=True,
    )
    return sorted(folder.glob(f"llama_cpp_python-{version}-*.whl"))[0]


def installed(build: Build, wheel: Path, builds: Path) -> Path:
    """A folder holding this build's `llama_cpp`, to put first on a child's path."""
    target = builds / build.name
    stamp = target / ".wheel"
    if not (stamp.is_file() and stamp.read_text() == wheel.name):
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "--quiet",
                "--no-deps",
                "--upgrade",
                "--target",
                str(target),
                str(wheel),
            ],
            check=True,
        )
        stamp.write_text(wheel.name)
    return target


@contextmanager
def busy_core() -> Iterator[None]:
    """Another process spinning on one core while the block runs."""
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)
        yield
    finally:
        spinner.kill()
        spinner.wait()


def measure(path: Path, threads: str, dataset: Path, limit: int) -> dict[str, Any]:
    """Run the child on one build: its figures, or how it failed.

    `threads` is a count, or `auto`: the default, which follows the machine's load.
    """
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(path), str(REPO_ROOT), str(HERE)]),
        "EXTRACTOR_THREADS": threads,
    }
    if threads == "auto":
        del env["EXTRACTOR_THREADS"]
    env.pop("EXTRACTOR_LLAMA_EXTRA_BUFTS", None)
    done = subprocess.run(
        [
            sys.executable,
            str(Path(__file__).resolve()),
            "--child",
            "--dataset",
            str(dataset),
            "--limit",
            str(limit),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no message"])[-1]
        return {"error": f"exit {done.returncode}: {last}"}
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def child(dataset: Path, limit: int) -> int:
    """In the child: load the engine (the probe decides), read each receipt, extract each."""
    import llama_cpp
    from receipts import measure_reads

    import extractor
    from extractor._cli import load_target
    from extractor._evaluate import field_matches, read_dataset
    from extractor._local.engine import load_engine
    from extractor._local.weights import model_path

    examples = read_dataset(dataset, limit=limit)
    engine = load_engine(model_path("gemma-3-270m"))
    reads = measure_reads(engine, examples)
    target = load_target(str(REPO_ROOT / SCHEMA))
    latencies, hits, fields = [], 0, 0
    with extractor.Client(model="local/gemma-3-270m") as client:
        client.extract(target, examples[0].text)  # the worked examples into the KV cache
        for example in examples:
            start = time.perf_counter()
            record = client.extract(target, example.text)
            latencies.append(time.perf_counter() - start)
            for match in field_matches(record.model_dump(), example.gold).values():
                fields += 1
                hits += match["norm"]
    median = statistics.median(latencies)
    print(
        json.dumps(
            {
                "llama_cpp": llama_cpp.__file__,
                "extra_bufts": engine.settings.extra_bufts,
                "tokens_per_s": reads.tokens_per_s,
                "read_s": reads.median_s,
                "latency_s": median,
                "ratio": median / reads.median_s,
                "norm": hits / fields,
            }
        )
    )
    return 0


def _cpu_key() -> str:
    import hashlib

    from results import cpu_model

    return hashlib.sha256((cpu_model() + " ".join(sorted(cpu_flags()))).encode()).hexdigest()[:12]


class Kept:
    """Rows measured on this CPU, kept between runs: `--builds X` re-measures X only."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rows: dict[str, Any] = json.loads(path.read_text()) if path.is_file() else {}

    def put(
        self, build: str, threads: str, idle: dict[str, Any], busy: dict[str, Any], save: bool
    ) -> None:
        """Keep a row for this run's table; on disk too unless `save` is false (`--no-write`)."""
        self.rows[f"{build}|{threads}"] = [idle, busy]
        if not save:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(self.rows, indent=1))

    def get(self, build: str, threads: str) -> Any:
        return self.rows.get(f"{build}|{threads}")


def table(rows: Sequence[tuple[Build, str, dict[str, Any], dict[str, Any]]]) -> str:
    lines = [
        "| build | threads | extra buffer types | prompt tokens/s | median read (s) "
        "| median s/receipt | latency / read | norm | s/receipt, one core busy |",
        "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for build, threads, idle, busy in rows:
        if "error" in idle:
            lines.append(f"| {build.name} | {threads} | {idle['error']} | | | | | | |")
            continue
        extra = "on" if idle["extra_bufts"] else "off (probe)"
        loaded = f"{busy['latency_s']:.2f}" if "latency_s" in busy else busy.get("error", "")
        lines.append(
            f"| {build.name} | {threads} | {extra} | {idle['tokens_per_s']:,.0f} "
            f"| {idle['read_s']:.2f} | {idle['latency_s']:.2f} | {idle['ratio']:.2f} "
            f"| {idle['norm']:.1%} | {loaded} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--dataset",
        type=Path,
        default=DEFAULT_DATASET,
        help="SROIE dev.jsonl (default: ../shared/data/sroie/dev.jsonl)",
    )
    parser.add_argument("--limit", type=int, default=10, help="receipts per run (default: 10)")
    parser.add_argument(
        "--builds",
        nargs="+",
        choices=[b.name for b in BUILDS],
        default=[b.name for b in BUILDS],
        help="builds to measure",
    )
    parser.add_argument(
        "--threads",
        nargs="+",
        default=["1", "2", "auto"],
        help="thread counts, or auto: the default, which gives up a thread for each core "
        "other processes keep busy (default: 1 2 auto)",
    )
    parser.add_argument(
        "--wheels",
        type=Path,
        default=HERE / ".wheels",
        help="where compiled wheels are kept (default: benchmarks/.wheels)",
    )
    parser.add_argument("--no-busy", action="store_true", help="skip the runs beside a busy core")
    parser.add_argument(
        "--report",
        action="store_true",
        help="measure nothing: write the table from the rows kept for this CPU",
    )
    parser.add_argument(
        "--no-write",
        action="store_true",
        help="print only: leave RESULTS.md and the kept rows as they are",
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(args.dataset, args.limit)
    if not args.dataset.is_file():
        print(f"builds.py: no dataset at {args.dataset}; pass --dataset", file=sys.stderr)
        return 2
    version, flags = llama_version(), cpu_flags()
    kept = Kept(HERE / ".builds" / f"results-{_cpu_key()}.json")
    for build in BUILDS:
        if build.name not in args.builds or args.report:
            continue
        missing = [f for f in build.needs if f not in flags]
        if missing:
            print(f"{build.name}: skipped, the CPU lacks {', '.join(missing)}", file=sys.stderr)
            continue
        path = installed(build, wheel_for(build, args.wheels, version), HERE / ".builds")
        for threads in args.threads:
            print(f"{build.name}, {threads} thread(s)...", file=sys.stderr, flush=True)
            idle = measure(path, threads, args.dataset, args.limit)
            busy: dict[str, Any] = {}
            if not args.no_busy and "error" not in idle:
                with busy_core():
                    busy = measure(path, threads, args.dataset, args.limit)
            print(f"  {idle} / busy {busy}", file=sys.stderr, flush=True)
            kept.put(build.name, threads, idle, busy, save=not args.no_write)
    rows = [
        (build, threads, *kept.get(build.name, threads))
        for build in BUILDS
        for threads in ("1", "2", "auto")
        if kept.get(build.name, threads) is not None
    ]
    extra = sys.argv[1:] if argv is None else list(argv)
    command = shlex.join(["python", "benchmarks/builds.py", *extra])
    details = [
        f"- llama-cpp-python {version}, each build compiled from the same source; "
        f"{args.limit} receipts of `{args.dataset.name}` with `{SCHEMA}` in grounded mode",
        *[
            f"- {b.name}: {b.about}; CMAKE_ARGS=`{b.cmake or '(none)'}`"
            for b in BUILDS
            if any(row[0] is b for row in rows)
        ],
        "- extra buffer types: what the probe allowed (llama.cpp's AMX and repacked-weight "
        "buffers; `off (probe)` where a child process loading them died)",
        "- rows are kept per CPU in `benchmarks/.builds/` between runs: `--builds NAME` "
        "measures one build again, `--report` only writes the table",
        "- busy: the same run with another process spinning on one core; threads `auto` is "
        "the default (`EXTRACTOR_THREADS` unset), which runs on the cores others leave free",
        f"- the {args.limit} receipts' extraction, median over them; `latency / read` is the "
        "median seconds per receipt over the median seconds of one forward pass over its text",
    ]
    section = "\n".join(section_header(SECTION, command, details)) + "\n" + table(rows) + "\n"
    print(section)
    if not args.no_write:
        write_section(SECTION, section)
        print(f"Wrote the '## {SECTION}' section of {RESULTS_PATH.relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
