"""The seam between the extraction loop and whatever answers it.

The loop (`extractor._conversation`) asks a `Backend` for one answer at a time, with a
typed `Request`: the conversation so far, the mode, the schema, the parameters. It gets
back an `Answer` (the text, finish reason, usage), already read out of whatever the
backend spoke. Backends in the box:

- `extractor._http.HTTPBackend`: chat completions over HTTP, for every provider preset;
- `extractor._local.backend.LocalBackend`: the embedded model, in process;
- `extractor.testing.ScriptedBackend`: answers given in advance, for users' unit tests.

Wrappers are backends too, and stack: `Retrying` adds the transport retry policy (and
the extraction's deadline), `Paced` a batch job's rate limits. A job's stack is
`Retrying(Paced(HTTPBackend))`, so each try waits its turn and every 429 is seen.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias, runtime_checkable

import tenacity

from extractor._errors import APITimeoutError
from extractor._modes import Answer
from extractor._retry import RetryPolicy, describe, is_retryable
from extractor.events import Event
from extractor.events import Retrying as RetryingEvent

if TYPE_CHECKING:
    from extractor._providers import Endpoint
    from extractor._result import Attempt
    from extractor._schema import CompiledSchema

__all__ = ["Answer", "Backend", "Budget", "Paced", "Pacer", "Request", "Retrying", "StreamItem"]

logger = logging.getLogger("extractor")

#: What a stream yields: the answer's text so far (each time it grows), then the `Answer`.
StreamItem: TypeAlias = "str | Answer"


def _ignore(event: Event) -> None:
    return None


class Budget:
    """An extraction's deadline: the `time.monotonic()` instant it must end by.

    Waiting for a batch job's turn (its rate limits, a job-wide pause after a 429) moves
    the instant on by the time waited: the deadline bounds a document's own attempts and
    retry waits, not the job's pace, so a pause the provider asks for does not fail every
    document in flight.
    """

    def __init__(self, seconds: float | None) -> None:
        self.seconds = seconds
        self.expires = None if seconds is None else time.monotonic() + seconds

    def left(self) -> float | None:
        """Seconds left (None: no deadline); 0 or less once it has passed."""
        return None if self.expires is None else self.expires - time.monotonic()

    def extend(self, seconds: float) -> None:
        """Move the deadline on (time spent waiting for a turn)."""
        if self.expires is not None:
            self.expires += seconds

    def passed(self) -> APITimeoutError:
        return APITimeoutError(
            f"the extraction's deadline of {self.seconds or 0:g} s passed (deadline: it "
            "bounds every attempt of one extraction and the waits between them)",
            retryable=False,
        )


@dataclass(frozen=True, slots=True)
class Request:
    """One answer asked of a backend: everything it needs, nothing of HTTP.

    `attempts` are the earlier attempts of this extraction (a local model avoids the
    values the validator refused). `timeout` bounds this request; `budget` is the whole
    extraction's deadline (None: no bound).
    """

    endpoint: Endpoint
    mode: str
    messages: Sequence[dict[str, Any]]
    schema: CompiledSchema[Any]
    params: dict[str, Any]
    document: str
    examples: tuple[tuple[str, Any], ...] = ()
    attempts: tuple[Attempt, ...] = ()
    timeout: float = 120.0
    budget: Budget | None = field(default=None, compare=False)
    #: False when the schema goes in the provider's loose dialect (strict cannot carry it).
    strict: bool = True
    extraction: int = 0  # the extraction's number, for events
    attempt: int = 1
    emit: Callable[[Event], None] = field(default=_ignore, compare=False, repr=False)

    def size(self) -> int:
        """About how many characters the request carries (a batch's token estimate)."""
        text = json.dumps(self.messages, ensure_ascii=False)
        return len(text) + len(json.dumps(self.schema.schema))

    def with_time_left(self) -> Request:
        """This request with its timeout cut to what is left of the deadline.

        Raises `APITimeoutError` (not retried) when the deadline has passed.
        """
        left = None if self.budget is None else self.budget.left()
        if left is None or left >= self.timeout:
            return self  # the common case: the timeout is what is left, no copy
        if left <= 0:
            raise self.deadline_passed()
        return dataclasses.replace(self, timeout=left)

    def deadline_passed(self) -> APITimeoutError:
        """The error of a spent deadline."""
        return (self.budget or Budget(0)).passed()

    def until(self) -> float | None:
        """The instant the extraction must end by, as it stands now (retries read it)."""
        return None if self.budget is None else self.budget.expires


@runtime_checkable
class Backend(Protocol):
    """Answers requests: sync and async, whole or streamed."""

    def complete(self, request: Request) -> Answer:
        """The answer to `request`; raises `APIError` when none came."""
        ...

    async def acomplete(self, request: Request) -> Answer:
        """The async form of `complete`."""
        ...

    def stream(self, request: Request) -> Iterator[StreamItem]:
        """The answer's text as it grows, then the `Answer` itself as the last item."""
        ...

    def astream(self, request: Request) -> AsyncIterator[StreamItem]:
        """The async form of `stream`."""
        ...

    async def aclose(self) -> None:
        """Release what the running event loop holds (connections); the backend stays usable."""
        ...


class Retrying:
    """Transport retries (`RetryPolicy`) around another backend, within the deadline.

    Each try gets the request's timeout cut to what is left of the extraction's
    deadline, and no wait runs past it; a timeout that the deadline cut short is
    reported as the deadline. A stream is retried only until its first item: once text
    has been shown, a failure is the caller's to see.
    """

    def __init__(self, inner: Backend, policy: RetryPolicy) -> None:
        self.inner = inner
        self.policy = policy

    def _on_retry(self, request: Request) -> Callable[[tenacity.RetryCallState], None]:
        def report(state: tenacity.RetryCallState) -> None:
            logger.info("request failed, retrying: %s", describe(state))
            exc = state.outcome.exception() if state.outcome else None
            request.emit(
                RetryingEvent(
                    request.extraction,
                    request.attempt,
                    state.attempt_number,
                    type(exc).__name__ if exc else "",
                    round(state.upcoming_sleep, 3),
                )
            )

        return report

    def _timed(self, request: Request, call: Callable[[Request], Any]) -> Any:
        tried = request.with_time_left()
        try:
            return call(tried)
        except APITimeoutError:
            if tried.timeout < request.timeout:  # cut short by the deadline: that passed
                raise request.deadline_passed() from None
            raise

    async def _atimed(self, request: Request, call: Callable[[Request], Awaitable[Any]]) -> Any:
        tried = request.with_time_left()
        try:
            return await call(tried)
        except APITimeoutError:
            if tried.timeout < request.timeout:
                raise request.deadline_passed() from None
            raise

    # The first try runs outside tenacity: most requests succeed at once, and setting up
    # its controller costs more than the rest of extractor's share of a call. A retryable
    # failure starts the controller, which sees that failure as its first try, so waits,
    # events, attempt counts and `max_elapsed` are what they would have been.

    def complete(self, request: Request) -> Answer:
        started = time.monotonic()
        try:
            first: Answer = self._timed(request, self.inner.complete)
            return first
        except Exception as exc:
            if not is_retryable(exc):
                raise
            failed: list[BaseException] = [exc]

        def again(tried: Request) -> Answer:
            if failed:
                raise failed.pop()
            return self.inner.complete(tried)

        retrying = self.policy.retrying(
            self._on_retry(request), until=request.until, started=started
        )
        answer: Answer = retrying(self._timed, request, again)
        return answer

    async def acomplete(self, request: Request) -> Answer:
        started = time.monotonic()
        try:
            first: Answer = await self._atimed(request, self.inner.acomplete)
            return first
        except Exception as exc:
            if not is_retryable(exc):
                raise
            failed: list[BaseException] = [exc]

        async def again(tried: Request) -> Answer:
            if failed:
                raise failed.pop()
            return await self.inner.acomplete(tried)

        retrying = self.policy.async_retrying(
            self._on_retry(request), until=request.until, started=started
        )
        answer: Answer = await retrying(self._atimed, request, again)
        return answer

    def stream(self, request: Request) -> Iterator[StreamItem]:
        def opened(tried: Request) -> tuple[Iterator[StreamItem], StreamItem]:
            items = self.inner.stream(tried)
            return items, next(items)

        retrying = self.policy.retrying(self._on_retry(request), until=request.until)
        items, first = retrying(self._timed, request, opened)
        yield first
        yield from items

    async def astream(self, request: Request) -> AsyncIterator[StreamItem]:
        async def opened(tried: Request) -> tuple[AsyncIterator[StreamItem], StreamItem]:
            items = self.inner.astream(tried)
            return items, await anext(items)

        retrying = self.policy.async_retrying(self._on_retry(request), until=request.until)
        opening: tuple[AsyncIterator[StreamItem], StreamItem] = await retrying(
            self._atimed, request, opened
        )
        items, first = opening
        yield first
        async for item in items:
            yield item

    async def aclose(self) -> None:
        await self.inner.aclose()


class Pacer(Protocol):
    """A batch job's rate limits (`extractor.batch.Limiter` is one)."""

    async def send(self, call: Callable[[], Awaitable[Answer]], size: Callable[[], int]) -> Answer:
        """Wait for a turn, run `call`, and learn from its outcome (a 429, the usage).

        `size()` gives the request's length in characters, for a token estimate: called
        only by a pacer that counts tokens.
        """
        ...


class Paced:
    """Every async request of another backend waits for its turn with a `Pacer`.

    Sync calls are not paced (a batch job runs on an event loop): they pass through.
    """

    def __init__(self, inner: Backend, pacer: Pacer) -> None:
        self.inner = inner
        self.pacer = pacer

    def complete(self, request: Request) -> Answer:
        return self.inner.complete(request)

    async def acomplete(self, request: Request) -> Answer:
        """Wait for a turn, then send with the time left.

        The wait is the job's (its rate limits, a pause a 429 asked for), not the
        document's: it moves the document's deadline on (`Budget`).
        """
        asked = time.monotonic()

        async def call() -> Answer:
            if request.budget is not None:
                request.budget.extend(time.monotonic() - asked)
            return await self.inner.acomplete(request.with_time_left())

        return await self.pacer.send(call, request.size)

    def stream(self, request: Request) -> Iterator[StreamItem]:
        return self.inner.stream(request)

    def astream(self, request: Request) -> AsyncIterator[StreamItem]:
        return self.inner.astream(request)

    async def aclose(self) -> None:
        await self.inner.aclose()
