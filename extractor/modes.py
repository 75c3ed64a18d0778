"""Encode a request for a mode, and decode what the server answered. No I/O here.

| mode          | the schema travels as                          | the answer is read from     |
|---------------|------------------------------------------------|-----------------------------|
| `json_schema` | `response_format: {type: json_schema, ...}`    | `message.content`           |
| `tools`       | one function tool, forced by `tool_choice`     | `tool_calls[0]` arguments   |
| `json_object` | `response_format: {type: json_object}` + prompt| `message.content`           |
| `prompt`      | the system prompt only                         | the JSON in `message.content` |
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from extractor.errors import APIStatusError
from extractor.providers import Dialect
from extractor.result import Usage
from extractor.schema import CompiledSchema

__all__ = ["Answer", "build_body", "decode"]


def build_body(
    mode: str,
    *,
    model: str,
    messages: list[dict[str, Any]],
    schema: CompiledSchema[Any],
    dialect: Dialect,
    params: dict[str, Any],
) -> dict[str, Any]:
    """The JSON body of one chat-completions request, in the dialect's own names."""
    body: dict[str, Any] = {"model": model, "messages": messages}
    user_tools = params.get("tools")
    wire_schema = schema.dialect(dialect.schema_dialect)
    if mode == "json_schema":
        spec: dict[str, Any] = {"name": schema.name, "schema": wire_schema}
        if schema.description:
            spec["description"] = schema.description
        if dialect.strict_json_schema:
            spec["strict"] = True
        body["response_format"] = {"type": "json_schema", "json_schema": spec}
    elif mode == "tools":
        function: dict[str, Any] = {"name": schema.name, "parameters": wire_schema}
        if schema.description:
            function["description"] = schema.description
        if dialect.strict_tools:
            function["strict"] = True
        body["tools"] = [*(user_tools or ()), {"type": "function", "function": function}]
        body["tool_choice"] = params.get("tool_choice") or (
            dialect.force_tool or {"type": "function", "function": {"name": schema.name}}
        )
    elif mode == "json_object":
        response_format: dict[str, Any] = {"type": "json_object"}
        if dialect.json_object_schema:
            response_format["schema"] = wire_schema
        body["response_format"] = response_format
    for name, value in params.items():
        if name in ("structured_outputs", "tools", "tool_choice") and mode == "tools":
            continue
        if name == "structured_outputs":
            continue
        body[dialect.renames.get(name, name)] = value
    if (
        dialect.require_parameters
        and mode in ("json_schema", "tools")
        and params.get("structured_outputs", True)
    ):
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

    An error object in a 200 body (OpenRouter sends these) raises `APIStatusError`.
    """
    if not isinstance(payload, dict):
        raise APIStatusError(200, "the response is not a JSON object", body=str(payload)[:2000])
    if payload.get("error"):
        raise APIStatusError.from_error_object(payload["error"], body=str(payload)[:2000])
    choices = payload.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise APIStatusError(200, "the response has no choices", body=str(payload)[:2000])
    choice = choices[0]
    message = choice.get("message") or {}
    finish_reason = choice.get("finish_reason")
    if finish_reason == "error":
        raise APIStatusError(502, "the provider reported an error while generating")
    text = message.get("content")
    tool_call_id = None
    if mode == "tools":
        calls = message.get("tool_calls") or []
        if calls:
            call = calls[0]
            tool_call_id = call.get("id")
            text = (call.get("function") or {}).get("arguments")
    if text is not None and not isinstance(text, str):
        text = _join_parts(text)
    return Answer(
        text=text,
        finish_reason=finish_reason,
        refusal=message.get("refusal") or None,
        usage=Usage.from_response(payload.get("usage")),
        response_id=payload.get("id"),
        tool_call_id=tool_call_id,
        spans=message.get("spans") if isinstance(message.get("spans"), dict) else None,
    )


def _join_parts(content: Any) -> str:
    """Some servers send content as a list of typed parts; keep the text ones."""
    if isinstance(content, list):
        return "".join(
            str(p.get("text", ""))
            for p in content
            if isinstance(p, dict) and p.get("type") == "text"
        )
    return str(content)
