"""The engine of a batch: many extractions in flight, each result handed out as it completes.

`Window` keeps at most `concurrency` documents between "read from the input" and
"taken by the consumer": it reads the next document only when one leaves, so memory
does not grow with the input. Each document runs through the core (`conversation.acomplete`,
with the job's `Limiter` as its pacer); what comes out is a `BatchResult` holding
either the extraction or the error: one bad document never stops the others. Only a
mistake in the set-up (`ConfigurationError`, `SchemaError`), the same for every
document, stops the batch.

`extract_many` / `aextract_many` are the library's face of it; `BatchJob` (job.py)
adds the files, resume, progress and signals for the command line.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
import time
from collections.abc import AsyncGenerator, AsyncIterator, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from extractor._context import budget_chars, learn
from extractor._conversation import Plan, acomplete
from extractor._errors import (
    ConfigurationError,
    DocumentTooLong,
    ExtractorError,
    RetriesExhausted,
    SchemaError,
    with_article,
)
from extractor._merge import check
from extractor._parts import LongExtraction, chunk_target, chunks_of, collect, finish
from extractor._result import Attempt, Extraction, Usage
from extractor.backend import Pacer
from extractor.batch._limiter import Limiter
from extractor.batch._sources import Document, DocumentError, load

if TYPE_CHECKING:
    from extractor._client import Client

__all__ = [
    "CHUNKS_IN_FLIGHT",
    "BatchResult",
    "Window",
    "aextract_many",
    "extract_many",
    "run_chunks",
]

#: Chunks of one long document in flight at once, in a batch.
CHUNKS_IN_FLIGHT = 4
#: Times a long document is split again, smaller, when a chunk still does not fit.
_RESPLITS = 2

logger = logging.getLogger("extractor.batch")

T = TypeVar("T")


@dataclass(frozen=True)
class BatchResult(Generic[T]):
    """What became of one document: its record (`extraction`) or why not (`error`)."""

    id: Any
    extraction: Extraction[T] | None
    error: BaseException | None
    #: Wall-clock seconds from the document's start to its end, waits included.
    elapsed_s: float
    #: Every answer the model gave, also when the document failed.
    attempts: tuple[Attempt, ...] = ()
    #: `provider/model` the document was sent to (None if it never was).
    model: str | None = None

    @property
    def ok(self) -> bool:
        """Whether a record came out."""
        return self.extraction is not None

    @property
    def value(self) -> T:
        """The record; raises the document's error if there is none."""
        if self.extraction is None:
            assert self.error is not None
            raise self.error
        return self.extraction.value

    @property
    def usage(self) -> Usage:
        """Tokens and cost of every answer for this document, failed ones included."""
        return Usage.total(a.usage for a in self.attempts)

    @property
    def raw(self) -> str | None:
        """The last raw answer, if any came."""
        return self.attempts[-1].raw if self.attempts else None


def as_documents(documents: Iterable[Any] | Mapping[Any, str]) -> Iterator[Document]:
    """Texts (ids: positions), `(id, text)` pairs, `Document`s, or a mapping of id to text."""
    items: Iterable[Any] = documents.items() if isinstance(documents, Mapping) else documents
    for index, item in enumerate(items):
        if isinstance(item, Document):
            yield item
        elif isinstance(item, str):
            yield _document(index, item)
        elif isinstance(item, tuple) and len(item) == 2:
            yield _document(item[0], item[1])
        else:
            raise ConfigurationError(
                f"document {index} is {with_article(type(item).__name__)}; pass texts, "
                "(id, text) pairs, Documents, or a mapping of id to text"
            )


def _document(doc_id: Any, text: Any) -> Document:
    if not isinstance(text, str):
        return Document(
            doc_id, problem=f"the text is {with_article(type(text).__name__)}, not a str"
        )
    if not text.strip():
        return Document(doc_id, problem="the document is empty: nothing to extract")
    return Document(doc_id, text)


_WAKE = object()


@dataclass(frozen=True)
class _Arrival:
    """A document the reader thread read from a pipe (None: the input ended)."""

    document: Document | None


