"""Measure extraction against hand-checked answers: exact-match rates per field, and cost.

A dataset is JSON lines, one document each: `{"id": ..., "text": ..., "gold": {...}}`.
Every document is extracted, its record compared field by field with `gold` (the gold's
top-level keys are the fields), and the figures summed into a `Summary`.

Two kinds of match, because the first undercounts what a human would accept:

- `strict`: the two values' texts are equal after trimming the ends;
- `norm`: equal after upper-casing and removing every whitespace character, so
  "Ann  Lee" and "ANN LEE" agree.

A value's text is the string itself; null (or a field missing from the record) reads as
"" so a gold "" means "expected absent"; any other value reads as its JSON (keys sorted,
integral floats written as integers, so a model's 1600.0 matches a gold 1600). A document
that gave no record misses every field, even a gold "".

The building blocks are plain functions so a benchmark script can reuse them::

    from extractor import Client
    from extractor._evaluate import evaluate_dataset, read_dataset

    with Client("openai/gpt-4o-mini") as client:
        summary, results = evaluate_dataset(client, Receipt, read_dataset("gold.jsonl"))
    print(summary.report()["overall"])
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import statistics
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO, TypedDict

from extractor._client import Client
from extractor._errors import (
    ConfigurationError,
    DatasetError,
    ExtractorError,
    Refusal,
    RetriesExhausted,
    SchemaError,
    json_kind,
)
from extractor._result import Usage
from extractor._schema import compile_schema

__all__ = [
    "DatasetError",
    "DocResult",
    "ErrorInfo",
    "Example",
    "FieldMatch",
    "Summary",
    "as_text",
    "evaluate_dataset",
    "evaluate_one",
    "field_matches",
    "format_table",
    "nearest_rank",
    "normalize",
    "read_dataset",
    "results_file",
]

logger = logging.getLogger("extractor.evaluate")

#: How many bad dataset lines one error message lists before it only counts the rest.
_SHOWN_PROBLEMS = 5


class FieldMatch(TypedDict):
    """Whether one field matched, in both senses; JSON-ready for the results file."""

    strict: bool
    norm: bool


class ErrorInfo(TypedDict):
    """Why a document gave no record: the exception's class name and message."""

    type: str
    message: str


@dataclass(frozen=True)
class Example:
    """One dataset document: its id, the text to extract from, and the expected record.

    `line` is where it stands in the dataset file (0 for one built in code).
    """

    id: str | int
    text: str
    gold: dict[str, Any]
    line: int = 0


# --- matching -------------------------------------------------------------------------------


def as_text(value: Any) -> str:
    """The text a value is compared as (`strict`): see the module docstring for why."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value.strip()
    return json.dumps(_canonical(value), ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def normalize(value: Any) -> str:
    """The text compared by `norm`: upper-cased, without any whitespace at all."""
    return "".join(as_text(value).upper().split())


def _canonical(value: Any) -> Any:
    """Integral floats as ints, recursively: a number's JSON should not depend on its type."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, Mapping):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    return value


def field_matches(record: Any, gold: Mapping[str, Any]) -> dict[str, FieldMatch]:
    """Each gold field: whether the record's value matches it, strictly and normalized.

    A record that is not an object (None for a failed extraction) misses every field.
    """
    if not isinstance(record, Mapping):
        return {name: FieldMatch(strict=False, norm=False) for name in gold}
    return {name: _match(record.get(name), expected) for name, expected in gold.items()}


def _match(value: Any, expected: Any) -> FieldMatch:
    return FieldMatch(
        strict=as_text(value) == as_text(expected), norm=normalize(value) == normalize(expected)
    )


def nearest_rank(values: Sequence[float], share: float) -> float | None:
    """The nearest-rank percentile (`share` in 0..1): a value that occurred, never a blend."""
    if not values:
        return None
    ordered = sorted(values)
    # rounded first: 0.07 * 100 is 7.000000000000001 in floats, whose ceiling is 8
    rank = max(1, math.ceil(round(share * len(ordered), 9)))
    return ordered[rank - 1]


