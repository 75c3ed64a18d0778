"""The modes: each one object that knows its request, its answer, its stream and its reask.

| mode          | the schema travels as                          | the answer is read from     |
|---------------|------------------------------------------------|-----------------------------|
| `json_schema` | `response_format: {type: json_schema, ...}`    | `message.content`           |
| `tools`       | one function tool, forced by `tool_choice`     | `tool_calls[0]` arguments   |
| `json_object` | `response_format: {type: json_object}` + prompt| `message.content`           |
| `prompt`      | the system prompt only                         | the JSON in `message.content` |
| `grounded`    | nothing: the embedded model chooses values     | the record it built         |

A `Mode` fills in its part of a request body (`shape`), reads its answer out of a
message (`read`) and out of a stream's deltas (`stream_text`), says what the system
prompt asks for (`instruction`) and how a failed answer goes back (`reask`). Which modes
a provider offers is the provider table's business (`providers.Dialect.modes`). No I/O
here: `build_body` and `decode` are pure.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from extractor._errors import APIStatusError, MalformedResponse, ParameterError, json_kind
from extractor._providers import Dialect
from extractor._result import Usage
from extractor._schema import CompiledSchema

__all__ = ["MODE_TABLE", "Answer", "Mode", "build_body", "decode", "read_content"]

logger = logging.getLogger(__name__)

#: How much of a malformed response its error keeps.
_EXCERPT_CHARS: Final = 2000


Message = dict[str, Any]


class Mode:
    """What one mode does; the base is a mode whose schema travels in the prompt only."""

    name = "prompt"
    #: What the system prompt asks for; `{name}` is the schema's name, `{schema}` the schema.
    instruction = (
        "Answer with one JSON object that validates against this JSON Schema, and "
        "nothing else (no prose, no code fences):\n{schema}"
    )
    #: Whether the answer is constrained to the schema by the server (not only asked for).
    structured = False
    #: Request parameters this mode sets itself (the user's go in through `shape`).
    owns: frozenset[str] = frozenset()
    #: Request parameters this mode sets itself and a user's cannot join: giving one is
    #: an error, since sending it would drop the schema (or the user's value).
    refuses: frozenset[str] = frozenset()

    def shape(
        self,
        body: dict[str, Any],
        *,
        name: str,
        description: str | None,
        schema: dict[str, Any],
        dialect: Dialect,
        params: dict[str, Any],
        strict: bool = True,
    ) -> None:
        """Put the schema where this mode sends it (`schema` is in the dialect's form).

        `strict` is False for a schema the provider's strict dialect cannot carry: it
        then goes in the loose dialect, without the strict flag.
        """

    def read(self, message: dict[str, Any]) -> tuple[str | None, str | None]:
        """The answer's text in a response message, and the tool call id it came with."""
        return read_content(message.get("content"), "choices[0].message.content"), None

    def stream_text(self, content: str, calls: list[dict[str, Any]]) -> str:
        """The answer's text so far in a stream: its content, or its first call's arguments."""
        return content

    def reask(
        self, *, raw: str | None, problems: str, tool_call_id: str | None, tool_name: str
    ) -> list[Message]:
        """The failed answer and what was wrong with it, as the next messages."""
        return [
            {"role": "assistant", "content": raw or ""},
            {
                "role": "user",
                "content": f"That answer did not validate:\n{problems}\n"
                "Answer again with the corrected JSON object only.",
            },
        ]


class JSONSchemaMode(Mode):
    name = "json_schema"
    instruction = "Answer with the JSON object only."
    structured = True
    refuses = frozenset({"response_format"})

    def shape(
        self,
        body: dict[str, Any],
        *,
        name: str,
        description: str | None,
        schema: dict[str, Any],
        dialect: Dialect,
        params: dict[str, Any],
        strict: bool = True,
    ) -> None:
        spec: dict[str, Any] = {"name": name, "schema": schema}
        if description:
            spec["description"] = description
        if dialect.strict_json_schema and strict:
            spec["strict"] = True
        body["response_format"] = {"type": "json_schema", "json_schema": spec}


class ToolsMode(Mode):
    name = "tools"
    instruction = "Answer by calling the function {name} with the extracted data."
    structured = True
    owns = frozenset({"tools", "tool_choice", "structured_outputs"})

    def shape(
        self,
        body: dict[str, Any],
        *,
        name: str,
        description: str | None,
        schema: dict[str, Any],
        dialect: Dialect,
        params: dict[str, Any],
        strict: bool = True,
    ) -> None:
        function: dict[str, Any] = {"name": name, "parameters": schema}
        if description:
            function["description"] = description
        if dialect.strict_tools and strict:
            function["strict"] = True
        body["tools"] = [*(params.get("tools") or ()), {"type": "function", "function": function}]
        body["tool_choice"] = params.get("tool_choice") or (
            dialect.force_tool or {"type": "function", "function": {"name": name}}
        )

    def read(self, message: dict[str, Any]) -> tuple[str | None, str | None]:
        text = read_content(message.get("content"), "choices[0].message.content")
        calls = message.get("tool_calls")
        if calls is not None and not isinstance(calls, list):
            where = "choices[0].message.tool_calls"
            raise MalformedResponse(f"{where} is {json_kind(calls)}, not an array")
        if not calls:
            return text, None
        call = _object(calls[0], "choices[0].message.tool_calls[0]")
        function = _object(call.get("function"), "choices[0].message.tool_calls[0].function")
        call_id = _label(call.get("id"), "choices[0].message.tool_calls[0].id")
        return _arguments(function.get("arguments")), call_id

    def stream_text(self, content: str, calls: list[dict[str, Any]]) -> str:
        return str(calls[0]["arguments"]) if calls else content

    def reask(
        self, *, raw: str | None, problems: str, tool_call_id: str | None, tool_name: str
    ) -> list[Message]:
        if not tool_call_id:
            return super().reask(
                raw=raw, problems=problems, tool_call_id=tool_call_id, tool_name=tool_name
            )
        return [
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": tool_call_id,
                        "type": "function",
                        "function": {"name": tool_name, "arguments": raw or ""},
                    }
                ],
            },
            {
                "role": "tool",
                "tool_call_id": tool_call_id,
                "content": f"The arguments did not validate:\n{problems}\n"
                f"Call {tool_name} again with every problem fixed.",
            },
        ]


