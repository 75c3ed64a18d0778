"""A scriptable OpenAI-compatible chat-completions server for tests.

`ChatServer` listens on a real loopback socket, so the code under test goes through its
real HTTP client, timeouts and retry logic instead of a mock. You script what each chat
request gets back (an answer, an error, a delay, a dropped or truncated connection) and
afterwards inspect every request the server received.

Example::

    import httpx
    from extractor.testing import Answer, ChatServer, Fault

    with ChatServer() as server:
        server.script(
            Fault(429, headers={"Retry-After": "0"}),
            Answer(content='{"name": "Ann"}'),
        )
        url = server.base_url + "/chat/completions"
        first = httpx.post(url, json={"model": "m", "messages": []})
        second = httpx.post(url, json={"model": "m", "messages": []})
        assert first.status_code == 429
        assert second.json()["choices"][0]["message"]["content"] == '{"name": "Ann"}'
        assert len(server.requests) == 2

Scripted items are consumed first-in first-out, one per chat request. When the script
is empty, ``server.handler`` (a function of the `RecordedRequest`) is asked instead;
when there is neither, the server answers 500 so a missing script is loud.

The server also speaks two providers' batch APIs, so a batch client runs offline end to
end: OpenAI's (``/v1/files``, ``/v1/batches``) and Mistral's (``/v1/files``,
``/v1/batch/jobs``), sharing one store of files. Each request line of a batch is answered
from the same script and handler as online calls, in input order, when the batch is
polled; ``server.batch_lines`` records every line with its ``custom_id`` and batch. How a
batch plays out is a `BatchOutcome`, taken in creation order from ``server.batch_script``
(or asked of ``server.batch_handler``)::

    server.batch_script(BatchOutcome(polls=2), BatchOutcome(expire_after=1))
    server.script(Answer(content='{"name": "Ann"}'), Fault(500), Answer(content="{}"))
    # first batch: validating -> in_progress -> finalizing -> completed on the 3rd poll;
    # second batch: answers one line, then expires with the rest in its error file
"""

from __future__ import annotations

import contextlib
import ipaddress
import itertools
import json
import socket
import socketserver
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.utils import formatdate
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, TypeAlias, cast

from extractor._batch_server import (
    MISTRAL_MAX_LINES,
    OPENAI_MAX_BYTES,
    OPENAI_MAX_LINES,
    BatchOutcome,
    BatchStore,
    BatchSubmission,
    LineAnswer,
    LineRequest,
)
from extractor._scripted import ScriptedBackend

__all__ = [
    "Answer",
    "BatchOutcome",
    "BatchSubmission",
    "ChatServer",
    "Delay",
    "Drip",
    "Drop",
    "Echo",
    "Fault",
    "Heartbeat",
    "Item",
    "Raw",
    "RecordedRequest",
    "ScriptedBackend",
    "Stream",
    "Truncated",
]

DEFAULT_MODEL = "test-model"
"""Model name used in answers when neither the `Answer` nor the request names one."""

DEFAULT_USAGE: Mapping[str, int] = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
"""Token usage reported by an `Answer` that does not set its own."""

_NO_ANSWER_MESSAGE = "ChatServer: no scripted answer for this request"
_CHAT_PATHS = frozenset({"/v1/chat/completions", "/chat/completions"})
_MODEL_PATHS = frozenset({"/v1/models", "/models"})
_SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "api-key", "x-api-key"})
_MAX_RESOLVE_STEPS = 100  # guards against a callable item that keeps returning callables
_SEPARATE_BODY_WRITE = 1024 * 1024  # bodies above this are written apart from the head


def _check_status(status: int) -> None:
    if not 100 <= status <= 599:
        raise ValueError(f"HTTP status must be between 100 and 599, got {status}")


def _error_body(message: str, type_: str, code: int | str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "code": code}}


def _error_type(status: int) -> str:
    return {
        400: "invalid_request_error",
        401: "authentication_error",
        403: "permission_error",
        404: "not_found_error",
        409: "conflict_error",
        422: "invalid_request_error",
        429: "rate_limit_error",
    }.get(status, "server_error" if status >= 500 else "invalid_request_error")


# ---------------------------------------------------------------------------
# Recorded requests
# ---------------------------------------------------------------------------


@dataclass(frozen=True, repr=False)
class RecordedRequest:
    """One chat request as the server received it, kept so tests can assert on it.

    ``headers`` has lower-cased names. ``body`` is the parsed JSON object, or None when
    the body was not a JSON object; ``raw`` always holds the exact bytes.

    A request line of a provider batch (``server.batch_lines``) is recorded the same way,
    with ``custom_id`` and ``batch_id`` (the OpenAI batch or Mistral job it came in) set,
    no headers, and ``raw`` holding the line's exact bytes in the input file.
    """

    method: str
    path: str
    headers: dict[str, str]
    raw: bytes
    body: dict[str, Any] | None
    custom_id: str | None = None
    batch_id: str | None = None

    @property
    def messages(self) -> list[dict[str, Any]]:
        """The request's ``messages``, or an empty list when absent or malformed."""
        value = (self.body or {}).get("messages")
        return value if isinstance(value, list) else []

    @property
    def model(self) -> str | None:
        """The requested ``model``, if the body named one."""
        value = (self.body or {}).get("model")
        return value if isinstance(value, str) else None

    @property
    def tools(self) -> list[dict[str, Any]]:
        """The request's ``tools``, or an empty list when none were sent."""
        value = (self.body or {}).get("tools")
        return value if isinstance(value, list) else []

    @property
    def response_format(self) -> dict[str, Any] | None:
        """The request's ``response_format`` object, if any."""
        value = (self.body or {}).get("response_format")
        return value if isinstance(value, dict) else None

    def __repr__(self) -> str:
        # Credentials must not end up in test logs or assertion messages.
        shown = {k: ("<redacted>" if k in _SECRET_HEADERS else v) for k, v in self.headers.items()}
        batch = (
            f", custom_id={self.custom_id!r}, batch_id={self.batch_id!r}"
            if self.batch_id is not None
            else ""
        )
        return (
            f"RecordedRequest(method={self.method!r}, path={self.path!r}, "
            f"headers={shown!r}, body={self.body!r}{batch})"
        )


