"""The only I/O of a remote extraction: POST a body, get JSON back, or a typed error.

httpx exceptions and error statuses are translated here into the `APIError` tree, with
the key masked wherever the server might have echoed it (bodies and headers alike).
Response bodies are capped, and every request has a deadline: `timeout` seconds from
connecting to the last byte, however slowly the bytes come (httpx's own timeouts are per
read, so a server sending one byte a second would hold a request forever).
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import json
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Generator, Iterator
from typing import Any, Final

import httpcore
import httpx

from extractor._errors import APIConnectionError, APIStatusError, APITimeoutError
from extractor._providers import Endpoint
from extractor._retry import retry_after
from extractor._sse import SSEDecoder, SSEEvent

__all__ = [
    "MAX_RESPONSE_BYTES",
    "acall",
    "adownload",
    "aopen_stream",
    "apost",
    "aread_stream",
    "open_stream",
    "post",
    "read_stream",
    "sync_transport",
]

logger = logging.getLogger("extractor")

#: Larger answers are refused: no extraction answer is this big.
MAX_RESPONSE_BYTES: Final = 16 * 1024 * 1024
#: Where `open_stream` leaves the stream's deadline on the response, for `read_stream`.
_EXPIRES: Final = "extractor.expires"


# --- deadlines ------------------------------------------------------------------------
#
# Sync: the socket reads and writes of a request see its deadline through a context
# variable, and each waits at most until then (`_DeadlineBackend`, installed by
# `sync_transport`). Async: the whole request runs under `asyncio.wait_for`. Either way
# the body is also checked against the deadline as each chunk arrives, which bounds a
# transport supplied by the user too.

_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "extractor_deadline", default=None
)


def _left(timeout: float | None) -> float | None:
    """A socket operation's timeout, shortened to what is left of the request's deadline."""
    expires = _deadline.get()
    if expires is None:
        return timeout
    left = expires - time.monotonic()
    if left <= 0:
        raise httpcore.ReadTimeout("the request's deadline passed")
    return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _left(timeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, _left(timeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self, ssl_context: Any, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        return _DeadlineStream(self._inner.start_tls(ssl_context, server_hostname, _left(timeout)))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _DeadlineBackend(httpcore.NetworkBackend):
    def __init__(self, inner: httpcore.NetworkBackend) -> None:
        self._inner = inner

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> httpcore.NetworkStream:
        stream = self._inner.connect_tcp(host, port, _left(timeout), local_address, socket_options)
        return _DeadlineStream(stream)

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Any = None
    ) -> httpcore.NetworkStream:
        return _DeadlineStream(
            self._inner.connect_unix_socket(path, _left(timeout), socket_options)
        )

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def sync_transport(proxy: str | None = None) -> httpx.BaseTransport:
    """httpx's own transport (through `proxy`, if any), its sockets bound by each deadline."""
    transport = httpx.HTTPTransport(proxy=proxy)
    pool = getattr(transport, "_pool", None)  # httpcore's pool: where sockets are made
    backend = getattr(pool, "_network_backend", None)
    if isinstance(backend, httpcore.NetworkBackend):
        pool._network_backend = _DeadlineBackend(backend)  # type: ignore[union-attr]
    else:  # pragma: no cover - another httpx: the chunk checks still bound the body
        logger.debug("httpx transport without a network backend: deadlines checked per chunk")
    return transport


def _timed_out(endpoint: Endpoint, timeout: float) -> APITimeoutError:
    return APITimeoutError(
        f"no complete response from {endpoint.base_url} within {timeout:g} s "
        "(timeout: it bounds one request from connecting to its last byte)"
    )


# --- secrets in logs ------------------------------------------------------------------
#
# httpcore logs response headers at DEBUG, and a server may echo the key in one. Every
# key sent is masked in the records of the HTTP loggers (a logger's filter sees only the
# records logged to that very logger, so each is named).

_HTTP_LOGGERS: Final = (
    "httpx",
    "httpcore.connection",
    "httpcore.http11",
    "httpcore.http2",
    "httpcore.proxy",
    "httpcore.socks",
)
_MAX_SECRETS: Final = 256


