"""A document longer than the model's context: split, extracted chunk by chunk, merged.

`aextract_long` cuts the document into chunks (`extractor._chunks`), extracts every chunk
through the client's batch engine (`Client.aextract_many`, so the chunks run
`concurrency` at a time and a batch's rate limits pace them), and merges their records
into one (`extractor._merge`). Each chunk is asked for the target with every field
optional (`chunk_target`): a part of a document need not hold every field, and a default
the model filled in would otherwise count as a value found. A chunk that fails every
attempt fails the document, unless `allow_partial` leaves a record that says which pages
it lacks. `extract_long` drives the same on a private event loop.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Final, Generic, TypeVar, overload

import pydantic

from extractor._chunks import Chunk, describe_pages, page_starts, split
from extractor._errors import ConfigurationError, ExtractorError
from extractor._merge import Conflict, Source, check, merge
from extractor._result import Attempt, Extraction, Usage
from extractor._schema import WorkedExample, compile_schema, worked_examples

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from extractor._client import Client
    from extractor._options import Options
    from extractor.batch._runner import BatchResult

__all__ = [
    "DEFAULT_CONCURRENCY",
    "DEFAULT_CONTEXT_CHARS",
    "ChunkError",
    "LongExtraction",
    "Part",
    "aextract_long",
    "chunk_target",
    "extract_long",
]

T = TypeVar("T")

logger = logging.getLogger(__name__)

#: Characters of document one request carries when the caller does not say: about 2,000
#: tokens of English, which leaves room for the prompt, schema and answer in the 4,096
#: tokens of the smallest context the library runs (the embedded model's).
DEFAULT_CONTEXT_CHARS: Final = 8_000
#: Chunks in flight at once.
DEFAULT_CONCURRENCY: Final = 4
#: The field attributes a chunk's optional field keeps from the target's.
_KEPT: Final = (
    "alias",
    "validation_alias",
    "serialization_alias",
    "title",
    "description",
    "examples",
    "json_schema_extra",
)

_relaxed: dict[type, type] = {}
_relaxed_lock = threading.Lock()


class ChunkError(ExtractorError):
    """A chunk failed every attempt, so the document has no complete record.

    `chunk` says which part (its pages); `error` is why it failed (also the `__cause__`);
    `usage` is what every chunk had spent when the extraction stopped.
    """

    def __init__(self, chunk: Chunk, total: int, error: BaseException, *, usage: Usage) -> None:
        super().__init__(
            f"chunk {chunk.index + 1} of {total} ({describe_pages(chunk.pages)}) failed: {error}"
        )
        self.chunk = chunk
        self.error = error
        self.usage = usage


@dataclass(frozen=True)
class Part:
    """What became of one chunk: its extraction, or why it failed (neither: it was blank)."""

    chunk: Chunk
    extraction: Extraction[Any] | None
    error: BaseException | None = None
    #: Every answer the model gave for this chunk, also when it failed.
    attempts: tuple[Attempt, ...] = ()

    @property
    def ok(self) -> bool:
        """Whether the chunk gave a record, or had nothing to give."""
        return self.error is None

    @property
    def usage(self) -> Usage:
        """Tokens and cost of every answer for this chunk, failed ones included."""
        return Usage.total(a.usage for a in self.attempts)


@dataclass(frozen=True)
class LongExtraction(Generic[T]):
    """A long document's merged record, where its values came from, and each chunk's story."""

    value: T
    #: `provider/model` the chunks were sent to.
    model: str | None
    #: One per chunk, in document order.
    parts: tuple[Part, ...]
    #: Field path → the values chunks disagreed on (the kept one included).
    conflicts: Mapping[str, Conflict]
    #: Field path or list item → the chunk and pages its value came from.
    provenance: Mapping[str, Source]
    #: Pages that failed chunks held and no other chunk covered in full (`allow_partial`).
    missing_pages: tuple[int, ...] = ()

    @property
    def chunks(self) -> tuple[Chunk, ...]:
        """The chunks, in document order."""
        return tuple(part.chunk for part in self.parts)

    @property
    def complete(self) -> bool:
        """Whether every chunk gave its record."""
        return all(part.ok for part in self.parts)

    @property
    def usage(self) -> Usage:
        """Usage summed over every chunk's answers, failed ones included."""
        return Usage.total(part.usage for part in self.parts)