# ---------------------------------------------------------------------------
# Script items
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    """A successful ``chat.completion`` response built from a few fields.

    With ``tool_call`` set, the answer carries one function tool call whose arguments are
    ``tool_call`` (a dict is JSON-encoded, a string is sent verbatim so it may be invalid
    JSON on purpose). Its name is ``tool_name``, else the function forced by the request's
    ``tool_choice``, else the request's first function tool, else ``"extract"``.
    ``usage`` is sent as given, so provider extras such as ``cost`` pass through.
    """

    content: str | None = None
    tool_call: Mapping[str, Any] | str | None = field(default=None, hash=False)
    tool_name: str | None = None
    finish_reason: str = "stop"
    refusal: str | None = None
    usage: Mapping[str, Any] | None = field(default=None, hash=False)
    model: str | None = None
    status: int = 200
    headers: Mapping[str, str] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        _check_status(self.status)
        # Copy mappings so mutating the caller's dict later cannot change a scripted item.
        object.__setattr__(self, "headers", dict(self.headers))
        if self.usage is not None:
            object.__setattr__(self, "usage", dict(self.usage))
        if self.tool_call is not None and not isinstance(self.tool_call, str):
            object.__setattr__(self, "tool_call", dict(self.tool_call))


@dataclass(frozen=True)
class Fault:
    """An error response with the given status.

    ``body`` may be a dict (sent as JSON), a str or bytes (sent as-is, ``text/plain``
    unless ``headers`` sets Content-Type). None gives an OpenAI-style error object.
    """

    status: int
    body: Mapping[str, Any] | str | bytes | None = field(default=None, hash=False)
    headers: Mapping[str, str] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        _check_status(self.status)
        object.__setattr__(self, "headers", dict(self.headers))


@dataclass(frozen=True)
class Raw:
    """Exactly these body bytes, for malformed JSON or a 200 that is really an error."""

    body: bytes | str
    status: int = 200
    headers: Mapping[str, str] = field(default_factory=dict, hash=False)
    content_type: str = "application/json"

    def __post_init__(self) -> None:
        _check_status(self.status)
        object.__setattr__(self, "headers", dict(self.headers))


@dataclass(frozen=True)
class Delay:
    """Wait ``seconds`` before serving ``then``, to exercise client timeouts.

    The wait ends early when the server stops, so a long delay never outlives a test.
    """

    seconds: float
    then: Item

    def __post_init__(self) -> None:
        if self.seconds < 0:
            raise ValueError(f"Delay seconds must be >= 0, got {self.seconds}")


@dataclass(frozen=True)
class Drop:
    """Close the connection without sending a byte, like a crashed upstream."""


@dataclass(frozen=True)
class Drip:
    """Send ``then`` one byte every ``interval`` seconds: a server too slow to finish.

    Each byte arrives well within any read timeout, so only a deadline on the whole
    request ends it. With ``head`` the status line and headers drip too; otherwise they
    go at once and only the body drips. Stops when the client hangs up or the server
    stops.
    """

    then: Item
    interval: float = 1.0
    head: bool = False

    def __post_init__(self) -> None:
        if self.interval < 0:
            raise ValueError(f"Drip interval must be >= 0, got {self.interval}")


@dataclass(frozen=True)
class Heartbeat:
    """A 200 ``text/event-stream`` that sends only SSE comments, never an answer.

    One comment line (``: OPENROUTER PROCESSING``) every ``interval`` seconds, for
    ``seconds`` in all, then the body ends with no data: what a router sends while its
    upstream thinks, here forever as far as a client's read timeout can tell. Served so
    to streaming and non-streaming requests alike.
    """

    interval: float = 1.0
    comment: str = "OPENROUTER PROCESSING"
    seconds: float = 60.0

    def __post_init__(self) -> None:
        if self.interval <= 0:
            raise ValueError(f"Heartbeat interval must be > 0, got {self.interval}")


@dataclass(frozen=True)
class Echo:
    """Serve ``then`` with the request's credentials echoed back in response headers.

    Each secret header the request carried (``Authorization``, ``api-key``, ...) comes
    back as ``X-Echo-<Name>``, as misconfigured proxies and debug endpoints do: a
    client must not keep or log it.
    """

    then: Item


