"""Pacing a job's requests: requests and tokens per minute, and slowing down on 429s.

`Limiter` sits between the core's transport retries and the HTTP call (the `Pacer`
seam of `Client._adeliver`), so it sees every try of every request:

- before a try: wait while the job is paused, take a concurrency slot, then take one
  request from the requests-per-minute bucket and the estimated tokens from the
  tokens-per-minute bucket;
- after an answer: correct the token estimate with the reported usage, and count a
  success towards growing concurrency back;
- after a 429: pause *every* request for the `Retry-After` the server gave (else a
  backoff that doubles while 429s keep coming), and halve the concurrency, once per
  round of requests sent at the old level (as TCP halves its window once per loss).
  The try itself is then retried by the core's `RetryPolicy`, which honours the same
  `Retry-After`.

Concurrency grows back by one slot after each `limit` answers without a 429, up to
the job's `--concurrency`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Final

from extractor._errors import APIStatusError

if TYPE_CHECKING:
    from extractor._modes import Answer

__all__ = ["AdaptiveGate", "Limiter", "TokenBucket"]

logger = logging.getLogger("extractor.batch")

#: Pause after a 429 that says nothing of how long to wait; doubles while 429s continue.
FIRST_PAUSE: Final = 1.0
MAX_PAUSE: Final = 60.0
#: Characters per token, to estimate a request's prompt before the server counts it.
CHARS_PER_TOKEN: Final = 4


class TokenBucket:
    """A budget of `per_minute` units refilled continuously, holding a second's worth.

    `reserve(n)` takes `n` units at once, going into debt if need be, and says how long
    to wait before using them: callers are served in order, and the long-run rate never
    exceeds the budget. `adjust` corrects an estimate after the fact.
    """

    def __init__(self, per_minute: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        if per_minute <= 0:
            raise ValueError(f"a rate per minute must be above 0, not {per_minute}")
        self.rate = per_minute / 60.0
        self.capacity = max(self.rate, 1.0)
        self._clock = clock
        self._level = self.capacity
        self._stamp = clock()

    def _refill(self) -> None:
        now = self._clock()
        self._level = min(self.capacity, self._level + (now - self._stamp) * self.rate)
        self._stamp = now

    def reserve(self, amount: float) -> float:
        """Take `amount`; return the seconds to wait before spending it (0 if none)."""
        self._refill()
        self._level -= amount
        return 0.0 if self._level >= 0 else -self._level / self.rate

    def adjust(self, amount: float) -> None:
        """Take `amount` more (or give back, if negative) without waiting."""
        self._refill()
        self._level = min(self.capacity, self._level - amount)


class AdaptiveGate:
    """A semaphore whose size shrinks on demand and grows back slowly."""

    def __init__(self, ceiling: int) -> None:
        if ceiling < 1:
            raise ValueError(f"concurrency must be 1 or more, not {ceiling}")
        self.ceiling = ceiling
        self.limit = ceiling
        self.in_use = 0
        self._successes = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    async def acquire(self) -> None:
        """Wait for a free slot and take it."""
        if self.in_use < self.limit and not self._waiters:
            self.in_use += 1
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self.release()  # the slot was handed over just as we were cancelled
            elif waiter in self._waiters:  # `_wake` drops cancelled waiters it meets
                self._waiters.remove(waiter)
            raise

    def release(self) -> None:
        """Give a slot back; wake the next waiter if the limit allows."""
        self.in_use -= 1
        self._wake()

    def _wake(self) -> None:
        while self._waiters and self.in_use < self.limit:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self.in_use += 1
                waiter.set_result(None)

    def shrink(self) -> None:
        """Halve the limit (at least 1); slots in use drain away as they are released."""
        self.limit = max(1, self.limit // 2)
        self._successes = 0

    def succeeded(self) -> None:
        """Count an answer without a 429; after `limit` of them, allow one more slot."""
        if self.limit >= self.ceiling:
            return
        self._successes += 1
        if self._successes >= self.limit:
            self.limit += 1
            self._successes = 0
            self._wake()


class Limiter:
    """Job-wide pacing: concurrency, requests and tokens per minute, 429 backoff.

    One limiter serves every extraction of a job (`Client.backend(..., pacer=limiter)`);
    `rpm`/`tpm` of None mean no such limit.
    """

    def __init__(
        self,
        concurrency: int,
        *,
        rpm: float | None = None,
        tpm: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.gate = AdaptiveGate(concurrency)
        self.requests = TokenBucket(rpm, clock=clock) if rpm else None
        self.tokens = TokenBucket(tpm, clock=clock) if tpm else None
        self._clock = clock
        self._sleep = sleep
        self._paused_until = 0.0
        self._pause = FIRST_PAUSE
        self._round = 0  # bumped at each halving: a 429 from an older round does not halve
        #: 429s seen so far, for progress and the summary.
        self.rate_limited = 0

    async def send(self, call: Callable[[], Awaitable[Answer]], size: Callable[[], int]) -> Answer:
        """One try of one request, in its turn (the `backend.Pacer` protocol).

        `size()` is the request's length in characters, for the token estimate (only
        measured when a token limit is set).
        """
        estimate = size() // CHARS_PER_TOKEN if self.tokens is not None else 0
        await self.gate.acquire()
        try:
            await self._wait_turn(estimate)
            started_round = self._round
            try:
                answer = await call()
            except APIStatusError as exc:
                if exc.status == 429:
                    self._rate_limited(exc.retry_after, started_round)
                raise
            self._answered(answer.usage.total_tokens, estimate)
            return answer
        finally:
            self.gate.release()

    async def _wait_turn(self, estimate: int) -> None:
        await self._wait_pause()
        delay = 0.0
        if self.requests is not None:
            delay = self.requests.reserve(1)
        if self.tokens is not None:
            delay = max(delay, self.tokens.reserve(estimate))
        if delay > 0:
            await self._sleep(delay)
        await self._wait_pause()  # a 429 may have paused the job meanwhile

    async def _wait_pause(self) -> None:
        while (wait := self._paused_until - self._clock()) > 0:
            await self._sleep(wait)

    def _rate_limited(self, retry_after: float | None, started_round: int) -> None:
        self.rate_limited += 1
        if retry_after is None:
            pause = self._pause
            self._pause = min(self._pause * 2, MAX_PAUSE)
        else:
            pause = min(retry_after, MAX_PAUSE)
        self._paused_until = max(self._paused_until, self._clock() + pause)
        if started_round == self._round:
            self._round += 1
            self.gate.shrink()
            logger.info(
                "rate limited (429): pausing every request for %.2f s; concurrency now %d",
                pause,
                self.gate.limit,
            )

    def _answered(self, used: int, estimate: int) -> None:
        self._pause = FIRST_PAUSE
        self.gate.succeeded()
        if self.tokens is not None and used:  # garbled usage counts 0: the estimate stands
            self.tokens.adjust(used - estimate)
