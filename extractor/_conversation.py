"""The extraction loop: written once, driven by one sync and one async function.

`conversation` is sans-IO: a generator that yields what to ask next (the mode and the
messages) and receives each `Answer`; it validates, re-asks with the errors, falls back
to a weaker mode when `auto`'s choice is refused, and returns the `Extraction`. The
reask loop runs on tenacity inside it, with its own budget; transport retries belong to
the backend (`backend.Retrying`), so the two loops never mix.

`run` and `arun` are its only drivers: they turn each step into a `Request`, ask the
backend, and report events. `extract`, the streams and batch jobs all use them.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import AsyncGenerator, Generator
from dataclasses import dataclass
from typing import Any, Final

import tenacity

from extractor._context import too_long
from extractor._errors import (
    APIError,
    APIStatusError,
    AttemptError,
    DocumentTooLong,
    InvalidAnswer,
    Refusal,
    RetriesExhausted,
    TruncatedAnswer,
)
from extractor._modes import Answer
from extractor._parse import load_answer
from extractor._prompts import document_messages, reask_messages, truncation_message
from extractor._providers import Endpoint
from extractor._result import Attempt, Extraction, Usage
from extractor._retry import rejects_shape
from extractor._schema import CompiledSchema
from extractor.backend import Backend, Budget, Request
from extractor.events import Answered, Emitter, Failed, Finished, Sending, Started, next_extraction

__all__ = ["DEFAULT_DEADLINE", "DEFAULT_TIMEOUT", "Plan", "arun", "conversation", "run"]

logger = logging.getLogger("extractor")

DEFAULT_TIMEOUT: Final = 120.0
DEFAULT_DEADLINE: Final = 600.0


#: Modes that `auto` found rejected, per (base URL, model): the next call starts past them.
mode_memory: dict[tuple[str, str], str] = {}
_mode_memory_lock = threading.Lock()

Step = tuple[str, list[dict[str, Any]]]  # (mode, messages): what to ask next


@dataclass(frozen=True)
class Plan:
    """Everything one extraction needs, settled before the first request."""

    endpoint: Endpoint
    schema: CompiledSchema[Any]
    document: str
    modes: tuple[str, ...]  # the mode to use first, then the fallbacks (auto only)
    max_retries: int
    instructions: str | None
    params: dict[str, Any]
    examples: tuple[tuple[str, Any], ...] = ()  # worked examples: (document, wire record)
    timeout: float = DEFAULT_TIMEOUT  # one request, from connecting to its last byte
    deadline: float | None = DEFAULT_DEADLINE  # the extraction: every attempt and wait
    strict: bool = True  # False: the provider's strict dialect cannot carry the schema
    context_tokens: int | None = None  # the model's context window, as the caller gave it
    pages: tuple[int, ...] = ()  # where each page starts in `document` (none: one page)

    def request(
        self,
        step: Step,
        attempts: list[Attempt],
        *,
        budget: Budget,
        extraction: int,
        emit: Emitter,
    ) -> Request:
        mode, messages = step
        return Request(
            endpoint=self.endpoint,
            mode=mode,
            messages=messages,
            schema=self.schema,
            params=self.params,
            document=self.document,
            examples=self.examples,
            attempts=tuple(attempts),
            timeout=self.timeout,
            budget=budget,
            strict=self.strict,
            extraction=extraction,
            attempt=len(attempts) + 1,
            emit=emit,
        )


def auto_modes(endpoint: Endpoint) -> tuple[str, ...]:
    """The modes `auto` tries for this endpoint, past those it found refused before."""
    order = endpoint.provider.dialect.modes
    start = mode_memory.get((endpoint.base_url, endpoint.model))
    return order[order.index(start) :] if start in order else order


#: Words of an error that is about the request's mode (its schema channel), not its content.
_ABOUT_MODE: Final = re.compile(
    r"response_format|json_schema|json schema|schema|tool|function|structured|strict", re.I
)


def _about_mode(exc: APIError) -> bool:
    """Whether a refusal names the mode's channel: then later calls skip the mode too.

    A 400 about one document (a content filter, a bad parameter) falls back for that
    call only, and the next document starts from the best mode again.
    """
    text = exc.body if isinstance(exc, APIStatusError) else str(exc)
    return bool(_ABOUT_MODE.search(f"{exc} {text}"))


def _rejects_mode(exc: APIError) -> bool:
    """Whether the server refused the request's shape (the mode), not the request itself."""
    if not isinstance(exc, APIStatusError):
        return False
    return rejects_shape(exc)


