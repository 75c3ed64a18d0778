"""What the providers accept on the wire, as checks over request bodies.

OpenAI: the official request schema, copied into `tests/data/openai-chat-schemas.json`
from openai/openai-openapi (MIT; its `x-source` field names the commit), plus a check
that every top-level field is one the schema names (the schema itself allows extra
fields, so a typo would pass it). Mistral: the fields its chat-completions API accepts;
it answers anything else with HTTP 422.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema

from extractor.testing import RecordedRequest

SCHEMAS = Path(__file__).parent / "data" / "openai-chat-schemas.json"

#: Fields OpenRouter adds to OpenAI's request (documented by OpenRouter).
OPENROUTER_FIELDS = frozenset({"provider"})

MISTRAL_FIELDS = frozenset(
    {
        "model", "messages", "temperature", "top_p", "max_tokens", "stream", "stop",
        "random_seed", "response_format", "tools", "tool_choice", "presence_penalty",
        "frequency_penalty", "n", "parallel_tool_calls", "prediction", "prompt_mode",
        "safe_prompt",
    }
)  # fmt: skip
MISTRAL_MESSAGE_FIELDS = frozenset(
    {"role", "content", "tool_calls", "tool_call_id", "name", "prefix"}
)
MISTRAL_FUNCTION_FIELDS = frozenset({"name", "description", "parameters", "strict"})


@cache
def _document() -> dict[str, Any]:
    return json.loads(SCHEMAS.read_text())  # type: ignore[no-any-return]


@cache
def _validator() -> jsonschema.Draft202012Validator:
    schema = {**_document(), "$ref": "#/components/schemas/CreateChatCompletionRequest"}
    return jsonschema.Draft202012Validator(schema)


@cache
def openai_fields() -> frozenset[str]:
    """Every top-level field `CreateChatCompletionRequest` names, through its allOf parts."""
    schemas = _document()["components"]["schemas"]
    names: set[str] = set()

    def collect(node: dict[str, Any]) -> None:
        if "$ref" in node:
            collect(schemas[node["$ref"].rsplit("/", 1)[-1]])
        names.update(node.get("properties", {}))
        for part in node.get("allOf", []):
            collect(part)

    collect(schemas["CreateChatCompletionRequest"])
    return frozenset(names)


def check_openai_body(body: dict[str, Any]) -> None:
    """Fail unless the body is a valid OpenAI chat-completions request."""
    errors = sorted(_validator().iter_errors(body), key=lambda e: list(e.path))
    assert not errors, (
        f"not a valid CreateChatCompletionRequest: {errors[0].message} at {list(errors[0].path)}"
    )
    unknown = set(body) - openai_fields() - OPENROUTER_FIELDS
    assert not unknown, f"fields OpenAI does not define: {sorted(unknown)}"


def check_mistral_body(body: dict[str, Any]) -> None:
    """Fail if the body carries a field Mistral's API rejects."""
    unknown = set(body) - MISTRAL_FIELDS
    assert not unknown, f"fields Mistral rejects: {sorted(unknown)}"
    for message in body["messages"]:
        extra = set(message) - MISTRAL_MESSAGE_FIELDS
        assert not extra, f"message fields Mistral rejects: {sorted(extra)}"
    for tool in body.get("tools", []):
        assert set(tool) <= {"type", "function"}
        extra = set(tool["function"]) - MISTRAL_FUNCTION_FIELDS
        assert not extra, f"function fields Mistral rejects: {sorted(extra)}"
    choice = body.get("tool_choice")
    if isinstance(choice, str):
        assert choice in ("auto", "none", "any", "required")


def sent_mode(request: RecordedRequest) -> str:
    """Which mode a request was encoded in, read from its body."""
    body = request.body or {}
    if "tools" in body:
        return "tools"
    kind = (body.get("response_format") or {}).get("type")
    return {"json_schema": "json_schema", "json_object": "json_object"}.get(kind, "prompt")