# --- one document ---------------------------------------------------------------------------


@dataclass(frozen=True)
class DocResult:
    """What one document gave: the record (None on failure), its matches, time and cost."""

    example: Example
    record: Any
    match: dict[str, FieldMatch]
    latency_s: float
    attempts: int
    usage: Usage = field(default_factory=Usage)
    error: ErrorInfo | None = None

    def row(self) -> dict[str, Any]:
        """The results-file line: id, record, gold, match, latency_s, error, attempts."""
        return {
            "id": self.example.id,
            "record": self.record,
            "gold": self.example.gold,
            "match": self.match,
            "latency_s": round(self.latency_s, 6),
            "error": self.error,
            "attempts": self.attempts,
        }


def evaluate_one(
    client: Client, target: Any, example: Example, dump: Callable[[Any], Any] | None = None
) -> DocResult:
    """Extract one document and score it; an extraction failure becomes a scored miss.

    Configuration and schema errors are raised: they would fail every document alike.
    """
    dump = dump or compile_schema(target).dump
    start = time.perf_counter()
    try:
        result = client.extract_result(target, example.text)
    except (ConfigurationError, SchemaError):
        raise
    except ExtractorError as exc:
        latency = time.perf_counter() - start
        logger.info("%s: %s: %s", example.id, type(exc).__name__, exc)
        return DocResult(
            example,
            None,
            field_matches(None, example.gold),
            latency,
            _attempts_of(exc),
            _usage_of(exc),
            ErrorInfo(type=type(exc).__name__, message=str(exc)),
        )
    latency = time.perf_counter() - start
    record = dump(result.value)
    logger.info("%s: record in %.3f s, %d attempt(s)", example.id, latency, len(result.attempts))
    match = field_matches(record, example.gold)
    return DocResult(example, record, match, latency, len(result.attempts), result.usage)


def _attempts_of(exc: ExtractorError) -> int:
    """Answers received before the failure, as far as the error tells: a refusal is one
    answer, an API error carries none."""
    if isinstance(exc, RetriesExhausted):
        return len(exc.attempts)
    return 1 if isinstance(exc, Refusal) else 0


def _usage_of(exc: ExtractorError) -> Usage:
    """Tokens a failure still cost, where the error carries them."""
    usage = getattr(exc, "usage", None)
    return usage if isinstance(usage, Usage) else Usage()


# --- the summary ----------------------------------------------------------------------------


@dataclass
class _Tally:
    n: int = 0
    strict: int = 0
    norm: int = 0

    def add(self, match: FieldMatch) -> None:
        self.n += 1
        self.strict += match["strict"]
        self.norm += match["norm"]

    def report(self) -> dict[str, Any]:
        return {"n": self.n, "strict": _rate(self.strict, self.n), "norm": _rate(self.norm, self.n)}


