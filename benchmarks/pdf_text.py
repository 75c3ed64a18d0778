"""Which PDF library should read PDFs for extractor: speed, memory, text, hostile files.

Contenders, each run in a child process of its own (so its memory is its own, and a
crash or a hang is seen, not suffered):

* pypdfium2: Google's PDFium, bundled as a binary; ``PdfTextPage.get_text_range()``;
* pypdf: pure Python; ``page.extract_text()``, and again with ``extraction_mode="layout"``;
* pdfplumber: on pdfminer.six; ``page.extract_text()``;
* pdfminer.six: its layout analysis (``extract_pages``, default ``LAParams``).

A. Speed and memory: every page of the sample PDFs (``samples/make_pdfs.py``) and of the
real PDFs found on this machine (``--real``), ``--repeats`` times; pages per second from
the median run, RSS after import, the peak RSS growth while reading a file (``VmHWM``
reset per file) and the peak of Python allocations (``tracemalloc``).

B. Text. The samples' pages are known line by line (``Page.expected``). A line is *found*
when it occurs in the page's text with its words as written (whitespace runs count as
one space, and Unicode compatibility forms are folded: NFKC); the lines *in order* are
the longest run of expected lines found, whitespace ignored, in increasing positions:
100% means reading order is right. Probes: ligatures, hyphens at line ends, line breaks.

C. Hostile files: every file of ``tests/data/documents/``, once per library in a child
with a time limit (``--timeout``) and a memory limit (``--memory-limit``, RSS polled).

Run from the repository root with the libraries installed:

    pip install pypdfium2 pypdf pdfplumber          # comparison only, not dependencies
    python benchmarks/pdf_text.py                   # writes the ## pdf_text section
    python benchmarks/pdf_text.py --no-write --repeats 1 --no-real
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
import unicodedata
import warnings
import zipfile
from bisect import bisect_left
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

from results import command_line, package_versions, section_header, write_section

REPO_ROOT = Path(__file__).resolve().parent.parent
SAMPLES = REPO_ROOT / "samples"
HOSTILE = REPO_ROOT / "tests" / "data" / "documents"
SECTION = "pdf_text"
MIB = 1 << 20

sys.path.insert(0, str(SAMPLES))
import make_pdfs  # noqa: E402  (the samples' generator knows what each page holds)

PDF_DIR = make_pdfs.PDF_DIR

# --- the contenders (imported only in the child processes) -------------------------------


def read_pypdfium2(path: str, password: str | None) -> list[str]:
    import pypdfium2

    pdf = pypdfium2.PdfDocument(path, password=password)
    try:
        texts = []
        for index in range(len(pdf)):
            page = pdf[index]
            textpage = page.get_textpage()
            texts.append(textpage.get_text_range())
            textpage.close()
            page.close()
        return texts
    finally:
        pdf.close()


def read_pypdf(
    path: str, password: str | None, mode: Literal["plain", "layout"] = "plain"
) -> list[str]:
    from pypdf import PdfReader

    reader = PdfReader(path, password=password)
    return [page.extract_text(extraction_mode=mode) for page in reader.pages]


def read_pdfplumber(path: str, password: str | None) -> list[str]:
    import pdfplumber

    with pdfplumber.open(path, password=password or "") as pdf:
        texts = []
        for page in pdf.pages:
            texts.append(page.extract_text() or "")
            page.close()  # drops the page's cached objects, as a long job must
        return texts


def read_pdfminer(path: str, password: str | None) -> list[str]:
    from pdfminer.high_level import extract_pages
    from pdfminer.layout import LTTextContainer

    return [
        "".join(box.get_text() for box in layout if isinstance(box, LTTextContainer))
        for layout in extract_pages(path, password=password or "")
    ]


@dataclass(frozen=True)
class Contender:
    name: str
    module: str  # imported first, to time the import
    package: str  # the distribution, for its version and licence
    licence: str
    read: Callable[[str, str | None], list[str]]


CONTENDERS = [
    Contender(
        "pypdfium2",
        "pypdfium2",
        "pypdfium2",
        "Apache-2.0 or BSD-3-Clause; PDFium BSD-3-Clause (binary bundled)",
        read_pypdfium2,
    ),
    Contender("pypdf", "pypdf", "pypdf", "BSD-3-Clause", read_pypdf),
    Contender(
        "pypdf (layout)",
        "pypdf",
        "pypdf",
        "BSD-3-Clause",
        lambda path, password: read_pypdf(path, password, "layout"),
    ),
    Contender(
        "pdfplumber", "pdfplumber", "pdfplumber", "MIT (on pdfminer.six, MIT)", read_pdfplumber
    ),
    Contender("pdfminer.six", "pdfminer.high_level", "pdfminer.six", "MIT", read_pdfminer),
]
BY_NAME = {contender.name: contender for contender in CONTENDERS}

# --- in the child process ---------------------------------------------------------------


def status_kib(field_name: str, pid: int | str = "self") -> int:
    """A ``VmRSS``/``VmHWM`` line of /proc/<pid>/status, in KiB (0 once the process is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def reset_peak_rss() -> None:
    with open("/proc/self/clear_refs", "w") as handle:  # "5": reset VmHWM to VmRSS
        handle.write("5")


def child_bench(contender: Contender, files: list[str], repeats: int) -> dict[str, Any]:
    started = time.perf_counter()
    importlib.import_module(contender.module)
    result: dict[str, Any] = {
        "import_s": time.perf_counter() - started,
        "rss_import": status_kib("VmRSS") * 1024,
        "files": {},
    }
    for path in files:
        reset_peak_rss()
        before = status_kib("VmRSS")
        times, texts = [], []
        try:
            for _ in range(repeats):
                started = time.perf_counter()
                texts = contender.read(path, None)
                times.append(time.perf_counter() - started)
            peak = (status_kib("VmHWM") - before) * 1024
            tracemalloc.start()
            contender.read(path, None)
            heap = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
        except Exception as exc:
            result["files"][path] = {"error": f"{type(exc).__name__}: {exc}"[:200]}
            continue
        result["files"][path] = {"times": times, "texts": texts, "peak": peak, "heap": heap}
    return result


def child_probe(contender: Contender, path: str, password: str | None) -> dict[str, Any]:
    importlib.import_module(contender.module)
    started = time.perf_counter()
    try:
        texts = contender.read(path, password)
    except Exception as exc:
        name = type(exc).__name__
        message = " ".join(str(exc).split())
        return {"error": name, "message": message[:90], "seconds": time.perf_counter() - started}
    chars = sum(len("".join(text.split())) for text in texts)
    return {"pages": len(texts), "chars": chars, "seconds": time.perf_counter() - started}


def child_main(args: argparse.Namespace) -> int:
    logging.disable(logging.CRITICAL)  # pypdf and pdfminer log every repair they make
    warnings.simplefilter("ignore")
    contender = BY_NAME[args.lib]
    if args.child == "bench":
        result = child_bench(contender, args.files, args.repeats)
    else:
        result = child_probe(contender, args.files[0], args.password)
    Path(args.out).write_text(json.dumps(result))
    return 0


# --- in the parent: children with limits ---------------------------------------------------


@dataclass
class Outcome:
    result: dict[str, Any] | None  # what the child wrote, or None
    seconds: float
    max_rss: int  # bytes, from wait4's rusage
    failure: str = ""  # "killed after N s", "killed at N MiB", "SIGSEGV", "exit 1: ..."


def run_child(argv: list[str], timeout: float, memory_limit: int) -> Outcome:
    """Run this script as a child; kill it past ``timeout`` seconds or ``memory_limit`` RSS."""
    with tempfile.TemporaryDirectory(prefix="pdf-text-") as tmp:
        out, err = Path(tmp) / "out.json", Path(tmp) / "stderr"
        with err.open("wb") as stderr:
            child = subprocess.Popen(
                [sys.executable, __file__, *argv, "--out", str(out)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )
        started, failure = time.monotonic(), ""
        while True:
            pid, status, usage = os.wait4(child.pid, os.WNOHANG)
            if pid:
                break
            elapsed = time.monotonic() - started
            if elapsed > timeout:
                failure = f"hang: killed after {timeout:.0f} s"
            elif status_kib("VmRSS", child.pid) * 1024 > memory_limit:
                failure = f"memory: killed past {memory_limit // MIB:,} MiB"
            if failure:
                child.kill()
                pid, status, usage = os.wait4(child.pid, 0)
                break
            time.sleep(0.01)
        seconds = time.monotonic() - started
        child.returncode = os.waitstatus_to_exitcode(status)
        if not failure and child.returncode < 0:
            failure = f"crash: {signal.Signals(-child.returncode).name}"
        elif not failure and child.returncode:
            lines = err.read_text(errors="replace").strip().splitlines() or ["?"]
            failure = f"exit {child.returncode}: {lines[-1][:80]}"
        result = json.loads(out.read_text()) if out.exists() and not failure else None
        return Outcome(result, seconds, usage.ru_maxrss * 1024, failure)


# --- scoring --------------------------------------------------------------------------------


#: PDFium marks a hyphen it took for a line-end one: U+FFFE (get_text_range), U+0002
#: (get_text_bounded); read as a hyphen, which a reader maps it to.
HYPHEN_MARKS = str.maketrans({"\ufffe": "-", "\x02": "-"})


def spaced(text: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", text.translate(HYPHEN_MARKS)).split())


def squashed(text: str) -> str:
    return "".join(unicodedata.normalize("NFKC", text.translate(HYPHEN_MARKS)).split())


def longest_increasing(values: list[int]) -> int:
    tails: list[int] = []
    for value in values:
        index = bisect_left(tails, value)
        tails[index : index + 1] = [value]
    return len(tails)


@dataclass
class Score:
    lines: int = 0
    found: int = 0
    ordered: int = 0

    def add(self, other: Score) -> None:
        self.lines += other.lines
        self.found += other.found
        self.ordered += other.ordered

    def cell(self) -> str:
        return f"{self.found / self.lines:.0%} / {self.ordered / self.lines:.0%}"


def score_page(expected: list[str], text: str) -> Score:
    """Lines found with their words, and the longest chain of lines in reading order.

    Each expected line contributes its positions in the page's text in decreasing order,
    so the strictly increasing chain uses at most one position per line.
    """
    words, flat = spaced(text), squashed(text)
    positions: list[int] = []
    for line in expected:
        needle = squashed(line)
        starts = [match.start() for match in re.finditer(re.escape(needle), flat)] if needle else []
        positions += sorted(starts[:50], reverse=True)
    found = sum(spaced(line) in words for line in expected)
    return Score(len(expected), found, longest_increasing(positions))


def hyphen_probe(pages: list[make_pdfs.Page], texts: list[str]) -> str:
    kinds: dict[str, int] = {}
    for page, text in zip(pages, texts, strict=True):
        text = unicodedata.normalize("NFKC", text)
        for head, tail in page.hyphenated:
            h, t = re.escape(head), re.escape(tail)
            patterns = [
                ("kept", rf"{h}-\s+{t}"),
                ("marked U+FFFE, lines joined", rf"{h}\ufffe{t}"),
                ("joined", rf"{h}-?{t}"),
                ("hyphen dropped", rf"{h}\s+{t}"),
            ]
            kind = next((kind for kind, p in patterns if re.search(p, text)), "lost")
            kinds[kind] = kinds.get(kind, 0) + 1
    return ", ".join(f"{count} {kind}" for kind, count in sorted(kinds.items()))


def ligature_probe(pages: list[make_pdfs.Page], texts: list[str]) -> str:
    kinds = {"as fi/fl": 0, "U+FB01/2 kept": 0, "lost": 0}
    for page, text in zip(pages, texts, strict=True):
        for word in page.ligature_words:
            word = word.strip(".,;:-")
            if word in text:
                kinds["as fi/fl"] += 1
            elif word.replace("fi", "\ufb01").replace("fl", "\ufb02") in text:
                kinds["U+FB01/2 kept"] += 1
            else:
                kinds["lost"] += 1
    return ", ".join(f"{count} {kind}" for kind, count in kinds.items() if count)


def layout_probe(texts: list[str]) -> str:
    text = "".join(texts)
    breaks = "\\r\\n" if "\r\n" in text else "\\n"
    runs = max((len(run) for run in re.findall(r" {2,}", text)), default=1)
    return f"lines end {breaks}; longest space run {runs}"


# --- the benchmark ----------------------------------------------------------------------------


@dataclass
class Bench:
    contender: Contender
    outcome: Outcome
    files: dict[str, dict[str, Any]] = field(default_factory=dict)

    def texts(self, path: str) -> list[str] | None:
        texts: list[str] | None = self.files.get(path, {}).get("texts")
        return texts

    def pages_per_second(self, paths: list[str]) -> float | None:
        runs = [self.files.get(path, {}) for path in paths]
        if not runs or any("times" not in run for run in runs):
            return None
        pages = sum(len(run["texts"]) for run in runs)
        return float(pages / sum(statistics.median(run["times"]) for run in runs))


def real_pdfs(explicit: list[str] | None) -> list[Path]:
    """Real-world PDFs: ``--real`` paths, else the first few under /usr/share/doc."""
    if explicit is not None:
        return [Path(path) for path in explicit]
    found = sorted(Path("/usr/share/doc").rglob("*.pdf")) if Path("/usr/share/doc").is_dir() else []
    return [path for path in found if path.stat().st_size < 5 * MIB][:4]


def installed_size(package: str, seen: set[str] | None = None) -> int:
    """Bytes on disk of ``package`` and what it requires (extras aside), each counted once."""
    seen = set() if seen is None else seen
    key = re.sub(r"[-_.]+", "-", package).lower()
    if key in seen:
        return 0
    seen.add(key)
    try:
        dist = metadata.distribution(package)
    except metadata.PackageNotFoundError:
        return 0
    size = sum((file.size or 0) for file in dist.files or [])
    for requirement in dist.requires or []:
        if "extra ==" in requirement:
            continue
        size += installed_size(re.split(r"[\s;<>=!~\[(]", requirement, maxsplit=1)[0], seen)
    return size


def fmt(value: float | None, spec: str = ",.0f") -> str:
    return "n/a" if value is None else format(value, spec)


def row(cells: Sequence[object]) -> str:
    return "| " + " | ".join(str(cell) for cell in cells) + " |"


def speed_table(benches: list[Bench], sample_paths: list[str], real: list[Path]) -> list[str]:
    statement = str(PDF_DIR / "statement.pdf")
    others = [path for path in sample_paths if path != statement]
    real_heads = [f"{path.name} ({pages_of(benches, str(path))} p)" for path in real]
    heads = ["library", "import ms", "statement.pdf (60 p)", "other samples (5 p)", *real_heads]
    heads += ["all files", "RSS after import MiB", "peak RSS growth MiB", "Python heap peak MiB"]
    lines = [row([*heads, "installed MiB"]), "| --- " + "| ---: " * len(heads) + "|"]
    every = sample_paths + [str(path) for path in real]
    for bench in benches:
        result = bench.outcome.result or {}
        runs = [run for run in bench.files.values() if "times" in run]
        cells = [
            fmt(result.get("import_s", 0) * 1000),
            fmt(bench.pages_per_second([statement])),
            fmt(bench.pages_per_second(others)),
            *(fmt(bench.pages_per_second([str(path)])) for path in real),
            fmt(bench.pages_per_second(every)),
            fmt(result.get("rss_import", 0) / MIB, ".1f"),
            fmt(max((run["peak"] for run in runs), default=0) / MIB, ".1f"),
            fmt(max((run["heap"] for run in runs), default=0) / MIB, ".1f"),
            fmt(installed_size(bench.contender.package) / MIB, ".1f"),
        ]
        lines.append(row([bench.contender.name, *cells]))
    return lines


def text_table(
    benches: list[Bench], samples: list[make_pdfs.Sample], sample_paths: list[str]
) -> list[str]:
    lines = [row(["page: what it tests", "lines", *(b.contender.name for b in benches)])]
    lines.append("| --- | ---: " + "| :---: " * len(benches) + "|")
    groups: dict[str, list[tuple[make_pdfs.Page, int, str]]] = {}
    for sample, path in zip(samples, sample_paths, strict=True):
        for index, page in enumerate(sample.pages):
            groups.setdefault(page.label, []).append((page, index, path))
    totals = [Score() for _ in benches]
    for label, pages in groups.items():
        cells = []
        for total, bench in zip(totals, benches, strict=True):
            score = Score()
            for page, index, path in pages:
                texts = bench.texts(path)
                score.add(score_page(page.expected, texts[index] if texts else ""))
            total.add(score)
            cells.append(score.cell())
        lines.append(row([label, sum(len(page.expected) for page, _, _ in pages), *cells]))
    cells = [f"**{total.cell()}**" for total in totals]
    lines.append(row(["**all sample pages**", totals[0].lines, *cells]))
    return lines


def probe_table(benches: list[Bench], samples: list[make_pdfs.Sample]) -> list[str]:
    letter = next(sample for sample in samples if sample.name == "letter.pdf")
    letter_path, receipt_path = str(PDF_DIR / "letter.pdf"), str(PDF_DIR / "receipt.pdf")
    lines = [row(["probe", *(b.contender.name for b in benches)])]
    lines.append("| --- " + "| --- " * len(benches) + "|")
    for name, probe in [
        ("fi/fl ligatures (letter)", ligature_probe),
        ("hyphens at line ends (letter)", hyphen_probe),
    ]:
        cells = [probe(letter.pages, texts) if (texts := b.texts(letter_path)) else "n/a"
                 for b in benches]  # fmt: skip
        lines.append(row([name, *cells]))
    lines.append(row(["whitespace (receipt)", *(layout_probe(b.texts(receipt_path) or [])
                                                for b in benches)]))  # fmt: skip
    lines += [
        "",
        "What comes out: lines 2-4 of letter p2 (two columns) and of letter p3 (the table "
        "drawn column by column), line breaks shown as ⏎.",
        "",
    ]
    for bench in benches:
        texts = bench.texts(letter_path) or ["", "", ""]
        lines.append(f"- {bench.contender.name}:")
        for index in (1, 2):
            head = texts[index].replace("\r\n", "\n").split("\n")[1:4]
            lines.append(f"  - p{index + 1}: `{' ⏎ '.join(head)[:140]!r}`")
    return lines


def real_table(benches: list[Bench], real: list[Path]) -> list[str]:
    lines = [row(["file", *(b.contender.name for b in benches)])]
    lines.append("| --- " + "| ---: " * len(benches) + "|")
    for path in real:
        cells = []
        for bench in benches:
            texts = bench.texts(str(path))
            if texts is None:
                cells.append("error")
                continue
            text = unicodedata.normalize("NFKC", "".join(texts))
            pages = max(len(texts), 1)
            cells.append(f"{len(squashed(text)) / pages:,.0f} / {len(text.split()) / pages:,.0f}")
        lines.append(row([path.name, *cells]))
    return lines


def build_section(
    benches: list[Bench],
    samples: list[make_pdfs.Sample],
    real: list[Path],
    probes: dict[str, dict[str, Outcome]],
    args: argparse.Namespace,
    command: str,
) -> str:
    sample_paths = [str(PDF_DIR / sample.name) for sample in samples]
    versions = package_versions(["pypdfium2", "pypdf", "pdfplumber", "pdfminer.six", "pillow"])
    details = [
        f"- Packages: {versions}; PDFium {pdfium_build()}",
        f"- Repeats: {args.repeats} per file (median); hostile files: one run each, "
        f"{args.timeout:.0f} s and {args.memory_limit:,} MiB RSS per child",
    ]
    licences = {bench.contender.package: bench.contender.licence for bench in benches}
    details.append("- Licences: " + "; ".join(f"{k}: {v}" for k, v in licences.items()))
    lines = section_header(SECTION, command, details)
    lines += ["### A. Speed and memory (pages per second, median run; a child process each)"]
    lines += ["", *speed_table(benches, sample_paths, real), ""]
    lines += [
        "Peak RSS growth: the most `VmHWM` rose over the RSS before a file (reset per file). "
        "The Python heap peak (tracemalloc) does not see PDFium's own allocations. Installed: "
        "the package and what it requires, on disk.",
        "",
        "### B. Text of the samples: lines found with their words / lines in reading order",
        "",
        "Found: the line occurs with its words as written (NFKC; whitespace runs count as one "
        "space; PDFium's line-end hyphen marks U+FFFE and U+0002 count as a hyphen). In order: "
        "the longest chain of lines, whitespace ignored, at increasing positions.",
        "",
        *text_table(benches, samples, sample_paths),
        "",
        *probe_table(benches, samples),
    ]
    if real:
        lines += ["", "Real PDFs (no known text): non-space characters / words per page", ""]
        lines += real_table(benches, real)
    lines += [
        "",
        "### C. Hostile files (`tests/data/documents/`): outcome (seconds, peak RSS)",
        "",
        row(["file", *(b.contender.name for b in benches)]),
        "| --- " + "| --- " * len(benches) + "|",
    ]
    for label, outcomes in probes.items():
        lines.append(row([label, *(describe(outcomes[b.contender.name]) for b in benches)]))
    lines += ["", "The zip bombs, for the DOCX reader (read from the central directory, never "
              "extracted):", "", *zip_table(), ""]  # fmt: skip
    return "\n".join(lines)


def zip_table() -> list[str]:
    lines = ["| file | bytes | member | method | declared size | ratio |"]
    lines.append("| --- | ---: | --- | --- | ---: | ---: |")
    methods = {zipfile.ZIP_DEFLATED: "deflate", zipfile.ZIP_BZIP2: "bzip2"}
    for path in sorted(HOSTILE.glob("*.docx")):
        with zipfile.ZipFile(path) as archive:
            member = max(archive.infolist(), key=lambda info: info.file_size)
        size = path.stat().st_size
        method = methods.get(member.compress_type, str(member.compress_type))
        cells = [path.name, f"{size:,}", member.filename, method, f"{member.file_size:,}"]
        lines.append(row([*cells, f"{member.file_size / size:,.0f} : 1"]))
    return lines


def describe(outcome: Outcome) -> str:
    rss = f"{outcome.max_rss / MIB:,.0f} MiB"
    if outcome.failure:
        return f"**{outcome.failure}** ({outcome.seconds:.1f} s, {rss})"
    result = outcome.result or {}
    if "error" in result:
        message = result["message"].replace("|", "/")
        return f"{result['error']}: {message[:60]} ({result['seconds']:.2f} s, {rss})"
    what = f"{result['pages']} p, {result['chars']:,} chars"
    return f"{what} ({result['seconds']:.2f} s, {rss})"


def pages_of(benches: list[Bench], path: str) -> int | str:
    for bench in benches:
        texts = bench.files.get(path, {}).get("texts")
        if texts is not None:
            return len(texts)
    return "?"


def pdfium_build() -> str:
    try:
        import pypdfium2

        return str(pypdfium2.PDFIUM_INFO)
    except (ImportError, AttributeError):
        return "unknown"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--repeats", type=int, default=5, help="runs per file and library (default: 5)")
    add("--real", nargs="*", help="real PDFs to time too (default: a few in /usr/share/doc)")
    add("--no-real", action="store_true", help="the samples only")
    add("--libs", nargs="+", default=[c.name for c in CONTENDERS], choices=list(BY_NAME))
    add("--timeout", type=float, default=20.0, help="seconds per hostile file (default: 20)")
    add("--memory-limit", type=int, default=2048, help="MiB per hostile child (default: 2048)")
    add("--no-write", action="store_true", help="print only; leave RESULTS.md alone")
    add("--child", choices=["bench", "probe"], help=argparse.SUPPRESS)
    add("--lib", help=argparse.SUPPRESS)
    add("--password", help=argparse.SUPPRESS)
    add("--out", help=argparse.SUPPRESS)
    add("files", nargs="*", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        return child_main(args)
    samples = make_pdfs.pdf_samples()
    stale = [s.name for s in samples if (PDF_DIR / s.name).read_bytes() != s.data]
    if stale:
        print(f"stale samples {stale}: run python samples/make_pdfs.py", file=sys.stderr)
        return 2
    real = [] if args.no_real else real_pdfs(args.real)
    paths = [str(PDF_DIR / sample.name) for sample in samples] + [str(path) for path in real]
    contenders = [BY_NAME[name] for name in args.libs]
    benches = []
    for contender in contenders:
        print(f"A/B. {contender.name}", file=sys.stderr)
        argv_ = ["--child", "bench", "--lib", contender.name, "--repeats", str(args.repeats)]
        outcome = run_child([*argv_, *paths], timeout=3600, memory_limit=16 << 30)
        files = (outcome.result or {}).get("files", {})
        benches.append(Bench(contender, outcome, files))
        for path, run in files.items():
            if "error" in run:
                print(f"  {Path(path).name}: {run['error']}", file=sys.stderr)
    hostile: list[tuple[str, str | None]] = [
        (path.name, None) for path in sorted(HOSTILE.glob("*.pdf"))
    ]
    hostile.append(("encrypted.pdf", make_pdfs.ENCRYPTED_PASSWORD))
    probes: dict[str, dict[str, Outcome]] = {}
    for name, password in hostile:
        label = name + (f" (password {password!r})" if password else "")
        print(f"C. {label}", file=sys.stderr)
        for contender in contenders:
            argv_ = ["--child", "probe", "--lib", contender.name, str(HOSTILE / name)]
            argv_ += ["--password", password] if password else []
            outcome = run_child(argv_, args.timeout, args.memory_limit * MIB)
            probes.setdefault(label, {})[contender.name] = outcome
    command = command_line("pdf_text.py", argv)
    section = build_section(benches, samples, real, probes, args, command)
    print(section)
    if not args.no_write:
        write_section(SECTION, section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