def conversation(plan: Plan, attempts: list[Attempt]) -> Generator[Step, Answer, Extraction[Any]]:
    """The extraction loop: yields (mode, messages), receives answers, returns the record.

    `attempts` fills as answers come back; a driver reads it (to report events, and to
    give a local model the values refused so far). An `APIError` thrown in is either a
    mode refused (the next mode is tried, in `auto`) or raised on.
    """
    modes = list(plan.modes)
    mode = modes.pop(0)
    fell_back = remember = False
    messages = _opening(plan, mode)
    reasks = tenacity.Retrying(
        stop=tenacity.stop_after_attempt(plan.max_retries + 1),
        retry=tenacity.retry_if_exception(lambda e: isinstance(e, AttemptError) and e.reaskable),
        reraise=True,
    )
    try:
        for attempt in reasks:
            with attempt:
                while True:
                    try:
                        answer = yield mode, messages
                    except APIError as exc:
                        if too_long(exc):  # in any mode: the caller splits the document
                            raise DocumentTooLong(
                                f"{plan.endpoint.label} refused the document as longer than "
                                f"its context window ({len(plan.document):,} characters; "
                                f"extract and batch jobs read it in chunks): {exc}"
                            ) from exc
                        if not (modes and _rejects_mode(exc)):
                            raise
                        logger.info(
                            "%s rejected mode %s (%s); trying %s",
                            plan.endpoint.label,
                            mode,
                            exc,
                            modes[0],
                        )
                        mode = modes.pop(0)
                        fell_back = True
                        remember = remember or _about_mode(exc)
                        messages = _opening(plan, mode)
                        continue
                    if fell_back and remember:
                        # remembered only once a weaker mode is answered, and only when the
                        # refusal was about the mode: a request every mode refuses, or one
                        # document's content, must not demote later calls
                        with _mode_memory_lock:
                            mode_memory[(plan.endpoint.base_url, plan.endpoint.model)] = mode
                    fell_back = remember = False
                    break
                error: AttemptError | None = None
                value: Any = None
                repairs: tuple[str, ...] = ()
                if answer.refusal:
                    error = Refusal(answer.refusal)
                elif answer.finish_reason == "length":
                    error = TruncatedAnswer(raw=answer.text)
                else:
                    try:  # the first JSON value in the answer that the schema accepts
                        value, repairs = load_answer(answer.text, plan.schema.load)
                    except (InvalidAnswer, TruncatedAnswer) as exc:
                        error = exc
                attempts.append(
                    Attempt(
                        mode,
                        answer.text,
                        answer.finish_reason,
                        answer.usage,
                        answer.response_id,
                        error,
                        answer.spans,
                        repairs=repairs,
                    )
                )
                if error is None:
                    return Extraction(value, plan.endpoint.label, mode, tuple(attempts))
                logger.info("attempt %d failed: %s", len(attempts), error)
                if isinstance(error, TruncatedAnswer):
                    messages = [*messages, truncation_message(error.detail)]
                elif isinstance(error, InvalidAnswer):
                    messages = [
                        *messages,
                        *reask_messages(
                            mode,
                            raw=answer.text,
                            errors=error.errors,
                            tool_call_id=answer.tool_call_id,
                            tool_name=plan.schema.name,
                        ),
                    ]
                raise error
    except Refusal:
        raise
    except AttemptError as exc:
        raise RetriesExhausted(attempts, usage=Usage.total(a.usage for a in attempts)) from exc
    raise AssertionError("unreachable: the reask loop returns or raises")  # pragma: no cover


def _opening(plan: Plan, mode: str) -> list[dict[str, Any]]:
    return document_messages(
        plan.document,
        mode=mode,
        name=plan.schema.name,
        schema=plan.schema.schema,
        instructions=plan.instructions,
        examples=plan.examples,
    )


# --- the two drivers ------------------------------------------------------------------


class _Report:
    """The events of one extraction, built only when someone listens."""

    def __init__(self, plan: Plan, emit: Emitter) -> None:
        self.emit = emit
        self.on = emit.active
        self.number = next_extraction() if self.on else 0
        self.plan = plan
        if self.on:
            emit(
                Started(
                    self.number,
                    plan.endpoint.label,
                    plan.modes[0],
                    plan.schema.name,
                    len(plan.document),
                    plan.endpoint.provider.name,
                )
            )

    def sending(self, request: Request, *, stream: bool) -> None:
        if self.on:
            self.emit(
                Sending(self.number, request.attempt, request.mode, len(request.messages), stream)
            )

    def no_answer(self, request: Request, error: APIError) -> None:
        if self.on:
            self.emit(Failed(self.number, request.attempt, request.mode, error, (), None))

    def answered(self, request: Request, attempts: list[Attempt]) -> None:
        """After an answer went in: the attempt it became succeeded or failed."""
        if not self.on or len(attempts) < request.attempt:
            return
        last = attempts[request.attempt - 1]
        if last.error is None:
            self.emit(
                Answered(
                    self.number,
                    request.attempt,
                    last.mode,
                    last.usage,
                    last.finish_reason,
                    last.response_id,
                )
            )
        else:
            errors = getattr(last.error, "errors", ())
            self.emit(
                Failed(
                    self.number,
                    request.attempt,
                    last.mode,
                    last.error,
                    tuple(str(e) for e in errors),
                    last.usage,
                    last.finish_reason,
                    last.response_id,
                )
            )

    def finished(self, attempts: list[Attempt], mode: str, error: BaseException | None) -> None:
        if self.on:
            usage = Usage.total(a.usage for a in attempts)
            self.emit(
                Finished(self.number, self.plan.endpoint.label, mode, len(attempts), usage, error)
            )


