"""The options of an extraction, defined once: their types, and the checks they get.

`Options` is what every call takes as keyword arguments (`Client.extract(..., **options)`,
`extract`, `@extractable(...)`), typed so that a type checker catches a misspelled option
or a wrong type in user code. They are checked here, in one place, before anything is
sent: the call options by `check_call`, the request parameters by `params.check_params`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final, Literal, TypedDict

from extractor._errors import ConfigurationError
from extractor._params import check_params
from extractor._providers import MODES

__all__ = [
    "CALL_OPTIONS",
    "Mode",
    "Options",
    "Params",
    "check_call",
    "check_context",
    "check_mode",
    "check_retries",
    "check_seconds",
]

Mode = Literal["auto", "json_schema", "tools", "json_object", "prompt", "grounded"]


class Params(TypedDict, total=False):
    """Request parameters, as `Client(...)` takes them for every call (see `extractor._params`)."""

    temperature: float
    top_p: float
    seed: int
    stop: str | Sequence[str]
    max_completion_tokens: int
    max_tokens: int  # deprecated alias of max_completion_tokens
    frequency_penalty: float
    presence_penalty: float
    structured_outputs: bool
    response_format: Mapping[str, Any]
    tools: Sequence[Mapping[str, Any]]
    tool_choice: str | Mapping[str, Any]


class Options(Params, total=False):
    """Keyword options of an extraction; any left out take the client's defaults.

    The request parameters of `Params`, and these:
    """

    model: str  # provider/model
    base_url: str
    api_key: str
    mode: Mode
    max_retries: int  # reasks after an invalid answer
    instructions: str  # added to the system prompt
    examples: Sequence[Any]  # worked examples, in place of the target's own ([] for none)
    timeout: float  # one request, connect to last byte, in seconds
    deadline: float | None  # one extraction: every attempt and wait (None: unbounded)
    context_tokens: int  # the model's context window, where extractor cannot know it


#: The options that are not request parameters.
CALL_OPTIONS: Final = frozenset(
    {
        "model",
        "base_url",
        "api_key",
        "mode",
        "max_retries",
        "instructions",
        "examples",
        "timeout",
        "deadline",
        "context_tokens",
    }
)


def check_mode(mode: Any) -> None:
    if mode not in MODES:
        raise ConfigurationError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")


def check_retries(max_retries: Any) -> None:
    if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
        raise ConfigurationError(f"max_retries must be a whole number >= 0, not {max_retries!r}")


def check_seconds(name: str, value: Any) -> None:
    """A timeout or deadline: a positive number of seconds (a deadline may be None)."""
    if value is None and name == "deadline":
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ConfigurationError(f"{name} must be a number of seconds > 0, not {value!r}")


def check_context(value: Any) -> None:
    """A context window: a whole number of tokens, at least 256 (None: not given)."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 256:
        raise ConfigurationError(
            f"context_tokens must be a whole number of tokens >= 256, not {value!r}"
        )


def check_call(options: Mapping[str, Any]) -> None:
    """Check options given ahead of any call (`@extractable(...)` defaults)."""
    if "mode" in options:
        check_mode(options["mode"])
    if "max_retries" in options:
        check_retries(options["max_retries"])
    for name in ("timeout", "deadline"):
        if name in options:
            check_seconds(name, options[name])
    if "context_tokens" in options:
        check_context(options["context_tokens"])
    check_params({k: v for k, v in options.items() if k not in CALL_OPTIONS})
