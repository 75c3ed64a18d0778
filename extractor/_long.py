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
import dataclasses
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final, TypeVar, overload

from extractor._context import budget_chars
from extractor._errors import ConfigurationError
from extractor._parts import LongExtraction
from extractor.batch._limiter import Limiter
from extractor.batch._runner import run_chunks

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from extractor._client import Client
    from extractor._options import Options
    from extractor.documents import Source as DocumentSource

__all__ = ["DEFAULT_CONCURRENCY", "aextract_long", "extract_long"]

T = TypeVar("T")

#: Chunks in flight at once.
DEFAULT_CONCURRENCY: Final = 4


@overload
async def aextract_long(
    client: Client,
    target: type[T],
    document: DocumentSource,
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
    document: DocumentSource,
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
    document: DocumentSource,
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

    `context_chars` is how much of the document one request carries (default: what the
    model's context window leaves room for, `DEFAULT_CONTEXT_CHARS` when it is unknown);
    `overlap_chars` how much consecutive chunks share (default: a tenth of it); `pages`
    where each page starts in `document` (default: a read file's own pages, else form
    feeds separate them). `document` is text, a path, bytes or a `documents.Document`.
    `concurrency`, `rpm` and `tpm` are those of `Client.aextract_many`, `options` those
    of `Client.extract`, for every chunk. Raises `ChunkError` when a chunk fails every
    attempt (unless `allow_partial`), `MergeError` when the chunks' records do not make
    one record of `target`.
    """
    plan = client.prepare(target, document, **options)  # a set-up mistake fails here
    if pages is not None:
        plan = dataclasses.replace(plan, pages=tuple(pages))
    if isinstance(context_chars, bool) or not isinstance(context_chars, (int, type(None))):
        raise ConfigurationError(
            f"context_chars must be a whole number >= 1, not {context_chars!r}"
        )
    budget = context_chars if context_chars is not None else budget_chars(plan)
    return await run_chunks(
        client,
        target,
        plan,
        budget,
        limiter=Limiter(concurrency, rpm=rpm, tpm=tpm),
        concurrency=concurrency,
        options=options,
        overlap_chars=overlap_chars,
        allow_partial=allow_partial,
    )


@overload
def extract_long(
    client: Client,
    target: type[T],
    document: DocumentSource,
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
    document: DocumentSource,
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
    document: DocumentSource,
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