class Window:
    """At most `concurrency` documents in flight or waiting to be taken; see the module doc."""

    def __init__(
        self,
        client: Client,
        target: Any,
        documents: Iterator[Document],
        *,
        concurrency: int,
        limiter: Pacer,
        options: Mapping[str, Any],
        blocking: bool = False,
        split: bool = True,
    ) -> None:
        if concurrency < 1:
            raise ConfigurationError(f"concurrency must be 1 or more, not {concurrency}")
        self._client = client
        self._target = target
        self._documents = documents
        self._concurrency = concurrency
        self._limiter = limiter
        self._options = dict(options)
        self._reader: _Reader | None = None
        self._blocking = blocking
        self._split = split  # a document too long for the model goes through chunks
        self._tasks: set[asyncio.Task[BatchResult[Any]]] = set()
        # finished results, and (from a pipe) arriving documents, in the order they come
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._waiting = 0  # results (or a fatal error) in the queue
        self._asked = 0  # documents asked of the reader, not yet arrived
        self._stopping = False
        self._abandoned = False
        #: Whether every document of the input was read.
        self.exhausted = False
        #: Documents stopped unreported by their backend (held back by a cost cap): they
        #: run next time, so the input is not done.
        self.dropped = 0

    @property
    def in_flight(self) -> int:
        """Documents started and not finished."""
        return len(self._tasks)

    def stop(self) -> None:
        """Start no new document; the ones in flight finish."""
        self._stopping = True
        self._queue.put_nowait(_WAKE)

    def abandon(self) -> int:
        """Stop, and cancel the documents in flight (none of them is reported); how many."""
        self._stopping = self._abandoned = True
        count = len(self._tasks)
        for task in self._tasks:
            task.cancel()
        self._queue.put_nowait(_WAKE)
        return count

    async def results(self) -> AsyncIterator[BatchResult[Any]]:
        """Each document's result, in the order they complete."""
        try:
            while True:
                self._fill()
                if self._waiting == 0 and (
                    self._abandoned or (not self._tasks and (self._stopping or self.exhausted))
                ):
                    return  # finished results are handed out even after `abandon`
                item = await self._queue.get()
                if isinstance(item, _Arrival):
                    self._asked -= 1
                    if item.document is None:
                        self.exhausted = True
                    elif not self._stopping:  # read after a stop: left for the next run
                        self._start(item.document)
                elif isinstance(item, BatchResult):
                    self._waiting -= 1
                    yield item
                elif isinstance(item, BaseException):
                    self._waiting -= 1
                    raise item
        finally:
            await self._cancel()

    def _fill(self) -> None:
        """Start documents while there is room; from a pipe, ask the reader for them."""
        if self._stopping or self.exhausted:
            return
        if not self._blocking:
            while len(self._tasks) + self._waiting < self._concurrency:
                document = next(self._documents, None)
                if document is None:
                    self.exhausted = True
                    return
                self._start(document)
            return
        room = self._concurrency - len(self._tasks) - self._waiting - self._asked
        if room > 0:
            if self._reader is None:
                self._reader = _Reader(self._documents, self._queue)
            self._reader.ask(room)
            self._asked += room

    def _start(self, document: Document) -> None:
        if document.problem is not None:
            error = DocumentError(document.problem)
            self._put(BatchResult(document.id, None, error, 0.0))
            return
        task = asyncio.ensure_future(self._one(document))
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    def _put(self, result: BatchResult[Any] | BaseException) -> None:
        self._waiting += 1
        self._queue.put_nowait(result)

    def _finished(self, task: asyncio.Task[BatchResult[Any]]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            self.dropped += not self._abandoned
            return
        error = task.exception()
        self._put(task.result() if error is None else error)

    async def _one(self, document: Document) -> BatchResult[Any]:
        started = time.perf_counter()
        attempts: list[Attempt] = []
        model: str | None = None
        try:
            if document.path is not None:  # a file: read in a thread, now its turn has come
                document = await asyncio.to_thread(load, document)
                if document.problem is not None:
                    error = DocumentError(document.problem)
                    return BatchResult(document.id, None, error, time.perf_counter() - started)
            plan = self._client.prepare(self._target, document.text, **self._options)
            if document.pages:
                plan = dataclasses.replace(plan, pages=document.pages)
            model = plan.endpoint.label
            extraction = await self._extract(plan, attempts)
        except (ConfigurationError, SchemaError):
            raise  # the same for every document: stop the batch
        except Exception as exc:
            if isinstance(exc, RetriesExhausted):
                attempts = list(exc.attempts)
            elif not isinstance(exc, ExtractorError):  # a bug: reported, never lost
                logger.warning("document %r failed unexpectedly: %r", document.id, exc)
            logger.info("document %r failed: %s", document.id, exc)
            return BatchResult(
                document.id, None, exc, time.perf_counter() - started, tuple(attempts), model
            )
        elapsed = time.perf_counter() - started
        return BatchResult(document.id, extraction, None, elapsed, extraction.attempts, model)

    async def _extract(self, plan: Plan, attempts: list[Attempt]) -> Extraction[Any]:
        """One document: in one request, or in chunks when it is longer than the model takes."""
        budget = budget_chars(plan) if self._split else None
        if budget is None or len(plan.document) <= budget:
            backend = self._client.backend(plan.endpoint, pacer=self._limiter)
            try:
                return await acomplete(plan, backend, self._client.emitter, attempts)
            except DocumentTooLong as exc:
                budget = learn(plan, exc)
                if not self._split:
                    raise
                logger.info("%s: too long for %s; in chunks", plan.endpoint.label, exc)
        return await run_chunks(
            self._client,
            self._target,
            plan,
            budget,
            limiter=self._limiter,
            concurrency=CHUNKS_IN_FLIGHT,
            options=self._options,
        )

    async def _cancel(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)


class _Reader:
    """Reads a blocking source (a pipe) in a daemon thread, as many documents as asked.

    Arrivals go into the window's queue beside the results, so a silent pipe never holds
    back a finished result. A daemon thread, not the loop's executor: one stuck on a
    silent pipe must not keep the process from exiting after Ctrl-C.
    """

    def __init__(self, documents: Iterator[Document], queue: asyncio.Queue[Any]) -> None:
        self._documents = documents
        self._queue = queue
        self._loop = asyncio.get_running_loop()
        self._wanted = threading.Semaphore(0)
        threading.Thread(target=self._run, name="extractor-batch-reader", daemon=True).start()

    def ask(self, count: int) -> None:
        """Read `count` more documents."""
        self._wanted.release(count)

    def _run(self) -> None:
        while True:
            self._wanted.acquire()
            try:
                item: Any = _Arrival(next(self._documents, None))
            except BaseException as exc:  # raised on the loop, by `results`
                item = exc
            try:
                self._loop.call_soon_threadsafe(self._queue.put_nowait, item)
            except RuntimeError:  # the loop is closed: nobody reads any more
                return
            if not isinstance(item, _Arrival) or item.document is None:
                return


async def run_chunks(
    client: Client,
    target: Any,
    plan: Plan,
    budget: int | None,
    *,
    limiter: Pacer,
    concurrency: int,
    options: Mapping[str, Any],
    overlap_chars: int | None = None,
    allow_partial: bool = False,
) -> LongExtraction[Any]:
    """`plan`'s document in chunks of at most `budget` characters, merged into one record.

    The chunks run as a batch of their own under `limiter`, `concurrency` at a time, each
    asked for `target` with every field optional (`chunk_target`) where the provider's
    models answer null for what a text does not hold. A chunk the model still finds too
    long splits the document again, at half the size (twice at most). Raises
    `ChunkError` for a chunk that fails (unless `allow_partial`), `MergeError` when the
    records do not make one record of `target`.
    """
    check(target)
    pages = plan.pages or None
    for round_ in range(_RESPLITS + 1):
        chunks = chunks_of(plan.document, pages, budget, overlap_chars)
        relax = len(chunks) > 1 and plan.endpoint.provider.tells_absence
        asked = chunk_target(target) if relax else target
        texts = (Document(c.index, c.text) for c in chunks if len(chunks) == 1 or c.text.strip())
        window = Window(
            client,
            asked,
            texts,
            concurrency=concurrency,
            limiter=limiter,
            options=options,
            split=False,
        )
        results = await collect(window.results(), allow_partial=allow_partial)
        longest = max(
            (
                len(chunks[r.id].text)
                for r in results.values()
                if isinstance(r.error, DocumentTooLong)
            ),
            default=0,
        )
        if longest and round_ < _RESPLITS:
            budget = max(longest // 2, 100)
            logger.info("a chunk was still too long; splitting at %d characters", budget)
            continue
        break
    return finish(
        target,
        plan.document,
        pages,
        chunks,
        results,
        allow_partial=allow_partial,
        model=plan.endpoint.label,
    )


async def aextract_many(
    client: Client,
    target: Any,
    documents: Iterable[Any],
    *,
    concurrency: int = 16,
    rpm: float | None = None,
    tpm: float | None = None,
    options: Mapping[str, Any] | None = None,
) -> AsyncGenerator[BatchResult[Any], None]:
    """See `Client.aextract_many`."""
    options = dict(options or {})
    client.check(target, **options)  # a set-up mistake fails here, before any document
    limiter = Limiter(concurrency, rpm=rpm, tpm=tpm)
    window = Window(
        client,
        target,
        as_documents(documents),
        concurrency=concurrency,
        limiter=limiter,
        options=options,
    )
    async for result in window.results():
        yield result


def extract_many(
    client: Client,
    target: Any,
    documents: Iterable[Any],
    *,
    concurrency: int = 16,
    rpm: float | None = None,
    tpm: float | None = None,
    options: Mapping[str, Any] | None = None,
) -> Iterator[BatchResult[Any]]:
    """See `Client.extract_many`: the async engine, driven on a private event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        raise ConfigurationError(
            "extract_many cannot run inside a running event loop; "
            "use `async for result in aextract_many(...)` there"
        )
    client.check(target, **dict(options or {}))  # raise at the call, not at the first next()
    return _drive(client, target, documents, concurrency, rpm, tpm, options)


def _drive(
    client: Client,
    target: Any,
    documents: Iterable[Any],
    concurrency: int,
    rpm: float | None,
    tpm: float | None,
    options: Mapping[str, Any] | None,
) -> Iterator[BatchResult[Any]]:
    loop = asyncio.new_event_loop()
    results: AsyncGenerator[BatchResult[Any], None] = aextract_many(
        client, target, documents, concurrency=concurrency, rpm=rpm, tpm=tpm, options=options
    )
    try:
        while True:
            try:
                yield loop.run_until_complete(results.__anext__())
            except StopAsyncIteration:
                return
    finally:
        loop.run_until_complete(results.aclose())
        loop.run_until_complete(release_pool(client))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


async def release_pool(client: Client) -> None:
    """Close the client's async connections that belong to the running loop."""
    await client.aclose_loop()
