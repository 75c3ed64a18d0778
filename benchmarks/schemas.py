"""Real-world JSON Schemas through every dialect: what reaches the provider in a form it takes.

Every schema of the corpus (``tests/data/schemas``, listed in its ``MANIFEST.json``) is
compiled as a dict target, as a user's ``.json`` file would be, and each dialect of
``extractor.DIALECTS`` is checked against the provider's documented rules
(``tests/provider_rules.py``); so is what ``auto`` would send to OpenAI (``Client.prepare``
decides it before any request). Each schema ends, per row:

* **ok**: compiled, and the checker finds nothing;
* **fallback** (openai-strict and auto only): strict mode refuses it with ``SchemaError``,
  and auto sends it as non-strict ``json_schema`` in the ``openai`` dialect instead (in the
  auto row, only where that loose schema passes its checker; else it is invalid there);
* **refused**: ``SchemaError`` and nothing else can carry it: nothing is sent;
* **invalid**: compiled, but the checker finds violations (listed: a 400 from the provider);
* **crashed**: any other exception (listed).

Beside it, in the same run: pydantic-ai's OpenAI strict transformer on the same schemas and
the same checker; the time of a fresh compile per schema; for the embedded model's grammar,
what llama.cpp's converter accepts (extractor's grammar schema against the raw schema); and
the same counts over schemas drawn by ``tests/schema_strategies.py``.

Run from the repository root: ``python benchmarks/schemas.py`` (``--help`` for options). The
``## schemas`` section of ``benchmarks/RESULTS.md`` is replaced unless ``--no-write`` is given.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import shlex
import statistics
import sys
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from results import RESULTS_PATH, package_versions, section_header, write_section

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import extractor  # noqa: E402  (the checkout's, found through the path set just above)
from extractor._local.grounded import bounded_schema  # noqa: E402
from tests import provider_rules  # noqa: E402

SECTION = "schemas"
CORPUS = REPO_ROOT / "tests" / "data" / "schemas"
OUTCOMES = ("ok", "fallback", "refused", "invalid", "crashed")
AUTO = "auto"
ROWS = (*extractor.DIALECTS, AUTO)
PYDANTIC_AI = "pydantic-ai strict"
#: Where `auto` is asked to send: any OpenAI model; nothing is sent, `prepare` only plans.
AUTO_MODEL = "openai/m"
STAGES = ("compile", *extractor.DIALECTS)
VERSIONED = ("extractor", "pydantic", "jsonschema", "pydantic-ai-slim", "llama-cpp-python")
#: How many violations of one schema and row the lists show.
SHOWN_VIOLATIONS = 6

Schema = Any
Checker = Callable[[Any], list[provider_rules.Violation]]


def _openai_loose(schema: Any) -> list[provider_rules.Violation]:
    """Non-strict json_schema and tools: an object with properties, valid 2020-12, refs resolve."""
    return provider_rules.tool_parameters(schema, strict=False, provider="openai")


#: The provider checker each dialect's wire schema is held to.
CHECKERS: dict[str, tuple[str, Checker]] = {
    "openai-strict": ("openai_strict", provider_rules.openai_strict),
    "openai": ("tool_parameters(strict=False)", _openai_loose),
    "mistral": ("mistral_json_schema", provider_rules.mistral_json_schema),
    "plain": ("refs_resolve", provider_rules.refs_resolve),
}


# --------------------------------------------------------------------------- outcomes


@dataclass(frozen=True)
class Outcome:
    """What became of one schema in one row, and why when it is not ok."""

    name: str
    row: str
    outcome: str
    detail: str = ""
    #: Every violation the checker found, in full (``detail`` shows the first few).
    violations: tuple[str, ...] = ()
    #: The rule each violation breaks (ids of ``provider_rules.RULES``).
    rules: tuple[str, ...] = ()

    @property
    def conservative_only(self) -> bool:
        """Invalid only by rules the provider does not state (our stricter reading)."""
        bases = {provider_rules.RULES[rule].basis for rule in self.rules}
        return bases == {"conservative"}


@dataclass
class Report:
    """Every outcome of one run over a list of schemas, with timings and grammar results."""

    size: int
    outcomes: list[Outcome] = field(default_factory=list)
    #: stage -> seconds per schema (the best of the repeats), in corpus order.
    timings: dict[str, list[tuple[str, float]]] = field(default_factory=dict)
    #: llama.cpp's converter on each schema, raw and extractor's grammar schema.
    grammar: list[GrammarOutcome] = field(default_factory=list)
    grammar_skipped: str = ""
    pydantic_ai_skipped: str = ""

    def counts(self, row: str) -> Counter[str]:
        """How many schemas ended in each outcome in ``row``."""
        return Counter(o.outcome for o in self.outcomes if o.row == row)

    def rows(self) -> list[str]:
        """The rows measured, in table order."""
        return list(dict.fromkeys(o.row for o in self.outcomes))

    def problems(self, *kinds: str) -> list[Outcome]:
        """The outcomes of the given kinds, in corpus order."""
        return [o for o in self.outcomes if o.outcome in kinds]


def _describe(exc: BaseException) -> str:
    """An exception with the place it was raised: enough for the owner to find it."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" at {Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else ""
    return f"{type(exc).__name__}: {str(exc)[:300]}{where}"


def _summary(violations: Sequence[str]) -> str:
    shown = "; ".join(violations[:SHOWN_VIOLATIONS])
    more = len(violations) - SHOWN_VIOLATIONS
    return shown + (f"; and {more} more" if more > 0 else "")


def _checked(name: str, row: str, wire: Any, checker: Checker, good: str = "ok") -> Outcome:
    """``good`` when the checker finds nothing, else invalid with the violations."""
    try:
        found = checker(wire)
    except Exception as exc:  # a checker that cannot read the wire schema is a finding too
        return Outcome(name, row, "crashed", f"the checker raised {_describe(exc)}")
    if not found:
        return Outcome(name, row, good)
    violations = tuple(f"{v.path}: {v.detail} [{v.rule}]" for v in found)
    rules = tuple(v.rule for v in found)
    return Outcome(name, row, "invalid", _summary(violations), violations, rules)


def classify_auto(name: str, schema: Schema, client: extractor.Client) -> tuple[Outcome, bool]:
    """What ``auto`` settles for OpenAI before any request, and whether OpenAI takes it;
    with whether it goes loose (non-strict json_schema), because strict cannot carry it."""
    try:
        plan = client.prepare(copy.deepcopy(schema), "doc")
        dialect = plan.endpoint.provider.dialect
        wire_dialect = dialect.schema_dialect
        if not plan.strict and dialect.loose_schema_dialect is not None:
            wire_dialect = dialect.loose_schema_dialect
        wire = plan.schema.dialect(wire_dialect)
    except extractor.SchemaError as exc:
        return Outcome(name, AUTO, "refused", str(exc)), False
    except Exception as exc:
        return Outcome(name, AUTO, "crashed", _describe(exc)), False
    if plan.strict:
        return _checked(name, AUTO, wire, provider_rules.openai_strict), False
    return _checked(name, AUTO, wire, _openai_loose, good="fallback"), True


def classify_extractor(name: str, schema: Schema, client: extractor.Client) -> list[Outcome]:
    """One outcome per dialect of ``extractor.DIALECTS``, then auto's.

    A strict refusal is a fallback when auto sends the schema loose instead (whether or
    not that loose schema passes: the ``openai`` and ``auto`` rows say).
    """
    auto, loose = classify_auto(name, schema, client)
    try:
        compiled = extractor.compile_schema(copy.deepcopy(schema))
    except extractor.SchemaError as exc:
        refused = [Outcome(name, row, "refused", str(exc)) for row in extractor.DIALECTS]
        return [*refused, auto]
    except Exception as exc:
        crashed = [Outcome(name, row, "crashed", _describe(exc)) for row in extractor.DIALECTS]
        return [*crashed, auto]
    outcomes = []
    for row in extractor.DIALECTS:
        try:
            wire = compiled.dialect(row)
        except extractor.SchemaError as exc:
            sent = row == "openai-strict" and loose
            outcomes.append(Outcome(name, row, "fallback" if sent else "refused", str(exc)))
            continue
        except Exception as exc:
            outcomes.append(Outcome(name, row, "crashed", _describe(exc)))
            continue
        outcomes.append(_checked(name, row, wire, CHECKERS[row][1]))
    return [*outcomes, auto]


# --------------------------------------------------------------------------- pydantic-ai


@dataclass(frozen=True)
class StrictTransformer:
    """Another library's strict-schema transform, and the exception it refuses a schema with."""

    transform: Callable[[Schema], Any]
    refusal: type[Exception]


def pydantic_ai_transformer() -> tuple[StrictTransformer | None, str]:
    """pydantic-ai's strict OpenAI transform of a dict schema, or None and why not.

    What pydantic-ai does to a JSON Schema it sends to OpenAI with ``strict=True``: the
    root must be an object or a ``$ref`` (``_utils.check_object_json_schema``, which its
    output and tool schemas pass through; a ``UserError`` there or in the transformer is a
    refusal), then ``OpenAIJsonSchemaTransformer(schema, strict=True).walk()``.
    """
    try:
        from pydantic_ai import _utils
        from pydantic_ai.exceptions import UserError
        from pydantic_ai.profiles.openai import OpenAIJsonSchemaTransformer
    except ImportError as exc:
        return None, f"pydantic-ai not importable ({exc}): pip install pydantic-ai-slim"

    def transform(schema: Schema) -> Any:
        if not isinstance(schema, dict):
            raise UserError("Schema must be an object")
        rooted = _utils.check_object_json_schema(schema)
        return OpenAIJsonSchemaTransformer(rooted, strict=True).walk()

    return StrictTransformer(transform, UserError), ""


def classify_pydantic_ai(name: str, schema: Schema, contender: StrictTransformer) -> Outcome:
    """pydantic-ai's strict schema for ``schema``, held to the same openai_strict checker."""
    try:
        wire = contender.transform(copy.deepcopy(schema))
    except contender.refusal as exc:
        return Outcome(name, PYDANTIC_AI, "refused", str(exc)[:300])
    except Exception as exc:
        return Outcome(name, PYDANTIC_AI, "crashed", _describe(exc))
    return _checked(name, PYDANTIC_AI, wire, provider_rules.openai_strict)


# --------------------------------------------------------------------------- timing


def time_compile(schema: Schema, repeats: int) -> dict[str, float]:
    """Seconds for a fresh compile and each dialect built from it, the best of ``repeats``.

    ``compile_schema`` caches per target, so this times what it runs on a miss:
    ``extractor._schema._compile_json_schema`` on a deep copy (made before the clock starts),
    then ``.dialect(name)`` for each dialect on that fresh object (a refusal is timed too).
    A schema the compile refuses has only its compile time.
    """
    from extractor._schema import _compile_json_schema  # a miss's work, without the cache

    best: dict[str, float] = {}
    for _ in range(repeats):
        fresh = copy.deepcopy(schema)
        start = time.perf_counter()
        try:
            compiled = _compile_json_schema(fresh)
        except Exception:  # refused (or crashed, which the outcomes list): compile time only
            compiled = None
        spent = {"compile": time.perf_counter() - start}
        for name in extractor.DIALECTS:
            if compiled is None:
                break
            start = time.perf_counter()
            with contextlib.suppress(Exception):  # a refusal takes time too; crashes are listed
                compiled.dialect(name)
            spent[name] = time.perf_counter() - start
        for stage, seconds in spent.items():
            best[stage] = min(seconds, best.get(stage, seconds))
    return best


# --------------------------------------------------------------------------- grammar


def llama_version() -> str | None:
    """llama-cpp-python's version when it is importable, else None."""
    try:
        import llama_cpp  # noqa: F401  (only whether it imports)
    except ImportError:
        return None
    return metadata.version("llama-cpp-python")


#: What became of extractor's grammar schema, beside what the raw schema gave.
CONVERTS = "converts"
RAISES = "the converter raises"
PARSER_REFUSES = "the grammar parser refuses"
NOT_COMPILED = "not compiled (SchemaError)"
GRAMMAR_OUTCOMES = (CONVERTS, RAISES, PARSER_REFUSES, NOT_COMPILED)


@dataclass(frozen=True)
class GrammarOutcome:
    """llama.cpp's converter on one schema: the raw one, and extractor's grammar schema."""

    name: str
    raw: str
    ours: str
    detail: str = ""


def _converted(schema: Schema, timeout: float) -> tuple[str, str]:
    """(one of CONVERTS, RAISES, PARSER_REFUSES; why) for llama.cpp's converter on ``schema``."""
    if provider_rules.llama_converts(schema, timeout=timeout):
        return CONVERTS, ""
    from llama_cpp.llama_grammar import json_schema_to_gbnf  # pure Python: safe in-process

    try:
        json_schema_to_gbnf(json.dumps(schema))
    except Exception as exc:
        return RAISES, _describe(exc)
    return PARSER_REFUSES, "the grammar it writes does not parse (or the child died)"


def grammar_outcome(name: str, schema: Schema, timeout: float) -> GrammarOutcome:
    """What llama.cpp's converter does with the raw schema and with extractor's.

    Extractor's grammar schema is what the embedded model is given in json_schema mode:
    ``bounded_schema`` of the full schema (``dialect("plain")``). When the converter
    (pure Python) raises, the engine logs it and generates without a grammar; when
    llama.cpp's parser refuses the grammar the converter wrote, llama-cpp-python adds the
    NULL sampler to its chain unchecked, and the process dies at the first token.
    """
    raw, _ = _converted(schema, timeout)
    try:
        plain = extractor.compile_schema(copy.deepcopy(schema)).dialect("plain")
        ours = bounded_schema(plain)
    except Exception as exc:
        return GrammarOutcome(name, raw, NOT_COMPILED, _describe(exc))
    outcome, why = _converted(ours, timeout)
    if outcome == PARSER_REFUSES:
        rules = sorted({v.rule for v in provider_rules.llama_grammar(ours)})
        why += f"; llama_grammar flags {', '.join(rules) or 'nothing'}"
    return GrammarOutcome(name, raw, outcome, why)


# --------------------------------------------------------------------------- the run


def load_corpus(folder: Path, limit: int | None = None) -> list[tuple[str, Schema]]:
    """The ``.json`` schemas in ``folder`` (MANIFEST.json aside), sorted by name."""
    files = sorted(p for p in folder.glob("*.json") if p.name != "MANIFEST.json")
    return [(p.name, json.loads(p.read_text(encoding="utf-8"))) for p in files[:limit]]


def generated_schemas(count: int) -> tuple[list[tuple[str, Schema]], str]:
    """The distinct schemas among ``count`` drawn by ``tests.schema_strategies.schemas()``,
    derandomized (the same draws every run with the same hypothesis); an empty list and
    why when unavailable."""
    if count <= 0:
        return [], "not asked for (--generated 0)"
    try:
        from hypothesis import HealthCheck, Phase, given, settings

        from tests.schema_strategies import schemas
    except ImportError as exc:
        return [], f"tests/schema_strategies.py or hypothesis not importable ({exc})"
    drawn: list[Schema] = []

    @settings(
        max_examples=count,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(schemas())
    def collect(schema: Schema) -> None:
        drawn.append(schema)

    collect()
    distinct = {json.dumps(schema, sort_keys=True): schema for schema in drawn}
    named = [(f"generated-{i:03d}", schema) for i, schema in enumerate(distinct.values(), 1)]
    return named, ""


def measure(
    entries: Sequence[tuple[str, Schema]],
    *,
    pydantic_ai: bool = True,
    grammar_limit: int | None = None,
    grammar_timeout: float = 60.0,
    repeats: int = 3,
    jobs: int = 2,
    progress: Callable[[str], None] | None = None,
) -> Report:
    """Classify every schema in every row; time compiles (``repeats`` 0: not timed); run
    llama.cpp's converter on the first ``grammar_limit`` schemas (None: all, 0: none)."""
    report = Report(size=len(entries))
    client = extractor.Client(AUTO_MODEL, api_key="sk-x", base_url="https://example.invalid/v1")
    transform, report.pydantic_ai_skipped = (
        pydantic_ai_transformer() if pydantic_ai else (None, "not asked for (--no-pydantic-ai)")
    )
    for index, (name, schema) in enumerate(entries, 1):
        started = time.perf_counter()
        report.outcomes.extend(classify_extractor(name, schema, client))
        if transform is not None:
            report.outcomes.append(classify_pydantic_ai(name, schema, transform))
        if repeats > 0:
            for stage, seconds in time_compile(schema, repeats).items():
                report.timings.setdefault(stage, []).append((name, seconds))
        if progress is not None:
            progress(f"[{index}/{len(entries)}] {name}: {time.perf_counter() - started:.2f} s")
    run_grammar(report, entries, grammar_limit, grammar_timeout, jobs, progress)
    return report


def run_grammar(
    report: Report,
    entries: Sequence[tuple[str, Schema]],
    limit: int | None,
    timeout: float,
    jobs: int,
    progress: Callable[[str], None] | None,
) -> None:
    """llama.cpp's converter on each schema, ``jobs`` child processes at a time."""
    if limit == 0:
        report.grammar_skipped = "not asked for (--grammar-limit 0)"
        return
    if llama_version() is None:
        report.grammar_skipped = "llama_cpp not importable: pip install -e '.[local]'"
        return
    chosen = entries[:limit]
    if progress is not None:
        progress(f"llama.cpp's converter on {len(chosen)} schemas, {jobs} at a time...")
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = [pool.submit(grammar_outcome, name, s, timeout) for name, s in chosen]
        report.grammar = [future.result() for future in futures]


# --------------------------------------------------------------------------- reporting


def _share(count: int, total: int) -> str:
    return f"{count} ({100 * count / total:.0f}%)" if total else str(count)


def _percentile(values: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile: the smallest value with ``fraction`` of them at or below."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(fraction * len(ordered) + 0.4999)))
    return ordered[rank - 1]


def ok_share(report: Report, row: str) -> float | None:
    """The share of schemas ok in ``row``, or None when the row was not measured."""
    if row not in report.rows() or not report.size:
        return None
    return report.counts(row)["ok"] / report.size


def outcome_table(report: Report, pydantic_version: str | None) -> str:
    """Markdown: one row per dialect, auto and pydantic-ai; one column per outcome."""
    lines = [
        "| row | checker | " + " | ".join(OUTCOMES) + " |",
        "| --- | --- |" + " ---: |" * len(OUTCOMES),
    ]
    for row in report.rows():
        counts = report.counts(row)
        if row in CHECKERS:
            label, checker = f"extractor `{row}`", CHECKERS[row][0]
        elif row == AUTO:
            label, checker = f"extractor `auto` ({AUTO_MODEL})", "as sent: strict or loose"
        else:
            label, checker = f"pydantic-ai {pydantic_version} strict", "openai_strict"
        cells = [
            "—" if kind == "fallback" and row not in ("openai-strict", AUTO) else
            _share(counts[kind], report.size)
            for kind in OUTCOMES
        ]  # fmt: skip
        lines.append(f"| {label} | {checker} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def timing_table(report: Report) -> str:
    """Markdown: median, p90 and max milliseconds per schema for each stage and in all."""
    if not report.timings:
        return ""
    totals: dict[str, float] = {}
    for samples in report.timings.values():
        for name, seconds in samples:
            totals[name] = totals.get(name, 0.0) + seconds
    stages = [*(s for s in STAGES if s in report.timings), "all"]
    lines = [
        "| stage | schemas | median (ms) | p90 (ms) | max (ms) | slowest |",
        "| --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for stage in stages:
        samples = list(totals.items()) if stage == "all" else report.timings[stage]
        ms = [seconds * 1e3 for _, seconds in samples]
        slowest = max(samples, key=lambda sample: sample[1])[0]
        label = f"`.dialect({stage!r})`" if stage in extractor.DIALECTS else stage
        if stage == "compile":
            label = "compile (check, normalize, wrap)"
        elif stage == "all":
            label = "**all** (compile and every dialect)"
        lines.append(
            f"| {label} | {len(ms)} | {statistics.median(ms):.2f} | "
            f"{_percentile(ms, 0.9):.2f} | {max(ms):.2f} | {slowest} |"
        )
    return "\n".join(lines)


def grammar_table(report: Report, version: str | None) -> str:
    """Markdown: how many schemas llama.cpp's converter takes, raw and as extractor gives them."""
    if not report.grammar:
        return f"Not measured: {report.grammar_skipped}" if report.grammar_skipped else ""
    raw = Counter(g.raw for g in report.grammar)
    ours = Counter(g.ours for g in report.grammar)
    total = len(report.grammar)
    lines = [
        f"| schema given to llama-cpp-python {version}'s converter | "
        + " | ".join(GRAMMAR_OUTCOMES)
        + " |",
        "| --- |" + " ---: |" * len(GRAMMAR_OUTCOMES),
        "| the raw schema | "
        + " | ".join(_share(raw[kind], total) for kind in GRAMMAR_OUTCOMES[:-1])
        + " | — |",
        "| extractor's grammar schema (`bounded_schema` of `plain`) | "
        + " | ".join(_share(ours[kind], total) for kind in GRAMMAR_OUTCOMES)
        + " |",
    ]
    failing = [g for g in report.grammar if g.ours in (RAISES, PARSER_REFUSES)]
    if failing:
        lines += ["", "Extractor's grammar schema fails (raises: generated without a grammar; "
                  "parser refuses: the embedded model's process crashes):"]  # fmt: skip
        lines += [f"- `{g.name}`: {g.ours}: {g.detail} (the raw schema: {g.raw})" for g in failing]
    return "\n".join(lines)


def problem_list(report: Report, kind: str, rows: Iterable[str]) -> str:
    """A bullet list of the schemas that ended as ``kind`` in ``rows``, with the reason."""
    wanted = set(rows)
    found = [o for o in report.problems(kind) if o.row in wanted]
    return "\n".join(f"- `{o.name}`, `{o.row}`: {o.detail}" for o in found)


def rule_tally(report: Report, row: str) -> str:
    """How many of ``row``'s invalid schemas break each rule, most common first."""
    invalid = [o for o in report.problems("invalid") if o.row == row]
    tally = Counter(rule for o in invalid for rule in set(o.rules))
    if not tally:
        return ""
    basis = provider_rules.RULES
    rules = ", ".join(f"`{r}` ({basis[r].basis}) {n}" for r, n in tally.most_common())
    only = sum(o.conservative_only for o in invalid)
    return (
        f"{row}: {len(invalid)} invalid; {only} of them only by conservative rules. "
        f"Schemas per rule broken: {rules}."
    )


def ratio_line(report: Report) -> str:
    """Extractor's strict-ok share against pydantic-ai's, and auto's usable share."""
    ours, theirs = ok_share(report, "openai-strict"), ok_share(report, PYDANTIC_AI)
    auto = report.counts(AUTO)
    usable = _share(auto["ok"] + auto["fallback"], report.size)
    line = f"In `auto`, usable (ok or fallback): {usable} of {report.size}."
    if ours is not None and theirs is not None:
        ratio = f"{ours / theirs:.2f}" if theirs else "∞ (pydantic-ai has none ok)"
        line += (
            f" Strict-ok share: extractor {100 * ours:.1f}%, pydantic-ai {100 * theirs:.1f}%; "
            f"ratio extractor / pydantic-ai **{ratio}**."
        )
    elif ours is not None:
        line += f" Strict-ok share: extractor {100 * ours:.1f}%; pydantic-ai not measured."
    return line


def report_body(report: Report, title: str, grammar_version: str | None) -> str:
    """Every table and list of one report, under a ``###`` title."""
    pydantic_version = _version("pydantic-ai-slim")
    parts = [f"### {title}", outcome_table(report, pydantic_version), ratio_line(report)]
    if report.pydantic_ai_skipped:
        parts.append(f"pydantic-ai not measured: {report.pydantic_ai_skipped}")
    extractor_rows = ROWS
    for kind, heading in (("invalid", "Invalid"), ("crashed", "Crashed")):
        listed = problem_list(report, kind, extractor_rows)
        parts.append(f"{heading} in extractor's rows:\n{listed}" if listed else f"{heading}: none.")
    tallies = [rule_tally(report, row) for row in report.rows()]
    if any(tallies):
        parts.append("Invalid, by rule (one schema counted once per rule):")
        parts.append("\n".join(f"- {line}" for line in tallies if line))
    listed = problem_list(report, "crashed", [PYDANTIC_AI])
    if listed:
        parts.append(f"pydantic-ai crashed:\n{listed}")
    timing = timing_table(report)
    if timing:
        parts.append("Time per schema (best of the repeats; a fresh compile, no cache):")
        parts.append(timing)
    if report.grammar or report.grammar_skipped:
        parts.append(grammar_table(report, grammar_version))
    return "\n\n".join(parts)


def as_json(reports: dict[str, Report | None]) -> dict[str, Any]:
    """Every outcome of each report, with the full reasons, for the owner of a finding."""
    return {
        label: [vars(o) for o in report.outcomes]
        + [{"row": "grammar", **vars(outcome)} for outcome in report.grammar]
        for label, report in reports.items()
        if report is not None
    }


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


# --------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(
        description=(
            "Real-world JSON Schemas through every extractor dialect and auto: ok / fallback "
            "/ refused / invalid / crashed against the provider rules in tests/provider_rules.py, "
            "beside pydantic-ai's strict transformer; compile time per schema; llama.cpp's "
            "converter on the raw and the grammar schema. Prints tables and replaces the "
            "'## schemas' section of benchmarks/RESULTS.md."
        )
    )
    parser.add_argument("--corpus", type=Path, default=CORPUS, help="folder of .json schemas")
    parser.add_argument("--limit", type=int, default=None, help="only the first N corpus files")
    parser.add_argument(
        "--grammar-limit",
        type=int,
        default=None,
        help="run llama.cpp's converter on the first N schemas (default: all; 0: none)",
    )
    parser.add_argument(
        "--grammar-timeout", type=float, default=60.0, help="seconds per converter run"
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed compiles per schema (best)")
    parser.add_argument(
        "--generated", type=int, default=100, help="schemas drawn by the strategies"
    )
    parser.add_argument("--jobs", type=int, default=2, help="converter child processes at once")
    parser.add_argument("--no-pydantic-ai", action="store_true", help="leave pydantic-ai out")
    parser.add_argument(
        "--json", type=Path, default=None, help="also write every outcome, in full, to this file"
    )
    parser.add_argument("--no-write", action="store_true", help="print only, leave RESULTS.md")
    return parser.parse_args(argv)


def build_section(body: str, command: str, details: Sequence[str]) -> str:
    """The whole ``## schemas`` section of RESULTS.md."""
    header = section_header(SECTION, command, [*details, f"- Packages: {versions()}"])
    return "\n".join(header) + "\n" + body.rstrip() + "\n"


def versions() -> str:
    """Installed versions of the packages involved."""
    return package_versions(VERSIONED)


def _relative(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def main(argv: Sequence[str] | None = None) -> int:
    """Run over the corpus and the generated schemas, print, and update RESULTS.md."""
    args = parse_args(argv)
    corpus = load_corpus(args.corpus, args.limit)
    if not corpus:
        print(f"no .json schemas in {args.corpus}", file=sys.stderr)
        return 2

    def progress(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    started = time.perf_counter()
    report = measure(
        corpus,
        pydantic_ai=not args.no_pydantic_ai,
        grammar_limit=args.grammar_limit,
        grammar_timeout=args.grammar_timeout,
        repeats=args.repeats,
        jobs=args.jobs,
        progress=progress,
    )
    generated, generated_skipped = generated_schemas(args.generated)
    generated_report = None
    if generated:
        generated_report = measure(
            generated, pydantic_ai=not args.no_pydantic_ai, grammar_limit=0, repeats=0
        )
        generated_report.grammar_skipped = ""  # by design: the grammar runs on the corpus
    seconds = time.perf_counter() - started
    corpus_bytes = sum(len(json.dumps(schema)) for _, schema in corpus)
    where = _relative(args.corpus)
    grammar_version = llama_version()
    parts = [report_body(report, f"Corpus: {len(corpus)} schemas from `{where}`", grammar_version)]
    if generated_report is not None:
        title = f"Generated: {len(generated)} schemas from `tests/schema_strategies.py`"
        parts.append(report_body(generated_report, title, grammar_version))
    else:
        parts.append(f"Generated schemas not measured: {generated_skipped}")
    body = "\n\n".join(parts)
    if args.json is not None:
        reports = {"corpus": report, "generated": generated_report}
        args.json.write_text(json.dumps(as_json(reports), indent=1) + "\n")
    print()
    print(body)
    print(f"\n{seconds:.0f} s in all")
    extra = sys.argv[1:] if argv is None else list(argv)
    command = shlex.join(["python", "benchmarks/schemas.py", *extra])
    details = [
        f"- Corpus: {len(corpus)} schemas in `{where}` ({corpus_bytes / 1e6:.2f} MB as compact "
        f"JSON); {len(generated)} generated; the run took {seconds:.0f} s",
    ]
    if not args.no_write:
        write_section(SECTION, build_section(body, command, details))
        print(f"\nWrote the '## {SECTION}' section of {RESULTS_PATH.relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
