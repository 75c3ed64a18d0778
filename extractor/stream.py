"""Streaming extraction: partial records while the answer arrives, then the validated one.

Three layers, each usable alone:

- `SSEDecoder` turns the bytes of a `text/event-stream` body into events (comment lines
  such as `: OPENROUTER PROCESSING` skipped, multi-line `data:` joined, any line ending).
- `ChunkAssembler` folds `chat.completion.chunk` events into the answer so far (content,
  refusal, tool-call argument deltas, the usage of the last chunk) and, at the end, into
  the `chat.completion` object the non-streaming path decodes. An error event, or
  `finish_reason: "error"`, in a 200 stream raises `APIStatusError`.
- `ExtractionStream` / `AsyncExtractionStream` drive the extraction loop of
  `extractor.client` (the same generator `extract` uses, so modes, fallbacks and
  reasks behave the same; a reask is a fresh stream) and yield what changed.

Transport retries cover opening the stream (up to the response headers); a failure once
the stream is flowing is raised, never retried behind the caller's back.
"""

from __future__ import annotations

import codecs
import json
import re
from collections import Counter
from collections.abc import AsyncGenerator, AsyncIterator, Generator, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Generic, TypeVar

from extractor.errors import (
    APIConnectionError,
    APIError,
    APIStatusError,
    InvalidAnswer,
    MalformedResponse,
    json_kind,
)
from extractor.modes import read_content
from extractor.partial import MISSING, PartialReader, Preview

if TYPE_CHECKING:
    import httpx

    from extractor.client import Client, _Plan
    from extractor.result import Attempt, Extraction
    from extractor.schema import CompiledSchema

__all__ = ["AsyncExtractionStream", "ChunkAssembler", "ExtractionStream", "SSEDecoder", "SSEEvent"]

T = TypeVar("T")

_LINE_BREAK: Final = re.compile(r"\r\n|\r|\n")


@dataclass(frozen=True)
class SSEEvent:
    """One server-sent event: its data lines joined by newlines, and its type."""

    data: str
    event: str = "message"


class SSEDecoder:
    """An incremental `text/event-stream` parser: feed it bytes as they come.

    Follows the WHATWG rules that matter here: lines end in CRLF, LF or CR (a CR at the
    end of one read may pair with an LF at the start of the next); a line starting with
    `:` is a comment; `data:` lines accumulate until a blank line dispatches the event.
    """

    def __init__(self) -> None:
        self._decode = codecs.getincrementaldecoder("utf-8")(errors="replace").decode
        self._buffer = ""
        self._data: list[str] = []
        self._event = ""
        self._started = False

    def feed(self, chunk: bytes | str) -> list[SSEEvent]:
        """The events completed by this chunk."""
        text = chunk if isinstance(chunk, str) else self._decode(chunk)
        if not self._started and text:
            text = text.removeprefix("\ufeff")
            self._started = True
        self._buffer += text
        # a CR at the very end may be half of a CRLF: keep it until the next chunk
        cut = len(self._buffer) - 1 if self._buffer.endswith("\r") else len(self._buffer)
        *lines, rest = _LINE_BREAK.split(self._buffer[:cut])
        self._buffer = rest + self._buffer[cut:]
        return [event for line in lines if (event := self._line(line)) is not None]

    def close(self) -> list[SSEEvent]:
        """Events still pending when the body ends (servers may omit the last blank line)."""
        tail = self._decode(b"", final=True)
        self._buffer += tail
        events = [e for line in _LINE_BREAK.split(self._buffer) if (e := self._line(line))]
        self._buffer = ""
        if (last := self._line("")) is not None:
            events.append(last)
        return events

    def _line(self, line: str) -> SSEEvent | None:
        if not line:
            if not self._data:
                self._event = ""
                return None
            event = SSEEvent("\n".join(self._data), self._event or "message")
            self._data, self._event = [], ""
            return event
        if line.startswith(":"):
            return None  # a comment: keep-alives such as ": OPENROUTER PROCESSING"
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        return None  # `id`, `retry` and unknown fields change nothing here


