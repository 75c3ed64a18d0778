"""Transport retries as data: what is retried, how long to wait, when to stop.

Only transport trouble is retried here (408, 409, 429, 5xx, timeouts, dropped
connections). Answers that fail validation go round the separate reask loop in
`extract`, with its own budget; the two never mix. Sleeping is injectable, so tests
record waits instead of waiting.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import tenacity

from extractor._errors import APIConnectionError, APIStatusError

#: The instant retries must end by: a `time.monotonic()` value, a function giving it, or None.
Until = float | Callable[[], float | None] | None

__all__ = ["RETRY_STATUSES", "RetryPolicy", "is_retryable", "rejects_shape", "retry_after"]

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def retry_after(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """Seconds the server asks us to wait, from the headers providers use; None if none.

    Read in order: `retry-after-ms`, `Retry-After` (seconds or an HTTP date), then the
    longest of `x-ratelimit-reset-requests` / `x-ratelimit-reset-tokens` (`1s`, `6m0s`,
    `20ms`) and OpenRouter's `x-ratelimit-reset` (epoch milliseconds).

    A value that is negative, not a number, or longer than a day is ignored (None), so
    the normal backoff applies rather than no wait at all or an absurd one.
    """
    lower = {k.lower(): v for k, v in headers.items()}
    if (ms := _float(lower.get("retry-after-ms"))) is not None:
        return _sane(ms / 1000.0)
    value = lower.get("retry-after")
    if value is not None:
        seconds = _float(value)
        if seconds is not None:
            return _sane(seconds)
        import email.utils  # here: an HTTP date is rare, and the module costs 7 ms to import

        try:
            when = email.utils.parsedate_to_datetime(value).timestamp()
        except (TypeError, ValueError, OverflowError):
            when = None
        if when is not None:
            # a date already past means "now": clocks differ by a little
            return _sane(max(when - (time.time() if now is None else now), 0.0))
    resets = [
        _duration(lower[k])
        for k in ("x-ratelimit-reset-requests", "x-ratelimit-reset-tokens")
        if k in lower
    ]
    if epoch_ms := _float(lower.get("x-ratelimit-reset")):
        if epoch_ms > 1e11:  # an absolute time in milliseconds
            resets.append(max(epoch_ms / 1000.0 - (time.time() if now is None else now), 0.0))
        else:
            resets.append(epoch_ms)
    found = [r for r in (_sane(r) for r in resets) if r is not None]
    return max(found) if found else None


#: The longest wait a server may ask for and be believed (a day).
_LONGEST_WAIT: Final = 86_400.0


def _sane(seconds: float | None) -> float | None:
    if seconds is None or not 0.0 <= seconds <= _LONGEST_WAIT:  # NaN fails both
        return None
    return seconds


def _float(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return None


def _duration(value: str) -> float | None:
    parts = _DURATION.findall(value.strip())
    if not parts:
        return _float(value)
    return sum(float(n) * _UNIT[u] for n, u in parts)


#: Statuses a later identical request may get past: a timeout, a conflict, a rate limit.
RETRY_STATUSES: Final = frozenset({408, 409, 429})


def rejects_shape(exc: APIStatusError) -> bool:
    """Whether an error status refuses the request's shape (its mode), not this request.

    400 and 422 do; so does llama.cpp's server, which answers a `response_format` it
    cannot honour with a 500 naming it. No retry changes such an answer.
    """
    if exc.status in (400, 422):
        return True
    return exc.status >= 500 and "response_format" in exc.body


def is_retryable(exc: BaseException) -> bool:
    """Whether a transport failure may go away on its own: the one place this is decided.

    Error statuses 408, 409, 429 and 5xx (but not a 5xx refusing the request's shape);
    connection failures and timeouts, unless the error says trying again cannot help.
    """
    if isinstance(exc, APIStatusError):
        if exc.status >= 500:
            return not rejects_shape(exc)
        return exc.status in RETRY_STATUSES
    if isinstance(exc, APIConnectionError):
        return exc.retryable
    return False


async def _async_sleep(seconds: float) -> None:
    import asyncio  # here, not at the top: only async callers need it

    await asyncio.sleep(seconds)


@dataclass(frozen=True)
class RetryPolicy:
    """How transport failures are retried.

    `attempts` counts every try of one request; waits grow exponentially from
    `initial` with random jitter, unless the server says how long to wait, and no single
    wait is longer than `max_wait`. `max_elapsed` stops retrying a request after that
    many seconds in all.
    """

    attempts: int = 5
    initial: float = 0.5
    max_wait: float = 60.0
    max_elapsed: float | None = 300.0
    jitter: float = 0.5
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)
    async_sleep: Callable[[float], Awaitable[None]] = field(default=_async_sleep, repr=False)

    def wait(self, state: tenacity.RetryCallState) -> float:
        """Seconds before the next try: the server's word, else exponential backoff."""
        exc = state.outcome.exception() if state.outcome else None
        asked = getattr(exc, "retry_after", None)
        if isinstance(asked, (int, float)):
            return float(min(asked, self.max_wait))
        backoff = self.initial * 2.0 ** (state.attempt_number - 1)
        return min(self.max_wait, backoff + random.uniform(0.0, self.jitter))

    def _stop(self, until: Until, started: float | None) -> tenacity.stop.stop_base:
        stop: tenacity.stop.stop_base = tenacity.stop_after_attempt(self.attempts)
        if self.max_elapsed is not None:
            if started is None:
                stop = stop | tenacity.stop_after_delay(self.max_elapsed)
            else:
                stop = stop | _StopBefore(started + self.max_elapsed, waiting=False)
        if until is not None:
            stop = stop | _StopBefore(until)
        return stop

    def retrying(
        self,
        on_retry: Callable[[tenacity.RetryCallState], None],
        *,
        until: Until = None,
        started: float | None = None,
    ) -> tenacity.Retrying:
        """A tenacity controller for a blocking request.

        `until` (a `time.monotonic()` instant, the extraction's deadline, or a function
        that says it as it stands) stops retrying when the next wait would end past it.
        `started` (a `time.monotonic()` instant) is when the first try began, if that was
        before this controller: `max_elapsed` counts from it.
        """
        return tenacity.Retrying(
            retry=tenacity.retry_if_exception(is_retryable),
            stop=self._stop(until, started),
            wait=self.wait,
            sleep=self.sleep,
            before_sleep=on_retry,
            reraise=True,
        )

    def async_retrying(
        self,
        on_retry: Callable[[tenacity.RetryCallState], None],
        *,
        until: Until = None,
        started: float | None = None,
    ) -> tenacity.AsyncRetrying:
        """A tenacity controller for a request on the event loop; `until` as `retrying`."""
        return tenacity.AsyncRetrying(
            retry=tenacity.retry_if_exception(is_retryable),
            stop=self._stop(until, started),
            wait=self.wait,
            sleep=self.async_sleep,
            before_sleep=on_retry,
            reraise=True,
        )


class _StopBefore(tenacity.stop.stop_base):
    """Stop when the coming wait would end at or past a `time.monotonic()` instant."""

    def __init__(self, until: float | Callable[[], float | None], *, waiting: bool = True) -> None:
        self.until = until
        self.waiting = waiting  # False: stop once the instant has passed, whatever the wait

    def __call__(self, retry_state: tenacity.RetryCallState) -> bool:
        until = self.until() if callable(self.until) else self.until
        if until is None:
            return False
        coming = 0.0
        if self.waiting:
            coming = getattr(retry_state, "upcoming_sleep", 0.0) or 0.0
        return time.monotonic() + coming >= until


def describe(state: tenacity.RetryCallState) -> dict[str, Any]:
    """Log fields of a retry: which try failed, with what, and the wait before the next."""
    exc = state.outcome.exception() if state.outcome else None
    return {
        "attempt": state.attempt_number,
        "error": type(exc).__name__ if exc else None,
        "wait_s": round(state.upcoming_sleep, 3),
    }
