"""Measure the overhead extractor adds on top of the HTTP call, and its import time.

Part A times one structured extraction end to end against ``httpx.MockTransport`` (no
network, the same canned answer for everyone, the same Pydantic model) for:

* extractor, ``mode="tools"`` and ``mode="json_schema"``;
* instructor, ``Mode.TOOLS`` and ``Mode.JSON_SCHEMA`` on top of the OpenAI SDK;
* the OpenAI SDK by hand plus ``Contact.model_validate_json`` (what a user would write);
* plain ``httpx.Client.post`` plus ``Contact.model_validate_json`` (the floor).

Part B times ``python -c "import ..."`` as fresh processes.

Run from the repository root: ``python benchmarks/overhead.py`` (``--help`` for options).
The ``## overhead`` section of ``benchmarks/RESULTS.md`` is replaced with the results unless
``--no-write`` is given.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import json
import re
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
from pydantic import BaseModel, Field
from results import (
    RESULTS_PATH,
    package_versions,
    section_header,
    write_section,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
SECTION = "overhead"

MODES = ("tools", "json_schema")
RATIO_GOAL = 0.25
IMPORT_GOAL_MS = 150.0
VERSIONED = ("extractor", "instructor", "openai", "httpx", "httpx2", "pydantic", "pydantic-core")

API_URL = "https://api.openai.com/v1/chat/completions"
API_KEY = "sk-bench"
MODEL = "gpt-4o-mini"
TEXT = (
    "Thanks for coming to the meetup last night. Ann Lee, who is 41, ran the session on "
    "structured outputs; she said anyone with questions can write to her at ann@example.com. "
    "Slides will be shared next week."
)
SYSTEM_PROMPT = "Extract the contact described in the user's text."
ANSWER: dict[str, Any] = {"name": "Ann Lee", "email": "ann@example.com", "age": 41}


class Contact(BaseModel):
    """The model every contender extracts."""

    name: str
    email: str | None = None
    age: int | None = Field(default=None, ge=0, le=150)


EXPECTED = Contact(**ANSWER)


# --------------------------------------------------------------------------- mock server


def _completion_bytes(message: dict[str, Any], finish_reason: str) -> bytes:
    """Serialise a complete ``chat.completion`` object holding ``message``."""
    completion = {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": MODEL,
        "choices": [
            {"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason}
        ],
        "usage": {"prompt_tokens": 90, "completion_tokens": 20, "total_tokens": 110},
    }
    return json.dumps(completion).encode()


def _tool_call_bytes(tool_name: str) -> bytes:
    """A completion whose only tool call, named ``tool_name``, carries the answer."""
    call = {
        "id": "call_bench",
        "type": "function",
        "function": {"name": tool_name, "arguments": json.dumps(ANSWER)},
    }
    message = {"role": "assistant", "content": None, "refusal": None, "tool_calls": [call]}
    return _completion_bytes(message, "tool_calls")


class CannedLLM:
    """``MockTransport`` handler that answers every chat completion with the same contact.

    Requests carrying ``tools`` get a tool call named after ``tools[0].function.name``; any
    other request gets the answer as ``message.content``. Answers are cached by request body,
    so in the timed loop the handler costs a dict lookup and a ``Response`` construction.
    """

    _CACHE_LIMIT = 64

    def __init__(self) -> None:
        content_message = {"role": "assistant", "content": json.dumps(ANSWER), "refusal": None}
        self._content_answer = _completion_bytes(content_message, "stop")
        self._by_body: dict[bytes, bytes] = {}
        self.requests = 0
        self.last_body: dict[str, Any] = {}

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        body = request.read()
        answer = self._by_body.get(body)
        if answer is None:
            answer = self._answer_for(body)
        return httpx.Response(200, headers={"content-type": "application/json"}, content=answer)

    def _answer_for(self, body: bytes) -> bytes:
        """Build (and cache) the answer for a request body not seen before."""
        self.last_body = json.loads(body)
        tools = self.last_body.get("tools")
        answer = _tool_call_bytes(tools[0]["function"]["name"]) if tools else self._content_answer
        if len(self._by_body) < self._CACHE_LIMIT:
            self._by_body[body] = answer
        return answer


# --------------------------------------------------------------------------- contenders

Call = Callable[[], BaseModel]


@dataclass
class Contender:
    """One way of extracting a ``Contact``, in one mode."""

    name: str
    mode: str
    call: Call | None = None
    skipped: str = ""
    timings: list[float] = field(default_factory=list)

    @property
    def median_us(self) -> float | None:
        """Median seconds-per-call over the repeats, in microseconds."""
        return statistics.median(self.timings) * 1e6 if self.timings else None


def _optional_import(name: str) -> tuple[ModuleType | None, str]:
    """Import ``name``; on failure return ``None`` and a one-line reason."""
    try:
        return importlib.import_module(name), ""
    except ImportError as exc:
        return None, f"{name} not importable ({exc})"


def _import_extractor() -> tuple[ModuleType | None, str]:
    """Import the extractor in this checkout (falling back to whatever is installed)."""
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    return _optional_import("extractor")


def _tool_spec() -> dict[str, Any]:
    """The function tool a careful user would send by hand (schema built once)."""
    return {
        "type": "function",
        "function": {
            "name": "Contact",
            "description": "Record the contact found in the text.",
            "parameters": Contact.model_json_schema(),
        },
    }


def _request_extras(mode: str) -> dict[str, Any]:
    """Request fields for a hand-written call in ``mode``: a forced tool or a JSON schema."""
    if mode == "tools":
        return {
            "tools": [_tool_spec()],
            "tool_choice": {"type": "function", "function": {"name": "Contact"}},
        }
    schema = {"name": "Contact", "schema": Contact.model_json_schema()}
    return {"response_format": {"type": "json_schema", "json_schema": schema}}


def _messages() -> list[dict[str, str]]:
    """The chat messages the hand-written and instructor contenders send."""
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": TEXT},
    ]


def extractor_contenders(handler: CannedLLM) -> list[Contender]:
    """extractor's ``Client.extract`` in both modes, sharing one client."""
    module, reason = _import_extractor()
    if module is None:
        return [Contender("extractor", mode, skipped=reason) for mode in MODES]
    client = module.Client(
        model=f"openai/{MODEL}", api_key=API_KEY, transport=httpx.MockTransport(handler)
    )

    def make(mode: str) -> Call:
        return lambda: client.extract(Contact, TEXT, mode=mode)

    return [Contender("extractor", mode, make(mode)) for mode in MODES]