def chunk_target(target: Any) -> Any:
    """What each chunk is asked for: a model with every field optional, else `target`.

    Made once per model, with the same name, descriptions, aliases, constraints,
    configuration and worked examples, so the request reads as it would for the target.
    Its fields default to None: the merge counts None as "not found here".
    """
    if not _relaxable(target):
        return target
    made = _relaxed.get(target)
    if made is None:
        examples = compile_schema(target).examples
        made = _optional_fields(target)
        if examples:
            shown = worked_examples(*(WorkedExample(text, record) for text, record in examples))
            made = shown(made)
            if compile_schema(made).examples != examples:
                # an example that does not read back the same (through an alias, say) would
                # show the model a wrong record: better none
                logger.info("%s: its worked examples are not shown to chunks", target.__name__)
                made = _optional_fields(target)
        with _relaxed_lock:
            made = _relaxed.setdefault(target, made)
    return made


def _optional_fields(target: type[pydantic.BaseModel]) -> type[pydantic.BaseModel]:
    fields: dict[str, Any] = {}
    for name, info in target.model_fields.items():
        layers = (info.annotation, *info.metadata)  # the type with its constraints
        inner: Any = Annotated[layers] if info.metadata else info.annotation
        kept = {k: getattr(info, k) for k in _KEPT if getattr(info, k) is not None}
        fields[name] = (inner | None, pydantic.Field(default=None, **kept))
    return pydantic.create_model(
        target.__name__,
        __config__=target.model_config,
        __doc__=target.__doc__,
        __module__=target.__module__,
        **fields,
    )


def _relaxable(target: Any) -> bool:
    return (
        isinstance(target, type)
        and issubclass(target, pydantic.BaseModel)
        and not issubclass(target, pydantic.RootModel)
    )


@overload
async def aextract_long(
    client: Client,
    target: type[T],
    document: str,
    *,
    pages: Sequence[int] | None = None,
    context_chars: int | None = None,
    overlap_chars: int | None = None,
    concurrency: int = DEFAULT_CONCURRENCY,
    rpm: float | None = None,
    tpm: float | None = None,
    allow_partial: bool = False,
    **options: Unpack[Options],
) -> LongExtraction[T]: ...
@overload
async def aextract_long(
    client: Client,
    target: Mapping[str, Any],
    document: str,
    *,
    pages: Sequence[int] | None = None,
    context_chars: int | None = None,
    overlap_chars: int | None = None,
    concurrency: int = DEFAULT_CONCURRENCY,
    rpm: float | None = None,
    tpm: float | None = None,
    allow_partial: bool = False,
    **options: Unpack[Options],
) -> LongExtraction[dict[str, Any]]: ...
async def aextract_long(
    client: Client,
    target: Any,
    document: str,
    *,
    pages: Sequence[int] | None = None,
    context_chars: int | None = None,
    overlap_chars: int | None = None,
    concurrency: int = DEFAULT_CONCURRENCY,
    rpm: float | None = None,
    tpm: float | None = None,
    allow_partial: bool = False,
    **options: Unpack[Options],
) -> LongExtraction[Any]:
    """Extract one record of `target` from a document of any length; see the module doc.

    `context_chars` is how much of the document one request carries (default
    `DEFAULT_CONTEXT_CHARS`); `overlap_chars` how much consecutive chunks share (default:
    a tenth of it); `pages` where each page starts in `document`, else form feeds
    separate them. `concurrency`, `rpm` and `tpm` are those of `Client.aextract_many`,
    `options` those of `Client.extract`, for every chunk. Raises `ChunkError` when a chunk
    fails every attempt (unless `allow_partial`), `MergeError` when the chunks' records
    do not make one record of `target`.
    """
    chunks = _chunks(document, pages, context_chars, overlap_chars)
    check(target)
    asked = target if len(chunks) == 1 else chunk_target(target)
    texts = [(c.index, c.text) for c in chunks if len(chunks) == 1 or c.text.strip()]
    results: dict[int, BatchResult[Any]] = {}
    batch = client.aextract_many(asked, texts, concurrency=concurrency, rpm=rpm, tpm=tpm, **options)
    try:
        async for result in batch:
            results[result.id] = result
            if result.error is not None and not allow_partial:
                break  # the document has failed: the chunks still in flight are cancelled
    finally:
        close = getattr(batch, "aclose", None)  # an async generator: cancels what is in flight
        if close is not None:
            await close()
    return _finish(target, document, pages, chunks, results, allow_partial=allow_partial)