@dataclass(frozen=True)
class Truncated:
    """Send ``then`` with its full Content-Length but only ``keep`` body bytes, then close.

    This is what a connection cut mid-response looks like to the client.
    """

    then: Item
    keep: int = 20

    def __post_init__(self) -> None:
        if self.keep < 0:
            raise ValueError(f"Truncated keep must be >= 0, got {self.keep}")


@dataclass(frozen=True)
class Stream:
    """Serve ``answer`` as server-sent events when the request asks for ``stream: true``.

    The answer's content (or tool-call arguments, or refusal) goes out in deltas of
    ``chunk_size`` characters, ``delay`` seconds apart, then a chunk with the finish
    reason, a usage chunk (when the request sets ``stream_options.include_usage``, or
    ``usage`` is True) and ``data: [DONE]``. Faults a real provider produces:

    - ``comment``: an SSE comment line (``: OPENROUTER PROCESSING``) before the first
      chunk and between chunks;
    - ``error_after``: after that many deltas, an error chunk the way OpenRouter sends
      one mid-stream (an ``error`` object and ``finish_reason: "error"``), then the end;
    - ``cut_after``: after that many deltas, the connection is cut;
    - ``hold``: the last delta waits until this event is set, so a test can look at what
      arrived before the end; if it is not set within ``hold_timeout`` seconds the
      connection is cut, so a client that buffers the whole stream fails loudly.

    A plain `Answer` scripted for a streaming request is served as ``Stream(answer)``; a
    `Stream` scripted for a request without ``stream`` is served as its answer.
    """

    answer: Answer = field(default_factory=Answer)
    chunk_size: int = 8
    delay: float = 0.0
    comment: str | None = None
    error_after: int | None = None
    error: Mapping[str, Any] = field(
        default_factory=lambda: {"code": 502, "message": "Provider disconnected unexpectedly"},
        hash=False,
    )
    cut_after: int | None = None
    hold: threading.Event | None = field(default=None, hash=False, compare=False)
    hold_timeout: float = 5.0
    usage: bool | None = None
    done: bool = True
    crlf: bool = False

    def __post_init__(self) -> None:
        if self.chunk_size < 1:
            raise ValueError(f"Stream chunk_size must be >= 1, got {self.chunk_size}")
        if self.delay < 0:
            raise ValueError(f"Stream delay must be >= 0, got {self.delay}")
        object.__setattr__(self, "error", dict(self.error))
        object.__setattr__(self, "delay", float(self.delay))


Item: TypeAlias = (
    Answer
    | Fault
    | Raw
    | Delay
    | Drip
    | Drop
    | Echo
    | Heartbeat
    | Truncated
    | Stream
    | Callable[[RecordedRequest], "Item"]
)
"""Anything that can be scripted: a response description, or a function of the request
that returns one (resolved when the request arrives)."""


# ---------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Response:
    status: int
    body: bytes | memoryview  # a view of a stored batch file is sent without a copy
    content_type: str
    headers: Mapping[str, str]


def _json_response(
    status: int, payload: Any, headers: Mapping[str, str] | None = None
) -> _Response:
    body = json.dumps(payload).encode()
    return _Response(status, body, "application/json", headers or {})


def _tool_name(request: RecordedRequest) -> str:
    body = request.body or {}
    choice = body.get("tool_choice")
    if isinstance(choice, dict):
        function = choice.get("function")
        if isinstance(function, dict) and isinstance(function.get("name"), str):
            return cast(str, function["name"])
    for tool in request.tools:
        if isinstance(tool, dict) and tool.get("type", "function") == "function":
            function = tool.get("function")
            if isinstance(function, dict) and isinstance(function.get("name"), str):
                return cast(str, function["name"])
    return "extract"


def _render(
    item: Answer | Fault | Raw,
    request: RecordedRequest,
    ids: Callable[[], int],
    model: str | None = None,
) -> _Response:
    """The HTTP response an `Answer`, `Fault` or `Raw` stands for, as the chat path sends it."""
    if isinstance(item, Raw):
        body = item.body.encode() if isinstance(item.body, str) else item.body
        return _Response(item.status, body, item.content_type, item.headers)
    if isinstance(item, Fault):
        if item.body is None:
            message = f"ChatServer fault {item.status}"
            payload = _error_body(message, _error_type(item.status), item.status)
            return _json_response(item.status, payload, item.headers)
        if isinstance(item.body, bytes):
            return _Response(item.status, item.body, "text/plain", item.headers)
        if isinstance(item.body, str):
            text = item.body.encode()
            return _Response(item.status, text, "text/plain; charset=utf-8", item.headers)
        return _json_response(item.status, dict(item.body), item.headers)
    return _json_response(item.status, _completion(item, request, ids, model), item.headers)


def _completion(
    answer: Answer, request: RecordedRequest, ids: Callable[[], int], model: str | None = None
) -> dict[str, Any]:
    """The ``chat.completion`` body of an `Answer`; ``model`` names it when nothing else does."""
    message: dict[str, Any] = {"role": "assistant", "content": answer.content}
    if answer.refusal is not None:
        message["refusal"] = answer.refusal
    if answer.tool_call is not None:
        arguments = (
            answer.tool_call
            if isinstance(answer.tool_call, str)
            else json.dumps(dict(answer.tool_call))
        )
        function = {"name": answer.tool_name or _tool_name(request), "arguments": arguments}
        message["tool_calls"] = [{"id": f"call_{ids()}", "type": "function", "function": function}]
    return {
        "id": f"chatcmpl-{ids()}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": answer.model or request.model or model or DEFAULT_MODEL,
        "choices": [{"index": 0, "message": message, "finish_reason": answer.finish_reason}],
        "usage": dict(answer.usage if answer.usage is not None else DEFAULT_USAGE),
    }


