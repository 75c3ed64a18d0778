"""What an extraction returns besides the record: usage, attempts, mode, ids."""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Generic, TypeVar

from extractor._errors import AttemptError, json_kind

__all__ = ["Attempt", "Extraction", "Prices", "Usage"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: No one response uses this many tokens: a larger count is garbage, not usage.
_MAX_TOKENS: Final = 10**9

#: The usage fields found garbled so far: each is warned about once, then logged at DEBUG.
_warned: set[str] = set()


@dataclass(frozen=True)
class Usage:
    """Tokens (and cost, where the provider reports it) of one or more requests.

    `cached` counts the requests answered from a response cache (`Client(cache=...)`):
    they cost nothing, so they add no tokens and no cost.
    """

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    cost: float | None = None
    cached: int = 0

    @classmethod
    def from_response(cls, usage: Any) -> Usage:
        """Read the `usage` object of a chat completion; missing numbers count as 0.

        Garbled usage does not fail the answer it came with, which may be good: token
        counts that are not all whole numbers from 0 to a billion count as 0, a cost that
        is not a finite number >= 0 is unknown (None), and a warning says so.
        """
        if usage is None:
            return cls()
        if not isinstance(usage, Mapping):
            problem = f"usage is {json_kind(usage)}, not an object"
            _garbled("usage", problem, "its tokens count as 0")
            return cls()
        counts: list[int] = []
        for name in ("prompt_tokens", "completion_tokens", "total_tokens"):
            count = _token_count(usage.get(name))
            if count is None:
                shown = _shown(usage.get(name))
                problem = f"usage.{name} is {shown}, not a count of tokens"
                _garbled(name, problem, "its tokens count as 0")
                counts = [0, 0, 0]  # counts that disagree would mislead: none are kept
                break
            counts.append(count)
        cost = usage.get("cost")
        if cost is not None and not _is_cost(cost):
            problem = f"usage.cost is {_shown(cost)}, not an amount of money"
            _garbled("cost", problem, "its cost is unknown")
            cost = None
        prompt, completion, total = counts
        return cls(prompt, completion, total, None if cost is None else float(cost))

    def __add__(self, other: Usage) -> Usage:
        cost = (
            None
            if self.cost is None and other.cost is None
            else ((self.cost or 0.0) + (other.cost or 0.0))
        )
        return Usage(
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
            self.total_tokens + other.total_tokens,
            cost,
            self.cached + other.cached,
        )

    @classmethod
    def total(cls, usages: Iterable[Usage]) -> Usage:
        """Sum of several usages."""
        out = cls()
        for usage in usages:
            out = out + usage
        return out


@dataclass(frozen=True)
class Prices:
    """What a provider charges, in USD per million tokens: for jobs whose provider reports
    token counts but no cost (OpenAI, Mistral, and every batch API)."""

    prompt: float
    completion: float

    @classmethod
    def parse(cls, text: str) -> Prices:
        """`"IN,OUT"` (USD per million prompt and completion tokens), e.g. `"1,3"`."""
        parts = text.replace("/", ",").split(",")
        try:
            prompt, completion = (float(part) for part in parts)
        except ValueError:
            raise ValueError(
                f"{text!r} is not two prices: give IN,OUT in USD per million prompt and "
                "completion tokens, e.g. 1,3"
            ) from None
        if not (prompt >= 0 and completion >= 0) or math.inf in (prompt, completion):
            raise ValueError(f"{text!r}: prices are amounts of money, 0 or more")
        return cls(prompt, completion)

    def cost(self, prompt_tokens: float, completion_tokens: float) -> float:
        """The cost of so many tokens."""
        return (prompt_tokens * self.prompt + completion_tokens * self.completion) / 1e6

    def fill(self, usage: Usage) -> Usage:
        """`usage` with its cost worked out from its tokens, unless the provider gave one."""
        if usage.cost is not None or not usage.total_tokens:
            return usage
        cost = self.cost(usage.prompt_tokens, usage.completion_tokens)
        return dataclasses.replace(usage, cost=cost)


def _token_count(value: Any) -> int | None:
    """A token count as a whole number (missing: 0), or None when it is not one."""
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, float) and not value.is_integer():
        return None  # 12.0 is a whole number (JSON does not tell them apart); 12.5 is not
    return int(value) if 0 <= value <= _MAX_TOKENS else None


def _is_cost(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        amount = float(value)
    except OverflowError:  # an integer past the largest float
        return False
    return math.isfinite(amount) and amount >= 0


def _shown(value: Any) -> str:
    """A garbled value for a log line: short, whatever its size."""
    if isinstance(value, str):
        return f"the string {value[:40]!r}"
    if isinstance(value, bool) or value is None:
        return json_kind(value)
    if isinstance(value, int):
        return str(value) if abs(value) < 10**30 else "a huge integer"
    if isinstance(value, float):
        return repr(value)
    return json_kind(value)


def _garbled(field_name: str, problem: str, outcome: str) -> None:
    """Say that usage was garbled: at WARNING the first time for each field, then at DEBUG.

    A server that garbles usage garbles it on every answer: one warning is enough.
    """
    level = logging.DEBUG if field_name in _warned else logging.WARNING
    _warned.add(field_name)
    logger.log(level, "the response's usage is garbled (%s): %s", problem, outcome)


@dataclass(frozen=True)
class Attempt:
    """One answer from the model and, if it was rejected, why."""

    mode: str
    raw: str | None
    finish_reason: str | None
    usage: Usage
    response_id: str | None
    error: AttemptError | None = None
    #: Where each grounded value stands in the document: field path → [start, end).
    spans: Mapping[str, list[int]] | None = None
    #: What was repaired to read the answer as JSON ("fence", "trailing_comma", ...; see
    #: `extractor._parse.REPAIRS`); empty when it was strict JSON.
    repairs: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """Whether this attempt produced the record."""
        return self.error is None

    @property
    def cached(self) -> bool:
        """Whether this answer came from the response cache (nothing was sent)."""
        return self.usage.cached > 0


@dataclass(frozen=True)
class Extraction(Generic[T]):
    """A validated record and the story of how it was obtained."""

    value: T
    model: str
    mode: str
    attempts: tuple[Attempt, ...] = field(default=())

    @property
    def usage(self) -> Usage:
        """Usage summed over every attempt."""
        return Usage.total(a.usage for a in self.attempts)

    @property
    def cached(self) -> bool:
        """Whether every answer came from the response cache: the record cost nothing."""
        return bool(self.attempts) and all(a.cached for a in self.attempts)

    @property
    def spans(self) -> Mapping[str, list[int]]:
        """Character spans of the grounded values (local models), by field path."""
        return (self.attempts[-1].spans or {}) if self.attempts else {}

    @property
    def response_id(self) -> str | None:
        """The id of the response the record came from."""
        return self.attempts[-1].response_id if self.attempts else None
