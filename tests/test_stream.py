"""Streaming extraction end to end over loopback HTTP: partial records, items, errors, usage."""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
from typing import Any

import pytest
from pydantic import BaseModel, Field

from extractor import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    Refusal,
    RetriesExhausted,
    extractable,
)
from extractor.testing import Answer, ChatServer, Fault, Raw, Stream
from tests.wire import sent_mode

MODES = ["json_schema", "tools", "json_object", "prompt"]
TEXT = "Ann Lee (41) can be reached at ann@example.com."
RECORD = {"name": "Ann Lee", "email": "ann@example.com", "age": 41}


class Contact(BaseModel):
    name: str
    email: str | None = None
    age: int | None = Field(default=None, ge=0, le=150)


class Address(BaseModel):
    street: str
    city: str


class Person(BaseModel):
    name: str
    home: Address
    tags: list[str] = []


def streamed(mode: str, record: dict[str, Any] | list[Any] | str, **options: Any) -> Stream:
    """A stream carrying `record` where the mode reads it, in small deltas by default."""
    text = record if isinstance(record, str) else json.dumps(record)
    options.setdefault("chunk_size", 4)
    if mode == "tools":
        return Stream(Answer(tool_call=text, finish_reason="tool_calls"), **options)
    return Stream(Answer(content=text), **options)


def test_partials_arrive_before_the_stream_ends(make_client, server: ChatServer):
    hold = threading.Event()  # the server keeps the last delta back until this is set
    server.script(streamed("json_schema", RECORD, hold=hold))
    before_end: list[Contact] = []
    values: list[Contact] = []
    for value in make_client().stream(Contact, TEXT, mode="json_schema"):
        values.append(value)
        if not hold.is_set():
            before_end.append(value)
            if value.email is not None and value.email.startswith("ann@"):
                hold.set()

    assert len(before_end) >= 3
    assert all(isinstance(v, Contact) for v in before_end)
    assert values[-1] == Contact(**RECORD)
    assert values[-1].model_fields_set == {"name", "email", "age"}


def test_strings_grow_and_fields_appear_as_they_complete(make_client, server: ChatServer):
    server.script(streamed("json_schema", RECORD, chunk_size=3))
    values = list(make_client().stream(Contact, TEXT, mode="json_schema"))
    *partials, final = values

    names = [p.name for p in partials if "name" in p.model_fields_set]
    assert len(set(names)) >= 3  # the name was shown while it grew
    assert all("Ann Lee".startswith(n) for n in names)
    assert names == sorted(names, key=len)
    for p in partials:
        assert p.age in (None, 41)  # never a number cut short (4 of 41)
        assert set(p.model_fields_set) <= {"name", "email", "age"}
    assert all(a != b for a, b in itertools.pairwise(partials))  # only changes
    assert final == Contact(**RECORD)


@pytest.mark.parametrize("mode", MODES)
def test_every_mode_streams(make_client, server: ChatServer, mode: str):
    server.script(streamed(mode, RECORD))
    stream = make_client().stream(Contact, TEXT, mode=mode)
    values = list(stream)

    assert len(values) > 5
    assert values[-1] == Contact(**RECORD)
    assert stream.result is not None
    assert stream.result.mode == mode
    (request,) = server.requests
    assert sent_mode(request) == mode
    assert request.body is not None
    assert request.body["stream"] is True
    assert request.body["stream_options"] == {"include_usage": True}


def test_prompt_mode_streams_through_prose_and_a_fence(make_client, server: ChatServer):
    text = "Here is the record:\n```json\n" + json.dumps(RECORD) + "\n```\nAnything else?"
    server.script(streamed("prompt", text))
    values = list(make_client().stream(Contact, TEXT, mode="prompt"))

    assert values[-1] == Contact(**RECORD)
    assert any(v.name == "Ann Lee" and v.email is None for v in values[:-1])


def test_nested_records_preview_as_partial_instances(make_client, server: ChatServer):
    record = {"name": "Bo", "home": {"street": "1 Main St", "city": "Oslo"}, "tags": ["a", "bc"]}
    server.script(streamed("json_schema", record, chunk_size=2))
    *partials, final = make_client().stream(Person, TEXT, mode="json_schema")

    homes = [p.home for p in partials if p.home is not None]
    assert homes
    assert all(isinstance(h, Address) for h in homes)
    assert any(h.city is None and h.street for h in homes)  # the street before the city
    assert final == Person(**record)


def test_comment_lines_are_ignored(make_client, server: ChatServer):
    server.script(streamed("json_schema", RECORD, comment="OPENROUTER PROCESSING"))
    values = list(make_client().stream(Contact, TEXT, mode="json_schema"))
    assert values[-1] == Contact(**RECORD)