def _batch_answer(
    item: Item, request: RecordedRequest, ids: Callable[[], int], model: str | None
) -> LineAnswer:
    """What the chat path would answer ``request`` with ``item``, for a batch line.

    Pacing and connection faults have no meaning inside a provider's batch: delays do not
    sleep, and a dropped connection (or a heartbeat that never answers) becomes a line
    with an ``error`` and no ``response``.
    """
    current: Item = item
    for _ in range(_MAX_RESOLVE_STEPS):
        if isinstance(current, (Delay, Drip, Echo, Truncated)):
            current = current.then
        elif isinstance(current, Stream):
            current = current.answer
        elif isinstance(current, (Drop, Heartbeat)):
            message = "ChatServer: the connection closed before an answer"
            return LineAnswer(None, error_code="server_error", error_message=message)
        elif isinstance(current, (Answer, Fault, Raw)):
            response = _render(current, request, ids, model)
            text = bytes(response.body)
            try:
                body: Any = json.loads(text)
            except (ValueError, UnicodeDecodeError):
                body = text.decode("utf-8", "replace")
            if not isinstance(body, dict):
                body = text.decode("utf-8", "replace")
            return LineAnswer(response.status, body)
        else:
            try:
                current = current(request)
            except Exception as exc:  # a broken handler must be visible in the error file
                message = f"ChatServer: scripted callable raised {exc!r}"
                return LineAnswer(500, _error_body(message, "server_error"))
    message = "ChatServer: scripted callables nested too deeply"
    return LineAnswer(500, _error_body(message, "server_error"))