def instructor_contenders(handler: CannedLLM) -> list[Contender]:
    """instructor's patched OpenAI client in TOOLS and JSON_SCHEMA modes (default retries)."""
    instructor, reason = _optional_import("instructor")
    openai, reason_openai = _optional_import("openai")
    if instructor is None or openai is None:
        return [Contender("instructor", mode, skipped=reason or reason_openai) for mode in MODES]
    modes = {"tools": instructor.Mode.TOOLS, "json_schema": instructor.Mode.JSON_SCHEMA}

    def make(mode: str) -> Call:
        http_client = httpx.Client(transport=httpx.MockTransport(handler))
        sdk = openai.OpenAI(api_key=API_KEY, http_client=http_client)
        client = instructor.from_openai(sdk, mode=modes[mode])
        messages = _messages()
        return lambda: client.chat.completions.create(
            model=MODEL, response_model=Contact, messages=messages
        )

    return [Contender("instructor", mode, make(mode)) for mode in MODES]


def openai_sdk_contenders(handler: CannedLLM) -> list[Contender]:
    """The OpenAI SDK by hand, then ``Contact.model_validate_json`` on the returned JSON."""
    openai, reason = _optional_import("openai")
    if openai is None:
        return [Contender("openai SDK + pydantic", mode, skipped=reason) for mode in MODES]
    http_client = httpx.Client(transport=httpx.MockTransport(handler))
    sdk = openai.OpenAI(api_key=API_KEY, http_client=http_client)
    messages = _messages()

    def make(mode: str) -> Call:
        extras = _request_extras(mode)

        def call() -> BaseModel:
            completion = sdk.chat.completions.create(model=MODEL, messages=messages, **extras)
            message = completion.choices[0].message
            if mode == "tools":
                return Contact.model_validate_json(message.tool_calls[0].function.arguments)
            return Contact.model_validate_json(message.content)

        return call

    return [Contender("openai SDK + pydantic", mode, make(mode)) for mode in MODES]


