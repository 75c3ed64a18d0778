"""What an extraction does, as events: for logs, metrics and traces.

Every extraction reports, in order: `Started`; for each attempt a `Sending` and then an
`Answered` (with the attempt's usage) or `Failed` (the request did not come back, or
the answer did not validate, with its errors); `Retrying` before each transport retry
wait; and last `Finished`, with the record's usage or the error it ended with. Events
of one extraction share its `extraction` number, so concurrent ones can be told apart.

Subscribe with `Client(hooks=[...])` for one client, or `subscribe(hook)` for every
extraction in the process (what `extractor.otel` does). A hook is any callable taking
an event; it runs in the extraction's own thread or task, so it should be quick, and an
exception it raises is logged and swallowed: observing never breaks an extraction.
Events carry no key, and no document text (only its length).
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeAlias

if TYPE_CHECKING:
    from extractor._errors import ExtractorError
    from extractor._result import Usage

__all__ = [
    "Answered",
    "Event",
    "Failed",
    "Finished",
    "Hook",
    "Retrying",
    "Sending",
    "Started",
    "subscribe",
    "unsubscribe",
]

logger = logging.getLogger("extractor")

_numbers = itertools.count(1)


def next_extraction() -> int:
    """A process-wide number for a new extraction (thread-safe: `count` is atomic)."""
    return next(_numbers)


@dataclass(frozen=True)
class Started:
    """An extraction begins: which model, mode (the first one tried) and schema."""

    extraction: int
    model: str  # provider/model
    mode: str
    schema: str  # the target's name
    document_chars: int
    provider: str = ""  # the provider's name, as in `model` before the first "/"


@dataclass(frozen=True)
class Sending:
    """An attempt's request is about to go out (the first try of it; retries are `Retrying`)."""

    extraction: int
    attempt: int  # 1 for the first answer asked for, 2 for the first reask, ...
    mode: str
    messages: int  # how many messages the conversation holds
    stream: bool = False


@dataclass(frozen=True)
class Answered:
    """An answer came back and became a record: the attempt succeeded."""

    extraction: int
    attempt: int
    mode: str
    usage: Usage
    finish_reason: str | None
    response_id: str | None


@dataclass(frozen=True)
class Failed:
    """An attempt failed: the answer was invalid, cut off or refused, or no answer came.

    `errors` lists what the validator said (field path: message), for invalid answers.
    `usage` is what the failed answer cost, when one came back.
    """

    extraction: int
    attempt: int
    mode: str
    error: ExtractorError
    errors: tuple[str, ...]
    usage: Usage | None
    finish_reason: str | None = None
    response_id: str | None = None


@dataclass(frozen=True)
class Retrying:
    """A transport try failed and is retried after `wait` seconds."""

    extraction: int
    attempt: int
    try_number: int  # the try that failed, from 1
    error: str  # the error's type name
    wait: float


@dataclass(frozen=True)
class Finished:
    """The extraction ended: with a record (`error` None) or with the error it raises.

    `error` is an `ExtractorError`, or another exception that stopped it: a cancelled
    task (`CancelledError`), a stream closed early (`GeneratorExit`), a bug.
    """

    extraction: int
    model: str
    mode: str  # the mode of the last attempt
    attempts: int
    usage: Usage
    error: BaseException | None


Event: TypeAlias = Started | Sending | Answered | Failed | Retrying | Finished
Hook: TypeAlias = Callable[[Event], object]

_global: tuple[Hook, ...] = ()
_lock = threading.Lock()


def subscribe(hook: Hook) -> None:
    """Call `hook` with every event of every extraction in this process."""
    global _global
    with _lock:
        if hook not in _global:
            _global = (*_global, hook)


def unsubscribe(hook: Hook) -> None:
    """Stop calling a hook given to `subscribe`; nothing happens if it was not."""
    global _global
    with _lock:
        _global = tuple(h for h in _global if h != hook)


class Emitter:
    """Sends events to a client's hooks and the process-wide ones."""

    __slots__ = ("_hooks",)

    def __init__(self, hooks: Iterable[Hook] = ()) -> None:
        self._hooks = tuple(hooks)

    @property
    def active(self) -> bool:
        """Whether anyone listens (events are not built otherwise)."""
        return bool(self._hooks or _global)

    def __call__(self, event: Event) -> None:
        for hook in (*self._hooks, *_global):
            try:
                hook(event)
            except Exception:  # observing must never break an extraction
                logger.exception("an event hook raised on %s", type(event).__name__)