class ChunkAssembler:
    """The answer so far, folded from `chat.completion.chunk` events for one mode."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.text = ""
        self.done = False
        self._content = ""
        self._refusal = ""
        self._calls: dict[int, dict[str, Any]] = {}
        self._finish_reason: str | None = None
        self._usage: Any = None  # read (and checked) by `modes.decode`
        self._id: str | None = None
        self._model: str | None = None

    def add(self, event: SSEEvent) -> bool:
        """Fold in one event; return whether the answer's text changed.

        Raises `APIStatusError` for an error event (status from its `code`, else 502)
        and for `finish_reason: "error"`, `MalformedResponse` for a chunk whose fields
        have the wrong types.
        """
        data = event.data.strip()
        if data == "[DONE]":
            self.done = True
            return False
        try:
            chunk = json.loads(data)
        except ValueError:
            chunk = None
        if event.event == "error" or (
            isinstance(chunk, dict) and (chunk.get("error") or chunk.get("object") == "error")
        ):
            error = chunk.get("error") or chunk if isinstance(chunk, dict) else data[:500]
            raise APIStatusError.from_error_object(error, body=data[:4000])
        if not isinstance(chunk, dict):
            raise APIStatusError(502, f"a stream event is not a JSON object: {data[:200]!r}")
        if isinstance(chunk.get("id"), str):
            self._id = self._id or chunk["id"]
        if isinstance(chunk.get("model"), str):
            self._model = self._model or chunk["model"]
        if chunk.get("usage") is not None:
            self._usage = chunk["usage"]  # the last chunk's usage covers the whole request
        before = self.text
        try:
            choices = chunk.get("choices")
            if choices is not None and not isinstance(choices, list):
                raise MalformedResponse(f"choices is {json_kind(choices)}, not an array")
            for position, choice in enumerate(choices or ()):
                where = f"choices[{position}]"
                if not isinstance(choice, dict):
                    raise MalformedResponse(f"{where} is {json_kind(choice)}, not an object")
                if choice.get("index", 0) == 0:
                    self._choice(choice, data, where)
        except MalformedResponse as exc:
            raise MalformedResponse(
                exc.problem,
                body=data[:4000],
                subject="a stream event",
                expected="chat.completion.chunk",
            ) from None
        self.text = self._answer()
        return self.text != before

    def _choice(self, choice: dict[str, Any], data: str, where: str) -> None:
        name = "delta" if choice.get("delta") else "message"  # a whole message: stream ignored
        delta = choice.get(name) or {}
        at = f"{where}.{name}"
        if not isinstance(delta, dict):
            raise MalformedResponse(f"{at} is {json_kind(delta)}, not an object")
        content = read_content(delta.get("content"), f"{at}.content")
        if content:
            self._content += content
        refusal = delta.get("refusal")
        if refusal is not None and not isinstance(refusal, str):
            raise MalformedResponse(f"{at}.refusal is {json_kind(refusal)}, not a string")
        self._refusal += refusal or ""
        calls = delta.get("tool_calls")
        if calls is not None and not isinstance(calls, list):
            raise MalformedResponse(f"{at}.tool_calls is {json_kind(calls)}, not an array")
        for position, call in enumerate(calls or ()):
            call_at = f"{at}.tool_calls[{position}]"
            if not isinstance(call, dict):
                raise MalformedResponse(f"{call_at} is {json_kind(call)}, not an object")
            index = call.get("index", position)
            if isinstance(index, bool) or not isinstance(index, int):
                raise MalformedResponse(f"{call_at}.index is {json_kind(index)}, not an integer")
            slot = self._calls.setdefault(index, {"id": None, "name": "", "arguments": ""})
            if isinstance(call.get("id"), str):
                slot["id"] = slot["id"] or call["id"]
            function = call.get("function") or {}
            if not isinstance(function, dict):
                kind = json_kind(function)
                raise MalformedResponse(f"{call_at}.function is {kind}, not an object")
            if isinstance(function.get("name"), str) and not slot["name"]:
                slot["name"] = function["name"]
            arguments = function.get("arguments")
            if isinstance(arguments, str):
                slot["arguments"] += arguments
            elif arguments is not None:  # parsed by the server: read as its JSON text
                slot["arguments"] += json.dumps(arguments, ensure_ascii=False, default=str)
        reason = choice.get("finish_reason")
        if reason is not None and not isinstance(reason, str):
            kind = json_kind(reason)
            raise MalformedResponse(f"{where}.finish_reason is {kind}, not a string")
        if reason == "error":
            raise APIStatusError(
                502, "the provider reported an error while generating", body=data[:4000]
            )
        if reason:
            self._finish_reason = reason

    def _answer(self) -> str:
        if self.mode == "tools" and self._calls:
            return str(self._calls[min(self._calls)]["arguments"])
        return self._content

    def payload(self) -> dict[str, Any]:
        """The whole answer as a `chat.completion` object, for `modes.decode`.

        Raises `APIConnectionError` when the stream stopped before it said it was done
        (neither a finish reason nor `[DONE]`): the answer may be cut anywhere.
        """
        if not self.done and self._finish_reason is None:
            raise APIConnectionError(
                "the stream ended before the answer was finished (no finish_reason, no [DONE])"
            )
        message: dict[str, Any] = {"role": "assistant", "content": self._content or None}
        if self._refusal:
            message["refusal"] = self._refusal
        if self._calls:
            message["tool_calls"] = [
                {
                    "id": call["id"],
                    "type": "function",
                    "function": {"name": call["name"], "arguments": call["arguments"]},
                }
                for _, call in sorted(self._calls.items())
            ]
        return {
            "id": self._id,
            "object": "chat.completion",
            "model": self._model,
            "choices": [{"index": 0, "message": message, "finish_reason": self._finish_reason}],
            "usage": self._usage,
        }


# --- what is shown while an answer streams ----------------------------------------------


class _Previews:
    """Partial values of the target, each one different from the one before."""

    def __init__(self, target: Any, schema: CompiledSchema[Any]) -> None:
        self._target = target
        self._wrap_key = schema.wrap_key
        self.restart()

    def restart(self) -> None:
        # a reask is a fresh stream: its previews start over
        self._reader = PartialReader()
        self._preview = Preview(self._target, self._wrap_key)
        self._last: Any = MISSING

    def update(self, text: str) -> list[Any]:
        start = text.find("{")  # the wire root is an object; prose or a fence may precede it
        if start < 0:
            return []
        shown = self._preview(self._reader.read(text, start=start).value)
        if shown is MISSING or (type(shown) is type(self._last) and shown == self._last):
            return []
        self._last = shown
        return [shown]

    def final(self, extraction: Extraction[Any]) -> list[Any]:
        return [extraction.value]


class _Items:
    """Each item of a list target, validated on its own, as soon as its text is complete.

    After a reask, items equal to ones already yielded are not yielded again; the rest
    of the final list is yielded once the whole list has validated.
    """

    def __init__(self, item: CompiledSchema[Any], wrap_key: str) -> None:
        self._item = item
        self._key = wrap_key
        self._seen = 0
        self._earlier: Counter[str] = Counter()  # yielded by earlier attempts, not matched yet
        self._yielded: Counter[str] = Counter()
        self._reader = PartialReader()

    def _identity(self, value: Any) -> str:
        return json.dumps(self._item.dump(value), sort_keys=True, default=str)

    def restart(self) -> None:
        self._seen = 0
        self._earlier = Counter(self._yielded)
        self._reader = PartialReader()

    def update(self, text: str) -> list[Any]:
        start = text.find("{")
        if start < 0:
            return []
        partial = self._reader.read(text, start=start)
        items = partial.value.get(self._key) if isinstance(partial.value, dict) else None
        out = []
        while isinstance(items, list) and self._seen < len(items):
            if not partial.is_complete((self._key, self._seen)):
                break
            raw = items[self._seen]
            self._seen += 1
            try:
                value = self._item.load(raw)
            except InvalidAnswer:
                continue  # the whole list will fail validation and be re-asked
            key = self._identity(value)
            if self._earlier[key] > 0:
                self._earlier[key] -= 1
                continue
            self._yielded[key] += 1
            out.append(value)
        return out

    def final(self, extraction: Extraction[Any]) -> list[Any]:
        shown = Counter(self._yielded)
        out = []
        for value in extraction.value:
            key = self._identity(value)
            if shown[key] > 0:
                shown[key] -= 1
            else:
                out.append(value)
        return out


class _Run:
    """What the sync and async streams share: the plan, what they show, the outcome."""

    def __init__(self, client: Client, plan: _Plan, shown: _Previews | _Items) -> None:
        self._client = client
        self._plan = plan
        self._shown = shown
        self._started = False
        #: The extraction (record, usage, attempts), once the stream has ended with one.
        self.result: Extraction[Any] | None = None

    def _start(self) -> None:
        if self._started:
            raise RuntimeError("an extraction stream can be iterated only once")
        self._started = True


class ExtractionStream(_Run, Generic[T]):
    """Iterate for partial values as the answer streams in; the last one is the record.

    Partial values are not validated (see `extractor.partial.Preview`); the last value
    yielded is the validated record, and `result` then holds the `Extraction` with its
    usage and attempts. An invalid final answer is re-asked as a fresh stream, so
    partial values may start over. Iterate once; to stop early, `close()` it (or use it
    as a context manager) so its connection goes back to the pool at once.
    """

    _iterator: Generator[Any, None, None] | None = None

    def __iter__(self) -> Iterator[T]:
        self._start()
        self._iterator = self._run()
        return self._iterator

    def close(self) -> None:
        """Stop early: close the response under the stream (iterating to the end does it too)."""
        if self._iterator is not None:
            self._iterator.close()

    def __enter__(self) -> ExtractionStream[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self) -> Generator[Any, None, None]:
        from extractor.client import _conversation, _local

        plan = self._plan
        attempts: list[Attempt] = []
        conversation = _conversation(plan, attempts)
        try:
            mode, body = next(conversation)
            while True:
                self._shown.restart()
                try:
                    if plan.endpoint.provider.in_process:
                        payload = _local(plan, mode, body, attempts)
                    else:
                        payload = yield from self._receive(mode, body)
                except APIError as exc:
                    mode, body = conversation.throw(exc)
                else:
                    mode, body = conversation.send(payload)
        except StopIteration as done:
            self.result = done.value
            yield from self._shown.final(done.value)
        finally:
            conversation.close()  # stopped early: end the extraction loop here, not at GC

    def _receive(self, mode: str, body: dict[str, Any]) -> Generator[Any, None, dict[str, Any]]:
        from extractor.client import _log_retry
        from extractor.transport import open_stream, read_stream

        client, endpoint = self._client, self._plan.endpoint
        response = client.retry.retrying(_log_retry)(
            open_stream, client._sync_client(endpoint), endpoint, body, timeout=self._plan.timeout
        )
        assembler = ChunkAssembler(mode)
        events = read_stream(response, endpoint)
        try:
            for event in events:
                if assembler.add(event):
                    yield from self._shown.update(assembler.text)
        finally:
            events.close()
        return assembler.payload()


class AsyncExtractionStream(_Run, Generic[T]):
    """The async form of `ExtractionStream`: `async for` over it."""

    _iterator: AsyncGenerator[Any, None] | None = None

    def __aiter__(self) -> AsyncIterator[T]:
        self._start()
        self._iterator = self._run()
        return self._iterator

    async def aclose(self) -> None:
        """Stop early: close the response under the stream."""
        if self._iterator is not None:
            await self._iterator.aclose()

    async def __aenter__(self) -> AsyncExtractionStream[T]:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _run(self) -> AsyncGenerator[Any, None]:
        import asyncio

        from extractor.client import _conversation, _local, _log_retry
        from extractor.transport import aopen_stream, aread_stream

        plan, client = self._plan, self._client
        attempts: list[Attempt] = []
        conversation = _conversation(plan, attempts)
        try:
            mode, body = next(conversation)
            while True:
                self._shown.restart()
                try:
                    if plan.endpoint.provider.in_process:
                        payload = await asyncio.to_thread(_local, plan, mode, body, list(attempts))
                    else:
                        response: httpx.Response = await client.retry.async_retrying(_log_retry)(
                            aopen_stream,
                            await client._async_client(plan.endpoint),
                            plan.endpoint,
                            body,
                            timeout=plan.timeout,
                        )
                        assembler = ChunkAssembler(mode)
                        events = aread_stream(response, plan.endpoint)
                        try:
                            async for event in events:
                                if assembler.add(event):
                                    for value in self._shown.update(assembler.text):
                                        yield value
                        finally:
                            await events.aclose()
                        payload = assembler.payload()
                except APIError as exc:
                    mode, body = conversation.throw(exc)
                else:
                    mode, body = conversation.send(payload)
        except StopIteration as done:
            self.result = done.value
            for value in self._shown.final(done.value):
                yield value
        finally:
            conversation.close()


def shown_for(target: Any, schema: CompiledSchema[Any], *, items: bool) -> _Previews | _Items:
    """What a stream of `target` yields: previews of the record, or the list's items."""
    if not items:
        return _Previews(target, schema)
    import typing

    from extractor.errors import ConfigurationError
    from extractor.schema import compile_schema

    if typing.get_origin(target) is list and typing.get_args(target) and schema.wrap_key:
        return _Items(compile_schema(typing.get_args(target)[0]), schema.wrap_key)
    if isinstance(target, dict) and target.get("type") == "array" and schema.wrap_key:
        item = target.get("items", {})
        defs = target.get("$defs")
        return _Items(compile_schema({**item, "$defs": defs} if defs else item), schema.wrap_key)
    raise ConfigurationError(
        f"streaming items needs a list target such as list[Model], not {target!r}"
    )