def httpx_contenders(handler: CannedLLM) -> list[Contender]:
    """The floor: ``httpx.Client.post`` with a prebuilt payload, then Pydantic validation."""
    client = httpx.Client(
        transport=httpx.MockTransport(handler), headers={"Authorization": f"Bearer {API_KEY}"}
    )

    def make(mode: str) -> Call:
        payload = {"model": MODEL, "messages": _messages(), **_request_extras(mode)}

        def call() -> BaseModel:
            response = client.post(API_URL, json=payload)
            response.raise_for_status()
            message = response.json()["choices"][0]["message"]
            if mode == "tools":
                arguments = message["tool_calls"][0]["function"]["arguments"]
                return Contact.model_validate_json(arguments)
            return Contact.model_validate_json(message["content"])

        return call

    return [Contender("httpx + pydantic", mode, make(mode)) for mode in MODES]


def build_contenders(handler: CannedLLM) -> list[Contender]:
    """Every contender, in table order."""
    builders = (extractor_contenders, instructor_contenders, openai_sdk_contenders)
    contenders = [c for build in builders for c in _safe_build(build, handler)]
    return contenders + httpx_contenders(handler)


def _safe_build(
    build: Callable[[CannedLLM], list[Contender]], handler: CannedLLM
) -> list[Contender]:
    """Run a builder; if it raises (an API mismatch, say), mark its rows as not measured."""
    try:
        return build(handler)
    except Exception as exc:
        name = build.__name__.removesuffix("_contenders")
        return [Contender(name, mode, skipped=f"setup failed: {exc!r}") for mode in MODES]


# --------------------------------------------------------------------------- timing


def verify(contender: Contender, handler: CannedLLM) -> None:
    """Check one call returns the expected contact with exactly one HTTP request."""
    assert contender.call is not None
    before = handler.requests
    try:
        result = contender.call()
    except Exception as exc:
        contender.call, contender.skipped = None, f"call failed: {exc!r}"
        return
    requests = handler.requests - before
    # Compare by type and fields: instructor returns an instance of a subclass it builds.
    if not isinstance(result, Contact) or result.model_dump() != EXPECTED.model_dump():
        contender.call, contender.skipped = None, f"wrong result: {result!r}"
    elif requests != 1:
        contender.call, contender.skipped = None, f"{requests} HTTP requests for one call"


def _time_block(call: Call, calls: int) -> float:
    """Seconds per call over ``calls`` back-to-back calls."""
    gc.collect()
    start = time.perf_counter()
    for _ in range(calls):
        call()
    return (time.perf_counter() - start) / calls


def run_overhead(contenders: Sequence[Contender], calls: int, warmup: int, repeats: int) -> None:
    """Warm every live contender up, then time ``repeats`` rounds, interleaving contenders."""
    live = [c for c in contenders if c.call is not None]
    for contender in live:
        assert contender.call is not None
        for _ in range(warmup):
            contender.call()
    for _ in range(repeats):
        for contender in live:
            assert contender.call is not None
            contender.timings.append(_time_block(contender.call, calls))


# --------------------------------------------------------------------------- import time

# Both libraries defer imports: extractor loads httpx on the first call, instructor loads
# its submodules on first attribute access. The second row of each counts that too.
IMPORT_CASES = (
    ("extractor", "import extractor"),
    ("extractor", "import extractor, httpx"),
    ("instructor", "import instructor, openai"),
    ("instructor", "import instructor, openai; instructor.from_openai, instructor.Mode"),
    ("bare interpreter", "pass"),
)


@dataclass
class ImportResult:
    """Wall-clock of fresh ``python -c`` processes for one statement."""

    label: str
    statement: str
    times_ms: list[float] = field(default_factory=list)
    error: str = ""

    @property
    def median_ms(self) -> float | None:
        """Median wall-clock in milliseconds, if measured."""
        return statistics.median(self.times_ms) if self.times_ms else None


def _run_python(statement: str, *flags: str) -> subprocess.CompletedProcess[str]:
    """Run ``python [flags] -c statement`` from the repository root."""
    return subprocess.run(
        [sys.executable, *flags, "-c", statement],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )


