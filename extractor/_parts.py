"""The pieces of a long document: what each chunk is asked for, what became of it, and
the merged record with where its values came from.

Pure data and functions: `extractor._long` (the `extract_long` calls) and the batch
runner (a document of a batch that does not fit) drive the chunks through the batch
engine and hand the results to `finish`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, Final, TypeVar

import pydantic

from extractor._chunks import Chunk, describe_pages, page_starts, split
from extractor._errors import ConfigurationError, ExtractorError
from extractor._merge import Conflict, Source, merge
from extractor._result import Attempt, Extraction, Usage
from extractor._schema import WorkedExample, compile_schema, worked_examples

if TYPE_CHECKING:
    from extractor.batch._runner import BatchResult

__all__ = [
    "DEFAULT_CONTEXT_CHARS",
    "ChunkError",
    "LongExtraction",
    "Part",
    "chunk_target",
    "chunks_of",
    "collect",
    "finish",
]

T = TypeVar("T")

logger = logging.getLogger("extractor")

#: Characters of document one request carries when the caller does not say and the
#: model's context is unknown: about 2,000 tokens of English, which leaves room for the
#: prompt, schema and answer in the 4,096 tokens of the smallest context the library runs
#: (the embedded model's).
DEFAULT_CONTEXT_CHARS: Final = 8_000
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
class LongExtraction(Extraction[T]):
    """A long document's merged record, where its values came from, and each chunk's story.

    An `Extraction` like any other (`value`, `model`, `mode`, `attempts` of every chunk in
    document order, `usage` summed over them), with what the merge adds.
    """

    #: One per chunk, in document order.
    parts: tuple[Part, ...] = ()
    #: Field path → the values chunks disagreed on (the kept one included).
    conflicts: Mapping[str, Conflict] = field(default_factory=dict)
    #: Field path or list item → the chunk and pages its value came from.
    provenance: Mapping[str, Source] = field(default_factory=dict)
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
    def spans(self) -> Mapping[str, list[int]]:
        """Spans in the whole document of the grounded values kept from each chunk."""
        found: dict[str, list[int]] = {}
        for part in self.parts:
            if part.extraction is None:
                continue
            for path, (start, end) in part.extraction.spans.items():
                source = self.provenance.get(path)
                if source is not None and source.chunk == part.chunk.index:
                    found[path] = [start + part.chunk.start, end + part.chunk.start]
        return found


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


async def collect(
    batch: AsyncIterator[BatchResult[Any]], *, allow_partial: bool
) -> dict[int, BatchResult[Any]]:
    """The chunks' results by index; at the first failure, unless `allow_partial`, the
    chunks still in flight are cancelled (the document has failed)."""
    results: dict[int, BatchResult[Any]] = {}
    try:
        async for result in batch:
            results[result.id] = result
            if result.error is not None and not allow_partial:
                break
    finally:
        close = getattr(batch, "aclose", None)  # an async generator: cancels what is in flight
        if close is not None:
            await close()
    return results


def chunks_of(
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


def finish(
    target: Any,
    document: str,
    pages: Sequence[int] | None,
    chunks: list[Chunk],
    results: Mapping[int, BatchResult[Any]],
    *,
    allow_partial: bool,
    model: str,
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
    missing = _missing_pages(document, pages, [p.chunk for p in parts if p.ok]) if failed else ()
    mode = next(p.extraction.mode for p in given if p.extraction)
    return LongExtraction(
        value,
        model,
        mode,
        tuple(a for part in parts for a in part.attempts),
        parts=tuple(parts),
        conflicts=merged.conflicts,
        provenance=merged.provenance,
        missing_pages=missing,
    )


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