# ---------------------------------------------------------------------------
# HTTP plumbing
# ---------------------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024  # default listen backlog is 5, which stalls bursts of clients

    def __init__(
        self, address: tuple[str, int], family: socket.AddressFamily, chat: ChatServer
    ) -> None:
        self.address_family = family
        self.chat = chat
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind does a reverse DNS lookup (getfqdn) we do not need.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients hanging up (or the server stopping under them) is normal in tests.
        error = sys.exc_info()[1]
        if isinstance(error, ConnectionError) or self.chat._stopping.is_set():
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "extractor-testing"
    disable_nagle_algorithm = True  # with Nagle on, each response stalls ~40 ms on loopback

    @property
    def _chat(self) -> ChatServer:
        return cast(_Server, self.server).chat

    def setup(self) -> None:
        super().setup()
        self._chat._track(self.connection)

    def finish(self) -> None:
        self._chat._untrack(self.connection)
        super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        """Stay silent: request logs would only clutter test output."""

    def do_GET(self) -> None:
        self._route()

    def do_POST(self) -> None:
        self._route()

    def do_PUT(self) -> None:
        self._route()

    def do_PATCH(self) -> None:
        self._route()

    def do_DELETE(self) -> None:
        self._route()

    # -- request side -------------------------------------------------------

    def _read_body(self) -> bytes | None:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked()
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            return None
        if length < 0:
            return None
        return self.rfile.read(length) if length else b""

    def _read_chunked(self) -> bytes | None:
        parts: list[bytes] = []
        while True:
            line = self.rfile.readline(65537)
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                return None
            if size == 0:
                while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                    pass  # skip trailers
                return b"".join(parts)
            parts.append(self.rfile.read(size))
            self.rfile.readline(65537)  # CRLF after each chunk

    def _route(self) -> None:
        raw = self._read_body()
        if raw is None:
            self.close_connection = True
            self._send(
                _json_response(
                    400, _error_body("Malformed request body framing", "invalid_request_error")
                )
            )
            return
        route = self.path.split("?", 1)[0].rstrip("/")
        reply = self._chat._batch_call(self.command, self.path, self._header_map(), raw)
        if reply is not None:
            self._send(reply)
        elif route in _CHAT_PATHS:
            if self.command == "POST":
                self._chat_completion(raw)
            else:
                self._method_not_allowed("POST")
        elif route in _MODEL_PATHS:
            if self.command == "GET":
                self._send(_json_response(200, self._models()))
            else:
                self._method_not_allowed("GET")
        else:
            message = f"ChatServer: unknown path {self.command} {self.path}"
            self._send(_json_response(404, _error_body(message, "invalid_request_error")))

    def _method_not_allowed(self, allowed: str) -> None:
        message = f"ChatServer: method {self.command} not allowed on {self.path}"
        error = _error_body(message, "invalid_request_error")
        self._send(_json_response(405, error, {"Allow": allowed}))

    @staticmethod
    def _models() -> dict[str, Any]:
        model = {"id": DEFAULT_MODEL, "object": "model", "created": 0, "owned_by": "extractor"}
        return {"object": "list", "data": [model]}

    def _header_map(self) -> dict[str, str]:
        headers: dict[str, str] = {}
        for name, value in self.headers.items():
            key = name.lower()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        return headers

    def _chat_completion(self, raw: bytes) -> None:
        body: dict[str, Any] | None = None
        problem: str | None = None
        try:
            parsed = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            problem = f"ChatServer: request body is not valid JSON ({exc})"
        else:
            if isinstance(parsed, dict):
                body = parsed
            else:
                problem = "ChatServer: request body must be a JSON object"
        request = RecordedRequest(self.command, self.path, self._header_map(), raw, body)
        item = self._chat._take(request, consume=problem is None)
        if problem is not None:
            self._send(_json_response(400, _error_body(problem, "invalid_request_error")))
        elif item is None:
            self._send(_json_response(500, _error_body(_NO_ANSWER_MESSAGE, "server_error")))
        else:
            self._serve(item, request)

    # -- response side ------------------------------------------------------

    def _serve(self, item: Item, request: RecordedRequest) -> None:
        keep: int | None = None
        drip: Drip | None = None
        echoed: dict[str, str] = {}
        current: Item = item
        for _ in range(_MAX_RESOLVE_STEPS):
            if isinstance(current, Echo):
                for name, value in self.headers.items():
                    if name.lower() in _SECRET_HEADERS:
                        echoed[f"X-Echo-{name}"] = value
                current = current.then
            elif isinstance(current, Drip):
                drip = current
                current = current.then
            elif isinstance(current, Heartbeat):
                _serve_heartbeat(self, current)
                return
            elif isinstance(current, Delay):
                if self._chat._stopping.wait(current.seconds):
                    self._drop()  # the server stopped meanwhile: a stopped server answers nothing
                    return
                current = current.then
            elif isinstance(current, Truncated):
                keep = current.keep if keep is None else min(keep, current.keep)
                current = current.then
            elif isinstance(current, Drop):
                self._drop()
                return
            elif isinstance(current, (Answer, Stream)) and _wants_stream(request, current):
                stream = current if isinstance(current, Stream) else Stream(current)
                _serve_stream(self, stream, request, drip)
                return
            elif isinstance(current, Stream):
                current = current.answer
            elif isinstance(current, (Answer, Fault, Raw)):
                response = self._render(current, request)
                if echoed:
                    headers = {**response.headers, **echoed}
                    response = _Response(
                        response.status, response.body, response.content_type, headers
                    )
                self._send(response, keep, drip)
                return
            else:
                try:
                    current = current(request)
                except Exception as exc:  # a broken handler (or non-item) must be visible
                    message = f"ChatServer: scripted callable raised {exc!r}"
                    self._send(_json_response(500, _error_body(message, "server_error")))
                    return
        message = "ChatServer: scripted callables nested too deeply"
        self._send(_json_response(500, _error_body(message, "server_error")))

    def _render(self, item: Answer | Fault | Raw, request: RecordedRequest) -> _Response:
        return _render(item, request, self._chat._next_id)

    def _send(self, response: _Response, keep: int | None = None, drip: Drip | None = None) -> None:
        try:
            phrase = HTTPStatus(response.status).phrase
        except ValueError:
            phrase = ""
        headers: dict[str, str] = {
            "Content-Type": response.content_type,
            "Date": formatdate(usegmt=True),
            "Server": self.server_version,
        }
        if self.close_connection or keep is not None:
            headers["Connection"] = "close"
        lowered = {name.lower(): name for name in headers}
        for name, value in response.headers.items():
            if name.lower() in ("content-length", "transfer-encoding"):
                continue  # framing stays ours; use Truncated for a lying Content-Length
            headers.pop(lowered.get(name.lower(), name), None)
            headers[name] = value
        headers["Content-Length"] = str(len(response.body))
        head = f"HTTP/1.1 {response.status} {phrase}\r\n"
        head += "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        body = response.body if keep is None else response.body[:keep]
        if drip is None and len(body) > _SEPARATE_BODY_WRITE:
            # A large body (a batch file of hundreds of MB) goes out as it is stored: one
            # write for the head, one for the body, never a concatenated copy of both.
            try:
                self.wfile.write(head.encode("latin-1") + b"\r\n")
                self.wfile.write(body)
                self.wfile.flush()
            except OSError:
                self.close_connection = True
                return
            if keep is not None:
                self._drop()
            return
        data = head.encode("latin-1") + b"\r\n" + body
        try:
            if drip is not None:
                self._drip(data, drip, len(data) - len(body))
                return
            # One write: headers and body split over two writes stall on delayed ACKs.
            self.wfile.write(data)
            self.wfile.flush()
        except OSError:  # the client hung up (e.g. during a Delay): nothing left to do
            self.close_connection = True
            return
        if keep is not None:
            self._drop()

    def _drip(self, data: bytes, drip: Drip, head: int) -> bool:
        """Write `data`, its first `head` bytes at once unless they drip too; False if stopped."""
        at = 0
        if not drip.head:
            self.wfile.write(data[:head])
            self.wfile.flush()
            at = head
        for index in range(at, len(data)):
            if self._chat._stopping.wait(drip.interval):
                self._drop()
                return False
            self.wfile.write(data[index : index + 1])
            self.wfile.flush()
        return True

    def _drop(self) -> None:
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)


# ---------------------------------------------------------------------------
# Streaming (server-sent events)
# ---------------------------------------------------------------------------


