"""Tests for extractor.testing.ChatServer, over real loopback HTTP with httpx."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from extractor.testing import (
    Answer,
    ChatServer,
    Delay,
    Drop,
    Fault,
    Raw,
    RecordedRequest,
    Truncated,
)

CHAT = "/chat/completions"
PERSON_TOOL = {
    "type": "function",
    "function": {"name": "Person", "parameters": {"type": "object", "properties": {}}},
}


@pytest.fixture
def server() -> Iterator[ChatServer]:
    with ChatServer() as running:
        yield running


@pytest.fixture
def client(server: ChatServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, timeout=5.0) as http:
        yield http


def chat(client: httpx.Client, **body: Any) -> httpx.Response:
    payload: dict[str, Any] = {"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]}
    payload.update(body)
    return client.post(CHAT, json=payload)


def handler_of(server: ChatServer) -> object:
    # Read through a function: mypy would keep `server.handler` narrowed across reset().
    return server.handler


def message_of(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    return response.json()["choices"][0]["message"]  # type: ignore[no-any-return]


# --- answer shapes ---------------------------------------------------------


def test_content_answer_is_a_full_chat_completion(server: ChatServer, client: httpx.Client) -> None:
    server.script(Answer(content='{"name": "Ann"}'))
    response = chat(client)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    data = response.json()
    assert data["id"].startswith("chatcmpl-")
    assert data["object"] == "chat.completion"
    assert isinstance(data["created"], int)
    assert data["model"] == "gpt-test"  # echoes the requested model
    assert data["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": '{"name": "Ann"}'},
            "finish_reason": "stop",
        }
    ]
    assert data["usage"] == {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}


def test_completion_ids_are_unique(server: ChatServer, client: httpx.Client) -> None:
    server.script(Answer(content="a"), Answer(content="b"))
    assert chat(client).json()["id"] != chat(client).json()["id"]


def test_model_comes_from_answer_then_request_then_default(
    server: ChatServer, client: httpx.Client
) -> None:
    server.script(Answer(content="x", model="pinned"), Answer(content="x"))
    assert chat(client).json()["model"] == "pinned"
    assert client.post(CHAT, json={"messages": []}).json()["model"] == "test-model"


def test_tool_call_takes_its_name_from_the_requests_first_function_tool(
    server: ChatServer, client: httpx.Client
) -> None:
    server.script(Answer(tool_call={"name": "Ann", "age": 3}))
    message = message_of(chat(client, tools=[PERSON_TOOL]))
    assert message["content"] is None
    [call] = message["tool_calls"]
    assert call["id"].startswith("call_")
    assert call["type"] == "function"
    assert call["function"]["name"] == "Person"
    assert json.loads(call["function"]["arguments"]) == {"name": "Ann", "age": 3}


def test_tool_call_name_explicit_forced_and_fallback(
    server: ChatServer, client: httpx.Client
) -> None:
    other = {"type": "function", "function": {"name": "Other"}}
    forced = {"type": "function", "function": {"name": "Other"}}
    server.script(
        Answer(tool_call={}, tool_name="Chosen"),
        Answer(tool_call={}),
        Answer(tool_call={}),
    )
    assert message_of(chat(client, tools=[PERSON_TOOL]))["tool_calls"][0]["function"]["name"] == (
        "Chosen"
    )
    named = message_of(chat(client, tools=[PERSON_TOOL, other], tool_choice=forced))
    assert named["tool_calls"][0]["function"]["name"] == "Other"
    assert message_of(chat(client))["tool_calls"][0]["function"]["name"] == "extract"


def test_tool_call_string_arguments_are_sent_verbatim(
    server: ChatServer, client: httpx.Client
) -> None:
    server.script(Answer(tool_call='{"name": "Ann"', finish_reason="tool_calls"))
    response = chat(client, tools=[PERSON_TOOL])
    call = message_of(response)["tool_calls"][0]
    assert call["function"]["arguments"] == '{"name": "Ann"'
    assert response.json()["choices"][0]["finish_reason"] == "tool_calls"


def test_refusal_is_included_only_when_given(server: ChatServer, client: httpx.Client) -> None:
    server.script(Answer(refusal="I can't help with that."), Answer(content="ok"))
    refused = message_of(chat(client))
    assert refused == {"role": "assistant", "content": None, "refusal": "I can't help with that."}
    plain = message_of(chat(client))
    assert "refusal" not in plain
    assert "tool_calls" not in plain


def test_usage_and_finish_reason_pass_through(server: ChatServer, client: httpx.Client) -> None:
    usage = {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10, "cost": 0.00042}
    server.script(Answer(content="{", finish_reason="length", usage=usage))
    data = chat(client).json()
    assert data["usage"] == usage
    assert data["choices"][0]["finish_reason"] == "length"


def test_answer_status_and_headers(server: ChatServer, client: httpx.Client) -> None:
    server.script(Answer(content="x", status=201, headers={"X-Request-Id": "abc"}))
    response = chat(client)
    assert response.status_code == 201
    assert response.headers["x-request-id"] == "abc"


# --- script order and handler -----------------------------------------------


def test_script_is_fifo_then_handler(server: ChatServer, client: httpx.Client) -> None:
    server.script(Answer(content="first"), Answer(content="second"))
    server.script(Answer(content="third"))
    server.handler = lambda request: Answer(content=f"handled {len(request.messages)}")
    assert server.pending == 3
    contents = [message_of(chat(client))["content"] for _ in range(5)]
    assert contents == ["first", "second", "third", "handled 1", "handled 1"]
    assert server.pending == 0


def test_nothing_scripted_is_a_500(server: ChatServer, client: httpx.Client) -> None:
    response = chat(client)
    assert response.status_code == 500
    assert response.json()["error"]["message"] == "ChatServer: no scripted answer for this request"
    assert len(server.requests) == 1


def test_reset_clears_script_handler_and_requests(server: ChatServer, client: httpx.Client) -> None:
    server.script(Answer(content="a"), Answer(content="b"))
    server.handler = lambda request: Answer(content="h")
    chat(client)
    server.reset()
    assert server.requests == []
    assert server.pending == 0
    assert handler_of(server) is None
    assert chat(client).status_code == 500


def test_callable_item_sees_the_request(server: ChatServer, client: httpx.Client) -> None:
    def echo(request: RecordedRequest) -> Answer:
        return Answer(content=request.messages[-1]["content"].upper())

    server.script(echo, lambda request: Fault(503))
    assert message_of(chat(client))["content"] == "HI"
    assert chat(client).status_code == 503


def test_callable_that_raises_gives_a_500_naming_the_error(
    server: ChatServer, client: httpx.Client
) -> None:
    def broken(request: RecordedRequest) -> Answer:
        raise KeyError("oops")

    server.handler = broken
    response = chat(client)
    assert response.status_code == 500
    assert "KeyError" in response.json()["error"]["message"]


# --- faults and raw bodies ----------------------------------------------------


def test_fault_default_body_status_and_headers(server: ChatServer, client: httpx.Client) -> None:
    server.script(Fault(429, headers={"Retry-After": "1"}))
    response = chat(client)
    assert response.status_code == 429
    assert response.headers["retry-after"] == "1"
    error = response.json()["error"]
    assert error["code"] == 429
    assert error["message"] == "ChatServer fault 429"
    assert isinstance(error["type"], str)


def test_fault_custom_bodies(server: ChatServer, client: httpx.Client) -> None:
    server.script(
        Fault(400, body={"error": {"message": "bad schema"}}),
        Fault(502, body="<html>Bad Gateway</html>", headers={"Content-Type": "text/html"}),
        Fault(500, body=b"\xff\x00"),
    )
    first = chat(client)
    assert (first.status_code, first.json()) == (400, {"error": {"message": "bad schema"}})
    second = chat(client)
    assert second.status_code == 502
    assert second.text == "<html>Bad Gateway</html>"
    assert second.headers["content-type"] == "text/html"
    assert chat(client).content == b"\xff\x00"


def test_raw_sends_exact_bytes(server: ChatServer, client: httpx.Client) -> None:
    server.script(
        Raw(b'{"choices": [{"message": '),
        Raw('{"error": {"message": "upstream"}}', headers={"X-Kind": "error-in-200"}),
        Raw("plain", status=503, content_type="text/plain"),
    )
    broken = chat(client)
    assert (broken.status_code, broken.content) == (200, b'{"choices": [{"message": ')
    error_200 = chat(client)
    assert error_200.status_code == 200
    assert error_200.json() == {"error": {"message": "upstream"}}
    assert error_200.headers["x-kind"] == "error-in-200"
    plain = chat(client)
    assert (plain.status_code, plain.text, plain.headers["content-type"]) == (
        503,
        "plain",
        "text/plain",
    )


# --- delays and broken connections ---------------------------------------------


def test_delay_waits_then_serves(server: ChatServer, client: httpx.Client) -> None:
    server.script(Delay(0.2, Answer(content="late")))
    started = time.perf_counter()
    assert message_of(chat(client))["content"] == "late"
    assert time.perf_counter() - started >= 0.2


def test_delay_beyond_client_timeout_and_server_keeps_serving(
    server: ChatServer, client: httpx.Client
) -> None:
    server.script(Delay(0.5, Answer(content="too late")), Answer(content="next"))
    with pytest.raises(httpx.ReadTimeout):
        client.post(CHAT, json={"messages": []}, timeout=0.1)
    assert message_of(chat(client))["content"] == "next"


def test_drop_closes_without_a_response(server: ChatServer, client: httpx.Client) -> None:
    server.script(Drop(), Answer(content="after"))
    with pytest.raises(httpx.TransportError) as caught:
        chat(client)
    assert isinstance(caught.value, (httpx.RemoteProtocolError, httpx.ReadError))
    assert message_of(chat(client))["content"] == "after"
    assert len(server.requests) == 2


def test_truncated_body_is_an_incomplete_message(server: ChatServer, client: httpx.Client) -> None:
    server.script(Truncated(Answer(content="x" * 200), keep=20), Answer(content="after"))
    with client.stream("POST", CHAT, json={"messages": []}) as response:
        assert response.status_code == 200
        assert int(response.headers["content-length"]) > 200
        with pytest.raises(httpx.RemoteProtocolError, match="received 20 bytes"):
            response.read()
    assert message_of(chat(client))["content"] == "after"


def test_truncated_after_delay(server: ChatServer, client: httpx.Client) -> None:
    server.script(Truncated(Delay(0.05, Fault(500)), keep=0))
    with pytest.raises(httpx.RemoteProtocolError):
        chat(client)


def test_stop_interrupts_a_pending_delay() -> None:
    server = ChatServer().start()
    server.script(Delay(30, Answer(content="never")))
    errors: list[BaseException] = []

    def call() -> None:
        try:
            httpx.post(server.base_url + CHAT, json={}, timeout=10)
        except httpx.TransportError as exc:
            errors.append(exc)

    caller = threading.Thread(target=call)
    caller.start()
    deadline = time.monotonic() + 2
    while not server.requests and time.monotonic() < deadline:
        time.sleep(0.005)
    started = time.perf_counter()
    server.stop()
    caller.join(timeout=5)
    assert time.perf_counter() - started < 2
    assert not caller.is_alive()
    assert len(errors) == 1


# --- recording ---------------------------------------------------------------


def test_requests_are_recorded_with_body_and_headers(
    server: ChatServer, client: httpx.Client
) -> None:
    server.script(Fault(500))
    response_format = {"type": "json_schema", "json_schema": {"name": "P", "schema": {}}}
    client.post(
        CHAT,
        json={
            "model": "m1",
            "messages": [{"role": "user", "content": "hi"}],
            "tools": [PERSON_TOOL],
            "response_format": response_format,
        },
        headers={"Authorization": "Bearer sk-secret", "X-Trace": "t1"},
    )
    [request] = server.requests  # recorded even though the answer was a fault
    assert request.method == "POST"
    assert request.path == "/v1/chat/completions"
    assert request.headers["authorization"] == "Bearer sk-secret"
    assert request.headers["x-trace"] == "t1"
    assert request.body is not None
    assert json.loads(request.raw) == request.body
    assert request.model == "m1"
    assert request.messages == [{"role": "user", "content": "hi"}]
    assert request.tools == [PERSON_TOOL]
    assert request.response_format == response_format
    assert "sk-secret" not in repr(request)
    assert "x-trace" in repr(request)


def test_recorded_request_defaults_when_fields_are_missing() -> None:
    request = RecordedRequest("POST", "/v1/chat/completions", {}, b"{}", {})
    assert request.messages == []
    assert request.tools == []
    assert request.model is None
    assert request.response_format is None


def test_requests_is_a_snapshot(server: ChatServer, client: httpx.Client) -> None:
    server.handler = lambda request: Answer(content="x")
    chat(client)
    snapshot = server.requests
    chat(client)
    assert len(snapshot) == 1
    assert len(server.requests) == 2


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]", b"\xff\xfe"])
def test_invalid_body_is_400_recorded_and_consumes_nothing(
    server: ChatServer, client: httpx.Client, body: bytes
) -> None:
    server.script(Answer(content="kept"))
    response = client.post(CHAT, content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["code"] is None
    assert isinstance(error["message"], str)
    [request] = server.requests
    assert request.body is None
    assert request.raw == body
    assert server.pending == 1


def test_chunked_request_body_is_read(server: ChatServer, client: httpx.Client) -> None:
    server.script(Answer(content="ok"))

    def parts() -> Iterator[bytes]:
        yield b'{"model": "chunky", '
        yield b'"messages": []}'

    response = client.post(CHAT, content=parts())
    assert message_of(response)["content"] == "ok"
    assert server.requests[0].model == "chunky"


# --- routes ------------------------------------------------------------------


def test_models_endpoint(client: httpx.Client) -> None:
    response = client.get("/models")
    assert response.status_code == 200
    data = response.json()
    assert data["object"] == "list"
    assert [model["id"] for model in data["data"]] == ["test-model"]


def test_chat_path_without_v1_prefix(server: ChatServer) -> None:
    server.script(Answer(content="root"))
    root = server.base_url.removesuffix("/v1")
    response = httpx.post(root + CHAT, json={"messages": []})
    assert message_of(response)["content"] == "root"


def test_unknown_path_and_wrong_method(server: ChatServer, client: httpx.Client) -> None:
    missing = client.post("/embeddings", json={})
    assert missing.status_code == 404
    assert "error" in missing.json()
    wrong = client.get(CHAT)
    assert wrong.status_code == 405
    assert wrong.headers["allow"] == "POST"
    assert server.requests == []


# --- lifecycle, validation and performance -------------------------------------


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.10", "example.com", "::"])
def test_non_loopback_host_is_refused(host: str) -> None:
    with pytest.raises(ValueError, match="loopback"):
        ChatServer(host=host)


def test_start_and_stop_are_idempotent() -> None:
    server = ChatServer()
    with pytest.raises(RuntimeError):
        _ = server.base_url
    assert server.start() is server
    url = server.base_url
    server.start()
    assert server.base_url == url
    assert url.startswith("http://127.0.0.1:")
    assert url.endswith("/v1")
    server.stop()
    server.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(url + "/models")


def test_ipv6_loopback_when_available() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        server = ChatServer(host="::1").start()
    except OSError:
        pytest.skip("IPv6 loopback unavailable")
    with server:
        assert server.base_url.startswith("http://[::1]:")
        assert httpx.get(server.base_url + "/models").status_code == 200


def test_items_validate_their_arguments() -> None:
    with pytest.raises(ValueError, match="status"):
        Fault(700)
    with pytest.raises(ValueError, match="seconds"):
        Delay(-1, Drop())
    with pytest.raises(ValueError, match="keep"):
        Truncated(Answer(), keep=-1)


def test_items_copy_caller_dicts() -> None:
    headers = {"X-A": "1"}
    answer = Answer(content="x", headers=headers)
    headers["X-A"] = "2"
    assert answer.headers == {"X-A": "1"}


def test_sequential_keep_alive_requests_are_fast(server: ChatServer, client: httpx.Client) -> None:
    # A stall from Nagle/delayed-ACK costs ~40 ms per response: 50 requests would take 2 s.
    server.handler = lambda request: Answer(content="{}")
    started = time.perf_counter()
    for _ in range(50):
        assert chat(client).status_code == 200
    assert time.perf_counter() - started < 1.0


def test_concurrent_requests_are_all_answered(server: ChatServer, client: httpx.Client) -> None:
    server.handler = lambda request: Delay(
        0.05, Answer(content=str(request.messages[0]["content"]))
    )

    def ask(n: int) -> str:
        response = client.post(CHAT, json={"messages": [{"role": "user", "content": f"q{n}"}]})
        return str(message_of(response)["content"])

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=50) as pool:
        answers = list(pool.map(ask, range(50)))
    assert answers == [f"q{n}" for n in range(50)]
    assert len(server.requests) == 50
    # Served in parallel: 50 sequential 50 ms delays would take 2.5 s.
    assert time.perf_counter() - started < 1.5