@dataclass
class Summary:
    """Figures over the documents added so far; `add` one `DocResult` at a time.

    Built incrementally so an interrupted run still knows everything it has seen.
    """

    documents: int = 0
    valid: int = 0
    attempts: int = 0
    usage: Usage = field(default_factory=Usage)
    latencies: list[float] = field(default_factory=list)
    fields: dict[str, _Tally] = field(default_factory=dict)  # in order of first appearance
    failures: Counter[str] = field(default_factory=Counter)

    def add(self, result: DocResult) -> None:
        """Count one document's matches, validity, latency, tokens and attempts."""
        self.documents += 1
        self.valid += result.error is None
        self.attempts += result.attempts
        self.usage = self.usage + result.usage
        self.latencies.append(result.latency_s)
        for name, match in result.match.items():
            self.fields.setdefault(name, _Tally()).add(match)
        if result.error is not None:
            self.failures[result.error["type"]] += 1

    def overall(self) -> _Tally:
        """Micro average: every field of every document counts once."""
        total = _Tally()
        for tally in self.fields.values():
            total.n += tally.n
            total.strict += tally.strict
            total.norm += tally.norm
        return total

    def report(self) -> dict[str, Any]:
        """Every figure as JSON-ready values; rates are fractions 0..1, null when undefined."""
        return {
            "documents": self.documents,
            "fields": {name: tally.report() for name, tally in self.fields.items()},
            "overall": self.overall().report(),
            "valid": self.valid,
            "valid_rate": _rate(self.valid, self.documents),
            "latency_s": self._latency(),
            "tokens": self._tokens(),
            "cost": self.usage.cost,
            "cached_answers": self.usage.cached,
            "attempts_mean": _mean(self.attempts, self.documents),
            "failures": dict(sorted(self.failures.items())),
        }

    def _latency(self) -> dict[str, float | None]:
        median = statistics.median(self.latencies) if self.latencies else None
        return {"median": median, "p90": nearest_rank(self.latencies, 0.9)}

    def _tokens(self) -> dict[str, Any]:
        usage, n = self.usage, self.documents
        sums = {
            "prompt": usage.prompt_tokens,
            "completion": usage.completion_tokens,
            "total": usage.total_tokens,
        }
        return {**sums, "per_document": {key: _mean(value, n) for key, value in sums.items()}}


def _rate(hits: int, n: int) -> float | None:
    return hits / n if n else None


def _mean(total: float, n: int) -> float | None:
    return total / n if n else None


# --- a whole dataset ------------------------------------------------------------------------