class JSONObjectMode(Mode):
    name = "json_object"
    instruction = "Answer with one JSON object that validates against this JSON Schema:\n{schema}"
    refuses = frozenset({"response_format"})

    def shape(
        self,
        body: dict[str, Any],
        *,
        name: str,
        description: str | None,
        schema: dict[str, Any],
        dialect: Dialect,
        params: dict[str, Any],
        strict: bool = True,
    ) -> None:
        response_format: dict[str, Any] = {"type": "json_object"}
        if dialect.json_object_schema:
            response_format["schema"] = schema
        body["response_format"] = response_format


class GroundedMode(Mode):
    """The embedded model builds the record from the document's own text: no wire."""

    name = "grounded"
    instruction = "Copy every value exactly as the document prints it."


#: Every mode by name (`auto` is not one: it picks among a provider's modes).
MODE_TABLE: Final[Mapping[str, Mode]] = {
    mode.name: mode
    for mode in (JSONSchemaMode(), ToolsMode(), JSONObjectMode(), Mode(), GroundedMode())
}


def build_body(
    mode: str,
    *,
    model: str,
    messages: list[dict[str, Any]],
    schema: CompiledSchema[Any],
    dialect: Dialect,
    params: dict[str, Any],
    strict: bool = True,
) -> dict[str, Any]:
    """The JSON body of one chat-completions request, in the dialect's own names.

    With `strict` False (a schema the strict dialect cannot carry), the schema goes in
    the dialect's loose form without the strict flag.
    """
    shape = MODE_TABLE[mode]
    for name in shape.refuses & params.keys():
        raise ParameterError(
            name,
            f"mode {mode} sends its own (it carries the schema); leave it out, or choose "
            "mode='prompt' to send yours",
        )
    body: dict[str, Any] = {"model": model, "messages": messages}
    wire = dialect.schema_dialect
    if not strict and dialect.loose_schema_dialect is not None:
        wire = dialect.loose_schema_dialect
    shape.shape(
        body,
        name=schema.name,
        description=schema.description,
        schema=schema.dialect(wire),
        dialect=dialect,
        params=params,
        strict=wire == dialect.schema_dialect,
    )
    for name, value in params.items():
        if name in shape.owns or name == "structured_outputs":
            continue
        body[dialect.renames.get(name, name)] = value
    if dialect.require_parameters and shape.structured and params.get("structured_outputs", True):
        body["provider"] = {"require_parameters": True}
    return body


@dataclass(frozen=True)
class Answer:
    """What one response says, read the same way for every mode."""

    text: str | None
    finish_reason: str | None
    refusal: str | None
    usage: Usage
    response_id: str | None
    tool_call_id: str | None = None
    spans: dict[str, list[int]] | None = None


