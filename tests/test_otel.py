"""The otel extra: spans after the GenAI conventions, read from the SDK's in-memory exporter.

First synthetic events fed through the process-wide hook (no network), then a real
client against the loopback `ChatServer`.
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from pydantic import BaseModel

import extractor.otel
from extractor import (
    APIStatusError,
    Client,
    ConfigurationError,
    ErrorDetail,
    InvalidAnswer,
    RetriesExhausted,
    Usage,
)
from extractor.events import (
    Answered,
    Emitter,
    Event,
    Failed,
    Finished,
    Retrying,
    Sending,
    Started,
)
from extractor.testing import Answer, ChatServer, Delay

DOCUMENT = "Invoice 7 for Ann Lee: total 12.50 EUR"
KEY = "sk-x"


@pytest.fixture
def provider() -> Iterator[TracerProvider]:
    provider = TracerProvider()
    yield provider
    provider.shutdown()


@pytest.fixture
def exporter(
    provider: TracerProvider, caplog: pytest.LogCaptureFixture
) -> Iterator[InMemorySpanExporter]:
    """Spans of the instrumented process; the hook is gone again when the test ends."""
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    extractor.otel.instrument(provider)
    try:
        yield exporter
    finally:
        extractor.otel.uninstrument()
    assert not Emitter().active, "a hook outlived its test"
    # the core swallows a hook's exceptions (observing never breaks an extraction): look
    raised = [r for r in caplog.records if r.levelno >= logging.ERROR and r.name == "extractor"]
    assert not raised, raised[0].getMessage()


emit = Emitter()  # what the core sends events through; no hooks of its own


def started(n: int, schema: str = "Invoice", model: str = "openai/gpt-4o-mini") -> Started:
    return Started(n, model=model, mode="json_schema", schema=schema, document_chars=38)


def answered(n: int, attempt: int, prompt: int = 30, completion: int = 8) -> Answered:
    usage = Usage(prompt, completion, prompt + completion)
    return Answered(n, attempt, "json_schema", usage, "stop", f"chatcmpl-{n}-{attempt}")


def invalid(n: int, attempt: int) -> Failed:
    error = InvalidAnswer([ErrorDetail("total", 'Input should be a valid number (got "Ann Lee")')])
    errors = tuple(str(e) for e in error.errors)
    return Failed(n, attempt, "json_schema", error, errors, Usage(31, 9, 40))


def finished(n: int, attempts: int, usage: Usage, error: Any = None) -> Finished:
    return Finished(n, "openai/gpt-4o-mini", "json_schema", attempts, usage, error)


def send(*events: Event) -> None:
    for event in events:
        emit(event)


def named(spans: Sequence[ReadableSpan], name: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name == name]


def parent_id(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def span_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return span.context.span_id


def every_value(spans: Sequence[ReadableSpan]) -> list[str]:
    """Every attribute value of every span and span event, and the status texts, as text."""
    values: list[str] = []
    for span in spans:
        values += [span.name, str(span.status.description)]
        for attributes in [span.attributes, *(e.attributes for e in span.events)]:
            values += [str(v) for v in (attributes or {}).values()]
    return values


# -- synthetic events ----------------------------------------------------------------------


def test_one_extraction_is_a_span_and_its_attempt_a_child(exporter: InMemorySpanExporter):
    send(started(1), Sending(1, 1, "json_schema", 2), answered(1, 1))
    send(finished(1, 1, Usage(30, 8, 38)))

    attempt, extraction = exporter.get_finished_spans()
    assert extraction.name == "extract Invoice"
    assert extraction.kind is SpanKind.INTERNAL
    assert dict(extraction.attributes or {}) == {
        "gen_ai.operation.name": "extract",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-4o-mini",
        "gen_ai.output.type": "json",
        "extractor.extraction": 1,
        "extractor.schema": "Invoice",
        "extractor.mode": "json_schema",
        "extractor.document.chars": 38,
        "extractor.attempts": 1,
        "gen_ai.usage.input_tokens": 30,
        "gen_ai.usage.output_tokens": 8,
    }
    assert attempt.name == "chat gpt-4o-mini"
    assert attempt.kind is SpanKind.CLIENT
    assert parent_id(attempt) == span_id(extraction)
    assert dict(attempt.attributes or {}) == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-4o-mini",
        "gen_ai.output.type": "json",
        "extractor.mode": "json_schema",
        "extractor.attempt": 1,
        "extractor.request.messages": 2,
        "gen_ai.usage.input_tokens": 30,
        "gen_ai.usage.output_tokens": 8,
        "gen_ai.response.id": "chatcmpl-1-1",
        "gen_ai.response.finish_reasons": ("stop",),
    }
    # success leaves the status unset, as the conventions ask of instrumentations
    assert extraction.status.status_code is StatusCode.UNSET
    assert attempt.status.status_code is StatusCode.UNSET


def test_the_names_are_the_conventions_own():
    # the installed registry (opentelemetry-semantic-conventions, beside the SDK) has them
    from opentelemetry.semconv._incubating.attributes import gen_ai_attributes
    from opentelemetry.semconv.attributes import error_attributes

    registered = {v for v in vars(gen_ai_attributes).values() if isinstance(v, str)}
    registered.add(error_attributes.ERROR_TYPE)
    used = {
        "gen_ai.operation.name",
        "gen_ai.provider.name",
        "gen_ai.request.model",
        "gen_ai.output.type",
        "gen_ai.response.id",
        "gen_ai.response.finish_reasons",
        "gen_ai.usage.input_tokens",
        "gen_ai.usage.output_tokens",
        "error.type",
    }
    assert used <= registered


def test_interleaved_extractions_keep_their_own_attempts(exporter: InMemorySpanExporter):
    send(started(1, "Invoice"), started(2, "Contact"))
    send(Sending(2, 1, "json_schema", 2), Sending(1, 1, "json_schema", 2))
    send(invalid(1, 1), answered(2, 1, 20, 4))
    send(finished(2, 1, Usage(20, 4, 24)))
    send(Sending(1, 2, "json_schema", 4), answered(1, 2, 50, 9))
    send(finished(1, 2, Usage(81, 18, 99)))

    spans = exporter.get_finished_spans()
    (invoice,) = named(spans, "extract Invoice")
    (contact,) = named(spans, "extract Contact")
    attempts = named(spans, "chat gpt-4o-mini")
    assert len(spans) == 5 and len(attempts) == 3
    under_invoice = [a for a in attempts if parent_id(a) == span_id(invoice)]
    under_contact = [a for a in attempts if parent_id(a) == span_id(contact)]
    assert [(a.attributes or {})["extractor.attempt"] for a in under_invoice] == [1, 2]
    assert [(a.attributes or {})["extractor.attempt"] for a in under_contact] == [1]
    assert (invoice.attributes or {})["gen_ai.usage.input_tokens"] == 81
    assert (contact.attributes or {})["gen_ai.usage.input_tokens"] == 20
    assert invoice.context is not None and contact.context is not None
    assert invoice.context.trace_id != contact.context.trace_id


def test_attempts_are_parented_on_their_extraction_not_on_the_current_span(
    exporter: InMemorySpanExporter, provider: TracerProvider
):
    tracer = provider.get_tracer("caller")
    with tracer.start_as_current_span("job"):
        send(started(1))
    with tracer.start_as_current_span("unrelated"):  # current while the attempt runs
        send(Sending(1, 1, "json_schema", 2), answered(1, 1))
    send(finished(1, 1, Usage(30, 8, 38)))

    spans = exporter.get_finished_spans()
    (job,) = named(spans, "job")
    (extraction,) = named(spans, "extract Invoice")
    (attempt,) = named(spans, "chat gpt-4o-mini")
    assert parent_id(extraction) == span_id(job)  # the caller's work contains the extraction
    assert parent_id(attempt) == span_id(extraction)


def test_threads_and_tasks_running_at_once(exporter: InMemorySpanExporter):
    """Each extraction's events come from its own thread or task, all interleaved."""
    barrier = threading.Barrier(4)

    def one(n: int) -> None:
        barrier.wait()
        send(started(n))
        for attempt in (1, 2):
            send(Sending(n, attempt, "json_schema", 2 * attempt))
            send(invalid(n, attempt) if attempt == 1 else answered(n, attempt))
        send(finished(n, 2, Usage(61, 17, 78)))

    threads = [threading.Thread(target=one, args=(n,)) for n in (101, 102, 103, 104)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    async def task(n: int) -> None:
        send(started(n))
        for attempt in (1, 2):
            send(Sending(n, attempt, "json_schema", 2 * attempt))
            await asyncio.sleep(0)  # let the other tasks run in between
            send(invalid(n, attempt) if attempt == 1 else answered(n, attempt))
            await asyncio.sleep(0)
        send(finished(n, 2, Usage(61, 17, 78)))

    async def tasks() -> None:
        await asyncio.gather(*(task(n) for n in (201, 202, 203)))

    asyncio.run(tasks())

    spans = exporter.get_finished_spans()
    extractions = named(spans, "extract Invoice")
    assert len(extractions) == 7 and len(spans) == 21
    for extraction in extractions:
        children = [s for s in spans if parent_id(s) == span_id(extraction)]
        outcomes = [(c.attributes or {})["extractor.attempt"] for c in children]
        assert sorted(outcomes) == [1, 2]
        assert [
            c.status.status_code for c in sorted(children, key=lambda c: c.start_time or 0)
        ] == [
            StatusCode.ERROR,
            StatusCode.UNSET,
        ]


def test_a_failed_attempt_and_a_failed_extraction(exporter: InMemorySpanExporter):
    send(started(1), Sending(1, 1, "json_schema", 2), invalid(1, 1))
    send(Sending(1, 2, "json_schema", 4), invalid(1, 2))
    send(finished(1, 2, Usage(62, 18, 80), RetriesExhausted([])))

    first, second, extraction = exporter.get_finished_spans()
    for attempt in (first, second):
        assert attempt.status.status_code is StatusCode.ERROR
        assert attempt.status.description == "InvalidAnswer: 1 problem(s)"
        assert (attempt.attributes or {})["error.type"] == "InvalidAnswer"
        assert (attempt.attributes or {})["gen_ai.usage.input_tokens"] == 31  # a failure costs
        (validation,) = attempt.events
        assert validation.name == "extractor.validation"
        assert dict(validation.attributes or {}) == {
            "extractor.validation.count": 1,
            "extractor.validation.paths": ("total",),
        }
    assert extraction.status.status_code is StatusCode.ERROR
    assert (extraction.attributes or {})["error.type"] == "RetriesExhausted"
    # the validator quoted the answer's value, which came from the document: not recorded
    assert not any("Ann Lee" in value for value in every_value([first, second, extraction]))


def test_capture_documents_records_the_validators_messages(
    exporter: InMemorySpanExporter, provider: TracerProvider
):
    extractor.otel.instrument(provider, capture_documents=True)  # replaces the fixture's
    send(started(1), Sending(1, 1, "json_schema", 2), invalid(1, 1))
    send(finished(1, 1, Usage(31, 9, 40), InvalidAnswer([])))

    attempt, _ = exporter.get_finished_spans()
    (validation,) = attempt.events
    assert (validation.attributes or {})["extractor.validation.errors"] == (
        'total: Input should be a valid number (got "Ann Lee")',
    )


def test_retries_are_events_on_the_attempt(exporter: InMemorySpanExporter):
    send(started(1), Sending(1, 1, "json_schema", 2))
    send(Retrying(1, 1, 1, "APIStatusError", 0.5), Retrying(1, 1, 2, "APITimeoutError", 1.0))
    error = APIStatusError(503, "overloaded")
    send(Failed(1, 1, "json_schema", error, (), None))
    send(finished(1, 1, Usage(), error))

    attempt, extraction = exporter.get_finished_spans()
    assert [(e.name, dict(e.attributes or {})) for e in attempt.events] == [
        (
            "extractor.retry",
            {"error.type": "APIStatusError", "extractor.retry.try": 1, "extractor.retry.wait": 0.5},
        ),
        (
            "extractor.retry",
            {
                "error.type": "APITimeoutError",
                "extractor.retry.try": 2,
                "extractor.retry.wait": 1.0,
            },
        ),
    ]
    attributes = attempt.attributes or {}
    assert attributes["error.type"] == "APIStatusError"
    assert attributes["http.response.status_code"] == 503
    assert "gen_ai.usage.input_tokens" not in attributes  # no answer, so no usage to report
    assert attempt.status.description == "APIStatusError: HTTP 503"
    assert extraction.status.status_code is StatusCode.ERROR


def test_the_embedded_model_and_other_providers(exporter: InMemorySpanExporter):
    send(started(1, model="local/gemma-3-270m"), Sending(1, 1, "grounded", 2))
    send(answered(1, 1), finished(1, 1, Usage(30, 8, 38)))
    send(started(2, model="mistral/mistral-small-latest"), Sending(2, 1, "tools", 2))
    send(answered(2, 1), finished(2, 1, Usage(30, 8, 38)))

    local, _, mistral, _ = exporter.get_finished_spans()
    assert local.name == "chat gemma-3-270m"
    assert local.kind is SpanKind.INTERNAL  # runs in this process: no client call
    assert (local.attributes or {})["gen_ai.provider.name"] == "local"
    assert (local.attributes or {})["extractor.mode"] == "grounded"
    assert mistral.kind is SpanKind.CLIENT
    assert (mistral.attributes or {})["gen_ai.provider.name"] == "mistral_ai"


def test_state_ends_with_the_extraction(exporter: InMemorySpanExporter):
    send(Sending(9, 1, "json_schema", 2), answered(9, 1))  # began before instrument()
    send(started(1), finished(1, 0, Usage()))
    send(Sending(1, 1, "json_schema", 2), answered(1, 1))  # after Finished: forgotten
    assert [s.name for s in exporter.get_finished_spans()] == ["extract Invoice"]


def test_uninstrument_ends_open_spans_and_stops(
    exporter: InMemorySpanExporter, provider: TracerProvider
):
    send(started(1), Sending(1, 1, "json_schema", 2))
    extractor.otel.uninstrument()
    assert len(exporter.get_finished_spans()) == 2  # nothing left open, nothing lost
    assert not Emitter().active
    send(answered(1, 1), started(2), finished(2, 0, Usage()))
    assert len(exporter.get_finished_spans()) == 2
    extractor.otel.uninstrument()  # twice is harmless


def test_instrumenting_twice_keeps_one_hook(exporter: InMemorySpanExporter):
    extractor.otel.instrument()  # the global provider now; the fixture's is replaced
    extractor.otel.instrument()
    send(started(1), finished(1, 0, Usage()))
    assert exporter.get_finished_spans() == ()


def test_without_opentelemetry_instrument_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
):
    monkeypatch.setitem(sys.modules, "opentelemetry", None)  # as if not installed
    with pytest.raises(ConfigurationError, match=r'pip install "extractor\[otel\]"'):
        extractor.otel.instrument()
    assert not Emitter().active


