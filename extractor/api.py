"""The short forms: `extract` / `aextract` functions and the `@extractable` decorator.

Both go through one process-wide `Client`, so connections are pooled across calls
whatever model or provider each call names.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar, overload

from extractor.client import Client
from extractor.options import check_call
from extractor.result import Extraction

if TYPE_CHECKING:
    from extractor.stream import AsyncExtractionStream, ExtractionStream

__all__ = [
    "aextract",
    "aextract_stream",
    "default_client",
    "extract",
    "extract_stream",
    "extractable",
]

T = TypeVar("T")
C = TypeVar("C", bound=type)

_default: Client | None = None
_default_lock = threading.Lock()


def default_client() -> Client:
    """The process-wide client used by `extract`, `aextract` and decorated classes."""
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                _default = Client()
    return _default


@overload
def extract(target: type[T], document: str, **options: Any) -> T: ...
@overload
def extract(target: Mapping[str, Any], document: str, **options: Any) -> dict[str, Any]: ...
def extract(target: Any, document: str, **options: Any) -> Any:
    """Extract one record of `target` from `document` (see `Client.extract` for options)."""
    return default_client().extract(target, document, **options)


@overload
async def aextract(target: type[T], document: str, **options: Any) -> T: ...
@overload
async def aextract(target: Mapping[str, Any], document: str, **options: Any) -> dict[str, Any]: ...
async def aextract(target: Any, document: str, **options: Any) -> Any:
    """The async form of `extract`."""
    return await default_client().aextract(target, document, **options)


def extract_stream(target: Any, document: str, **options: Any) -> ExtractionStream[Any]:
    """Partial records while the answer streams in, then the record (see `Client.stream`)."""
    return default_client().stream(target, document, **options)


def aextract_stream(target: Any, document: str, **options: Any) -> AsyncExtractionStream[Any]:
    """The async form of `extract_stream`: `async for partial in aextract_stream(...)`."""
    return default_client().astream(target, document, **options)


@overload
def extractable(cls: C, /) -> C: ...
@overload
def extractable(cls: None = None, /, **options: Any) -> Callable[[C], C]: ...
def extractable(cls: C | None = None, /, **options: Any) -> C | Callable[[C], C]:
    """Give a model class `extract`, `aextract`, `extract_result`, `aextract_result`,
    `extract_many` and `aextract_many`.

    It also gains `stream` / `astream` (partial instances, then the record) and
    `stream_items` / `astream_items` (a `list` of the class, each item once complete).

    Works bare (`@extractable`) or with defaults (`@extractable(model=..., max_retries=2,
    temperature=0)`); every default can be overridden per call. Options are checked here,
    so a bad one fails at import time, not at the first call.
    """
    check_call(options)

    def decorate(target: C) -> C:
        defaults = dict(options)

        def merged(overrides: dict[str, Any]) -> dict[str, Any]:
            return {**defaults, **overrides}

        def extract_(klass: type[T], document: str, **overrides: Any) -> T:
            return default_client().extract(klass, document, **merged(overrides))

        def extract_result(klass: type[T], document: str, **overrides: Any) -> Extraction[T]:
            return default_client().extract_result(klass, document, **merged(overrides))

        async def aextract_(klass: type[T], document: str, **overrides: Any) -> T:
            return await default_client().aextract(klass, document, **merged(overrides))

        async def aextract_result(klass: type[T], document: str, **overrides: Any) -> Extraction[T]:
            return await default_client().aextract_result(klass, document, **merged(overrides))

        def stream(klass: type[T], document: str, **overrides: Any) -> ExtractionStream[T]:
            return default_client().stream(klass, document, **merged(overrides))

        def astream(klass: type[T], document: str, **overrides: Any) -> AsyncExtractionStream[T]:
            return default_client().astream(klass, document, **merged(overrides))

        def stream_items(klass: type[T], document: str, **overrides: Any) -> ExtractionStream[T]:
            return default_client().stream_items(list[klass], document, **merged(overrides))  # type: ignore[valid-type]

        def astream_items(
            klass: type[T], document: str, **overrides: Any
        ) -> AsyncExtractionStream[T]:
            return default_client().astream_items(list[klass], document, **merged(overrides))  # type: ignore[valid-type]

        def extract_many(klass: type[T], documents: Any, **overrides: Any) -> Any:
            return default_client().extract_many(klass, documents, **merged(overrides))

        def aextract_many(klass: type[T], documents: Any, **overrides: Any) -> Any:
            return default_client().aextract_many(klass, documents, **merged(overrides))

        methods: tuple[tuple[str, Callable[..., Any]], ...] = (
            ("extract", extract_),
            ("extract_result", extract_result),
            ("aextract", aextract_),
            ("aextract_result", aextract_result),
            ("stream", stream),
            ("astream", astream),
            ("stream_items", stream_items),
            ("astream_items", astream_items),
            ("extract_many", extract_many),
            ("aextract_many", aextract_many),
        )
        for name, function in methods:
            function.__name__ = name
            function.__qualname__ = f"{target.__qualname__}.{name}"
            function.__doc__ = (
                f"{name.replace('_', ' ')} {target.__name__} records from documents, "
                "concurrently (see `Client.extract_many`; options override the decorator's)."
                if name.endswith("_many")
                else f"{name.replace('_', ' ')} a {target.__name__} from a document "
                "(options override the decorator's)."
            )
            setattr(target, name, classmethod(function))
        target.__extractor_options__ = defaults  # type: ignore[attr-defined]  # read by tools
        return target

    return decorate(cls) if cls is not None else decorate