def read_dataset(path: str | Path, *, limit: int | None = None) -> list[Example]:
    """Every document of a JSON-lines dataset, checked in full before any is used.

    Raises `DatasetError` naming the bad lines, so a typo on line 900 costs no requests.
    Blank lines are skipped; `limit` keeps the first documents after the whole file passed.
    """
    path = Path(path)
    text = _read_text(path)
    examples: list[Example] = []
    problems: list[str] = []
    seen: dict[str | int, int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            example = _example(line, number)
        except DatasetError as exc:
            problems.append(f"line {number}: {exc}")
            continue
        if example.id in seen:
            problems.append(f"line {number}: id {example.id!r} repeats line {seen[example.id]}")
        seen.setdefault(example.id, number)
        examples.append(example)
    if problems:
        more = len(problems) - _SHOWN_PROBLEMS
        tail = f" (and {more} more bad lines)" if more > 0 else ""
        raise DatasetError(f"bad dataset {path}: " + "; ".join(problems[:_SHOWN_PROBLEMS]) + tail)
    if not examples:
        raise DatasetError(f"the dataset {path} has no documents")
    return examples[:limit] if limit is not None else examples


def _read_text(path: Path) -> str:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DatasetError(f"no such dataset file: {path}") from None
    except OSError as exc:
        raise DatasetError(f"cannot read the dataset {path}: {exc.strerror or exc}") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise DatasetError(f"bad dataset {path}: line {line}: not UTF-8 text") from None


def _example(line: str, number: int) -> Example:
    """One dataset line as an `Example`; `DatasetError` says what is wrong with it."""
    try:
        item = json.loads(line)
    except ValueError as exc:
        raise DatasetError(f"not JSON ({exc})") from None
    if not isinstance(item, dict):
        raise DatasetError(f'expected an object with "id", "text" and "gold", not {_kind(item)}')
    id_, text, gold = item.get("id"), item.get("text"), item.get("gold")
    if isinstance(id_, bool) or not isinstance(id_, (str, int)):
        raise DatasetError(f'"id" must be a string or an integer, not {_kind(id_)}')
    if not isinstance(text, str):
        raise DatasetError(f'"text" must be a string, not {_kind(text)}')
    if not text.strip():
        raise DatasetError('"text" is empty: nothing to extract')
    if not isinstance(gold, dict):
        raise DatasetError(f'"gold" must be an object of field values, not {_kind(gold)}')
    return Example(id_, text, gold, number)


def _kind(value: Any) -> str:
    return "nothing" if value is None else json_kind(value)


def evaluate_dataset(
    client: Client,
    target: Any,
    examples: Sequence[Example],
    *,
    results: TextIO | None = None,
    progress: TextIO | None = None,
) -> tuple[Summary, list[DocResult]]:
    """Extract and score every example in order; return the summary and each document.

    Each document's results line goes to `results` (flushed, so an interrupted run keeps
    what it finished); `progress` (a terminal) gets a `[i/n] id` status line.
    """
    summary, done = Summary(), []
    dump = compile_schema(target).dump
    with _status(progress) as show:
        for index, example in enumerate(examples, start=1):
            show(f"[{index}/{len(examples)}] {example.id}")
            result = evaluate_one(client, target, example, dump)
            summary.add(result)
            done.append(result)
            if results is not None:
                results.write(json.dumps(result.row(), ensure_ascii=False) + "\n")
                results.flush()
    return summary, done


@contextlib.contextmanager
def _status(stream: TextIO | None) -> Iterator[Callable[[str], None]]:
    """A one-line status on a terminal, rewritten in place and wiped at the end."""
    width = 0

    def show(text: str) -> None:
        nonlocal width
        if stream is None:
            return
        text = text[:79]
        stream.write("\r" + text.ljust(width))
        stream.flush()
        width = max(width, len(text))

    try:
        yield show
    finally:
        if stream is not None and width:
            stream.write("\r" + " " * width + "\r")
            stream.flush()


@contextlib.contextmanager
def results_file(path: str | Path | None) -> Iterator[TextIO | None]:
    """The `-o` file opened for writing (None when not asked for); `DatasetError` if it can't."""
    if path is None:
        yield None
        return
    with contextlib.ExitStack() as stack:
        try:
            stream = stack.enter_context(Path(path).open("w", encoding="utf-8"))
        except OSError as exc:
            problem = exc.strerror or exc
            raise DatasetError(f"cannot write the results to {path}: {problem}") from None
        yield stream


# --- the table ------------------------------------------------------------------------------


def format_table(report: Mapping[str, Any]) -> str:
    """`Summary.report()` as a table a person reads: field | strict | norm, then the rest."""
    names = [*report["fields"], "overall"]
    width = max(len("field"), *(len(name) for name in names))
    lines = [f"{'field':<{width}}  {'strict':>7}  {'norm':>7}"]
    for name, tally in [*report["fields"].items(), ("overall", report["overall"])]:
        lines.append(f"{name:<{width}}  {_pct(tally['strict']):>7}  {_pct(tally['norm']):>7}")
    lines.insert(len(lines) - 1, "-" * len(lines[0]))
    return "\n".join([*lines, "", *_footer(report)])


def _footer(report: Mapping[str, Any]) -> list[str]:
    latency, tokens = report["latency_s"], report["tokens"]
    per = tokens["per_document"]
    lines = [
        f"valid     {_pct(report['valid_rate'])} ({report['valid']}/{report['documents']})",
        f"latency   median {_seconds(latency['median'])}, p90 {_seconds(latency['p90'])}",
        f"tokens    prompt {tokens['prompt']}, completion {tokens['completion']}, "
        f"total {tokens['total']} (per document {_num(per['prompt'])} / "
        f"{_num(per['completion'])} / {_num(per['total'])})",
        f"attempts  {_num(report['attempts_mean'])} per document",
    ]
    if report["cost"] is not None:
        lines.append(f"cost      {report['cost']:.6f}")
    if report.get("cached_answers"):
        lines.append(f"cache     {report['cached_answers']} answer(s) from the cache, sent nothing")
    if report["failures"]:
        shown = ", ".join(f"{kind} {count}" for kind, count in report["failures"].items())
        lines.append(f"failures  {shown}")
    return lines


def _pct(rate: float | None) -> str:
    return "n/a" if rate is None else f"{rate * 100:.1f}%"


def _seconds(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f} s"


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}"