def test_importing_extractor_does_not_import_opentelemetry():
    code = "import sys, extractor; print(sorted(m for m in sys.modules if 'opentelemetry' in m))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# -- a real client against the loopback server ---------------------------------------------


class Invoice(BaseModel):
    number: int
    customer: str
    total: float


def test_a_reask_traced_end_to_end(exporter: InMemorySpanExporter, server: ChatServer):
    server.script(
        Answer(
            content='{"number": 7, "customer": "Ann Lee", "total": "twelve fifty"}',
            usage={"prompt_tokens": 120, "completion_tokens": 19, "total_tokens": 139},
        ),
        Answer(
            content='{"number": 7, "customer": "Ann Lee", "total": 12.5}',
            usage={"prompt_tokens": 171, "completion_tokens": 17, "total_tokens": 188},
        ),
    )
    with Client(
        model="openai/test-model", base_url=server.base_url, api_key=KEY, mode="json_schema"
    ) as client:
        invoice = client.extract(Invoice, DOCUMENT)
    assert invoice == Invoice(number=7, customer="Ann Lee", total=12.5)
    assert len(server.requests) == 2

    spans = exporter.get_finished_spans()
    (extraction,) = named(spans, "extract Invoice")
    attempts = sorted(named(spans, "chat test-model"), key=lambda s: s.start_time or 0)
    assert len(spans) == 3 and len(attempts) == 2
    first, second = attempts
    assert all(parent_id(a) == span_id(extraction) for a in attempts)
    assert extraction.parent is None

    assert (first.attributes or {})["extractor.attempt"] == 1
    assert first.status.status_code is StatusCode.ERROR
    assert (first.attributes or {})["error.type"] == "InvalidAnswer"
    assert [e.name for e in first.events] == ["extractor.validation"]
    assert (first.events[0].attributes or {})["extractor.validation.paths"] == ("total",)
    assert (second.attributes or {})["extractor.attempt"] == 2
    assert second.status.status_code is StatusCode.UNSET
    for span, (prompt, completion) in ((first, (120, 19)), (second, (171, 17))):
        attributes = span.attributes or {}
        assert attributes["gen_ai.operation.name"] == "chat"
        assert attributes["gen_ai.provider.name"] == "openai"
        assert attributes["gen_ai.request.model"] == "test-model"
        assert attributes["extractor.mode"] == "json_schema"
        assert attributes["gen_ai.usage.input_tokens"] == prompt
        assert attributes["gen_ai.usage.output_tokens"] == completion
    assert str((second.attributes or {})["gen_ai.response.id"]).startswith("chatcmpl-")
    assert (second.attributes or {})["gen_ai.response.finish_reasons"] == ("stop",)

    totals = extraction.attributes or {}
    assert totals["gen_ai.usage.input_tokens"] == 120 + 171
    assert totals["gen_ai.usage.output_tokens"] == 19 + 17
    assert totals["extractor.attempts"] == 2
    assert extraction.status.status_code is StatusCode.UNSET

    values = every_value(spans)
    assert not any(KEY in value for value in values)
    assert not any("Ann Lee" in value or "twelve" in value for value in values)


