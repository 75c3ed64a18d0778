"""Helpers for the parser's tests: a schema `load` like the client's, and strict equality."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jsonschema

from extractor._errors import ErrorDetail, InvalidAnswer


def loader(schema: dict[str, Any]) -> Callable[[Any], Any]:
    """A `load` like the client's: the data back when the schema holds, else `InvalidAnswer`."""
    validator = jsonschema.Draft202012Validator(schema)

    def load(data: Any) -> Any:
        errors = [ErrorDetail(e.json_path, e.message) for e in validator.iter_errors(data)]
        if errors:
            raise InvalidAnswer(errors)
        return data

    return load


def same(a: Any, b: Any) -> bool:
    """Equal and of the same JSON types all the way down (1 is not 1.0, True is not 1)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b