def _wants_stream(request: RecordedRequest, item: Answer | Stream) -> bool:
    answer = item.answer if isinstance(item, Stream) else item
    return (request.body or {}).get("stream") is True and answer.status == 200


def _sse_chunks(stream: Stream, request: RecordedRequest, ids: Callable[[], int]) -> list[Any]:
    """The events of one streamed answer, in order; a float is a pause, None a cut."""
    answer = stream.answer
    base = {
        "id": f"chatcmpl-{ids()}",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": answer.model or request.model or DEFAULT_MODEL,
    }

    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        return {**base, "choices": [choice], **extra}

    if answer.tool_call is not None:
        arguments = (
            answer.tool_call
            if isinstance(answer.tool_call, str)
            else json.dumps(dict(answer.tool_call))
        )
        name = answer.tool_name or _tool_name(request)
        call = {"index": 0, "id": f"call_{ids()}", "type": "function"}
        first = chunk({"role": "assistant", "tool_calls": [{**call, "function": {"name": name}}]})

        def piece(text: str) -> dict[str, Any]:
            return chunk({"tool_calls": [{"index": 0, "function": {"arguments": text}}]})

        text = arguments
    elif answer.refusal is not None:
        first = chunk({"role": "assistant", "content": None})

        def piece(text: str) -> dict[str, Any]:
            return chunk({"refusal": text})

        text = answer.refusal
    else:
        first = chunk({"role": "assistant", "content": ""})

        def piece(text: str) -> dict[str, Any]:
            return chunk({"content": text})

        text = answer.content or ""
    pieces = [text[i : i + stream.chunk_size] for i in range(0, len(text), stream.chunk_size)]
    events: list[Any] = [f": {stream.comment}"] if stream.comment is not None else []
    events.append(first)
    for sent, part in enumerate(pieces):
        if stream.error_after is not None and sent == stream.error_after:
            events.append(chunk({"content": ""}, "error", error=dict(stream.error)))
            return events
        if stream.cut_after is not None and sent == stream.cut_after:
            events.append(None)
            return events
        if sent:
            if stream.delay:
                events.append(stream.delay)
            if stream.comment is not None:
                events.append(f": {stream.comment}")
        if stream.hold is not None and sent == len(pieces) - 1:
            events.append(stream.hold)
        events.append(piece(part))
    if stream.error_after is not None:  # asked for an error after every delta went out
        events.append(chunk({"content": ""}, "error", error=dict(stream.error)))
        return events
    events.append(chunk({}, answer.finish_reason))
    options = (request.body or {}).get("stream_options")
    wanted = isinstance(options, dict) and options.get("include_usage") is True
    if stream.usage or (stream.usage is None and wanted):
        usage = dict(answer.usage if answer.usage is not None else DEFAULT_USAGE)
        events.append({**base, "choices": [], "usage": usage})
    if stream.done:
        events.append("[DONE]")
    return events


def _released(hold: threading.Event, timeout: float, stopping: threading.Event) -> bool:
    """Wait for `hold`; False if it timed out or the server began stopping meanwhile."""
    deadline = time.monotonic() + timeout
    while not hold.wait(min(0.05, max(deadline - time.monotonic(), 0.0))):
        if stopping.is_set() or time.monotonic() >= deadline:
            return False
    return not stopping.is_set()


def _serve_heartbeat(handler: _Handler, beat: Heartbeat) -> None:
    """Write SSE comments, one HTTP chunk each, until `beat.seconds` pass; then end."""
    chat = handler._chat
    head = (
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
        f"Date: {formatdate(usegmt=True)}\r\nServer: {handler.server_version}\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
    )
    line = f": {beat.comment}\n\n".encode()
    until = time.monotonic() + beat.seconds
    try:
        handler.wfile.write(head.encode("latin-1"))
        handler.wfile.flush()
        while time.monotonic() < until:
            handler.wfile.write(f"{len(line):x}\r\n".encode() + line + b"\r\n")
            handler.wfile.flush()
            if chat._stopping.wait(beat.interval):
                handler._drop()
                return
        handler.wfile.write(b"0\r\n\r\n")
        handler.wfile.flush()
    except OSError:  # the client gave up: what this item is for
        handler.close_connection = True


def _serve_stream(
    handler: _Handler, stream: Stream, request: RecordedRequest, drip: Drip | None = None
) -> None:
    """Write a streamed answer as chunked server-sent events, one HTTP chunk per event."""
    chat = handler._chat

    def write(data: bytes, head: bool = False) -> bool:
        if drip is not None and (drip.head or not head):
            return handler._drip(data, drip, 0)
        handler.wfile.write(data)
        handler.wfile.flush()
        return True

    events = _sse_chunks(stream, request, chat._next_id)
    newline = "\r\n" if stream.crlf else "\n"
    headers = {
        "Content-Type": "text/event-stream",
        "Cache-Control": "no-cache",
        "Date": formatdate(usegmt=True),
        "Server": handler.server_version,
        **stream.answer.headers,
        "Transfer-Encoding": "chunked",
    }
    head = "HTTP/1.1 200 OK\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    try:
        if not write(head.encode("latin-1") + b"\r\n", head=True):
            return
        for event in events:
            if event is None:
                handler._drop()  # cut mid-stream: the chunked body never ends
                return
            if isinstance(event, float):
                if chat._stopping.wait(event):
                    handler._drop()
                    return
                continue
            if isinstance(event, threading.Event):
                if not _released(event, stream.hold_timeout, chat._stopping):
                    handler._drop()
                    return
                continue
            if isinstance(event, str) and event.startswith(":"):
                line = f"{event}{newline}{newline}"
            else:
                data = event if isinstance(event, str) else json.dumps(event)
                line = f"data: {data}{newline}{newline}"
            body = line.encode()
            if not write(f"{len(body):x}\r\n".encode() + body + b"\r\n"):
                return
        write(b"0\r\n\r\n")
    except OSError:  # the client hung up mid-stream
        handler.close_connection = True