def test_concurrent_async_extractions_end_to_end(
    exporter: InMemorySpanExporter, server: ChatServer
):
    record = '{"number": 7, "customer": "Ann Lee", "total": 12.5}'
    server.script(*(Answer(content=record) for _ in range(4)))

    async def main() -> None:
        async with Client(
            model="openai/test-model", base_url=server.base_url, api_key=KEY, mode="json_schema"
        ) as client:
            await asyncio.gather(*(client.aextract(Invoice, DOCUMENT) for _ in range(4)))

    asyncio.run(main())

    spans = exporter.get_finished_spans()
    extractions = named(spans, "extract Invoice")
    assert len(extractions) == 4 and len(spans) == 8
    numbers = {(e.attributes or {})["extractor.extraction"] for e in extractions}
    assert len(numbers) == 4
    for extraction in extractions:
        (attempt,) = [s for s in spans if parent_id(s) == span_id(extraction)]
        assert (attempt.attributes or {})["gen_ai.usage.input_tokens"] == 10  # the default usage


def test_a_streamed_extraction_end_to_end(exporter: InMemorySpanExporter, server: ChatServer):
    server.script(Answer(content='{"number": 7, "customer": "Ann Lee", "total": 12.5}'))
    with Client(
        model="openai/test-model", base_url=server.base_url, api_key=KEY, mode="json_schema"
    ) as client:
        *_, last = client.stream(Invoice, DOCUMENT)
    assert last == Invoice(number=7, customer="Ann Lee", total=12.5)

    attempt, extraction = exporter.get_finished_spans()
    assert (extraction.name, attempt.name) == ("extract Invoice", "chat test-model")
    assert parent_id(attempt) == span_id(extraction)
    assert (attempt.attributes or {})["gen_ai.usage.output_tokens"] == 5  # the usage chunk


# A cancelled extraction or a stream closed early still ends its spans (Finished with
# the exception that stopped it).


def test_a_cancelled_extraction_ends_its_spans(exporter: InMemorySpanExporter, server: ChatServer):
    server.script(Delay(5, Answer(content='{"number": 7, "customer": "A", "total": 1}')))

    async def main() -> None:
        async with Client(
            model="openai/test-model", base_url=server.base_url, api_key=KEY, mode="json_schema"
        ) as client:
            task = asyncio.create_task(client.aextract(Invoice, DOCUMENT))
            while not server.requests:
                await asyncio.sleep(0.01)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    asyncio.run(main())
    assert len(exporter.get_finished_spans()) == 2


def test_a_stream_closed_early_ends_its_spans(exporter: InMemorySpanExporter, server: ChatServer):
    server.script(Answer(content='{"number": 7, "customer": "Ann Lee", "total": 12.5}'))
    with Client(
        model="openai/test-model", base_url=server.base_url, api_key=KEY, mode="json_schema"
    ) as client:
        stream = client.stream(Invoice, DOCUMENT)
        next(iter(stream))
        stream.close()
    assert len(exporter.get_finished_spans()) == 2