def test_error_mid_stream_is_an_api_error_after_partials(make_client, server: ChatServer):
    server.script(streamed("json_schema", RECORD, error_after=6), streamed("json_schema", RECORD))
    seen: list[Contact] = []
    stream = make_client().stream(Contact, TEXT, mode="json_schema")
    with pytest.raises(APIStatusError) as caught:
        seen.extend(stream)

    assert caught.value.status == 502
    assert "Provider disconnected unexpectedly" in str(caught.value)
    assert seen  # partials were shown before the error...
    assert len(server.requests) == 1  # ...so it was not silently retried
    assert server.pending == 1


def test_error_code_in_the_stream_sets_the_status(make_client, server: ChatServer):
    error = {"code": 429, "message": "Rate limit exceeded upstream"}
    server.script(streamed("tools", RECORD, error_after=0, error=error))
    with pytest.raises(APIStatusError) as caught:
        list(make_client().stream(Contact, TEXT, mode="tools"))
    assert caught.value.status == 429
    assert len(server.requests) == 1


def test_usage_comes_from_the_last_chunk(make_client, server: ChatServer):
    usage = {"prompt_tokens": 120, "completion_tokens": 30, "total_tokens": 150, "cost": 0.002}
    server.script(Stream(Answer(content=json.dumps(RECORD), usage=usage)))
    stream = make_client().stream(Contact, TEXT, mode="json_schema")
    list(stream)

    assert stream.result is not None
    assert stream.result.usage.total_tokens == 150
    assert stream.result.usage.prompt_tokens == 120
    assert stream.result.usage.cost == pytest.approx(0.002)
    assert stream.result.response_id is not None


def test_stream_without_done_still_ends_on_its_finish_reason(make_client, server: ChatServer):
    server.script(streamed("json_schema", RECORD, done=False))
    assert list(make_client().stream(Contact, TEXT))[-1] == Contact(**RECORD)


def test_stream_cut_before_its_end_is_a_connection_error(make_client, server: ChatServer):
    server.script(streamed("json_schema", RECORD, cut_after=3))
    with pytest.raises(APIConnectionError):
        list(make_client().stream(Contact, TEXT, mode="json_schema"))
    assert len(server.requests) == 1


def test_a_stall_mid_stream_times_out_without_a_retry(make_client, server: ChatServer):
    server.script(streamed("json_schema", RECORD, delay=2.0), streamed("json_schema", RECORD))
    with pytest.raises(APITimeoutError):
        list(make_client(timeout=0.3).stream(Contact, TEXT, mode="json_schema"))
    assert len(server.requests) == 1


def sse(*events: str) -> Raw:
    """A hand-written event stream, for shapes ChatServer's Stream does not produce."""
    return Raw("".join(events), content_type="text/event-stream")


def chunk(content: str, finish: str | None = None) -> str:
    choice = {"index": 0, "delta": {"content": content}, "finish_reason": finish}
    return "data: " + json.dumps({"id": "c1", "choices": [choice]}) + "\n\n"


@pytest.mark.parametrize(
    ("error_event", "status"),
    [
        ('event: error\ndata: {"message": "overloaded"}\n\n', 502),  # an SSE error event
        ('data: {"object": "error", "message": "bad", "code": 400}\n\n', 400),  # vLLM's shape
        ('data: {"error": {"message": "slow down", "code": 429}}\n\n', 429),  # OpenAI's shape
    ],
)
def test_error_event_shapes(make_client, server: ChatServer, error_event: str, status: int):
    server.script(sse(chunk('{"name": "A'), error_event))
    with pytest.raises(APIStatusError) as caught:
        list(make_client().stream(Contact, TEXT, mode="json_schema"))
    assert caught.value.status == status


def test_multi_line_data_and_a_missing_last_blank_line(make_client, server: ChatServer):
    first = json.dumps({"id": "c1", "choices": [{"index": 0, "delta": {"content": '{"name": '}}]})
    split = first.replace(", ", ",\ndata: ", 1)  # one JSON object over two data lines
    server.script(sse(f"data: {split}\n\n", chunk('"Ann"}', "stop"), "data: [DONE]"))
    assert list(make_client().stream(Contact, TEXT, mode="json_schema"))[-1] == Contact(name="Ann")


def test_an_event_that_is_not_json_is_an_api_error(make_client, server: ChatServer):
    server.script(sse(chunk('{"name": '), "data: <html>oops</html>\n\n"))
    with pytest.raises(APIStatusError, match="not a JSON object"):
        list(make_client().stream(Contact, TEXT, mode="json_schema"))


def test_failure_before_the_stream_starts_is_retried(make_client, server: ChatServer, sleeps):
    server.script(Fault(503, headers={"Retry-After": "0"}), streamed("json_schema", RECORD))
    values = list(make_client().stream(Contact, TEXT, mode="json_schema"))
    assert values[-1] == Contact(**RECORD)
    assert len(server.requests) == 2
    assert sleeps == [0.0]


