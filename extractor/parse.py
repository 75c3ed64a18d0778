"""From answer text to JSON data: strict first, then the JSON found inside prose or fences.

Nothing is ever invented: text that holds no complete JSON value is an `InvalidAnswer`.
"""

from __future__ import annotations

import json
import re
from typing import Any

from extractor.errors import ErrorDetail, InvalidAnswer

__all__ = ["parse_json"]

_FENCE = re.compile(r"```(?:json|JSON)?\s*\n?(.*?)```", re.DOTALL)
_decoder = json.JSONDecoder()


def parse_json(text: str | None) -> Any:
    """Parse the answer; where it is wrapped in prose or code fences, take the JSON out.

    Candidates are tried in order (the whole text, each fenced block, each `{` or `[`
    that starts a complete value); the first that parses wins.
    """
    if text is None or not text.strip():
        raise InvalidAnswer([ErrorDetail("", "the answer is empty; expected a JSON object")])
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        first_error = exc
    for block in _FENCE.findall(text):
        try:
            return json.loads(block)
        except json.JSONDecodeError:
            continue
    for match in re.finditer(r"[{\[]", text):
        try:
            value, _ = _decoder.raw_decode(text, match.start())
        except json.JSONDecodeError:
            continue
        if isinstance(value, (dict, list)):
            return value
    raise InvalidAnswer(
        [ErrorDetail("", f"not valid JSON: {first_error.msg} at character {first_error.pos}")],
        raw=text,
    )