class _MaskSecrets(logging.Filter):
    """Rewrites a log record whose text holds a key that was sent, with the key masked."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            text = record.getMessage()
            masked = text
            for secret in tuple(self.secrets):
                masked = masked.replace(secret, "***")
            if masked != text:
                record.msg, record.args = masked, None
        return True


_mask = _MaskSecrets()
for _name in _HTTP_LOGGERS:
    logging.getLogger(_name).addFilter(_mask)


def _remember(secret: str | None) -> None:
    if secret and secret not in _mask.secrets and len(_mask.secrets) < _MAX_SECRETS:
        _mask.secrets.add(str(secret))


def _request(
    client: httpx.Client | httpx.AsyncClient, endpoint: Endpoint, body: Any
) -> httpx.Request:
    _remember(endpoint.api_key)
    return client.build_request(
        "POST",
        _chat_url(endpoint.base_url),
        content=json.dumps(body, ensure_ascii=False).encode(),
        headers={**endpoint.headers(), "Content-Type": "application/json"},
    )


@functools.lru_cache(maxsize=64)
def _chat_url(base_url: str) -> httpx.URL:
    """The parsed chat URL of a base URL; parsing it anew took half of building a request."""
    return httpx.URL(f"{base_url}/chat/completions")


def _redact(text: str, endpoint: Endpoint) -> str:
    return text.replace(endpoint.api_key, "***") if endpoint.api_key else text


def _text(content: bytes, endpoint: Endpoint) -> str:
    """A body as text with the key masked: the only form a body is kept in, locals included."""
    return _redact(content.decode("utf-8", errors="replace"), endpoint)


def _finish(response: httpx.Response, text: str, endpoint: Endpoint) -> Any:
    """The JSON payload of a response whose (masked) body is `text`, or the error it is."""
    headers = {k: _redact(v, endpoint) for k, v in response.headers.items()}
    status = response.status_code
    if 300 <= status < 400:
        where = _redact(response.headers.get("location", ""), endpoint) or "nowhere"
        raise APIStatusError(
            status,
            f"the server redirects to {where}; redirects are not followed (a key must not "
            "follow them): set base_url to the address that answers",
            body=text[:4000],
            headers=headers,
        )
    try:
        payload = json.loads(text)
    except (ValueError, RecursionError):  # nested past Python's limit: not an answer either
        payload = None
    failed = status >= 400
    if failed or (
        isinstance(payload, dict) and payload.get("error") and not payload.get("choices")
    ):
        # a 200 with an error object: OpenRouter reports upstream 429s and 5xx this way
        error = payload.get("error") if isinstance(payload, dict) else None
        raise APIStatusError.from_error_object(
            error or text[:500],
            status=status if failed else None,
            body=text[:4000],
            headers=headers,
            retry_after=retry_after(response.headers),
        )
    if payload is None:
        raise APIConnectionError(
            f"the server sent a {status} whose body is not JSON: {text[:200]!r}"
        )
    return payload


def _too_large(endpoint: Endpoint) -> APIConnectionError:
    return APIConnectionError(
        f"the response from {endpoint.base_url} is larger than {MAX_RESPONSE_BYTES} bytes",
        retryable=False,  # the same request gets the same answer: do not fetch it again
    )


def _translate(exc: httpx.HTTPError, endpoint: Endpoint, timeout: float) -> APIConnectionError:
    if isinstance(exc, httpx.TimeoutException):
        return _timed_out(endpoint, timeout)
    message = _redact(f"{type(exc).__name__} talking to {endpoint.base_url}: {exc}", endpoint)
    return APIConnectionError(message)


def _check(expires: float, endpoint: Endpoint, timeout: float) -> None:
    if time.monotonic() >= expires:
        raise _timed_out(endpoint, timeout)


def _read(chunks: Iterator[bytes], endpoint: Endpoint, expires: float, timeout: float) -> bytes:
    """The whole body, within the size cap and the deadline."""
    content = bytearray()
    for chunk in chunks:
        content += chunk
        if len(content) > MAX_RESPONSE_BYTES:
            content.clear()  # an unmasked body must not stay in this frame's locals
            raise _too_large(endpoint)
        _check(expires, endpoint, timeout)
    return bytes(content)


async def _aread(
    chunks: AsyncIterator[bytes], endpoint: Endpoint, expires: float, timeout: float
) -> bytes:
    """The async twin of `_read`."""
    content = bytearray()
    async for chunk in chunks:
        content += chunk
        if len(content) > MAX_RESPONSE_BYTES:
            content.clear()
            raise _too_large(endpoint)
        _check(expires, endpoint, timeout)
    return bytes(content)


def post(client: httpx.Client, endpoint: Endpoint, body: Any, *, timeout: float) -> Any:
    """Send one request and return the decoded JSON body; raise `APIError` otherwise.

    The request, from connecting to the body's last byte, ends within `timeout` seconds.
    """
    expires = time.monotonic() + timeout
    token = _deadline.set(expires)
    try:
        response = client.send(_request(client, endpoint, body), stream=True)
        try:
            text = _text(_read(response.iter_bytes(), endpoint, expires, timeout), endpoint)
        finally:
            response.close()
    except httpx.HTTPError as exc:
        raise _translate(exc, endpoint, timeout) from None
    finally:
        _deadline.reset(token)
    return _finish(response, text, endpoint)


async def apost(client: httpx.AsyncClient, endpoint: Endpoint, body: Any, *, timeout: float) -> Any:
    """Send one request on the event loop; the async twin of `post`."""
    return await _asend(client, endpoint, lambda: _request(client, endpoint, body), timeout)


async def _asend(
    client: httpx.AsyncClient,
    endpoint: Endpoint,
    build: Callable[[], httpx.Request],
    timeout: float,
) -> Any:
    """Send the request `build` makes; its JSON body within `timeout`, or the `APIError`."""
    expires = time.monotonic() + timeout

    async def exchange() -> tuple[httpx.Response, str]:
        response = await client.send(build(), stream=True)
        try:
            content = _aread(response.aiter_bytes(), endpoint, expires, timeout)
            return response, _text(await content, endpoint)
        finally:
            await response.aclose()

    try:
        response, text = await asyncio.wait_for(exchange(), timeout)
    except asyncio.TimeoutError:
        raise _timed_out(endpoint, timeout) from None
    except httpx.HTTPError as exc:
        raise _translate(exc, endpoint, timeout) from None
    return _finish(response, text, endpoint)


# --- the provider's other endpoints (files, batches) --------------------------------------


async def acall(
    client: httpx.AsyncClient,
    endpoint: Endpoint,
    method: str,
    path: str,
    *,
    json_body: Any = None,
    files: Any = None,
    data: Any = None,
    timeout: float,
) -> Any:
    """One request to `endpoint.base_url + path`; its JSON body, or the `APIError` it is.

    The same key masking, error reading and size cap as a chat completion.
    """
    _remember(endpoint.api_key)
    content = None if json_body is None else json.dumps(json_body, ensure_ascii=False).encode()
    headers = dict(endpoint.headers())
    if content is not None:
        headers["Content-Type"] = "application/json"

    def build() -> httpx.Request:
        url = f"{endpoint.base_url}{path}"
        return client.build_request(
            method, url, content=content, files=files, data=data, headers=headers
        )

    return await _asend(client, endpoint, build, timeout)


async def adownload(
    client: httpx.AsyncClient, endpoint: Endpoint, path: str, target: Any, *, timeout: float
) -> int:
    """Stream `endpoint.base_url + path` into the binary file `target`; the bytes written.

    No size cap (a batch's output file may hold gigabytes); `timeout` bounds each read.
    """
    _remember(endpoint.api_key)
    url = f"{endpoint.base_url}{path}"
    written = 0
    try:
        request = client.build_request("GET", url, headers=endpoint.headers())
        response = await client.send(request, stream=True)
        try:
            if response.status_code >= 300:
                body = _text(await response.aread(), endpoint)
                _finish(response, body, endpoint)  # raises the error it is
            async for chunk in response.aiter_bytes():
                target.write(chunk)
                written += len(chunk)
        finally:
            await response.aclose()
    except httpx.HTTPError as exc:
        raise _translate(exc, endpoint, timeout) from None
    return written


# --- streaming: server-sent events -----------------------------------------------------
#
# Opening a stream is one request like `post`: its failures (connection, timeout, an
# error status) are raised from `open_stream`, inside the caller's transport retries.
# Once the server has answered 200 the bytes are read by `read_stream`; a failure from
# there on is raised as it comes and never retried here, since the caller may already
# have shown part of the answer.


def stream_body(endpoint: Endpoint, body: dict[str, Any]) -> dict[str, Any]:
    """The body with `stream: true`, and a request for usage where the dialect takes one."""
    out = {**body, "stream": True}
    if endpoint.provider.dialect.stream_usage:
        out["stream_options"] = {"include_usage": True}
    return out


def _streams(response: httpx.Response) -> bool:
    return str(response.headers.get("content-type", "")).startswith("text/event-stream")


def open_stream(
    client: httpx.Client, endpoint: Endpoint, body: dict[str, Any], *, timeout: float
) -> httpx.Response:
    """Send a streaming request; return the open 200 response, or raise `APIError`.

    The caller must read it with `read_stream`, which closes it; the stream's last byte
    is due within `timeout` seconds of this call, as for `post`.
    """
    expires = time.monotonic() + timeout
    token = _deadline.set(expires)
    try:
        response = client.send(_request(client, endpoint, stream_body(endpoint, body)), stream=True)
        response.extensions[_EXPIRES] = (expires, timeout)
        if response.status_code < 300:
            return response
        try:
            text = _text(_read(response.iter_bytes(), endpoint, expires, timeout), endpoint)
        finally:
            response.close()
    except httpx.HTTPError as exc:
        raise _translate(exc, endpoint, timeout) from None
    finally:
        _deadline.reset(token)
    _finish(response, text, endpoint)  # raises: the status is an error
    raise AssertionError("unreachable: an error status always raises")  # pragma: no cover


async def aopen_stream(
    client: httpx.AsyncClient, endpoint: Endpoint, body: dict[str, Any], *, timeout: float
) -> httpx.Response:
    """The async twin of `open_stream`."""
    expires = time.monotonic() + timeout
    request = _request(client, endpoint, stream_body(endpoint, body))
    try:
        response = await asyncio.wait_for(client.send(request, stream=True), timeout)
        response.extensions[_EXPIRES] = (expires, timeout)
        if response.status_code < 300:
            return response
        try:
            content = _aread(response.aiter_bytes(), endpoint, expires, timeout)
            text = _text(
                await asyncio.wait_for(content, max(expires - time.monotonic(), 0)), endpoint
            )
        finally:
            await response.aclose()
    except asyncio.TimeoutError:
        raise _timed_out(endpoint, timeout) from None
    except httpx.HTTPError as exc:
        raise _translate(exc, endpoint, timeout) from None
    _finish(response, text, endpoint)  # raises: the status is an error
    raise AssertionError("unreachable: an error status always raises")  # pragma: no cover


def _chunks(response: httpx.Response, endpoint: Endpoint) -> Iterator[bytes]:
    """The body's chunks, each read under the stream's deadline."""
    expires, timeout = response.extensions.get(_EXPIRES, (float("inf"), 0.0))
    chunks = response.iter_bytes()
    size = 0
    while True:
        token = _deadline.set(expires)
        try:  # set and reset around each read: never across a yield to the caller
            chunk = next(chunks, None)
        except httpx.HTTPError as exc:
            raise _translate(exc, endpoint, timeout) from None
        finally:
            _deadline.reset(token)
        if chunk is None:
            return
        size += len(chunk)
        if size > MAX_RESPONSE_BYTES:
            raise _too_large(endpoint)
        _check(expires, endpoint, timeout)
        yield chunk


async def _achunks(response: httpx.Response, endpoint: Endpoint) -> AsyncIterator[bytes]:
    """The async twin of `_chunks`."""
    expires, timeout = response.extensions.get(_EXPIRES, (float("inf"), 0.0))
    chunks = response.aiter_bytes()
    size = 0
    while True:
        left = expires - time.monotonic()
        if left <= 0:
            raise _timed_out(endpoint, timeout)
        try:
            chunk = await asyncio.wait_for(
                chunks.__anext__(), left if left != float("inf") else None
            )
        except StopAsyncIteration:
            return
        except asyncio.TimeoutError:
            raise _timed_out(endpoint, timeout) from None
        except httpx.HTTPError as exc:
            raise _translate(exc, endpoint, timeout) from None
        size += len(chunk)
        if size > MAX_RESPONSE_BYTES:
            raise _too_large(endpoint)
        yield chunk


def read_stream(response: httpx.Response, endpoint: Endpoint) -> Generator[SSEEvent, None, None]:
    """Each event of an open stream (key masked in its data), then close it.

    A server that ignored `stream` and sent one JSON body yields that body once. The
    stream ends by the deadline `open_stream` set: a stream that only sends comments
    (`: PROCESSING`) or drips bytes times out like any slow request.
    """
    decoder = SSEDecoder()
    try:
        if not _streams(response):
            text = _text(b"".join(_chunks(response, endpoint)), endpoint)
            yield SSEEvent(json.dumps(_finish(response, text, endpoint)))
            return
        for chunk in _chunks(response, endpoint):
            for event in decoder.feed(chunk):
                yield SSEEvent(_redact(event.data, endpoint), event.event)
        for event in decoder.close():
            yield SSEEvent(_redact(event.data, endpoint), event.event)
    finally:
        response.close()


async def aread_stream(
    response: httpx.Response, endpoint: Endpoint
) -> AsyncGenerator[SSEEvent, None]:
    """The async twin of `read_stream`."""
    decoder = SSEDecoder()
    try:
        if not _streams(response):
            text = _text(
                b"".join([chunk async for chunk in _achunks(response, endpoint)]), endpoint
            )
            yield SSEEvent(json.dumps(_finish(response, text, endpoint)))
            return
        async for chunk in _achunks(response, endpoint):
            for event in decoder.feed(chunk):
                yield SSEEvent(_redact(event.data, endpoint), event.event)
        for event in decoder.close():
            yield SSEEvent(_redact(event.data, endpoint), event.event)
    finally:
        await response.aclose()