def test_auto_mode_falls_back_before_streaming(make_client, server: ChatServer, sleeps):
    server.script(Fault(400), streamed("tools", RECORD))
    stream = make_client().stream(Contact, TEXT)  # auto: json_schema first
    values = list(stream)

    assert values[-1] == Contact(**RECORD)
    assert stream.result is not None
    assert stream.result.mode == "tools"
    assert [sent_mode(r) for r in server.requests] == ["json_schema", "tools"]
    assert sleeps == []


def test_a_server_that_ignores_stream_still_works(make_client, server: ChatServer):
    completion = {
        "id": "chatcmpl-x",
        "object": "chat.completion",
        "created": 0,
        "model": "test-model",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": json.dumps(RECORD)},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3},
    }
    server.script(Raw(json.dumps(completion)))
    stream = make_client().stream(Contact, TEXT, mode="json_schema")
    assert list(stream)[-1] == Contact(**RECORD)
    assert stream.result is not None
    assert stream.result.usage.total_tokens == 3


def test_invalid_final_record_is_reasked_as_a_fresh_stream(make_client, server: ChatServer):
    server.script(
        streamed("json_schema", {**RECORD, "age": 410}),
        streamed("json_schema", RECORD),
    )
    stream = make_client().stream(Contact, TEXT, mode="json_schema")
    values = list(stream)

    assert values[-1] == Contact(**RECORD)
    assert stream.result is not None
    first, second = stream.result.attempts
    assert not first.ok
    assert "age" in str(first.error)
    assert second.ok
    assert [r.body["stream"] for r in server.requests if r.body] == [True, True]
    reask = server.requests[1].messages
    assert "age" in json.dumps(reask[len(server.requests[0].messages) :])
    starts = [v for v in values if v.model_fields_set == set()]
    assert len(starts) == 2  # each stream's previews start over from an empty record
    assert all(v.age != 410 for v in values)  # a preview never holds a value its field rejects


def test_reasks_run_out(make_client, server: ChatServer):
    bad = {**RECORD, "age": 410}
    server.script(*(streamed("json_schema", bad) for _ in range(2)))
    with pytest.raises(RetriesExhausted) as caught:
        list(make_client().stream(Contact, TEXT, mode="json_schema", max_retries=1))
    assert len(caught.value.attempts) == 2


def test_refusal_streamed(make_client, server: ChatServer):
    server.script(Stream(Answer(refusal="I can't help with that."), chunk_size=3))
    with pytest.raises(Refusal, match="can't help"):
        list(make_client().stream(Contact, TEXT, mode="json_schema"))


def test_list_items_are_yielded_one_by_one(make_client, server: ChatServer):
    people = [
        {"name": "Ann", "email": None, "age": 41},
        {"name": "Bo", "email": "bo@example.com", "age": None},
        {"name": "Cy", "email": None, "age": 7},
    ]
    hold = threading.Event()
    server.script(streamed("json_schema", {"items": people}, hold=hold))
    stream = make_client().stream_items(list[Contact], TEXT, mode="json_schema")
    before_end: list[Contact] = []
    items: list[Contact] = []
    for item in stream:
        items.append(item)
        if not hold.is_set():
            before_end.append(item)
        if len(items) == 2:
            hold.set()

    assert before_end == [Contact(**people[0]), Contact(**people[1])]
    assert items == [Contact(**p) for p in people]
    assert stream.result is not None
    assert stream.result.value == items


def test_list_partials_are_the_list_so_far(make_client, server: ChatServer):
    people = [{"name": "Ann", "email": None, "age": 41}, {"name": "Bo", "email": None, "age": 2}]
    server.script(streamed("tools", {"items": people}))
    values = list(make_client().stream(list[Contact], TEXT, mode="tools"))

    lengths = [len(v) for v in values]
    assert lengths == sorted(lengths)
    assert 1 in lengths
    assert values[-1] == [Contact(**p) for p in people]


def test_list_items_after_a_reask_are_not_repeated(make_client, server: ChatServer):
    ann = {"name": "Ann", "email": None, "age": 41}
    bo = {"name": "Bo", "email": None, "age": 2}
    server.script(
        streamed("json_schema", {"items": [ann, {**bo, "age": 999}]}),
        streamed("json_schema", {"items": [ann, bo]}),
    )
    items = list(make_client().stream_items(list[Contact], TEXT, mode="json_schema"))
    assert items == [Contact(**ann), Contact(**bo)]


def test_stream_items_needs_a_list_target(make_client):
    from extractor import ConfigurationError

    with pytest.raises(ConfigurationError, match="list target"):
        make_client().stream_items(Contact, TEXT)


