"""What an extraction returns besides the record: usage, attempts, mode, ids."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from extractor.errors import AttemptError

__all__ = ["Attempt", "Extraction", "Usage"]

T = TypeVar("T")


@dataclass(frozen=True)
class Usage:
    """Tokens (and cost, where the provider reports it) of one or more requests."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    cost: float | None = None

    @classmethod
    def from_response(cls, usage: Mapping[str, Any] | None) -> Usage:
        """Read the `usage` object of a chat completion; missing numbers count as 0."""
        if not usage:
            return cls()
        cost = usage.get("cost")
        return cls(
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
            total_tokens=int(usage.get("total_tokens") or 0),
            cost=float(cost) if isinstance(cost, (int, float)) else None,
        )

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
        )

    @classmethod
    def total(cls, usages: Iterable[Usage]) -> Usage:
        """Sum of several usages."""
        out = cls()
        for usage in usages:
            out = out + usage
        return out


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
    #: `extractor.parse.REPAIRS`); empty when it was strict JSON.
    repairs: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """Whether this attempt produced the record."""
        return self.error is None


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
    def spans(self) -> Mapping[str, list[int]]:
        """Character spans of the grounded values (local models), by field path."""
        return (self.attempts[-1].spans or {}) if self.attempts else {}

    @property
    def response_id(self) -> str | None:
        """The id of the response the record came from."""
        return self.attempts[-1].response_id if self.attempts else None
