"""How much of the malformed-answer corpus each parser recovers, and how much it gets wrong.

Every case of ``tests/data/malformed_answers.jsonl`` (an answer as real chat models write
it, with the value it should give or the error it should raise) goes through:

* extractor: ``extractor._parse.load_answer`` with the case's schema (the first candidate
  the schema accepts wins), exactly as the client reads an answer;
* json-repair: ``json_repair.loads(text)``, then the case's schema;
* json-repair, schema-guided: ``json_repair.loads(text, schema=...)``, then the schema;
* instructor MD_JSON: ``instructor.utils.extract_json_from_codeblock(text)``, then
  Pydantic's JSON parser (what ``model_validate_json`` runs), then the case's schema.

Each outcome is one of: *recovered* (the expected value), *wrong* (a value that passed the
schema but is not the expected one, or any value where the case expects an error), or
*failed* (raised: the caller would reask). The goal: the most recovered, zero wrong.

It also times the fast path: strict JSON through ``load_answer`` against the strict
parser this replaced (``parse_json`` at ``--baseline-rev``) and bare ``json.loads``.

Run from the repository root with a Python that has json-repair and instructor:
``PYTHONPATH=$PWD /work/benchvenv/bin/python benchmarks/parsing.py``. The ``## parsing``
section of ``benchmarks/RESULTS.md`` is replaced unless ``--no-write`` is given.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shlex
import statistics
import subprocess
import sys
import time
import types
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
from results import (
    RESULTS_PATH,
    package_versions,
    section_header,
    write_section,
)

from extractor._errors import ExtractorError
from extractor._parse import load_answer

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # the corpus's own helpers live beside it, in tests/
    sys.path.insert(0, str(REPO_ROOT))
from tests.parsing import loader, same  # noqa: E402

CORPUS = REPO_ROOT / "tests" / "data" / "malformed_answers.jsonl"
SECTION = "parsing"
VERSIONED = ("extractor", "json-repair", "instructor", "pydantic", "pydantic-core")
#: The last commit with the strict-only parser (`parse_json`), for the fast-path timing.
BASELINE_REV = "4b4ea48"
DEFAULT_SCHEMA: dict[str, Any] = {"type": "object"}

Parser = Callable[[str, dict[str, Any]], Any]
#: What a parser raises when it gives up (json-repair and Pydantic raise ValueError kinds).
FAILURES = (ExtractorError, ValueError, jsonschema.ValidationError, RecursionError)


@dataclass
class Tool:
    """One parser under test and what it did with each case."""

    name: str
    parse: Parser | None  # None: not installed
    missing: str = ""
    recovered: list[str] = field(default_factory=list)
    wrong: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)


# --------------------------------------------------------------------------- the contenders


def validated(value: Any, schema: dict[str, Any]) -> Any:
    """The value, if it passes the case's schema (as the caller's model would check)."""
    jsonschema.validate(value, schema, cls=jsonschema.Draft202012Validator)
    return value


def extractor_parse(text: str, schema: dict[str, Any]) -> Any:
    return load_answer(text, loader(schema))[0]


def build_tools() -> list[Tool]:
    tools = [Tool("extractor", extractor_parse)]
    try:
        import json_repair
    except ImportError:
        tools.append(Tool("json-repair", None, missing="pip install json-repair"))
        tools.append(Tool("json-repair, schema-guided", None, missing="pip install json-repair"))
    else:

        def repair(text: str, schema: dict[str, Any]) -> Any:
            return validated(json_repair.loads(text), schema)

        def repair_guided(text: str, schema: dict[str, Any]) -> Any:
            return validated(json_repair.loads(text, schema=schema), schema)

        tools.append(Tool("json-repair", repair))
        tools.append(Tool("json-repair, schema-guided", repair_guided))
    try:
        from instructor.utils import extract_json_from_codeblock
        from pydantic import TypeAdapter
    except ImportError:
        tools.append(Tool("instructor MD_JSON", None, missing="pip install instructor"))
    else:
        any_json: TypeAdapter[Any] = TypeAdapter(Any)

        def md_json(text: str, schema: dict[str, Any]) -> Any:
            # instructor's MD_JSON handler: pull the JSON out, then model_validate_json
            return validated(any_json.validate_json(extract_json_from_codeblock(text)), schema)

        tools.append(Tool("instructor MD_JSON", md_json))
    return tools


# --------------------------------------------------------------------------- scoring


def score(tool: Tool, cases: list[dict[str, Any]], repeats: int) -> None:
    assert tool.parse is not None
    for case in cases:
        schema = case.get("schema", DEFAULT_SCHEMA)
        try:
            value = tool.parse(case["text"], schema)
        except FAILURES:
            # raising is right where the case expects an error (cut off, ambiguous)
            (tool.recovered if "error" in case else tool.failed).append(case["id"])
            continue
        if "expect" in case and same(value, case["expect"]):
            tool.recovered.append(case["id"])
        else:
            tool.wrong.append(case["id"])
    for _ in range(repeats):
        start = time.perf_counter()
        for case in cases:
            with contextlib.suppress(*FAILURES):
                tool.parse(case["text"], case.get("schema", DEFAULT_SCHEMA))
        tool.seconds.append(time.perf_counter() - start)


# --------------------------------------------------------------------------- fast path


def baseline_parse_json(rev: str) -> Callable[[str], Any] | None:
    """`parse_json` as it was at `rev` (the strict parser), or None where git can't tell."""
    try:
        source = subprocess.run(
            ["git", "show", f"{rev}:extractor/parse.py"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    module = types.ModuleType("baseline_parse")
    exec(compile(source, f"{rev}:extractor/parse.py", "exec"), module.__dict__)
    parse: Callable[[str], Any] = module.parse_json
    return parse


def large_answer() -> str:
    """A strict answer of about 40 kB: an invoice with 300 line items."""
    lines = [
        {
            "sku": f"SKU-{i:04d}",
            "description": f"Item {i}, blue",
            "qty": i % 7 + 1,
            "price": i * 1.25,
        }
        for i in range(300)
    ]
    return json.dumps({"number": "INV-1", "vendor": "Studio Brandt", "lines": lines}, indent=2)


def time_per_call(parse: Callable[[str], Any], texts: list[str], repeats: int) -> float:
    """Median µs per text over `repeats` passes."""
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        for text in texts:
            parse(text)
        runs.append((time.perf_counter() - start) / len(texts))
    return statistics.median(runs) * 1e6


def fast_path_table(cases: list[dict[str, Any]], rev: str, repeats: int) -> str:
    def identity(data: Any) -> Any:
        return data

    strict = [case["text"] for case in cases if case["kind"] == "strict"]
    contenders: list[tuple[str, Callable[[str], Any]]] = [
        ("json.loads", json.loads),
        (f"strict parse_json ({rev})", baseline_parse_json(rev) or (lambda text: None)),
        ("extractor load_answer", lambda text: load_answer(text, identity)),
    ]
    if baseline_parse_json(rev) is None:
        contenders.pop(1)
    rows = [
        "| parser | strict corpus answers (µs/answer) | one 40 kB strict answer (µs) |",
        "| --- | ---: | ---: |",
    ]
    big = [large_answer()]
    for name, parse in contenders:
        small = time_per_call(parse, strict, repeats * 20)
        large = time_per_call(parse, big, repeats)
        rows.append(f"| {name} | {small:,.1f} | {large:,.1f} |")
    return "\n".join(rows)


# --------------------------------------------------------------------------- report


def results_table(tools: list[Tool], total: int, expecting_errors: int) -> str:
    rows = [
        f"| parser | recovered (of {total}) | wrong value | failed (raised) | µs/answer |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for tool in tools:
        if tool.parse is None:
            rows.append(f"| {tool.name} | not measured ({tool.missing}) | | | |")
            continue
        share = len(tool.recovered) / total
        wrong = len(tool.wrong) / total
        per_answer = statistics.median(tool.seconds) / total * 1e6 if tool.seconds else 0.0
        mark = " ✅" if not tool.wrong else ""
        rows.append(
            f"| {tool.name} | {len(tool.recovered)} ({share:.1%}) | {len(tool.wrong)} "
            f"({wrong:.1%}){mark} | {len(tool.failed)} | {per_answer:,.1f} |"
        )
    note = (
        f"Recovered counts a case expecting an error ({expecting_errors} of {total}: cut-off "
        "or ambiguous answers) when the parser raised; wrong counts a value that passed the "
        "case's schema but differs from the expected one, or any value where an error was "
        "expected (a cut-off answer completed, a guess)."
    )
    caveats = (
        "The corpus was written by hand for extractor's parser, so read these figures as "
        "what each tool does with these habits of chat models, not as a neutral ranking. "
        "`two-objects-first-valid` follows the rule extractor implements (the first value "
        "the schema accepts wins); instructor takes the last JSON value on purpose (a defence "
        "against JSON quoted from the prompt), and json-repair keeps the last too."
    )
    return "\n".join(rows) + "\n\n" + note + "\n\n" + caveats


def wrong_lists(tools: list[Tool]) -> str:
    lines = []
    for tool in tools:
        if tool.parse is not None and tool.wrong:
            lines.append(f"- {tool.name}: {', '.join(f'`{i}`' for i in tool.wrong)}")
    if not lines:
        return ""
    return "Cases with a wrong value:\n\n" + "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=20, help="timed passes over the corpus")
    parser.add_argument("--baseline-rev", default=BASELINE_REV, help="commit of the old parser")
    parser.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    cases = [json.loads(line) for line in CORPUS.read_text().splitlines() if line.strip()]
    tools = build_tools()
    for tool in tools:
        if tool.parse is not None:
            score(tool, cases, args.repeats)
    expecting_errors = sum("error" in case for case in cases)
    body = "\n\n".join(
        part
        for part in (
            f"### Malformed-answer corpus ({len(cases)} cases, `{CORPUS.relative_to(REPO_ROOT)}`)",
            results_table(tools, len(cases), expecting_errors),
            wrong_lists(tools),
            "### Fast path: strict JSON (median; parse only, no schema)",
            fast_path_table(cases, args.baseline_rev, args.repeats),
        )
        if part
    )
    print(body)
    extra = sys.argv[1:] if argv is None else list(argv)
    command = "PYTHONPATH=$PWD " + shlex.join(["python", "benchmarks/parsing.py", *extra])
    if not args.no_write:
        header = section_header(SECTION, command, [f"- Packages: {package_versions(VERSIONED)}"])
        write_section(SECTION, "\n".join(header) + "\n" + body.rstrip() + "\n")
        print(f"\nWrote the '## {SECTION}' section of {RESULTS_PATH.relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
