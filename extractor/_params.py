"""Request parameters: which ones exist, their ranges, checked before anything is sent.

These are the parameters of the reference model's API page. Each is checked here once,
under its common name; the provider's dialect (`providers.Dialect`) renames them on the
wire (`seed` → `random_seed`, `max_completion_tokens` → `max_tokens` for Mistral).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from typing import Any, Final

from extractor._errors import ParameterError

__all__ = ["PARAMETERS", "check_params"]

#: Every request parameter `extract` accepts besides the model, mode and retry options.
PARAMETERS: Final = (
    "frequency_penalty",
    "max_completion_tokens",
    "max_tokens",
    "presence_penalty",
    "response_format",
    "seed",
    "stop",
    "structured_outputs",
    "temperature",
    "tool_choice",
    "tools",
    "top_p",
)

_MAX_STOP = 4


def _number(name: str, value: Any, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise ParameterError(name, f"must be a number from {low} to {high}, not {value!r}")
    if not low <= value <= high:
        raise ParameterError(name, f"must be from {low} to {high}, not {value!r}")
    return value


def _integer(name: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ParameterError(name, f"must be a whole number, not {value!r}")
    if value < low:
        raise ParameterError(name, f"must be at least {low}, not {value!r}")
    return value


def check_params(params: Mapping[str, Any], *, temperature_max: float = 2.0) -> dict[str, Any]:
    """Check every parameter and return them with aliases resolved; `None` means unset.

    Raises `ParameterError` naming the first bad parameter. `max_tokens` is accepted as a
    deprecated alias of `max_completion_tokens`.
    """
    out: dict[str, Any] = {}
    for name, value in params.items():
        if value is None:
            continue
        if name not in PARAMETERS:
            raise ParameterError(name, f"unknown parameter; known: {', '.join(PARAMETERS)}")
        if name == "temperature":
            out[name] = _number(name, value, 0.0, temperature_max)
        elif name == "top_p":
            out[name] = _number(name, value, 0.0, 1.0)
        elif name in ("frequency_penalty", "presence_penalty"):
            out[name] = _number(name, value, -2.0, 2.0)
        elif name == "seed":
            out[name] = _integer(name, value, -(2**63))
        elif name in ("max_completion_tokens", "max_tokens"):
            if name == "max_tokens":
                warnings.warn(
                    "max_tokens is deprecated; use max_completion_tokens",
                    DeprecationWarning,
                    stacklevel=4,
                )
                if params.get("max_completion_tokens") is not None:
                    raise ParameterError(name, "give max_completion_tokens or max_tokens, not both")
            out["max_completion_tokens"] = _integer(name, value, 1)
        elif name == "stop":
            out[name] = _stop(value)
        elif name == "structured_outputs":
            if not isinstance(value, bool):
                raise ParameterError(name, f"must be true or false, not {value!r}")
            out[name] = value
        elif name == "tools":
            out[name] = _tools(value)
        elif name == "tool_choice":
            if not isinstance(value, (str, dict)):
                raise ParameterError(name, "must be 'auto', 'none', 'required' or an object")
            out[name] = value
        elif name == "response_format":
            if not isinstance(value, dict) or "type" not in value:
                raise ParameterError(name, "must be an object with a 'type'")
            out[name] = value
    return out


def _stop(value: Any) -> list[str]:
    stops = [value] if isinstance(value, str) else value
    if not isinstance(stops, (list, tuple)) or not all(isinstance(s, str) and s for s in stops):
        raise ParameterError("stop", "must be a non-empty string or a list of them")
    if len(stops) > _MAX_STOP:
        raise ParameterError("stop", f"at most {_MAX_STOP} sequences, not {len(stops)}")
    return list(stops)


def _tools(value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, (list, tuple)):
        raise ParameterError("tools", "must be a list of tool objects")
    for tool in value:
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(function, dict) or not function.get("name"):
            raise ParameterError("tools", 'each tool is {"type": "function", "function": {...}}')
    return list(value)