def decode(mode: str, payload: Any) -> Answer:
    """Read the answer out of a chat.completion object.

    An error object in a 200 body (OpenRouter sends these) raises `APIStatusError`; a
    body that is not a chat completion (a field missing, or of the wrong type) raises
    `MalformedResponse` naming the field. What the model wrote is not judged here: tool
    arguments sent as a JSON value rather than a string are read as that value's text,
    for the schema to accept or reject (and the model to be asked again).
    """
    try:
        return _decode(mode, payload)
    except MalformedResponse as exc:
        raise MalformedResponse(exc.problem, body=_excerpt(payload)) from None


def read_content(content: Any, where: str) -> str | None:
    """The text of a message's (or a delta's) `content`, found at `where` in the response.

    A string or null; some servers send a list of typed parts, whose text parts are
    joined. Anything else raises `MalformedResponse`.
    """
    if content is None or isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise MalformedResponse(f"{where} is {json_kind(content)}, not a string")
    texts = []
    for i, item in enumerate(content):
        part = _object(item, f"{where}[{i}]")
        if part.get("type") == "text":  # other parts (images, audio) hold no answer text
            text = part.get("text")
            if not isinstance(text, str):
                raise MalformedResponse(f"{where}[{i}].text is {json_kind(text)}, not a string")
            texts.append(text)
    return "".join(texts)


def _decode(mode: str, payload: Any) -> Answer:
    if not isinstance(payload, dict):
        raise MalformedResponse(f"it is {json_kind(payload)}, not an object")
    if payload.get("error"):
        raise APIStatusError.from_error_object(payload["error"], body=_excerpt(payload))
    choices = payload.get("choices")
    if choices is None:
        raise MalformedResponse("it has no choices")
    if not isinstance(choices, list):
        raise MalformedResponse(f"choices is {json_kind(choices)}, not an array")
    if not choices:
        raise MalformedResponse("choices is empty")
    choice = _object(choices[0], "choices[0]")
    message = _object(choice.get("message"), "choices[0].message")
    finish_reason = _string(choice.get("finish_reason"), "choices[0].finish_reason")
    if finish_reason == "error":
        raise APIStatusError(
            502, "the provider reported an error while generating", body=_excerpt(payload)
        )
    refusal = _string(message.get("refusal"), "choices[0].message.refusal")
    text, tool_call_id = MODE_TABLE[mode].read(message)
    return Answer(
        text=text,
        finish_reason=finish_reason,
        refusal=refusal or None,
        usage=Usage.from_response(payload.get("usage")),
        response_id=_label(payload.get("id"), "id"),
        tool_call_id=tool_call_id,
        spans=_spans(message.get("spans")),
    )


def _object(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        raise MalformedResponse(f"{where} is missing")
    if not isinstance(value, dict):
        raise MalformedResponse(f"{where} is {json_kind(value)}, not an object")
    return value


def _string(value: Any, where: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise MalformedResponse(f"{where} is {json_kind(value)}, not a string")


def _arguments(arguments: Any) -> str | None:
    """A tool call's arguments as text: servers that parse them send an object, not a string.

    Any other JSON value is the model's own (wrong) answer: its text goes to the schema,
    which rejects it, so the model is asked again.
    """
    if arguments is None or isinstance(arguments, str):
        return arguments
    return json.dumps(arguments, ensure_ascii=False, default=str)


def _label(value: Any, where: str) -> str | None:
    """An id, which only labels what it came with: one that is not a string is dropped."""
    if value is None or isinstance(value, str):
        return value
    logger.debug("the response's %s is %s, not a string: dropped", where, json_kind(value))
    return None


def _spans(spans: Any) -> dict[str, list[int]] | None:
    """Grounded values' spans (local models), each `[start, end)`; malformed ones are dropped."""
    if not isinstance(spans, dict):
        return None
    return {
        path: span
        for path, span in spans.items()
        if isinstance(path, str)
        and isinstance(span, list)
        and len(span) == 2
        and all(isinstance(i, int) and not isinstance(i, bool) for i in span)
    }


def _excerpt(payload: Any) -> str:
    """The start of a response, for an error to carry (keys were masked as it was read)."""
    try:
        text = json.dumps(payload, ensure_ascii=False, default=str)
    except (ValueError, RecursionError):
        text = repr(type(payload))
    return text[:_EXCERPT_CHARS]
