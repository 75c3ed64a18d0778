"""ChatServer's streaming answers, read over loopback HTTP with httpx (not extractor's reader)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from extractor.testing import Answer, ChatServer, Fault, Stream

BODY = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True}
RECORD = '{"name": "Ann Lee", "city": "Zürich"}'


@pytest.fixture
def server() -> Iterator[ChatServer]:
    with ChatServer() as running:
        yield running


def read_lines(server: ChatServer, body: dict[str, Any] | None = None) -> list[str]:
    """Every non-empty line of the event stream, as sent."""
    with httpx.stream("POST", server.base_url + "/chat/completions", json=body or BODY) as r:
        assert r.status_code == 200
        assert r.headers["content-type"] == "text/event-stream"
        return [line for line in r.iter_lines() if line]


def data_of(lines: list[str]) -> list[Any]:
    """The data of each event, JSON-decoded except `[DONE]`."""
    out: list[Any] = []
    for line in lines:
        if line.startswith("data: "):
            data = line.removeprefix("data: ")
            out.append(data if data == "[DONE]" else json.loads(data))
    return out


def test_content_streams_in_deltas_then_finish_and_done(server: ChatServer):
    server.script(Answer(content=RECORD))
    events = data_of(read_lines(server))

    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert len({c["id"] for c in chunks}) == 1
    deltas = [c["choices"][0]["delta"] for c in chunks]
    assert deltas[0]["role"] == "assistant"
    assert "".join(d.get("content") or "" for d in deltas) == RECORD
    assert max(len(d.get("content") or "") for d in deltas) == 8  # the default chunk size
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert all(c["choices"][0]["finish_reason"] is None for c in chunks[:-1])
    assert not any("usage" in c for c in chunks)  # not asked for


def test_usage_arrives_in_a_last_chunk_when_asked(server: ChatServer):
    usage = {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10, "cost": 0.25}
    server.script(Answer(content=RECORD, usage=usage))
    body = {**BODY, "stream_options": {"include_usage": True}}
    events = data_of(read_lines(server, body))

    assert events[-1] == "[DONE]"
    assert events[-2]["choices"] == []
    assert events[-2]["usage"] == usage
    assert events[-3]["choices"][0]["finish_reason"] == "stop"


def test_tool_call_arguments_stream_as_deltas(server: ChatServer):
    tool = {"type": "function", "function": {"name": "Person", "parameters": {}}}
    server.script(Stream(Answer(tool_call={"name": "Ann"}, finish_reason="tool_calls"), 3))
    events = data_of(read_lines(server, {**BODY, "tools": [tool]}))

    calls = [c["choices"][0]["delta"].get("tool_calls") for c in events[:-1]]
    first = calls[0][0]
    assert first["function"]["name"] == "Person"
    assert first["id"].startswith("call_")
    pieces = [call[0]["function"].get("arguments", "") for call in calls if call]
    assert "".join(pieces) == '{"name": "Ann"}'
    assert max(len(p) for p in pieces) == 3
    assert events[-2]["choices"][0]["finish_reason"] == "tool_calls"


def test_comment_lines_come_before_and_between_chunks(server: ChatServer):
    server.script(Stream(Answer(content="abcdef"), chunk_size=2, comment="OPENROUTER PROCESSING"))
    lines = read_lines(server)

    assert lines[0] == ": OPENROUTER PROCESSING"
    assert lines.count(": OPENROUTER PROCESSING") == 3  # before the first chunk, between 3 deltas
    assert (
        "".join(e["choices"][0]["delta"].get("content") or "" for e in data_of(lines)[:-1])
        == "abcdef"
    )


def test_error_mid_stream_looks_like_openrouter_and_ends_the_stream(server: ChatServer):
    server.script(Stream(Answer(content=RECORD), chunk_size=4, error_after=2))
    events = data_of(read_lines(server))

    assert "[DONE]" not in events
    last = events[-1]
    assert last["error"] == {"code": 502, "message": "Provider disconnected unexpectedly"}
    assert last["choices"][0]["finish_reason"] == "error"
    sent = "".join(e["choices"][0]["delta"].get("content") or "" for e in events[:-1])
    assert sent == RECORD[:8]


def test_cut_after_drops_the_connection_mid_body(server: ChatServer):
    server.script(Stream(Answer(content=RECORD), chunk_size=4, cut_after=2))
    with (
        httpx.stream("POST", server.base_url + "/chat/completions", json=BODY) as r,
        pytest.raises(httpx.RemoteProtocolError),
    ):
        for _ in r.iter_lines():
            pass


def test_hold_keeps_the_last_delta_until_released(server: ChatServer):
    hold = threading.Event()
    server.script(Stream(Answer(content="abcdefgh"), chunk_size=2, hold=hold))
    seen: list[str] = []
    with httpx.stream("POST", server.base_url + "/chat/completions", json=BODY) as r:
        for line in r.iter_lines():
            if line.startswith("data: {"):
                seen.append(json.loads(line[6:])["choices"][0]["delta"].get("content") or "")
                if "".join(seen) == "abcdef":
                    assert not hold.is_set()
                    hold.set()  # everything but the last delta arrived while it was held
    assert "".join(seen) == "abcdefgh"


def test_hold_never_released_cuts_the_stream(server: ChatServer):
    server.script(Stream(Answer(content="abcdefgh"), chunk_size=2, hold=threading.Event(),
                         hold_timeout=0.05))  # fmt: skip
    start = time.monotonic()
    with (
        httpx.stream("POST", server.base_url + "/chat/completions", json=BODY) as r,
        pytest.raises(httpx.RemoteProtocolError),
    ):
        for _ in r.iter_lines():
            pass
    assert time.monotonic() - start < 2


def test_crlf_line_endings(server: ChatServer):
    server.script(Stream(Answer(content="abc"), crlf=True))
    with httpx.stream("POST", server.base_url + "/chat/completions", json=BODY) as r:
        raw = r.read()
    assert b"data: [DONE]\r\n\r\n" in raw
    assert b"\n\n" not in raw.replace(b"\r\n", b"")


def test_stream_item_for_a_plain_request_is_a_plain_completion(server: ChatServer):
    server.script(Stream(Answer(content=RECORD)))
    body = {k: v for k, v in BODY.items() if k != "stream"}
    response = httpx.post(server.base_url + "/chat/completions", json=body)

    assert response.headers["content-type"] == "application/json"
    assert response.json()["choices"][0]["message"]["content"] == RECORD


def test_errors_before_the_stream_are_plain_json(server: ChatServer):
    server.script(Fault(429), Answer(status=503))
    for status in (429, 503):
        response = httpx.post(server.base_url + "/chat/completions", json=BODY)
        assert response.status_code == status
        assert response.headers["content-type"] == "application/json"


def test_refusal_streams_as_refusal_deltas(server: ChatServer):
    server.script(Stream(Answer(refusal="I can't help with that"), chunk_size=5))
    events = data_of(read_lines(server))
    refusal = "".join(e["choices"][0]["delta"].get("refusal") or "" for e in events[:-1])
    assert refusal == "I can't help with that"


def test_keep_alive_between_streams(server: ChatServer):
    server.script(Answer(content="one"), Answer(content="two"))
    with httpx.Client() as client:
        texts = []
        for _ in range(2):
            with client.stream("POST", server.base_url + "/chat/completions", json=BODY) as r:
                lines = [line for line in r.iter_lines() if line]
            texts.append(
                "".join(e["choices"][0]["delta"].get("content") or "" for e in data_of(lines)[:-1])
            )
    assert texts == ["one", "two"]


@pytest.mark.parametrize(
    ("options", "message"),
    [({"chunk_size": 0}, "chunk_size"), ({"delay": -1}, "delay")],
)
def test_bad_stream_settings_are_refused(options: dict[str, Any], message: str):
    with pytest.raises(ValueError, match=message):
        Stream(Answer(content="x"), **options)
