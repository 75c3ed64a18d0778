"""Server-sent events of a chat-completions stream, from bytes to the whole answer.

- `SSEDecoder` turns the bytes of a `text/event-stream` body into events (comment lines
  such as `: OPENROUTER PROCESSING` skipped, multi-line `data:` joined, any line ending).
- `ChunkAssembler` folds `chat.completion.chunk` events into the answer so far (content,
  refusal, tool-call argument deltas, the usage of the last chunk) and, at the end, into
  the `chat.completion` object the non-streaming path decodes. An error event, or
  `finish_reason: "error"`, in a 200 stream raises `APIStatusError`.

The wire layer only: what a stream shows its reader is `extractor._stream`'s business.
"""

from __future__ import annotations

import codecs
import json
import re
from dataclasses import dataclass
from typing import Any, Final

from extractor._errors import APIConnectionError, APIStatusError, MalformedResponse, json_kind
from extractor._modes import MODE_TABLE, read_content

__all__ = ["ChunkAssembler", "SSEDecoder", "SSEEvent"]

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
        calls = [call for _, call in sorted(self._calls.items())]
        return MODE_TABLE[self.mode].stream_text(self._content, calls)

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