def time_import(label: str, statement: str, runs: int) -> ImportResult:
    """Time ``runs`` fresh interpreters running ``statement`` (after one untimed run)."""
    result = ImportResult(label, statement)
    first = _run_python(statement)  # also writes any missing .pyc files
    if first.returncode != 0:
        result.error = first.stderr.strip().splitlines()[-1] if first.stderr else "failed"
        return result
    for _ in range(runs):
        start = time.perf_counter()
        _run_python(statement)
        result.times_ms.append((time.perf_counter() - start) * 1e3)
    return result


def _importtime_rows(statement: str) -> list[tuple[int, int, str]]:
    """(self µs, cumulative µs, module) for each module ``python -X importtime`` reports."""
    pattern = re.compile(r"import time:\s+(\d+)\s+\|\s+(\d+)\s+\|\s*(\S+)$")
    log = _run_python(statement, "-X", "importtime").stderr
    matches = (pattern.search(line) for line in log.splitlines())
    return [(int(m.group(1)), int(m.group(2)), m.group(3)) for m in matches if m]


def import_hotspots(statement: str, package: str, top: int) -> str:
    """One line: what ``statement`` imports beyond interpreter startup, and the slowest parts.

    Modules of ``package`` itself are left out of the slowest list; each other top-level
    package is shown once, by its costliest entry (cumulative time, as importtime reports it).
    """
    startup = {name for _, _, name in _importtime_rows("pass")}
    rows = [row for row in _importtime_rows(statement) if row[2] not in startup]
    if not rows:
        return f"{statement}: no importtime data"
    total_ms = sum(own for own, _, _ in rows) / 1e3
    own_ms = sum(own for own, _, name in rows if name.split(".")[0] == package) / 1e3
    seen = {package}
    slowest: list[str] = []
    for _, cumulative, name in sorted(rows, key=lambda row: row[1], reverse=True):
        if name.split(".")[0] not in seen:
            seen.add(name.split(".")[0])
            slowest.append(f"{name} {cumulative / 1e3:.1f} ms")
    return (
        f"{statement!r}: {len(rows)} modules, {total_ms:.1f} ms in all "
        f"({package}'s own modules {own_ms:.1f} ms); slowest: {', '.join(slowest[:top])}"
    )


# --------------------------------------------------------------------------- reporting


def _fmt(value: float | None, digits: int = 1) -> str:
    """Format a number, or mark it as not measured."""
    return "not measured" if value is None else f"{value:,.{digits}f}"


def overhead_table(contenders: Sequence[Contender]) -> str:
    """Markdown table: one row per library, one column per mode (median µs per call)."""
    names = list(dict.fromkeys(c.name for c in contenders))
    by_key = {(c.name, c.mode): c for c in contenders}
    lines = ["| contender | tools (µs/call) | json_schema (µs/call) |", "| --- | ---: | ---: |"]
    for name in names:
        cells = [_fmt(by_key[(name, mode)].median_us) for mode in MODES]
        lines.append(f"| {name} | {' | '.join(cells)} |")
    return "\n".join(lines)


def _ratio(numerator: Contender, denominator: Contender) -> float | None:
    """``numerator / denominator`` of the medians, if both were measured."""
    top, bottom = numerator.median_us, denominator.median_us
    return None if top is None or bottom is None else top / bottom


def ratio_table(contenders: Sequence[Contender]) -> str:
    """Markdown table of extractor/instructor (against the goal) and extractor/httpx."""
    by_key = {(c.name, c.mode): c for c in contenders}
    lines = [
        f"| mode | extractor / instructor (goal ≤ {RATIO_GOAL}) | extractor / httpx floor |",
        "| --- | ---: | ---: |",
    ]
    for mode in MODES:
        extractor = by_key[("extractor", mode)]
        vs_instructor = _ratio(extractor, by_key[("instructor", mode)])
        vs_floor = _ratio(extractor, by_key[("httpx + pydantic", mode)])
        verdict = "" if vs_instructor is None else (" ✅" if vs_instructor <= RATIO_GOAL else " ❌")
        lines.append(f"| {mode} | {_fmt(vs_instructor, 3)}{verdict} | {_fmt(vs_floor, 2)} |")
    return "\n".join(lines)