def run(
    plan: Plan,
    backend: Backend,
    emit: Emitter,
    *,
    stream: bool = False,
    attempts: list[Attempt] | None = None,
) -> Generator[str, None, Extraction[Any]]:
    """Drive the loop in this thread; return the `Extraction` (StopIteration's value).

    With `stream`, answers are streamed and the text of each one is yielded as it grows
    (a reask starts over from ""); without it nothing is yielded. `attempts`, if given,
    fills as answers come, so a caller still has them when the call fails.
    """
    attempts = [] if attempts is None else attempts
    report = _Report(plan, emit)
    steps = conversation(plan, attempts)
    budget = Budget(plan.deadline)
    mode = plan.modes[0]
    try:
        step = next(steps)
        while True:
            mode = step[0]
            request = plan.request(
                step, attempts, budget=budget, extraction=report.number, emit=emit
            )
            report.sending(request, stream=stream)
            try:
                if stream:
                    answer = None
                    for item in backend.stream(request):
                        if isinstance(item, Answer):
                            answer = item
                        else:
                            yield item
                    assert answer is not None, "a stream ends with its Answer"
                else:
                    answer = backend.complete(request)
            except APIError as exc:
                report.no_answer(request, exc)
                step = steps.throw(exc)
            else:
                try:
                    step = steps.send(answer)
                finally:
                    report.answered(request, attempts)
    except StopIteration as done:
        report.finished(attempts, mode, None)
        result: Extraction[Any] = done.value
        return result
    except BaseException as exc:  # an error, a cancelled task, a stream closed early
        report.finished(attempts, mode, exc)
        raise
    finally:
        steps.close()  # stopped early: end the extraction loop here, not at GC


async def arun(
    plan: Plan,
    backend: Backend,
    emit: Emitter,
    *,
    stream: bool = False,
    attempts: list[Attempt] | None = None,
) -> AsyncGenerator[str | Extraction[Any], None]:
    """The async driver: as `run`, on the event loop; the `Extraction` is the last item."""
    attempts = [] if attempts is None else attempts
    report = _Report(plan, emit)
    steps = conversation(plan, attempts)
    budget = Budget(plan.deadline)
    mode = plan.modes[0]
    try:
        step = next(steps)
        while True:
            mode = step[0]
            request = plan.request(
                step, attempts, budget=budget, extraction=report.number, emit=emit
            )
            report.sending(request, stream=stream)
            try:
                if stream:
                    answer = None
                    async for item in backend.astream(request):
                        if isinstance(item, Answer):
                            answer = item
                        else:
                            yield item
                    assert answer is not None, "a stream ends with its Answer"
                else:
                    answer = await backend.acomplete(request)
            except APIError as exc:
                report.no_answer(request, exc)
                step = steps.throw(exc)
            else:
                try:
                    step = steps.send(answer)
                finally:
                    report.answered(request, attempts)
    except StopIteration as done:
        report.finished(attempts, mode, None)
        yield done.value
    except BaseException as exc:  # an error, a cancelled task, a stream closed early
        report.finished(attempts, mode, exc)
        raise
    finally:
        steps.close()


def complete(plan: Plan, backend: Backend, emit: Emitter) -> Extraction[Any]:
    """`run` without streaming, to its end: the `Extraction`."""
    driver = run(plan, backend, emit)
    try:
        while True:
            next(driver)
    except StopIteration as done:
        result: Extraction[Any] = done.value
        return result


async def acomplete(
    plan: Plan, backend: Backend, emit: Emitter, attempts: list[Attempt] | None = None
) -> Extraction[Any]:
    """`arun` without streaming, to its end: the `Extraction`."""
    result: Any = None
    async for item in arun(plan, backend, emit, attempts=attempts):
        result = item
    assert isinstance(result, Extraction)
    return result