# ---------------------------------------------------------------------------
# Public server
# ---------------------------------------------------------------------------


def _bind_family(host: str) -> tuple[str, socket.AddressFamily]:
    if host == "localhost":
        return "127.0.0.1", socket.AF_INET
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"ChatServer host must be a loopback IP address, got {host!r}") from None
    if not address.is_loopback:
        raise ValueError(f"ChatServer only binds loopback addresses, got {host!r}")
    family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
    return str(address), family


class ChatServer:
    """An OpenAI-compatible chat-completions server on a loopback port, driven by a script.

    It binds only loopback addresses so a test double is never reachable from the network.
    Use it as a context manager, or call `start` and `stop` yourself.

    It also serves OpenAI's and Mistral's batch APIs (files, batches, batch jobs); see
    `batch_script`. ``batch_max_lines`` and ``batch_max_bytes`` are the per-file limits
    of an OpenAI batch (50,000 requests, 200 MB), ``mistral_batch_max_lines`` the
    requests one Mistral job may hold; all three may be changed while the server runs.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        batch_max_lines: int = OPENAI_MAX_LINES,
        batch_max_bytes: int = OPENAI_MAX_BYTES,
        mistral_batch_max_lines: int = MISTRAL_MAX_LINES,
    ) -> None:
        self._host, self._family = _bind_family(host)
        self._requested_port = port
        self._lock = threading.Lock()
        self._queue: deque[Item] = deque()
        self._requests: list[RecordedRequest] = []
        self._ids = itertools.count(1)
        self._connections: set[socket.socket] = set()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self.handler: Callable[[RecordedRequest], Item] | None = None
        """Asked for an item when the script is empty; None means answer 500."""
        self._batch_queue: deque[BatchOutcome] = deque()
        self._batch_lines: list[RecordedRequest] = []
        self._batch_calls: list[RecordedRequest] = []
        self.batch_handler: Callable[[BatchSubmission], BatchOutcome] | None = None
        """Asked for a new batch's outcome when the batch script is empty; None: default."""
        self.on_batch_call: Callable[[RecordedRequest], None] | None = None
        """Called with each files or batches request once the server has acted on it and
        before it replies (in the server's thread): a test can kill its client there, at
        the worst moment (the file stored, the batch created, its id never received)."""
        self._batches = BatchStore(
            self._answer_line,
            self._choose_outcome,
            max_lines=batch_max_lines,
            max_bytes=batch_max_bytes,
            mistral_max_lines=mistral_batch_max_lines,
        )

    # -- lifecycle ----------------------------------------------------------

    def start(self) -> ChatServer:
        """Bind and start serving in a daemon thread; does nothing if already running."""
        if self._server is not None:
            return self
        self._stopping = threading.Event()
        server = _Server((self._host, self._requested_port), self._family, self)
        thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.005},  # stop() waits up to this long; keep tests fast
            name=f"ChatServer:{server.server_port}",
            daemon=True,
        )
        self._server, self._thread = server, thread
        thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, cut open connections and free the port; safe to call twice."""
        server, thread = self._server, self._thread
        if server is None:
            return
        self._stopping.set()  # also wakes handlers sleeping in a Delay
        server.shutdown()
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        server.server_close()
        if thread is not None:
            thread.join()
        self._server = self._thread = None

    def __enter__(self) -> ChatServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- addresses ----------------------------------------------------------

    @property
    def port(self) -> int:
        """The bound port (useful when constructed with port=0)."""
        if self._server is None:
            raise RuntimeError("ChatServer is not running; call start() or use `with`")
        return self._server.server_port

    @property
    def base_url(self) -> str:
        """The OpenAI-style base URL, e.g. ``http://127.0.0.1:PORT/v1``."""
        host = f"[{self._host}]" if self._family == socket.AF_INET6 else self._host
        return f"http://{host}:{self.port}/v1"

    # -- scripting and inspection ------------------------------------------

    def script(self, *items: Item) -> None:
        """Append items to the FIFO script; each chat request consumes one."""
        with self._lock:
            self._queue.extend(items)

    @property
    def pending(self) -> int:
        """How many scripted items are still unconsumed."""
        with self._lock:
            return len(self._queue)

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of every chat request received so far, in arrival order."""
        with self._lock:
            return list(self._requests)

    def reset(self) -> None:
        """Forget the scripts, the handlers and the recorded requests and batch lines.

        Stored files and batches stay: they live as long as the server.
        """
        with self._lock:
            self._queue.clear()
            self._requests.clear()
            self.handler = None
            self._batch_queue.clear()
            self._batch_lines.clear()
            self._batch_calls.clear()
            self.batch_handler = None
            self.on_batch_call = None

    # -- provider batch APIs ------------------------------------------------

    def batch_script(self, *outcomes: BatchOutcome) -> None:
        """Append outcomes to the batch script; each new batch or Mistral job takes one.

        Batches take outcomes in the order they are created, OpenAI's and Mistral's alike.
        When the script is empty, ``batch_handler`` (a function of the `BatchSubmission`)
        is asked; without one a batch gets ``BatchOutcome()``: it completes on the first
        poll after creation. The batch's request lines are answered from the chat script
        and ``handler``, one item per line in input order, exactly as online calls are::

            server.batch_script(BatchOutcome(polls=2), BatchOutcome(expire_after=1))
            server.script(Answer(content='{"name": "Ann"}'), Fault(429))
        """
        for outcome in outcomes:
            if not isinstance(outcome, BatchOutcome):
                raise TypeError(f"batch_script takes BatchOutcome items, got {outcome!r}")
        with self._lock:
            self._batch_queue.extend(outcomes)

    @property
    def pending_batch_outcomes(self) -> int:
        """How many scripted batch outcomes are still unconsumed."""
        with self._lock:
            return len(self._batch_queue)

    @property
    def batch_lines(self) -> list[RecordedRequest]:
        """A snapshot of every batch request line answered so far, in the order they ran.

        Each has ``custom_id`` and ``batch_id`` set: a test can count how often a
        document's line was submitted across batches, OpenAI's and Mistral's.
        """
        with self._lock:
            return list(self._batch_lines)

    @property
    def batch_calls(self) -> list[RecordedRequest]:
        """A snapshot of every request to the files and batch endpoints, in arrival order.

        ``body`` is the parsed JSON object (None for uploads, whose ``raw`` is the
        multipart body).
        """
        with self._lock:
            return list(self._batch_calls)

    def file_content(self, file_id: str) -> bytes:
        """The content of a stored file (uploaded or produced by a batch)."""
        content = self._batches.file_bytes(file_id)
        if content is None:
            raise KeyError(file_id)
        return content

    @property
    def batch_max_lines(self) -> int:
        """Requests one OpenAI batch input file may hold (default 50,000)."""
        return self._batches.max_lines

    @batch_max_lines.setter
    def batch_max_lines(self, value: int) -> None:
        self._batches.max_lines = value

    @property
    def batch_max_bytes(self) -> int:
        """Bytes one OpenAI batch input file may hold (default 200 MB)."""
        return self._batches.max_bytes

    @batch_max_bytes.setter
    def batch_max_bytes(self, value: int) -> None:
        self._batches.max_bytes = value

    @property
    def mistral_batch_max_lines(self) -> int:
        """Requests one Mistral batch job may hold (default 1,000,000)."""
        return self._batches.mistral_max_lines

    @mistral_batch_max_lines.setter
    def mistral_batch_max_lines(self, value: int) -> None:
        self._batches.mistral_max_lines = value

    def _batch_call(
        self, method: str, target: str, headers: dict[str, str], raw: bytes
    ) -> _Response | None:
        reply = self._batches.handle(method, target, headers, raw)
        if reply is None:
            return None
        body: dict[str, Any] | None = None
        if "json" in headers.get("content-type", ""):
            with contextlib.suppress(ValueError, UnicodeDecodeError):
                parsed = json.loads(raw)
                body = parsed if isinstance(parsed, dict) else None
        recorded = RecordedRequest(method, target, headers, raw, body)
        with self._lock:
            self._batch_calls.append(recorded)
            hook = self.on_batch_call
        if hook is not None:
            hook(recorded)
        return _Response(reply.status, reply.body, reply.content_type, reply.headers)

    def _choose_outcome(self, submission: BatchSubmission) -> BatchOutcome:
        with self._lock:
            if self._batch_queue:
                return self._batch_queue.popleft()
            handler = self.batch_handler
        return BatchOutcome() if handler is None else handler(submission)

    def _answer_line(self, line: LineRequest) -> LineAnswer:
        request = RecordedRequest(
            "POST", line.path, {}, line.raw, line.body, line.custom_id, line.batch_id
        )
        with self._lock:
            self._batch_lines.append(request)
            item = self._queue.popleft() if self._queue else self.handler
        if item is None:
            return LineAnswer(500, _error_body(_NO_ANSWER_MESSAGE, "server_error"))
        return _batch_answer(item, request, self._next_id, line.model)

    def __repr__(self) -> str:
        where = self.base_url if self._server is not None else "stopped"
        return f"ChatServer({where}, pending={self.pending}, requests={len(self.requests)})"

    # -- used by the request handler ---------------------------------------

    def _take(self, request: RecordedRequest, consume: bool) -> Item | None:
        # Recording and consuming under one lock keeps requests[i] paired with item i.
        with self._lock:
            self._requests.append(request)
            if not consume:
                return None
            if self._queue:
                return self._queue.popleft()
            return self.handler

    def _next_id(self) -> int:
        with self._lock:
            return next(self._ids)

    @property
    def open_connections(self) -> int:
        """How many client connections are open right now."""
        with self._lock:
            return len(self._connections)

    def _track(self, connection: socket.socket) -> None:
        with self._lock:
            self._connections.add(connection)

    def _untrack(self, connection: socket.socket) -> None:
        with self._lock:
            self._connections.discard(connection)