def test_async_stream(make_client, server: ChatServer):
    hold = threading.Event()
    server.script(streamed("json_schema", RECORD, hold=hold))
    client = make_client()

    async def run() -> tuple[list[Contact], list[Contact], Any]:
        before, values = [], []
        stream = client.astream(Contact, TEXT, mode="json_schema")
        async for value in stream:
            values.append(value)
            if not hold.is_set():
                before.append(value)
                if value.email:
                    hold.set()
        await client.aclose()
        return before, values, stream.result

    before, values, result = asyncio.run(run())
    assert len(before) >= 3
    assert values[-1] == Contact(**RECORD)
    assert result.usage.total_tokens == 15


def test_async_mid_stream_error_and_items(make_client, server: ChatServer):
    people = [{"name": "Ann", "email": None, "age": 41}, {"name": "Bo", "email": None, "age": 2}]
    server.script(
        streamed("json_schema", RECORD, error_after=2),
        streamed("json_schema", {"items": people}),
    )
    client = make_client()

    async def run() -> list[Contact]:
        with pytest.raises(APIStatusError):
            async for _ in client.astream(Contact, TEXT, mode="json_schema"):
                pass
        items = [i async for i in client.astream_items(list[Contact], TEXT, mode="json_schema")]
        await client.aclose()
        return items

    assert asyncio.run(run()) == [Contact(**p) for p in people]


def test_a_stream_iterates_once(make_client, server: ChatServer):
    server.script(streamed("json_schema", RECORD))
    stream = make_client().stream(Contact, TEXT, mode="json_schema")
    list(stream)
    with pytest.raises(RuntimeError, match="once"):
        list(stream)


def test_stopping_early_closes_the_response(make_client, server: ChatServer):
    hold = threading.Event()  # never set: the server would wait out hold_timeout
    server.script(streamed("json_schema", RECORD, hold=hold), streamed("json_schema", RECORD))
    client = make_client()
    start = time.monotonic()
    with client.stream(Contact, TEXT, mode="json_schema") as stream:
        for _ in stream:
            break
    # the half-read response was closed, not drained: no waiting for the held end
    assert time.monotonic() - start < 2
    assert list(client.stream(Contact, TEXT, mode="json_schema"))[-1] == Contact(**RECORD)


def test_stopping_an_async_stream_early(make_client, server: ChatServer):
    server.script(streamed("json_schema", RECORD, hold=threading.Event()))
    client = make_client()

    async def run() -> list[Contact]:
        got = []
        async with client.astream(Contact, TEXT, mode="json_schema") as stream:
            async for value in stream:
                got.append(value)
                break
        await client.aclose()
        return got

    start = time.monotonic()
    assert len(asyncio.run(run())) == 1
    assert time.monotonic() - start < 2


def test_key_is_masked_in_a_mid_stream_error(make_client, server: ChatServer):
    key = "sk-test-secret-1234567890"
    error = {"code": 401, "message": f"bad key {key}"}
    server.script(streamed("json_schema", RECORD, error_after=1, error=error))
    with pytest.raises(APIStatusError) as caught:
        list(make_client(api_key=key).stream(Contact, TEXT, mode="json_schema"))
    assert key not in str(caught.value)
    assert key not in caught.value.body
    assert caught.value.status == 401


def test_mistral_gets_no_stream_options(make_client, server: ChatServer):
    server.script(streamed("json_schema", RECORD))
    list(make_client("mistral").stream(Contact, TEXT, mode="json_schema"))
    (request,) = server.requests
    assert request.body is not None
    assert request.body["stream"] is True
    assert "stream_options" not in request.body


def test_decorated_class_streams(server: ChatServer):
    @extractable(model="openai/test-model", base_url=server.base_url, mode="json_schema")
    class Card(BaseModel):
        name: str
        email: str | None = None

    server.script(streamed("json_schema", {"name": "Ann Lee", "email": None}))
    values = list(Card.stream(TEXT))  # type: ignore[attr-defined]
    assert values[-1] == Card(name="Ann Lee")
    assert len(values) > 2

    server.script(streamed("json_schema", {"items": [{"name": "A", "email": None}]}))
    assert list(Card.stream_items(TEXT)) == [Card(name="A")]  # type: ignore[attr-defined]

    async def partials() -> list[Card]:
        return [value async for value in Card.astream(TEXT)]  # type: ignore[attr-defined]

    server.script(streamed("json_schema", {"name": "Ann Lee", "email": None}))
    assert asyncio.run(partials())[-1] == Card(name="Ann Lee")


def test_json_schema_dict_target_previews_as_dicts(make_client, server: ChatServer):
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
        "required": ["name", "age"],
        "additionalProperties": False,
    }
    server.script(streamed("json_schema", {"name": "Ann", "age": 41}))
    values = list(make_client().stream(schema, TEXT, mode="json_schema"))
    assert values[-1] == {"name": "Ann", "age": 41}
    assert {"name": "Ann"} in values
