"""The words sent to the model: instructions, the document, and the reask.

Documents are untrusted: they only ever go in user messages, and nothing in them can
change the instructions or the schema the answer is held to.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from extractor._errors import ErrorDetail
from extractor._modes import MODE_TABLE

__all__ = ["document_messages", "reask_messages", "truncation_message"]

Message = dict[str, Any]

_BASE = (
    "You extract structured data from the document in the user's message. "
    "Use only what the document says; where it gives no value for a field that may be "
    "null, use null. Never invent values."
)


def system_prompt(mode: str, *, name: str, schema: dict[str, Any], instructions: str | None) -> str:
    """Instructions for one mode; only modes with no schema channel carry the schema."""
    template = MODE_TABLE[mode].instruction
    if "{schema}" in template:
        template = template.replace(
            "{schema}", json.dumps(schema, ensure_ascii=False, separators=(",", ":"))
        )
    tail = template.replace("{name}", name)
    extra = f"\n\n{instructions.strip()}" if instructions else ""
    return f"{_BASE} {tail}{extra}"


def document_messages(
    document: str,
    *,
    mode: str,
    name: str,
    schema: dict[str, Any],
    instructions: str | None,
    examples: Sequence[tuple[str, Any]] = (),
) -> list[Message]:
    """The opening conversation: instructions in the system message, the document as user.

    Worked examples come between them, each as a user message (its document) and the
    assistant's answer (its record as JSON).
    """
    shown: list[Message] = []
    for text, record in examples:
        shown.append({"role": "user", "content": text})
        shown.append({"role": "assistant", "content": json.dumps(record, ensure_ascii=False)})
    return [
        {
            "role": "system",
            "content": system_prompt(mode, name=name, schema=schema, instructions=instructions),
        },
        *shown,
        {"role": "user", "content": document},
    ]


def render_errors(errors: Sequence[ErrorDetail], limit: int = 10) -> str:
    """A short list of what was wrong, one line per problem: the path, then the problem."""
    lines = [f"- {e}" for e in errors[:limit]]
    if len(errors) > limit:
        lines.append(f"- … and {len(errors) - limit} more")
    return "\n".join(lines)


def reask_messages(
    mode: str,
    *,
    raw: str | None,
    errors: Sequence[ErrorDetail],
    tool_call_id: str | None,
    tool_name: str,
) -> list[Message]:
    """The previous answer and what was wrong with it, without resending the schema."""
    return MODE_TABLE[mode].reask(
        raw=raw, problems=render_errors(errors), tool_call_id=tool_call_id, tool_name=tool_name
    )


def truncation_message(detail: str | None = None) -> Message:
    """Sent after an answer that was cut off; the partial answer is not resent.

    `detail` is set when the text itself shows the cut (it stops inside a value) rather
    than the server reporting the token limit.
    """
    if detail:
        text = (
            f"Your previous answer stopped before the JSON was complete: {detail}. "
            "Answer again with the whole JSON only, no commentary."
        )
    else:
        text = (
            "Your previous answer was cut off at the token limit. Answer again, "
            "shorter: the JSON only, no commentary, no extra whitespace."
        )
    return {"role": "user", "content": text}
