"""Malformed 200 answers (issue 11, item 7), over real HTTP to `extractor.testing.ChatServer`.

A body that is not a chat completion raises `MalformedResponse` naming the field; an
answer whose content the model got wrong is re-asked (`InvalidAnswer`); garbled usage
keeps the record, counts as 0 and is logged. Nothing else ever comes out: the command
line prints one line, and a batch writes an extractor error type, never AttributeError.
A property test throws arbitrary JSON at the decoders to keep it so.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import subprocess
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from extractor import ExtractorError, InvalidAnswer, RetriesExhausted, Usage
from extractor._cli import main
from extractor._errors import MalformedResponse, json_kind, with_article
from extractor._modes import decode
from extractor._sse import ChunkAssembler, SSEEvent
from extractor.testing import Answer, ChatServer, Raw, RecordedRequest
from tests.processes import ROOT, child_env, command

TEXT = "Ann Lee (41) can be reached at ann@example.com."
ANN = {"name": "Ann Lee", "age": 41}
ANN_FILE = "samples/contacts/ann.txt"


class Person(BaseModel):
    name: str
    age: int | None = None


def completion(message: Any, **extra: Any) -> dict[str, Any]:
    """A chat.completion whose only choice carries `message`."""
    choice = {"index": 0, "message": message, "finish_reason": "stop"}
    return {"id": "chatcmpl-1", "object": "chat.completion", "choices": [choice], **extra}


def tool_message(*calls: Any) -> dict[str, Any]:
    return {"role": "assistant", "content": None, "tool_calls": list(calls)}


def raw(payload: Any) -> Raw:
    return Raw(json.dumps(payload))


# --- bodies that are not a chat completion: MalformedResponse, not re-asked -----------------

NOT_A_COMPLETION = [
    # the two shapes of the issue
    ("json_schema", completion("hello"), "choices[0].message is a string, not an object"),
    (
        "tools",
        completion(tool_message("oops")),
        "choices[0].message.tool_calls[0] is a string, not an object",
    ),
    # the envelope
    ("json_schema", [1, 2], "it is an array, not an object"),
    ("json_schema", {"id": "chatcmpl-1", "object": "chat.completion"}, "it has no choices"),
    ("json_schema", {"choices": []}, "choices is empty"),
    ("json_schema", {"choices": "hello"}, "choices is a string, not an array"),
    ("json_schema", {"choices": [5]}, "choices[0] is an integer, not an object"),
    ("json_schema", {"choices": [{"index": 0}]}, "choices[0].message is missing"),
    (
        "json_schema",
        {"choices": [{"message": {"content": "{}"}, "finish_reason": 3}]},
        "choices[0].finish_reason is an integer, not a string",
    ),
    # the message
    (
        "json_schema",
        completion({"content": 42}),
        "choices[0].message.content is an integer, not a string",
    ),
    (
        "json_object",
        completion({"content": {"name": "Ann"}}),
        "choices[0].message.content is an object, not a string",
    ),
    (
        "prompt",
        completion({"content": ["{}"]}),
        "choices[0].message.content[0] is a string, not an object",
    ),
    (
        "json_schema",
        completion({"content": [{"type": "text", "text": None}]}),
        "choices[0].message.content[0].text is null, not a string",
    ),
    (
        "json_schema",
        completion({"content": None, "refusal": {"reason": "no"}}),
        "choices[0].message.refusal is an object, not a string",
    ),
    # the tool calls
    (
        "tools",
        completion({"content": None, "tool_calls": {"0": {}}}),
        "choices[0].message.tool_calls is an object, not an array",
    ),
    (
        "tools",
        completion(tool_message({"id": "call_1", "type": "function"})),
        "choices[0].message.tool_calls[0].function is missing",
    ),
    (
        "tools",
        completion(tool_message({"id": "call_1", "function": "Person({})"})),
        "choices[0].message.tool_calls[0].function is a string, not an object",
    ),
]


@pytest.mark.parametrize(("mode", "payload", "problem"), NOT_A_COMPLETION)
def test_a_body_that_is_not_a_chat_completion_says_which_field_is_wrong(
    make_client, server: ChatServer, mode: str, payload: Any, problem: str
) -> None:
    server.script(raw(payload))
    with pytest.raises(MalformedResponse) as caught:
        make_client().extract(Person, TEXT, mode=mode)
    assert str(caught.value) == f"the server's response is not a chat.completion: {problem}"
    assert caught.value.problem == problem
    assert json.loads(caught.value.body) == payload  # the body, kept for diagnosis
    assert len(server.requests) == 1  # the server broke the format: no reask, no retry


def test_async_calls_raise_the_same(make_client, server: ChatServer) -> None:
    server.script(raw(completion("hello")))
    with pytest.raises(MalformedResponse, match=r"choices\[0\]\.message is a string"):
        asyncio.run(make_client().aextract(Person, TEXT, mode="json_schema"))


def test_the_body_kept_on_the_error_is_short_and_masked(make_client, server: ChatServer) -> None:
    key = "sk-test-0123456789abcdef"
    payload = completion("hello", echo=f"Bearer {key}", padding="x" * 10_000)
    server.script(raw(payload))
    with pytest.raises(MalformedResponse) as caught:
        make_client(api_key=key).extract(Person, TEXT, mode="json_schema")
    assert key not in caught.value.body and key not in str(caught.value)
    assert "Bearer ***" in caught.value.body
    assert len(caught.value.body) <= 2000


# --- answers the model got wrong: InvalidAnswer, re-asked ---------------------------------


def call(arguments: Any) -> dict[str, Any]:
    """A tool call of Person; `arguments` None leaves them out."""
    function: dict[str, Any] = {"name": "Person"}
    if arguments is not None:
        function["arguments"] = arguments
    return {"id": "call_1", "type": "function", "function": function}


@pytest.mark.parametrize(
    ("arguments", "problem"),
    [
        (None, "the answer is empty"),  # a tool call without arguments
        (41, "(got 41)"),  # arguments that are neither a string nor an object
        (["Ann Lee", 41], '(got ["Ann Lee", 41])'),
    ],
)
def test_tool_arguments_of_the_wrong_shape_are_reasked(
    make_client, server: ChatServer, arguments: Any, problem: str
) -> None:
    server.script(raw(completion(tool_message(call(arguments)))), Answer(tool_call=ANN))
    result = make_client().extract_result(Person, TEXT, mode="tools")
    assert result.value == Person(**ANN)
    assert isinstance(result.attempts[0].error, InvalidAnswer)
    first, second = server.requests
    answered, feedback = second.messages[len(first.messages) :]
    sent_back = "" if arguments is None else json.dumps(arguments)
    assert answered["tool_calls"][0]["function"]["arguments"] == sent_back  # the model's own
    assert problem in feedback["content"]  # and what was wrong with it


def test_tool_arguments_that_stay_wrong_exhaust_the_retries(
    make_client, server: ChatServer
) -> None:
    server.handler = lambda request: raw(completion(tool_message(call(None))))
    with pytest.raises(RetriesExhausted) as caught:
        make_client(max_retries=1).extract(Person, TEXT, mode="tools")
    attempts = caught.value.attempts
    assert len(attempts) == 2
    assert all(isinstance(a.error, InvalidAnswer) for a in attempts)
    assert "the answer is empty" in str(caught.value)


def test_tool_arguments_sent_as_an_object_are_read_as_that_object(
    make_client, server: ChatServer
) -> None:
    # some servers parse the arguments for us; the value is the model's, read as-is
    server.script(raw(completion(tool_message(call(ANN)))))
    result = make_client().extract_result(Person, TEXT, mode="tools")
    assert result.value == Person(**ANN)
    assert json.loads(result.attempts[0].raw or "") == ANN
    assert result.attempts[0].repairs == ()  # read as JSON, not as a Python repr


def test_an_id_that_is_not_a_string_is_dropped(make_client, server: ChatServer) -> None:
    payload = completion(tool_message({**call(json.dumps(ANN)), "id": 7}), id={"n": 1})
    server.script(raw(payload))
    result = make_client().extract_result(Person, TEXT, mode="tools")
    assert result.value == Person(**ANN)
    assert result.response_id is None


# --- garbled usage: the record is kept, usage counts as 0, a warning says so --------------


@pytest.mark.parametrize(
    "usage",
    [
        {"prompt_tokens": "many", "completion_tokens": 5, "total_tokens": 17},
        {"prompt_tokens": -5, "completion_tokens": 5, "total_tokens": 0},
        {"prompt_tokens": 12, "completion_tokens": 1.5, "total_tokens": 13.5},
        {"prompt_tokens": True, "completion_tokens": 5, "total_tokens": 6},
        {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 10**40},
        "lots",
        [12, 5, 17],
    ],
)
def test_garbled_usage_keeps_the_record_and_counts_as_zero(
    make_client, server: ChatServer, caplog: pytest.LogCaptureFixture, usage: Any
) -> None:
    caplog.set_level(logging.DEBUG, logger="extractor")
    server.script(raw(completion({"role": "assistant", "content": json.dumps(ANN)}, usage=usage)))
    result = make_client().extract_result(Person, TEXT, mode="json_schema")
    assert result.value == Person(**ANN)
    assert result.usage == Usage()
    assert any("usage is garbled" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("cost", ["0.01", -1.0, float("nan"), float("inf"), True])
def test_a_garbled_cost_is_unknown_and_the_tokens_are_kept(
    make_client, server: ChatServer, cost: Any
) -> None:
    usage = {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17, "cost": cost}
    server.script(Answer(content=json.dumps(ANN), usage=usage))
    result = make_client().extract_result(Person, TEXT, mode="json_schema")
    assert result.usage == Usage(12, 5, 17, None)


def test_whole_float_token_counts_are_counts(make_client, server: ChatServer) -> None:
    usage = {"prompt_tokens": 12.0, "completion_tokens": 5, "total_tokens": 17.0, "cost": 0.5}
    server.script(Answer(content=json.dumps(ANN), usage=usage))
    result = make_client().extract_result(Person, TEXT, mode="json_schema")
    assert result.usage == Usage(12, 5, 17, 0.5)


# --- streams -----------------------------------------------------------------------------


def sse(*chunks: Any) -> Raw:
    events = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks)
    return Raw(events + "data: [DONE]\n\n", content_type="text/event-stream")


def delta(value: Any, finish: str | None = None) -> dict[str, Any]:
    return {"id": "c1", "choices": [{"index": 0, "delta": value, "finish_reason": finish}]}


@pytest.mark.parametrize(
    ("mode", "chunk", "problem"),
    [
        ("json_schema", delta("hello"), "choices[0].delta is a string, not an object"),
        ("json_schema", {"id": "c1", "choices": 5}, "choices is an integer, not an array"),
        (
            "json_schema",
            delta({"content": 42}),
            "choices[0].delta.content is an integer, not a string",
        ),
        (
            "tools",
            delta({"tool_calls": 5}),
            "choices[0].delta.tool_calls is an integer, not an array",
        ),
        (
            "tools",
            delta({"tool_calls": [{"index": 0, "function": "Person"}]}),
            "choices[0].delta.tool_calls[0].function is a string, not an object",
        ),
        (
            "tools",
            delta({"tool_calls": [{"index": [0], "function": {"arguments": "{}"}}]}),
            "choices[0].delta.tool_calls[0].index is an array, not an integer",
        ),
    ],
)
def test_a_malformed_stream_chunk_says_which_field_is_wrong(
    make_client, server: ChatServer, mode: str, chunk: Any, problem: str
) -> None:
    server.script(sse(delta({"role": "assistant", "content": ""}), chunk))
    with pytest.raises(MalformedResponse) as caught:
        list(make_client().stream(Person, TEXT, mode=mode))
    assert str(caught.value) == f"a stream event is not a chat.completion.chunk: {problem}"
    assert json.loads(caught.value.body) == chunk
    assert len(server.requests) == 1


def test_a_stream_with_garbled_usage_keeps_the_record(make_client, server: ChatServer) -> None:
    last = {"id": "c1", "choices": [], "usage": {"prompt_tokens": "many"}}
    server.script(sse(delta({"content": json.dumps(ANN)}, "stop"), last))
    stream = make_client().stream(Person, TEXT, mode="json_schema")
    assert list(stream)[-1] == Person(**ANN)
    assert stream.result is not None and stream.result.usage == Usage()


# --- the command line: one line, never a traceback -----------------------------------------


@pytest.mark.parametrize(
    ("mode", "payload", "problem"),
    [
        ("json_schema", completion("hello"), "choices[0].message is a string, not an object"),
        (
            "tools",
            completion(tool_message("oops")),
            "choices[0].message.tool_calls[0] is a string, not an object",
        ),
    ],
)
def test_cli_extract_prints_one_line_for_a_malformed_answer(
    server: ChatServer, mode: str, payload: Any, problem: str
) -> None:
    server.handler = lambda request: raw(payload)
    argv = ["extract", "schemas/contact.py:Contact", ANN_FILE, "--mode", mode]
    done = subprocess.run(
        command(*argv, "--model", "openai/test-model", "--base-url", server.base_url),
        cwd=ROOT,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stderr) == (1, "")
    (line,) = done.stdout.splitlines()
    error = json.loads(line)["error"]
    assert error["type"] == "MalformedResponse"
    assert error["message"] == f"the server's response is not a chat.completion: {problem}"


def test_cli_extract_keeps_the_record_of_an_answer_with_garbled_usage(server: ChatServer) -> None:
    record = {"name": "Ann Lee", "email": None, "phone": None, "organization": None, "role": None}
    answer = Answer(content=json.dumps(record), usage={"prompt_tokens": "many"})
    server.handler = lambda request: answer
    argv = ["extract", "schemas/contact.py:Contact", ANN_FILE, "--mode", "json_schema"]
    done = subprocess.run(
        command(*argv, "--model", "openai/test-model", "--base-url", server.base_url),
        cwd=ROOT,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert [json.loads(line) for line in done.stdout.splitlines()] == [
        {"file": ANN_FILE, "record": record}
    ]
    (warning,) = done.stderr.splitlines()  # a warning, the first time: no traceback
    assert "usage.prompt_tokens is the string 'many'" in warning


def test_cli_batch_writes_an_extractor_error_type_for_malformed_answers(
    server: ChatServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)
    shapes = {
        "hello": raw(completion("hello")),
        "oops": raw(completion(tool_message("oops"))),
        "usage": Answer(tool_call=ANN, usage={"prompt_tokens": "many"}),
    }

    def handle(request: RecordedRequest) -> Any:
        user = [str(m["content"]) for m in request.messages if m["role"] == "user"]
        return next(item for marker, item in shapes.items() if marker in user[-1])

    server.handler = handle
    source, out = tmp_path / "docs.jsonl", tmp_path / "out.jsonl"
    source.write_text("".join(json.dumps({"id": k, "text": f"{k}: {TEXT}"}) + "\n" for k in shapes))
    schema = "tests.test_hardening_answers:Person"
    argv = ["batch", schema, str(source), "-o", str(out), "--mode", "tools"]
    code = main([*argv, "--model", "openai/test-model", "--base-url", server.base_url])
    assert code == 1
    failed = (tmp_path / "out.failures.jsonl").read_text().splitlines()
    assert {f["id"]: f["error"]["type"] for f in map(json.loads, failed)} == {
        "hello": "MalformedResponse",
        "oops": "MalformedResponse",
    }
    (done,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert (done["id"], done["record"]) == ("usage", ANN)


# --- whatever the body: only extractor errors come out of the decoders ------------------------

FIELDS = [
    "choices", "message", "delta", "content", "tool_calls", "function", "arguments",
    "refusal", "finish_reason", "id", "index", "type", "text", "usage", "prompt_tokens",
    "completion_tokens", "total_tokens", "cost", "spans", "error",
]  # fmt: skip
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**40), max_value=10**40)
    | st.floats()
    | st.sampled_from(["", "stop", "length", "tool_calls", "error", "text", '{"name": "A"}'])
    | st.text(max_size=8)
)
JSON = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=4), inner, max_size=4)
    ),
    max_leaves=16,
)


def shaped(value: Any) -> Any:
    """A body shaped like a chat completion down to `value` somewhere, so decoding goes deep."""
    return st.sampled_from(
        [
            value,
            {"choices": value},
            {"choices": [value]},
            completion(value),
            completion({"content": value}),
            completion(tool_message(value)),
            completion(tool_message({"id": "c", "function": value})),
            completion(tool_message({"id": "c", "function": {"arguments": value}})),
            completion({"content": "{}"}, usage=value),
            {"choices": [{"message": {"content": "{}"}, "finish_reason": value}]},
            delta(value),
            delta({"content": value, "tool_calls": value}),
            delta({"tool_calls": [value]}),
            delta({"tool_calls": [{"index": value, "function": value}]}),
        ]
    )


BODIES = JSON.flatmap(shaped)


def check_answer(answer: Any) -> None:
    for text in (answer.text, answer.finish_reason, answer.refusal, answer.response_id):
        assert text is None or isinstance(text, str)
    assert answer.tool_call_id is None or isinstance(answer.tool_call_id, str)
    usage = answer.usage
    for count in (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens):
        assert type(count) is int and 0 <= count <= 10**9
    assert usage.cost is None or (math.isfinite(usage.cost) and usage.cost >= 0)


@settings(max_examples=400, deadline=None)
@given(body=BODIES, mode=st.sampled_from(["json_schema", "tools", "json_object", "prompt"]))
def test_decoding_any_json_raises_only_extractor_errors(body: Any, mode: str) -> None:
    try:
        answer = decode(mode, body)
    except ExtractorError:
        pass
    else:
        check_answer(answer)
    assembler = ChunkAssembler(mode)
    try:
        assembler.add(SSEEvent(json.dumps(body)))
        check_answer(decode(mode, assembler.payload()))
    except ExtractorError:
        pass


# --- messages: the article that goes with the word (item 10) ---------------------------------


def test_articles_are_said_right() -> None:
    assert [with_article(w) for w in ["int", "str", "object", "array", "uint8", "undefined"]] == [
        "an int",
        "a str",
        "an object",
        "an array",
        "a uint8",
        "an undefined",
    ]
    values = [None, True, 3, 3.5, "x", {}, [], (), b"x"]
    assert [json_kind(v) for v in values] == [
        "null",
        "a boolean",
        "an integer",
        "a number",
        "a string",
        "an object",
        "an array",
        "an array",
        "a bytes",
    ]
