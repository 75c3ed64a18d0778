"""Golden wire bodies: the exact bytes each public call sends, for every mode and preset.

A fixed list of calls (`CASES`) goes through the public API (`Client.extract`,
`aextract`, `stream`, `astream`, `stream_items`, `extract_many`, `aextract_many`, an
`@extractable` class) to a real loopback `ChatServer`; what the server received is kept
as text, byte for byte: the path, the content type and the body. `tests/data/wire_golden.json`
holds what the code sent when it was recorded, and `tests/test_wire_golden.py` replays
the cases and fails on any changed byte, so a refactor can prove the wire unchanged.

    python -m tests.wire_golden --write   # record the golden file from the code as it is
    python -m tests.wire_golden           # compare, print each difference, exit 1 if any

Every answer is scripted here, ids included (`call_golden_1`, ...), and never built by
`ChatServer`, so the bodies depend on nothing but the client: not on ports, timing or
the test server's own answer format. Each request is keyed `case name#n`, n counting
the case's requests from 1. No case lets `auto` settle on a fallback mode (each
fallback chain ends rejected), so the client's memory of rejected modes never carries
from one case, or one run in the same process, to the next.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import sys
import warnings
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from extractor import (
    APIStatusError,
    Client,
    RetryPolicy,
    WorkedExample,
    extractable,
    worked_examples,
)
from extractor.testing import ChatServer, Item, Raw, RecordedRequest

GOLDEN = Path(__file__).parent / "data" / "wire_golden.json"

#: Every provider preset that speaks HTTP (`local` runs in process). A test checks this
#: against `extractor.PROVIDERS`, so a new preset fails until it is added here.
PRESETS = ("openai", "openrouter", "mistral", "ollama", "vllm", "llamacpp")
#: Presets whose key comes from the environment: they get the fake key and send it.
KEYED = frozenset({"openai", "openrouter", "mistral"})
KEY = "sk-golden"
MODEL = "golden-model"
MODES = ("json_schema", "tools", "json_object", "prompt")

#: Every request parameter with a value of its own; Mistral's temperature tops out at 1.5.
PARAMS: Mapping[str, Any] = {
    "temperature": 0.2,
    "top_p": 0.9,
    "seed": 7,
    "max_completion_tokens": 300,
    "stop": ["\n\n", "END"],
    "frequency_penalty": 0.5,
    "presence_penalty": -0.5,
}

# Non-ASCII text on purpose: bodies go out as UTF-8, not as \u escapes.
DOCUMENT = "Order 17 — buyer: Ann Lee, 41, of Zürich (Schweiz).\nSeller: Bo Chan."
INSTRUCTIONS = "  Names are written as the document prints them; ages in whole years.  "


class Address(BaseModel):
    city: str
    country: str | None = None


class Person(BaseModel):
    """A person named in the document."""

    name: str = Field(description="Full name, as written")
    age: int | None = Field(default=None, ge=0)
    role: Literal["buyer", "seller"] | None = None
    address: Address | None = None


@worked_examples(
    WorkedExample("Regards,\nAnn Lee\nann@example.com", {"name": "Ann Lee", "email": "ann@x.ch"}),
    WorkedExample("-- Raj (raj@example.net) ✉", {"name": "Raj", "email": "raj@example.net"}),
)
class Sender(BaseModel):
    """Who wrote the message."""

    name: str = Field(description="The sender's name")
    email: str | None = None


@extractable(model=f"openai/{MODEL}", mode="json_schema", temperature=0, max_retries=1)
class Note(BaseModel):
    """A short note."""

    text: str


INVOICE: Mapping[str, Any] = {
    "title": "Invoice",
    "description": "An invoice's number and total.",
    "type": "object",
    "properties": {
        "number": {"type": "string", "description": "As printed, e.g. A-17"},
        "total": {"type": "number", "minimum": 0},
        "lines": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"item": {"type": "string"}, "qty": {"type": "integer"}},
                "required": ["item"],
            },
        },
    },
    "required": ["number", "total"],
}

EXAMPLES = (
    WorkedExample("Bo, 30, sells.", Person(name="Bo", age=30, role="seller")),
    WorkedExample("Ann (Zürich)", {"name": "Ann", "address": {"city": "Zürich"}}),
)

PERSON = '{"name": "Ann Lee", "age": 41, "role": "buyer", "address": {"city": "Zürich"}}'
PEOPLE = '{"items": [{"name": "Ann Lee", "role": "buyer"}, {"name": "Bo Chan", "role": "seller"}]}'
INVALID = '{"name": "Ann Lee", "age": "forty-one", "role": "client"}'
INVALID_PEOPLE = '{"items": [{"name": "Ann Lee"}, {"role": "seller"}]}'
CUT = '{"name": "Ann Lee", "age": 4'
INVOICE_ANSWER = '{"number": "A-17", "total": 12.5, "lines": [{"item": "tea", "qty": 2}]}'
SENDER = '{"name": "Bo Chan", "email": null}'
NOTE = '{"text": "See you Tuesday"}'

USAGE: Mapping[str, int] = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}


# ---------------------------------------------------------------------------
# Scripted answers
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    """What the model answers one request, shaped when it arrives: a tool call if the
    request forces one, server-sent events if it streams."""

    text: str
    finish: str = "stop"


@dataclass(frozen=True)
class Reject:
    """An error response, such as a server refusing a mode."""

    status: int
    message: str = "golden: this server does not support the request's response_format"


def _render(reply: Reply | Reject, n: int, request: RecordedRequest) -> Item:
    """The response to the case's `n`th request, every id fixed by `n`."""
    if isinstance(reply, Reject):
        error = {"message": reply.message, "type": "invalid_request_error", "code": None}
        return Raw(json.dumps({"error": error}), status=reply.status)
    body = request.body or {}
    model = body.get("model")
    call = None
    if "tool_choice" in body:
        choice = body["tool_choice"]
        forced = choice.get("function", {}).get("name") if isinstance(choice, dict) else None
        name = forced or body["tools"][-1]["function"]["name"]
        call = {"id": f"call_golden_{n}", "type": "function", "name": name}
    head = {"id": f"chatcmpl-golden-{n}", "created": 1700000000 + n, "model": model}
    if body.get("stream") is True:
        return Raw(_events(reply, head, call, body), content_type="text/event-stream")
    message: dict[str, Any] = {"role": "assistant", "content": reply.text}
    if call is not None:
        function = {"name": call["name"], "arguments": reply.text}
        message = {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": call["id"], "type": "function", "function": function}],
        }
    completion = {
        **head,
        "object": "chat.completion",
        "choices": [{"index": 0, "message": message, "finish_reason": reply.finish}],
        "usage": dict(USAGE),
    }
    return Raw(json.dumps(completion, ensure_ascii=False))


