"""OpenTelemetry traces of extractions, after the GenAI semantic conventions.

    import extractor.otel

    extractor.otel.instrument()  # the global tracer provider, or instrument(provider)

Each extraction is a span `extract <Schema>` (kind INTERNAL) from `Started` to `Finished`,
carrying the totals. Each attempt is a child span `chat <model>` (kind CLIENT; INTERNAL for
the embedded model) from `Sending` to `Answered` or `Failed`, parented on its extraction's
span by the extraction number, never on whatever span is current, so concurrent
extractions in threads and tasks stay apart. A transport retry is an `extractor.retry`
event on its attempt's span; an answer that broke the schema, an `extractor.validation`
event naming the fields.

Attribute names are those of the GenAI conventions in OpenTelemetry semantic conventions
v1.41 (`gen_ai.provider.name`, which replaced `gen_ai.system` in v1.37; the conventions
have since moved to their own repository, unchanged for the names used here). Beside
them, `extractor.*` attributes say what the conventions have no name for (mode, schema,
attempt number). `error.type` is the class name of the extractor error: `InvalidAnswer`,
`TruncatedAnswer`, `Refusal`, `MalformedResponse`, `APIStatusError` (with
`http.response.status_code`), `APIConnectionError`, `APITimeoutError`, `RetriesExhausted`.

Never recorded: a key, the document, the prompt, the answer. A validator's messages quote
the answer's values, which come from the document, so only the failing fields' paths are
recorded unless `capture_documents=True` asks for the messages too.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from extractor import APIStatusError, ConfigurationError, InvalidAnswer, Usage
from extractor import __version__ as _version
from extractor.events import (
    Answered,
    Event,
    Failed,
    Finished,
    Retrying,
    Sending,
    Started,
    subscribe,
    unsubscribe,
)

if TYPE_CHECKING:
    from opentelemetry.trace import Span, SpanKind, Tracer, TracerProvider
    from opentelemetry.util.types import AttributeValue

__all__ = ["instrument", "uninstrument"]

#: The semantic conventions whose names the spans use.
_SCHEMA_URL: Final = "https://opentelemetry.io/schemas/1.41.0"

#: Our provider names where the conventions know the provider by another (the rest pass as
#: they are: the conventions allow a custom value).
_PROVIDER_NAMES: Final = {"mistral": "mistral_ai"}
#: Providers whose model runs in this process: their attempts are INTERNAL spans.
_IN_PROCESS: Final = frozenset({"local"})

_installed: _Recorder | None = None
_install_lock = threading.Lock()


def instrument(
    tracer_provider: TracerProvider | None = None, *, capture_documents: bool = False
) -> None:
    """Trace every extraction in this process, with spans from `tracer_provider`.

    Without a provider, OpenTelemetry's global one is used. Calling it again replaces the
    earlier instrumentation. `capture_documents` adds the validator's messages, which
    quote the answer's values, to validation events; nothing else of a document exists
    in the events to capture.

    Raises `ConfigurationError` when OpenTelemetry is not installed.
    """
    try:
        from opentelemetry import trace
    except ImportError as exc:
        raise ConfigurationError(
            'tracing needs OpenTelemetry: pip install "extractor[otel]"'
        ) from exc
    tracer = trace.get_tracer("extractor", _version, tracer_provider, schema_url=_SCHEMA_URL)
    recorder = _Recorder(tracer, capture_documents=capture_documents)
    global _installed
    with _install_lock:
        previous, _installed = _installed, recorder
        if previous is not None:
            unsubscribe(previous)
        subscribe(recorder)
    if previous is not None:
        previous.close()


def uninstrument() -> None:
    """Stop tracing extractions; spans still open end now. Nothing happens if not traced."""
    global _installed
    with _install_lock:
        recorder, _installed = _installed, None
        if recorder is not None:
            unsubscribe(recorder)
    if recorder is not None:
        recorder.close()


@dataclass
class _Open:
    """One extraction in flight: its span, what its attempts share, the attempt open now."""

    span: Span
    provider: str  # as the conventions name it
    model: str
    kind: SpanKind  # of its attempts
    attempt: Span | None = None


class _Recorder:
    """The hook: turns one process's events into spans, one extraction at a time each."""

    def __init__(self, tracer: Tracer, *, capture_documents: bool) -> None:
        from opentelemetry.trace import SpanKind, Status, StatusCode, set_span_in_context

        self._tracer = tracer
        self._capture = capture_documents
        self._internal = SpanKind.INTERNAL
        self._client = SpanKind.CLIENT
        self._error = StatusCode.ERROR
        self._status = Status
        self._parent = set_span_in_context
        self._open: dict[int, _Open] = {}
        self._lock = threading.Lock()

    def __call__(self, event: Event) -> None:
        if isinstance(event, Started):
            self._started(event)
        elif isinstance(event, Sending):
            self._sending(event)
        elif isinstance(event, Answered):
            self._answered(event)
        elif isinstance(event, Failed):
            self._failed(event)
        elif isinstance(event, Retrying):
            self._retrying(event)
        elif isinstance(event, Finished):
            self._finished(event)

    def close(self) -> None:
        """End every span still open (their extractions go on untraced)."""
        with self._lock:
            left = list(self._open.values())
            self._open.clear()
        for state in left:
            _end(state)

    # -- one method per event ----------------------------------------------------------

    def _started(self, event: Started) -> None:
        name, _, model = event.model.partition("/")
        provider = _PROVIDER_NAMES.get(name, name)
        kind = self._internal if name in _IN_PROCESS else self._client
        attributes: dict[str, AttributeValue] = {
            "gen_ai.operation.name": "extract",
            "gen_ai.provider.name": provider,
            "gen_ai.request.model": model,
            "gen_ai.output.type": "json",
            "extractor.extraction": event.extraction,
            "extractor.schema": event.schema,
            "extractor.mode": event.mode,
            "extractor.document.chars": event.document_chars,
        }
        # parented on the caller's current span: the extraction is part of its work
        span = self._tracer.start_span(
            f"extract {event.schema}", kind=self._internal, attributes=attributes
        )
        with self._lock:
            stale = self._open.pop(event.extraction, None)
            self._open[event.extraction] = _Open(span, provider, model, kind)
        if stale is not None:  # a number reused: only when the core lost a `Finished`
            _end(stale)

    def _sending(self, event: Sending) -> None:
        state = self._get(event.extraction)
        if state is None:  # began before `instrument()`
            return
        if state.attempt is not None:  # its outcome was never reported
            state.attempt.end()
        attributes: dict[str, AttributeValue] = {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": state.provider,
            "gen_ai.request.model": state.model,
            "gen_ai.output.type": "json",
            "extractor.mode": event.mode,
            "extractor.attempt": event.attempt,
            "extractor.request.messages": event.messages,
        }
        state.attempt = self._tracer.start_span(
            f"chat {state.model}".rstrip(),
            context=self._parent(state.span),
            kind=state.kind,
            attributes=attributes,
        )

    def _answered(self, event: Answered) -> None:
        state = self._get(event.extraction)
        if state is None or state.attempt is None:
            return
        span, state.attempt = state.attempt, None
        span.set_attributes(_tokens(event.usage))
        if event.response_id is not None:
            span.set_attribute("gen_ai.response.id", event.response_id)
        if event.finish_reason is not None:
            span.set_attribute("gen_ai.response.finish_reasons", [event.finish_reason])
        span.end()

    def _failed(self, event: Failed) -> None:
        state = self._get(event.extraction)
        if state is None or state.attempt is None:
            return
        span, state.attempt = state.attempt, None
        if event.usage is not None:
            span.set_attributes(_tokens(event.usage))
        if event.errors:
            validation: dict[str, AttributeValue] = {
                "extractor.validation.count": len(event.errors)
            }
            if isinstance(event.error, InvalidAnswer):
                validation["extractor.validation.paths"] = [
                    d.path or "(root)" for d in event.error.errors
                ]
            if self._capture:
                validation["extractor.validation.errors"] = list(event.errors)
            span.add_event("extractor.validation", validation)
        self._fail(span, event.error)
        span.end()

    def _retrying(self, event: Retrying) -> None:
        state = self._get(event.extraction)
        if state is None:
            return
        span = state.attempt or state.span
        span.add_event(
            "extractor.retry",
            {
                "error.type": event.error,
                "extractor.retry.try": event.try_number,
                "extractor.retry.wait": event.wait,
            },
        )

    def _finished(self, event: Finished) -> None:
        with self._lock:
            state = self._open.pop(event.extraction, None)
        if state is None:
            return
        if state.attempt is not None:  # its outcome was never reported (cancelled, closed)
            if event.error is not None:
                self._fail(state.attempt, event.error)
            state.attempt.end()
        span = state.span
        span.set_attributes(_tokens(event.usage))
        span.set_attributes({"extractor.mode": event.mode, "extractor.attempts": event.attempts})
        if event.error is not None:
            self._fail(span, event.error)
        span.end()

    # -- helpers -----------------------------------------------------------------------

    def _get(self, extraction: int) -> _Open | None:
        with self._lock:
            return self._open.get(extraction)

    def _fail(self, span: Span, error: BaseException) -> None:
        # the status says what failed, never the error's message: it may quote the answer
        name = type(error).__qualname__
        span.set_attribute("error.type", name)
        description = name
        if isinstance(error, APIStatusError):
            span.set_attribute("http.response.status_code", error.status)
            description = f"{name}: HTTP {error.status}"
        elif isinstance(error, InvalidAnswer):
            description = f"{name}: {len(error.errors)} problem(s)"
        span.set_status(self._status(self._error, description))


def _end(state: _Open) -> None:
    if state.attempt is not None:
        state.attempt.end()
    state.span.end()


def _tokens(usage: Usage) -> dict[str, AttributeValue]:
    attributes: dict[str, AttributeValue] = {
        "gen_ai.usage.input_tokens": usage.prompt_tokens,
        "gen_ai.usage.output_tokens": usage.completion_tokens,
    }
    if usage.cost is not None:  # the conventions have no name for money yet
        attributes["extractor.usage.cost"] = usage.cost
    return attributes