def import_table(results: Sequence[ImportResult]) -> str:
    """Markdown table of median import wall-clock per statement."""
    bare = next((r.median_ms for r in results if r.statement == "pass"), None)
    lines = [
        "| process | median wall-clock (ms) | min (ms) | median minus `pass` (ms) |",
        "| --- | ---: | ---: | ---: |",
    ]
    for result in results:
        median = _fmt(result.median_ms)
        if result.label == "extractor" and result.median_ms is not None:
            ok = result.median_ms < IMPORT_GOAL_MS
            median += " ✅" if ok else f" ❌ (goal < {IMPORT_GOAL_MS:g})"
        low = min(result.times_ms) if result.times_ms else None
        net = None if result.median_ms is None or bare is None else result.median_ms - bare
        cells = f"{median} | {_fmt(low)} | {_fmt(net)}"
        lines.append(f'| `python -c "{result.statement}"` | {cells} |')
    return "\n".join(lines)


def skipped_notes(contenders: Sequence[Contender], imports: Sequence[ImportResult]) -> str:
    """Bullet list of every row that was not measured, with the reason."""
    notes = [f"- {c.name} ({c.mode}): {c.skipped}" for c in contenders if c.skipped]
    notes += [f"- `{r.statement}`: {r.error}" for r in imports if r.error]
    return "Not measured:\n" + "\n".join(notes) if notes else ""


def versions() -> str:
    """Installed versions of the packages involved."""
    return package_versions(VERSIONED)


def build_section(body: str, command: str) -> str:
    """The whole ``## overhead`` section of RESULTS.md."""
    header = section_header(SECTION, command, [f"- Packages: {versions()}"])
    return "\n".join(header) + "\n" + body.rstrip() + "\n"


# --------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(
        description=(
            "Per-call overhead of extractor vs instructor vs the OpenAI SDK by hand vs plain "
            "httpx (all against httpx.MockTransport, no network, same canned answer and "
            "Pydantic model), and import time of `import extractor` vs `import instructor, "
            "openai` vs a bare interpreter as fresh processes. Prints tables and replaces "
            "the '## overhead' section of benchmarks/RESULTS.md."
        )
    )
    parser.add_argument("--calls", type=int, default=3000, help="timed calls per repeat")
    parser.add_argument("--warmup", type=int, default=200, help="untimed calls first")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats (median taken)")
    parser.add_argument("--import-runs", type=int, default=15, help="fresh processes per import")
    parser.add_argument("--no-write", action="store_true", help="print only, leave RESULTS.md")
    return parser.parse_args(argv)


def measure_overhead(args: argparse.Namespace) -> list[Contender]:
    """Part A: build, verify and time every contender."""
    handler = CannedLLM()
    contenders = build_contenders(handler)
    for contender in contenders:
        if contender.call is not None:
            verify(contender, handler)
    print(f"Timing {args.repeats} x {args.calls} calls per contender...", flush=True)
    run_overhead(contenders, args.calls, args.warmup, args.repeats)
    return contenders


def measure_imports(runs: int) -> list[ImportResult]:
    """Part B: fresh-process import times."""
    print(f"Timing imports, {runs} fresh processes each...", flush=True)
    return [time_import(label, statement, runs) for label, statement in IMPORT_CASES]


def main(argv: Sequence[str] | None = None) -> int:
    """Run both parts, print the tables, and update RESULTS.md unless ``--no-write``."""
    args = parse_args(argv)
    contenders = measure_overhead(args)
    imports = measure_imports(args.import_runs)
    body = "\n\n".join(
        part
        for part in (
            f"### Time per extraction (median of {args.repeats} x {args.calls} calls)",
            overhead_table(contenders),
            ratio_table(contenders),
            f"### Import time (median of {args.import_runs} fresh processes)",
            import_table(imports),
            skipped_notes(contenders, imports),
        )
        if part
    )
    print()
    print(body)
    if imports[0].times_ms:
        print("\n-X importtime: " + import_hotspots("import extractor", "extractor", top=3))
    extra = sys.argv[1:] if argv is None else list(argv)
    command = shlex.join(["python", "benchmarks/overhead.py", *extra])
    if not args.no_write:
        write_section(SECTION, build_section(body, command))
        print(f"\nWrote the '## {SECTION}' section of {RESULTS_PATH.relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