@overload
def extract_long(
    client: Client,
    target: type[T],
    document: str,
    *,
    pages: Sequence[int] | None = None,
    context_chars: int | None = None,
    overlap_chars: int | None = None,
    concurrency: int = DEFAULT_CONCURRENCY,
    rpm: float | None = None,
    tpm: float | None = None,
    allow_partial: bool = False,
    **options: Unpack[Options],
) -> LongExtraction[T]: ...
@overload
def extract_long(
    client: Client,
    target: Mapping[str, Any],
    document: str,
    *,
    pages: Sequence[int] | None = None,
    context_chars: int | None = None,
    overlap_chars: int | None = None,
    concurrency: int = DEFAULT_CONCURRENCY,
    rpm: float | None = None,
    tpm: float | None = None,
    allow_partial: bool = False,
    **options: Unpack[Options],
) -> LongExtraction[dict[str, Any]]: ...
def extract_long(
    client: Client,
    target: Any,
    document: str,
    *,
    pages: Sequence[int] | None = None,
    context_chars: int | None = None,
    overlap_chars: int | None = None,
    concurrency: int = DEFAULT_CONCURRENCY,
    rpm: float | None = None,
    tpm: float | None = None,
    allow_partial: bool = False,
    **options: Unpack[Options],
) -> LongExtraction[Any]:
    """`aextract_long` on a private event loop (in async code, await `aextract_long`)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        raise ConfigurationError(
            "extract_long cannot run inside a running event loop; "
            "use `await aextract_long(...)` there"
        )

    async def run() -> LongExtraction[Any]:
        try:
            result: LongExtraction[Any] = await aextract_long(
                client,
                target,
                document,
                pages=pages,
                context_chars=context_chars,
                overlap_chars=overlap_chars,
                concurrency=concurrency,
                rpm=rpm,
                tpm=tpm,
                allow_partial=allow_partial,
                **options,
            )
            return result
        finally:
            await client.aclose_loop()  # this loop's connections die with it

    return asyncio.run(run())


def _chunks(
    document: str,
    pages: Sequence[int] | None,
    context_chars: int | None,
    overlap_chars: int | None,
) -> list[Chunk]:
    if not isinstance(document, str):
        raise ConfigurationError(
            f"the document must be a str, not {type(document).__name__}; read it first"
        )
    budget = DEFAULT_CONTEXT_CHARS if context_chars is None else context_chars
    if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
        raise ConfigurationError(f"context_chars must be a whole number >= 1, not {budget!r}")
    overlap = budget // 10 if overlap_chars is None else overlap_chars
    chunks = split(document, budget_chars=budget, overlap_chars=overlap, pages=pages)
    if not chunks:  # an empty document: one empty chunk, refused as any empty document is
        chunks = [Chunk(0, document, 0, len(document), ())]
    return chunks


def _finish(
    target: Any,
    document: str,
    pages: Sequence[int] | None,
    chunks: list[Chunk],
    results: Mapping[int, BatchResult[Any]],
    *,
    allow_partial: bool,
) -> LongExtraction[Any]:
    """Each chunk's part, then the merged record (or the error that stops it)."""
    parts = []
    for chunk in chunks:
        result = results.get(chunk.index)
        if result is None:
            parts.append(Part(chunk, None))
        else:
            parts.append(Part(chunk, result.extraction, result.error, result.attempts))
    usage = Usage.total(part.usage for part in parts)
    failed = [part for part in parts if part.error is not None]
    given = [part for part in parts if part.extraction is not None]
    if failed and (not allow_partial or not given):
        first = failed[0]
        assert first.error is not None
        raise ChunkError(first.chunk, len(chunks), first.error, usage=usage) from first.error
    merged = merge(target, [(p.chunk, p.extraction.value) for p in given if p.extraction])
    # a document in one chunk keeps the record as extracted (the merge only traced it)
    value = given[0].extraction.value if len(chunks) == 1 and given[0].extraction else merged.value
    model = next((r.model for r in results.values() if r.model), None)
    missing = _missing_pages(document, pages, [p.chunk for p in parts if p.ok]) if failed else ()
    return LongExtraction(value, model, tuple(parts), merged.conflicts, merged.provenance, missing)


def _missing_pages(
    document: str, pages: Sequence[int] | None, covered: list[Chunk]
) -> tuple[int, ...]:
    """The non-empty pages with a character that no chunk in `covered` holds."""
    starts = page_starts(document, pages)
    spans = sorted((c.start, c.end) for c in covered)
    missing = []
    for index, start in enumerate(starts):
        end = starts[index + 1] if index + 1 < len(starts) else len(document)
        reach = start
        for span_start, span_end in spans:
            if span_start <= reach < span_end:
                reach = span_end
        if start < end and reach < end:
            missing.append(index + 1)
    return tuple(missing)
