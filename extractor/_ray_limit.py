"""The job-wide rate limit of `extractor.ray`: one keeper actor, and each actor's pacer.

`rate_limit` starts (or finds) the named keeper that holds a job's `rpm` and `tpm` for
every worker on every node; `SharedPacer` is one actor's side of it, a `backend.Pacer`
that the batch runner's `Window` takes as it takes a `Limiter`. See `extractor.ray`'s
module doc for how the instants are booked and how a 429 pauses every actor.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Final

import ray  # extractor.ray, which imports this, says what to install when Ray is missing

from extractor._errors import APIStatusError, ConfigurationError
from extractor.batch._limiter import CHARS_PER_TOKEN, FIRST_PAUSE, MAX_PAUSE, AdaptiveGate

if TYPE_CHECKING:
    from ray.actor import ActorHandle

    from extractor._modes import Answer

__all__ = ["Keeper", "Schedule", "SharedPacer", "rate_limit"]

logger = logging.getLogger("extractor.ray")

#: Seconds a request may go after its instant; woken later, it asks for a new one, once.
GRACE: Final = 0.02
#: Requests one actor asks instants for in one call to the keeper.
RESERVE_MAX: Final = 256
#: Seconds of an actor's recent pace it books ahead, beyond the requests waiting: a call
#: to the keeper costs a few ms of CPU, so a busy actor makes one per this much sending.
AHEAD_SECONDS: Final = 0.05
#: Seconds a long poll on the keeper lasts before it is renewed.
WATCH_SECONDS: Final = 30.0

# --- the keeper: one per job, in its own actor ------------------------------------------------


class Schedule:
    """Instants for a rate of `per_minute` units, evenly spaced, with no burst allowance.

    `take(at, amount)` books `amount` units from `at` on; `next` is when the next booking
    may start. With no burst, any interval of `s` seconds holds at most `s * rate` units
    plus one booking, however the bookings come.
    """

    def __init__(self, per_minute: float) -> None:
        if per_minute <= 0:
            raise ConfigurationError(f"a rate per minute must be above 0, not {per_minute}")
        self.rate = per_minute / 60.0
        self.next = 0.0

    def take(self, at: float, amount: float) -> None:
        self.next = max(self.next, at) + amount / self.rate

    def adjust(self, amount: float) -> None:
        """Book `amount` more (or give back, if negative): an estimate corrected."""
        self.next += amount / self.rate


class Keeper:
    """The job's requests and tokens per minute, and its 429 pause (a Ray actor's class).

    Every method is async, so Ray runs the actor on one event loop: no locks, and long
    polls (`watch`) wait without a thread each. Only durations cross the wire, never
    clock readings, so nodes need not agree on the time.
    """

    def __init__(self, rpm: float | None, tpm: float | None) -> None:
        self.requests = Schedule(rpm) if rpm else None
        self.tokens = Schedule(tpm) if tpm else None
        self.paused_until = 0.0
        self.pause = FIRST_PAUSE
        self.round = 0  # bumped per round of 429s: each actor halves its concurrency once
        self.version = 0  # bumped at every change a watcher must hear of
        self.rate_limited = 0
        self.booked = self.calls = 0
        self._changed = asyncio.Event()

    async def describe(self) -> tuple[bool, bool, int, float]:
        """Whether requests, and tokens, are limited; the current round; the pause left."""
        left = max(0.0, self.paused_until - time.monotonic())
        return self.requests is not None, self.tokens is not None, self.round, left

    async def reserve(
        self, sizes: Sequence[int], correction: int = 0, succeeded: int = 0
    ) -> tuple[list[float], float]:
        """Seconds from now until each request may go (`sizes`: estimated tokens each).

        `correction` is tokens used minus tokens estimated since the caller's last call,
        `succeeded` its answers without a 429. Also returns the pause left, in seconds.
        """
        now = time.monotonic()
        self.calls += 1
        self.booked += len(sizes)
        if succeeded:
            self.pause = FIRST_PAUSE
        if self.tokens is not None and correction:
            self.tokens.adjust(correction)
        floor = max(now, self.paused_until)
        delays = []
        for size in sizes:
            at = floor
            if self.requests is not None:
                at = max(at, self.requests.next)
                self.requests.take(at, 1)
            if self.tokens is not None:
                at = max(at, self.tokens.next)
                self.tokens.take(at, size)
            delays.append(at - now)
        return delays, max(0.0, self.paused_until - now)

    async def limited(
        self, retry_after: float | None, seen_round: int, succeeded: int = 0
    ) -> tuple[int, int, float]:
        """A 429 came: pause everyone. Returns what `watch` returns."""
        now = time.monotonic()
        self.rate_limited += 1
        if succeeded:
            self.pause = FIRST_PAUSE
        if retry_after is None:
            pause = self.pause
            self.pause = min(self.pause * 2, MAX_PAUSE)
        else:
            pause = min(max(retry_after, 0.0), MAX_PAUSE)
        self.paused_until = max(self.paused_until, now + pause)
        if seen_round == self.round:  # sent since the last round began: a new round
            self.round += 1
            logger.info("rate limited (429): pausing every worker for %.2f s", pause)
        self.version += 1
        self._changed.set()
        self._changed = asyncio.Event()
        return self._state(now)

    async def watch(self, version: int) -> tuple[int, int, float]:
        """(version, round, pause left) once the version is past `version` (or a while)."""
        if version >= self.version:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._changed.wait(), WATCH_SECONDS)
        return self._state(time.monotonic())

    async def stats(self) -> dict[str, int]:
        """Requests given a turn, the calls that asked for them, 429s reported."""
        return {"requests": self.booked, "calls": self.calls, "rate_limited": self.rate_limited}

    def _state(self, now: float) -> tuple[int, int, float]:
        return self.version, self.round, max(0.0, self.paused_until - now)


def rate_limit(
    rpm: float | None = None, tpm: float | None = None, *, name: str | None = None
) -> ActorHandle[Keeper]:
    """The actor holding a job-wide limit, for `Extract(limit=...)`; see the module doc.

    With `name`, the actor of that name in the job's namespace is used if there is one
    (its limits stay those it was made with), so several pipelines can share one limit.
    """
    remote = ray.remote(Keeper).options(
        name=name or f"extractor-limit-{uuid.uuid4().hex[:12]}",
        get_if_exists=name is not None,
        num_cpus=0,
        max_concurrency=10_000,  # the long polls of every actor, and their reservations
    )
    # ray's stubs type the result as "the handle or the class"; it is the handle
    handle: ActorHandle[Keeper] = remote.remote(rpm, tpm)  # type: ignore[assignment]
    return handle


# --- one actor's side of the limit ----------------------------------------------------------


class SharedPacer:
    """A `backend.Pacer` taking each request's turn from a `Keeper`, within one actor.

    One per actor, made on its event loop and shared by the batches running there.
    Without a keeper only the actor's concurrency is paced.
    """

    def __init__(self, keeper: ActorHandle[Keeper] | None, concurrency: int) -> None:
        self.keeper = keeper
        self.gate = AdaptiveGate(concurrency)
        self._limits = (False, False)
        self._ready: asyncio.Future[None] | None = None
        self._waiting: list[tuple[int, asyncio.Future[float]]] = []
        self._reserving = False
        self._ahead: deque[float] = deque()  # instants booked before a request needs them
        self._sent: deque[float] = deque()  # when this actor's requests went, the last second
        self._paused_until = 0.0
        self._round = 0
        self._correction = 0
        self._succeeded = 0
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Learn the keeper's limits and start listening for pauses (once)."""
        if self._ready is None:
            self._ready = asyncio.get_running_loop().create_future()
            if self.keeper is not None:  # an actor may start in the middle of a pause
                requests, tokens, self._round, pause = await self.keeper.describe.remote()
                self._limits = (requests, tokens)
                self._heard(self._round, pause)
                self._spawn(self._watch())
            self._ready.set_result(None)
        await self._ready

    async def send(self, call: Callable[[], Awaitable[Answer]], size: Callable[[], int]) -> Answer:
        """One try of one request, in its turn (the `backend.Pacer` protocol)."""
        await self.start()
        estimate = size() // CHARS_PER_TOKEN if self._limits[1] else 0
        await self.gate.acquire()
        try:
            await self._turn(estimate)
            seen_round = self._round
            try:
                answer = await call()
            except APIStatusError as exc:
                if exc.status == 429:
                    await self._limited(exc.retry_after, seen_round)
                raise
            self._succeeded += 1
            self.gate.succeeded()
            if self._limits[1] and answer.usage.total_tokens:
                self._correction += answer.usage.total_tokens - estimate
            return answer
        finally:
            self.gate.release()

    async def _turn(self, estimate: int) -> None:
        late = False
        while True:
            await self._wait_pause()
            if not any(self._limits):
                return
            at = await self._instant(estimate)
            if (wait := at - time.monotonic()) > 0:
                await asyncio.sleep(wait)
            now = time.monotonic()
            if self._paused_until > now:
                continue  # a pause began meanwhile: the instant is void, ask after it
            if now - at > GRACE and not late:
                logger.debug("woke %.3f s late; asking again", now - at)
                late = True  # going now would crowd the requests due now: ask again
                continue
            self._sent.append(now)
            while self._sent[0] < now - 1.0:
                self._sent.popleft()
            return

    async def _wait_pause(self) -> None:
        while (wait := self._paused_until - time.monotonic()) > 0:
            await asyncio.sleep(wait)

    def _instant(self, estimate: int) -> asyncio.Future[float]:
        """The local `time.monotonic()` at which this request may go."""
        instant: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        now = time.monotonic()
        while self._ahead and self._ahead[0] < now - GRACE:
            self._ahead.popleft()  # booked for a request that did not come in time: unused
        if self._ahead:
            instant.set_result(self._ahead.popleft())
            return instant
        self._waiting.append((estimate, instant))
        if not self._reserving:
            self._reserving = True
            self._spawn(self._reserve())
        return instant

    async def _reserve(self) -> None:
        """Ask the keeper for every waiting request's instant, in as few calls as can be."""
        assert self.keeper is not None
        try:
            while self._waiting:
                taken = self._waiting[:RESERVE_MAX]
                del self._waiting[:RESERVE_MAX]
                correction, succeeded = self._correction, self._succeeded
                self._correction = self._succeeded = 0
                # ahead only for requests alone: a token estimate is each request's own
                ahead = 0 if self._limits[1] else int(len(self._sent) * AHEAD_SECONDS)
                sizes = [size for size, _ in taken] + [0] * min(ahead, RESERVE_MAX)
                try:
                    delays, pause = await self.keeper.reserve.remote(sizes, correction, succeeded)
                except Exception as exc:  # the keeper is gone: these requests fail
                    for _, instant in taken:
                        if not instant.done():
                            instant.set_exception(exc)
                    continue
                self._heard(self._round, pause)
                now = time.monotonic()
                for (_, instant), delay in zip(taken, delays[: len(taken)], strict=True):
                    if not instant.done():  # a cancelled document leaves its turn unused
                        instant.set_result(now + delay)
                self._ahead.extend(now + delay for delay in delays[len(taken) :])
        finally:
            self._reserving = False

    async def _limited(self, retry_after: float | None, seen_round: int) -> None:
        now = time.monotonic()
        first = FIRST_PAUSE if retry_after is None else min(max(retry_after, 0.0), MAX_PAUSE)
        self._paused_until = max(self._paused_until, now + first)  # before the keeper knows
        if self.keeper is None:
            self._heard(self._round + (seen_round == self._round), first)
            return
        succeeded, self._succeeded = self._succeeded, 0
        _, round_, pause = await self.keeper.limited.remote(retry_after, seen_round, succeeded)
        self._heard(round_, pause)

    def _heard(self, round_: int, pause: float) -> None:
        """What the keeper said: the pause left, and the round of 429s."""
        until = time.monotonic() + pause
        if pause > 0 and until > self._paused_until:
            self._paused_until = until
            self._ahead.clear()  # booked before the pause: void
        if round_ > self._round:
            self._round = round_
            self.gate.shrink()

    async def _watch(self) -> None:
        assert self.keeper is not None
        version = -1
        while True:
            try:
                version, round_, pause = await self.keeper.watch.remote(version)
            except Exception:  # the keeper is gone: the job is over
                return
            self._heard(round_, pause)

    def _spawn(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