def _events(
    reply: Reply, head: dict[str, Any], call: dict[str, Any] | None, body: dict[str, Any]
) -> str:
    """A streamed answer: a first delta, the text in pieces of 9, the finish, usage, done."""
    pieces = [reply.text[i : i + 9] for i in range(0, len(reply.text), 9)]
    if call is None:
        first: dict[str, Any] = {"role": "assistant", "content": ""}
        deltas: list[dict[str, Any]] = [{"content": piece} for piece in pieces]
    else:
        tool = {"index": 0, "id": call["id"], "type": "function"}
        first = {"role": "assistant", "tool_calls": [{**tool, "function": {"name": call["name"]}}]}
        deltas = [
            {"tool_calls": [{"index": 0, "function": {"arguments": piece}}]} for piece in pieces
        ]
    base = {**head, "object": "chat.completion.chunk"}
    chunks = [
        {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}
        for delta in (first, *deltas)
    ]
    chunks.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": reply.finish}]})
    if (body.get("stream_options") or {}).get("include_usage") is True:
        chunks.append({**base, "choices": [], "usage": dict(USAGE)})
    lines = [f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n" for chunk in chunks]
    return "".join(lines) + "data: [DONE]\n\n"


# ---------------------------------------------------------------------------
# Cases
# ---------------------------------------------------------------------------

Call = Literal[
    "extract",
    "aextract",
    "stream",
    "astream",
    "stream_items",
    "extract_many",
    "aextract_many",
    "extractable",
]


@dataclass(frozen=True)
class Case:
    """One public call with its scripted answers; its requests are the golden bodies."""

    name: str
    preset: str
    call: Call
    target: Any
    replies: tuple[Reply | Reject, ...]
    options: Mapping[str, Any] = field(default_factory=dict)
    #: Defaults given to the `Client` rather than to the call.
    client_options: Mapping[str, Any] = field(default_factory=dict)
    #: Served to every request once `replies` run out (a server that keeps refusing).
    otherwise: Reject | None = None
    #: The error the call ends with, when it is meant to fail.
    raises: type[Exception] | None = None
    #: A warning the call must give (and that is not raised as an error).
    warns: type[Warning] | None = None


def _mode_cases(preset: str, mode: str) -> list[Case]:
    """One preset and one explicit mode, with each target, option and reask path."""
    at = f"{preset}/{mode}"
    on: dict[str, Any] = {"mode": mode}
    return [
        Case(f"{at}/model", preset, "extract", Person, (Reply(PERSON),), on),
        Case(f"{at}/list", preset, "aextract", list[Person], (Reply(PEOPLE),), on),
        Case(f"{at}/dict-schema", preset, "extract_many", INVOICE, (Reply(INVOICE_ANSWER),), on),
        Case(f"{at}/params", preset, "extract", Person, (Reply(PERSON),), {**on, **PARAMS}),
        Case(
            f"{at}/instructions-worked-examples",
            preset,
            "extract",
            Sender,
            (Reply(SENDER),),
            {**on, "instructions": INSTRUCTIONS},
        ),
        Case(
            f"{at}/examples-option",
            preset,
            "aextract",
            Person,
            (Reply(PERSON),),
            {**on, "examples": EXAMPLES},
        ),
        Case(f"{at}/reask", preset, "extract", Person, (Reply(INVALID), Reply(PERSON)), on),
        Case(
            f"{at}/truncated-length",
            preset,
            "aextract",
            Person,
            (Reply(CUT, finish="length"), Reply(PERSON)),
            {**on, "max_completion_tokens": 40},
        ),
        Case(f"{at}/truncated-text", preset, "extract", Person, (Reply(CUT), Reply(PERSON)), on),
        Case(f"{at}/stream", preset, "stream", Person, (Reply(PERSON),), {**on, "temperature": 0}),
        Case(
            f"{at}/astream-reask",
            preset,
            "astream",
            list[Person],
            (Reply(INVALID_PEOPLE), Reply(PEOPLE)),
            {**on, "seed": 1},
        ),
    ]


def _auto_cases(preset: str) -> list[Case]:
    """`auto`: its first choice answered, and its whole fallback chain refused (400)."""
    at = f"{preset}/auto"
    cases = [
        Case(f"{at}/first-choice", preset, "extract", Person, (Reply(PERSON),)),
        Case(f"{at}/first-choice-stream", preset, "stream", list[Person], (Reply(PEOPLE),)),
        Case(
            f"{at}/fallbacks-400",
            preset,
            "extract",
            Person,
            (),
            {"mode": "auto", "temperature": 0.3},
            otherwise=Reject(400, "golden: mode not supported"),
            raises=APIStatusError,
        ),
    ]
    if preset == "llamacpp":  # its server refuses a response_format with a 500
        cases.append(
            Case(
                f"{at}/fallbacks-500-response-format",
                preset,
                "extract",
                INVOICE,
                (),
                otherwise=Reject(500, "golden: response_format type is not supported"),
                raises=APIStatusError,
            )
        )
    return cases


def _extra_cases() -> list[Case]:
    """Options with a wire effect of their own, on the presets they matter for."""
    tool = {
        "type": "function",
        "function": {
            "name": "lookup",
            "description": "Look a name up.",
            "parameters": {"type": "object", "properties": {"q": {"type": "string"}}},
        },
    }
    return [
        Case(
            "openrouter/json_schema/structured-outputs-off",
            "openrouter",
            "extract",
            Person,
            (Reply(PERSON),),
            {"mode": "json_schema", "structured_outputs": False},
        ),
        Case(
            "openrouter/tools/structured-outputs-off",
            "openrouter",
            "extract",
            Person,
            (Reply(PERSON),),
            {"mode": "tools", "structured_outputs": False},
        ),
        Case(
            "openai/tools/user-tools-and-tool-choice",
            "openai",
            "extract",
            Person,
            (Reply(PERSON),),
            {"mode": "tools", "tools": [tool], "tool_choice": "required"},
        ),
        Case(
            "mistral/tools/user-tools",
            "mistral",
            "extract",
            Person,
            (Reply(INVALID), Reply(PERSON)),
            {"mode": "tools", "tools": [tool]},
        ),
        Case(
            "openai/json_schema/user-tools",
            "openai",
            "extract",
            Person,
            (Reply(PERSON),),
            {"mode": "json_schema", "tools": [tool]},
        ),
        Case(
            "openai/prompt/response-format-option",  # json_schema refuses one: it drops the schema
            "openai",
            "extract",
            Person,
            (Reply(PERSON),),
            {"mode": "prompt", "response_format": {"type": "json_object"}},
        ),
        Case(
            "openai/json_schema/max-tokens-alias",
            "openai",
            "extract",
            Person,
            (Reply(PERSON),),
            {"mode": "json_schema", "max_tokens": 64},
            warns=DeprecationWarning,
        ),
        Case(
            "mistral/json_schema/max-tokens-alias",
            "mistral",
            "extract",
            Person,
            (Reply(PERSON),),
            {"mode": "json_schema", "max_tokens": 64},
            warns=DeprecationWarning,
        ),
        Case(
            "openai/json_schema/client-defaults",
            "openai",
            "extract",
            Person,
            (Reply(PERSON),),
            {"mode": "json_schema", "temperature": 0.5},
            client_options={"temperature": 0.1, "seed": 3, "instructions": "Client-wide."},
        ),
        Case(
            "mistral/json_object/client-defaults",
            "mistral",
            "aextract",
            Person,
            (Reply(PERSON),),
            client_options={"mode": "json_object", "top_p": 0.5, "max_completion_tokens": 99},
        ),
        Case(
            "openai/json_schema/aextract-many",
            "openai",
            "aextract_many",
            Person,
            (Reply(INVALID), Reply(PERSON)),
            {"mode": "json_schema", "stop": "END"},
        ),
        Case(
            "openai/json_schema/stream-items",
            "openai",
            "stream_items",
            list[Person],
            (Reply(PEOPLE),),
            {"mode": "json_schema"},
        ),
        Case(
            "mistral/tools/stream-reask",
            "mistral",
            "stream",
            Person,
            (Reply(INVALID), Reply(PERSON)),
            {"mode": "tools"},
        ),
        Case(
            "openai/tools/stream-truncated-length",
            "openai",
            "stream",
            Person,
            (Reply(CUT, finish="length"), Reply(PERSON)),
            {"mode": "tools"},
        ),
        Case("openai/json_schema/extractable", "openai", "extractable", Note, (Reply(NOTE),)),
    ]


def _all_cases() -> tuple[Case, ...]:
    cases: list[Case] = []
    for preset in PRESETS:
        for mode in MODES:
            cases += _mode_cases(preset, mode)
        cases += _auto_cases(preset)
    cases += _extra_cases()
    names = [case.name for case in cases]
    assert len(set(names)) == len(names), "case names must be unique"
    return tuple(cases)


CASES = _all_cases()


# ---------------------------------------------------------------------------
# Running
# ---------------------------------------------------------------------------


class CaseError(Exception):
    """A case did not run as scripted, so its bodies prove nothing."""


def _no_sleep(seconds: float) -> None:
    """Transport retries would repeat a body; none is expected, and none waits."""


async def _no_async_sleep(seconds: float) -> None:
    """The async form of `_no_sleep`."""


class Recorder:
    """A loopback server, and one client per preset reused by the cases (as users do).

    A case with client defaults of its own gets a client of its own for its one call.
    """

    def __init__(self) -> None:
        self.server = ChatServer()
        self._clients: dict[str, Client] = {}

    def __enter__(self) -> Recorder:
        self.server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        for client in self._clients.values():
            client.close()
        self._clients.clear()
        self.server.stop()

    def capture(self, case: Case) -> dict[str, dict[str, str]]:
        """Run one case; its requests as `{name#n: {path, content_type, body}}`."""
        server = self.server
        server.reset()
        replies = deque(case.replies)
        count = itertools.count(1)

        def serve(request: RecordedRequest) -> Item:
            n = next(count)
            reply = replies.popleft() if replies else case.otherwise
            if reply is None:  # 418: neither retried nor a mode refusal, so the call fails
                return _render(Reject(418, "golden: no reply scripted"), n, request)
            return _render(reply, n, request)

        server.handler = serve
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                self._call(case)
            except Exception as exc:
                if case.raises is None or not isinstance(exc, case.raises):
                    raise CaseError(f"{case.name}: the call raised {exc!r}") from exc
            else:
                if case.raises is not None:
                    raise CaseError(f"{case.name}: expected {case.raises.__name__}, none raised")
        _check_warnings(case, [w.category for w in caught])
        if replies:
            raise CaseError(f"{case.name}: {len(replies)} scripted replies were never asked for")
        return {
            f"{case.name}#{n}": {
                "path": request.path,
                "content_type": request.headers.get("content-type", ""),
                "body": request.raw.decode("utf-8"),
            }
            for n, request in enumerate(server.requests, 1)
        }

    def _client(self, case: Case) -> Client:
        client = None if case.client_options else self._clients.get(case.preset)
        if client is None:
            client = Client(
                f"{case.preset}/{MODEL}",
                base_url=self.server.base_url,
                api_key=KEY if case.preset in KEYED else None,
                retry=RetryPolicy(sleep=_no_sleep, async_sleep=_no_async_sleep),
                **case.client_options,
            )
            if not case.client_options:
                self._clients[case.preset] = client
        return client

    def _call(self, case: Case) -> None:
        """Make the case's call through the public API; raise what the call raises."""
        key = KEY if case.preset in KEYED else None
        if case.call == "extractable":
            case.target.extract(DOCUMENT, base_url=self.server.base_url, api_key=key)
            return
        client = self._client(case)
        try:
            if case.call in ("aextract", "astream", "aextract_many"):
                asyncio.run(_acall(case, client))
            else:
                _call(case, client)
        finally:
            if case.client_options:
                client.close()


def _call(case: Case, client: Client) -> None:
    options = dict(case.options)
    if case.call == "extract":
        client.extract(case.target, DOCUMENT, **options)
    elif case.call == "stream":
        with client.stream(case.target, DOCUMENT, **options) as stream:
            for _ in stream:
                pass
    elif case.call == "stream_items":
        with client.stream_items(case.target, DOCUMENT, **options) as stream:
            for _ in stream:
                pass
    elif case.call == "extract_many":
        for result in client.extract_many(case.target, [DOCUMENT], concurrency=1, **options):
            _ = result.value  # raises the document's error, if any
    else:
        raise CaseError(f"{case.name}: unknown call {case.call!r}")


async def _acall(case: Case, client: Client) -> None:
    """The async calls; the event loop's connections close with it (`asyncio.run`)."""
    options = dict(case.options)
    if case.call == "aextract":
        await client.aextract(case.target, DOCUMENT, **options)
    elif case.call == "astream":
        async with client.astream(case.target, DOCUMENT, **options) as stream:
            async for _ in stream:
                pass
    else:
        documents = [DOCUMENT]
        async for result in client.aextract_many(case.target, documents, concurrency=1, **options):
            _ = result.value  # raises the document's error, if any


def _check_warnings(case: Case, kinds: list[type[Warning]]) -> None:
    """The case gave the warning it is scripted for, and no other."""
    if case.warns is not None and not any(issubclass(k, case.warns) for k in kinds):
        raise CaseError(f"{case.name}: expected a {case.warns.__name__}, got {kinds}")
    unexpected = [k for k in kinds if case.warns is None or not issubclass(k, case.warns)]
    if unexpected:
        raise CaseError(f"{case.name}: unexpected {unexpected[0].__name__}")


def capture_all(cases: Iterable[Case] = CASES) -> dict[str, dict[str, str]]:
    """Every case's requests, in case order."""
    captured: dict[str, dict[str, str]] = {}
    with Recorder() as recorder:
        for case in cases:
            captured.update(recorder.capture(case))
    return captured


def case_name(key: str) -> str:
    """The case a golden key belongs to: `openai/tools/reask#2` → `openai/tools/reask`."""
    return key.rpartition("#")[0]


def load_golden(path: Path = GOLDEN) -> dict[str, dict[str, str]]:
    data: dict[str, dict[str, str]] = json.loads(path.read_text(encoding="utf-8"))
    return data


def dump_golden(captured: Mapping[str, Mapping[str, str]]) -> str:
    """The golden file's text: the bodies are JSON strings, so their bytes survive exactly."""
    return json.dumps(captured, ensure_ascii=False, indent=1) + "\n"


# ---------------------------------------------------------------------------
# Comparing
# ---------------------------------------------------------------------------

_CONTEXT = 60
#: Control characters shown as escapes, so a line of context stays one line.
_VISIBLE = {code: repr(chr(code))[1:-1] for code in range(32)}


def first_difference(key: str, what: str, expected: str, got: str) -> str:
    """Where two texts part, with the text around that point from each side, and a caret."""
    pairs = enumerate(zip(expected, got, strict=False))  # the shorter may be a prefix
    at = next((i for i, (a, b) in pairs if a != b), min(len(expected), len(got)))
    start = max(at - _CONTEXT, 0)

    def around(text: str) -> tuple[str, int]:
        before = text[start:at].translate(_VISIBLE)
        after = text[at : at + _CONTEXT].translate(_VISIBLE)
        more = "…" if at + _CONTEXT < len(text) else ""
        return f"{'…' if start else ''}{before}{after}{more}", len(before) + (1 if start else 0)

    shown_golden, caret = around(expected)
    shown_sent, _ = around(got)
    return (
        f"{key}: {what} differs at character {at} "
        f"(golden has {len(expected)} characters, this run sent {len(got)})\n"
        f"  golden: {shown_golden}\n"
        f"  sent:   {shown_sent}\n"
        f"          {' ' * caret}^"
    )


def compare(
    golden: Mapping[str, Mapping[str, str]], captured: Mapping[str, Mapping[str, str]]
) -> list[str]:
    """Every difference between golden and captured requests, one readable line block each."""
    problems = [
        f"{key}: the golden file has this request, this run did not send it"
        for key in golden
        if key not in captured
    ]
    problems += [
        f"{key}: this run sent a request the golden file does not have: "
        f"{captured[key]['body'][:200]!r}"
        for key in captured
        if key not in golden
    ]
    for key, expected in golden.items():
        got = captured.get(key)
        if got is None:
            continue
        for what in ("path", "content_type", "body"):
            if expected.get(what) != got.get(what):
                problems.append(first_difference(key, what, expected[what], got[what]))
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.wire_golden",
        description="Record, or compare against, the golden wire bodies.",
    )
    parser.add_argument("--write", action="store_true", help=f"write {GOLDEN} from this code")
    args = parser.parse_args(argv)
    captured = capture_all()
    if args.write:
        GOLDEN.parent.mkdir(parents=True, exist_ok=True)
        GOLDEN.write_text(dump_golden(captured), encoding="utf-8")
        print(f"wrote {len(captured)} requests from {len(CASES)} cases to {GOLDEN}")
        return 0
    problems = compare(load_golden(), captured)
    for problem in problems:
        print(problem, end="\n\n")
    print(f"{len(problems)} differences in {len(captured)} requests from {len(CASES)} cases")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
