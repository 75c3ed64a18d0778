"""The only I/O of a remote extraction: POST a body, get JSON back, or a typed error.

httpx exceptions and error statuses are translated here into the `APIError` tree, with
the key masked wherever the server might have echoed it. Response bodies are capped.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import AsyncGenerator, Generator
from typing import Any, Final

import httpx

from extractor.errors import APIConnectionError, APIStatusError, APITimeoutError
from extractor.providers import Endpoint
from extractor.retry import retry_after
from extractor.stream import SSEDecoder, SSEEvent

__all__ = [
    "MAX_RESPONSE_BYTES",
    "aopen_stream",
    "apost",
    "aread_stream",
    "open_stream",
    "post",
    "read_stream",
]

logger = logging.getLogger("extractor")

#: Larger answers are refused: no extraction answer is this big.
MAX_RESPONSE_BYTES: Final = 16 * 1024 * 1024


def _request(
    client: httpx.Client | httpx.AsyncClient, endpoint: Endpoint, body: Any
) -> httpx.Request:
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


def _finish(response: httpx.Response, content: bytes, endpoint: Endpoint) -> Any:
    text = _redact(content.decode("utf-8", errors="replace"), endpoint)
    try:
        payload = json.loads(text)
    except ValueError:
        payload = None
    failed = response.status_code >= 400
    if failed or (
        isinstance(payload, dict) and payload.get("error") and not payload.get("choices")
    ):
        # a 200 with an error object: OpenRouter reports upstream 429s and 5xx this way
        error = payload.get("error") if isinstance(payload, dict) else None
        raise APIStatusError.from_error_object(
            error or text[:500],
            status=response.status_code if failed else None,
            body=text[:4000],
            headers=response.headers,
            retry_after=retry_after(response.headers),
        )
    if payload is None:
        raise APIConnectionError(
            f"the server sent a {response.status_code} whose body is not JSON: {text[:200]!r}"
        )
    return payload


def _too_large(endpoint: Endpoint) -> APIConnectionError:
    return APIConnectionError(
        f"the response from {endpoint.base_url} is larger than {MAX_RESPONSE_BYTES} bytes"
    )


def _translate(exc: httpx.HTTPError, endpoint: Endpoint) -> APIConnectionError:
    message = _redact(f"{type(exc).__name__} talking to {endpoint.base_url}: {exc}", endpoint)
    if isinstance(exc, httpx.TimeoutException):
        return APITimeoutError(message)
    return APIConnectionError(message)


def post(client: httpx.Client, endpoint: Endpoint, body: Any) -> Any:
    """Send one request and return the decoded JSON body; raise `APIError` otherwise."""
    try:
        response = client.send(_request(client, endpoint, body), stream=True)
        try:
            content = bytearray()
            for chunk in response.iter_bytes():
                content += chunk
                if len(content) > MAX_RESPONSE_BYTES:
                    raise _too_large(endpoint)
        finally:
            response.close()
    except httpx.HTTPError as exc:
        raise _translate(exc, endpoint) from None
    return _finish(response, bytes(content), endpoint)


async def apost(client: httpx.AsyncClient, endpoint: Endpoint, body: Any) -> Any:
    """Send one request on the event loop; the async twin of `post`."""
    try:
        response = await client.send(_request(client, endpoint, body), stream=True)
        try:
            content = bytearray()
            async for chunk in response.aiter_bytes():
                content += chunk
                if len(content) > MAX_RESPONSE_BYTES:
                    raise _too_large(endpoint)
        finally:
            await response.aclose()
    except httpx.HTTPError as exc:
        raise _translate(exc, endpoint) from None
    return _finish(response, bytes(content), endpoint)


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


def open_stream(client: httpx.Client, endpoint: Endpoint, body: dict[str, Any]) -> httpx.Response:
    """Send a streaming request; return the open 200 response, or raise `APIError`.

    The caller must read it with `read_stream`, which closes it.
    """
    try:
        response = client.send(_request(client, endpoint, stream_body(endpoint, body)), stream=True)
    except httpx.HTTPError as exc:
        raise _translate(exc, endpoint) from None
    if response.status_code < 400:
        return response
    try:
        content = bytearray()
        for chunk in response.iter_bytes():
            content += chunk
            if len(content) > MAX_RESPONSE_BYTES:
                raise _too_large(endpoint)
    except httpx.HTTPError as exc:
        raise _translate(exc, endpoint) from None
    finally:
        response.close()
    _finish(response, bytes(content), endpoint)  # raises: the status is an error
    raise AssertionError("unreachable: an error status always raises")  # pragma: no cover


async def aopen_stream(
    client: httpx.AsyncClient, endpoint: Endpoint, body: dict[str, Any]
) -> httpx.Response:
    """The async twin of `open_stream`."""
    try:
        response = await client.send(
            _request(client, endpoint, stream_body(endpoint, body)), stream=True
        )
    except httpx.HTTPError as exc:
        raise _translate(exc, endpoint) from None
    if response.status_code < 400:
        return response
    try:
        content = bytearray()
        async for chunk in response.aiter_bytes():
            content += chunk
            if len(content) > MAX_RESPONSE_BYTES:
                raise _too_large(endpoint)
    except httpx.HTTPError as exc:
        raise _translate(exc, endpoint) from None
    finally:
        await response.aclose()
    _finish(response, bytes(content), endpoint)  # raises: the status is an error
    raise AssertionError("unreachable: an error status always raises")  # pragma: no cover


def read_stream(response: httpx.Response, endpoint: Endpoint) -> Generator[SSEEvent, None, None]:
    """Each event of an open stream (key masked in its data), then close it.

    A server that ignored `stream` and sent one JSON body yields that body once.
    """
    decoder = SSEDecoder()
    size = 0
    try:
        if not _streams(response):
            content = bytearray()
            for chunk in response.iter_bytes():
                content += chunk
                if len(content) > MAX_RESPONSE_BYTES:
                    raise _too_large(endpoint)
            yield SSEEvent(json.dumps(_finish(response, bytes(content), endpoint)))
            return
        for chunk in response.iter_bytes():
            size += len(chunk)
            if size > MAX_RESPONSE_BYTES:
                raise _too_large(endpoint)
            for event in decoder.feed(chunk):
                yield SSEEvent(_redact(event.data, endpoint), event.event)
        for event in decoder.close():
            yield SSEEvent(_redact(event.data, endpoint), event.event)
    except httpx.HTTPError as exc:
        raise _translate(exc, endpoint) from None
    finally:
        response.close()


async def aread_stream(
    response: httpx.Response, endpoint: Endpoint
) -> AsyncGenerator[SSEEvent, None]:
    """The async twin of `read_stream`."""
    decoder = SSEDecoder()
    size = 0
    try:
        if not _streams(response):
            content = bytearray()
            async for chunk in response.aiter_bytes():
                content += chunk
                if len(content) > MAX_RESPONSE_BYTES:
                    raise _too_large(endpoint)
            yield SSEEvent(json.dumps(_finish(response, bytes(content), endpoint)))
            return
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > MAX_RESPONSE_BYTES:
                raise _too_large(endpoint)
            for event in decoder.feed(chunk):
                yield SSEEvent(_redact(event.data, endpoint), event.event)
        for event in decoder.close():
            yield SSEEvent(_redact(event.data, endpoint), event.event)
    except httpx.HTTPError as exc:
        raise _translate(exc, endpoint) from None
    finally:
        await response.aclose()
