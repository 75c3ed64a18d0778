"""The short forms: `extract` / `aextract`, and the `Extractable` base with `@extractable`.

All go through one process-wide `Client`, so connections are pooled across calls
whatever model or provider each call names.
"""

from __future__ import annotations

import threading
import types
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar, overload

from extractor._client import Client
from extractor._options import check_call

if TYPE_CHECKING:
    from typing_extensions import Self, Unpack

    from extractor._options import Options
    from extractor._result import Extraction
    from extractor._stream import AsyncExtractionStream, ExtractionStream
    from extractor.batch._runner import BatchResult
    from extractor.documents import Source as DocumentSource

__all__ = [
    "Extractable",
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
def extract(target: type[T], document: DocumentSource, **options: Unpack[Options]) -> T: ...
@overload
def extract(
    target: Mapping[str, Any], document: DocumentSource, **options: Unpack[Options]
) -> dict[str, Any]: ...
def extract(target: Any, document: DocumentSource, **options: Unpack[Options]) -> Any:
    """Extract one record of `target` from `document` (see `Client.extract` for options)."""
    return default_client().extract(target, document, **options)


@overload
async def aextract(target: type[T], document: DocumentSource, **options: Unpack[Options]) -> T: ...
@overload
async def aextract(
    target: Mapping[str, Any], document: DocumentSource, **options: Unpack[Options]
) -> dict[str, Any]: ...
async def aextract(target: Any, document: DocumentSource, **options: Unpack[Options]) -> Any:
    """The async form of `extract`."""
    return await default_client().aextract(target, document, **options)


@overload
def extract_stream(
    target: type[T], document: DocumentSource, **options: Unpack[Options]
) -> ExtractionStream[T]: ...
@overload
def extract_stream(
    target: Mapping[str, Any], document: DocumentSource, **options: Unpack[Options]
) -> ExtractionStream[dict[str, Any]]: ...
def extract_stream(
    target: Any, document: DocumentSource, **options: Unpack[Options]
) -> ExtractionStream[Any]:
    """Partial records while the answer streams in, then the record (see `Client.stream`)."""
    return default_client().stream(target, document, **options)


@overload
def aextract_stream(
    target: type[T], document: DocumentSource, **options: Unpack[Options]
) -> AsyncExtractionStream[T]: ...
@overload
def aextract_stream(
    target: Mapping[str, Any], document: DocumentSource, **options: Unpack[Options]
) -> AsyncExtractionStream[dict[str, Any]]: ...
def aextract_stream(
    target: Any, document: DocumentSource, **options: Unpack[Options]
) -> AsyncExtractionStream[Any]:
    """The async form of `extract_stream`: `async for partial in aextract_stream(...)`."""
    return default_client().astream(target, document, **options)


class Extractable:
    """A base that gives a model class `extract`, `aextract`, `extract_many`, ... as
    classmethods that type checkers see: `Invoice.extract(text)` is an `Invoice`.

    Inherit it beside the model's base, in either order (`class Invoice(Extractable,
    BaseModel)`); `@extractable(...)` on the class sets the defaults its calls start from,
    and options given per call override them. The methods are those `@extractable` adds
    to a class that does not inherit this one.
    """

    __slots__ = ()

    #: The defaults `@extractable(...)` gave the class (also read by tools).
    __extractor_options__: ClassVar[Mapping[str, Any]] = types.MappingProxyType({})

    @classmethod
    def extract(cls, document: DocumentSource, **options: Unpack[Options]) -> Self:
        """Extract one record of the class from `document` (see `Client.extract`)."""
        return default_client().extract(cls, document, **_over_defaults(cls, options))

    @classmethod
    def extract_result(
        cls, document: DocumentSource, **options: Unpack[Options]
    ) -> Extraction[Self]:
        """Like `extract`, with usage, attempts, mode and response id (`Extraction`)."""
        return default_client().extract_result(cls, document, **_over_defaults(cls, options))

    @classmethod
    async def aextract(cls, document: DocumentSource, **options: Unpack[Options]) -> Self:
        """The async form of `extract`."""
        return await default_client().aextract(cls, document, **_over_defaults(cls, options))

    @classmethod
    async def aextract_result(
        cls, document: DocumentSource, **options: Unpack[Options]
    ) -> Extraction[Self]:
        """The async form of `extract_result`."""
        merged = _over_defaults(cls, options)
        return await default_client().aextract_result(cls, document, **merged)

    @classmethod
    def stream(cls, document: DocumentSource, **options: Unpack[Options]) -> ExtractionStream[Self]:
        """Partial instances while the answer streams in, then the record (`Client.stream`)."""
        return default_client().stream(cls, document, **_over_defaults(cls, options))

    @classmethod
    def astream(
        cls, document: DocumentSource, **options: Unpack[Options]
    ) -> AsyncExtractionStream[Self]:
        """The async form of `stream`."""
        return default_client().astream(cls, document, **_over_defaults(cls, options))

    @classmethod
    def stream_items(
        cls, document: DocumentSource, **options: Unpack[Options]
    ) -> ExtractionStream[Self]:
        """A list of the class: each item once it is complete (`Client.stream_items`)."""
        items = types.GenericAlias(list, (cls,))  # list[cls], which mypy cannot spell
        return default_client().stream_items(items, document, **_over_defaults(cls, options))

    @classmethod
    def astream_items(
        cls, document: DocumentSource, **options: Unpack[Options]
    ) -> AsyncExtractionStream[Self]:
        """The async form of `stream_items`."""
        items = types.GenericAlias(list, (cls,))
        return default_client().astream_items(items, document, **_over_defaults(cls, options))

    @classmethod
    def extract_many(
        cls,
        documents: Iterable[Any],
        *,
        concurrency: int = 16,
        rpm: float | None = None,
        tpm: float | None = None,
        **options: Unpack[Options],
    ) -> Iterator[BatchResult[Self]]:
        """A record of the class from each document, concurrently (`Client.extract_many`)."""
        return default_client().extract_many(
            cls,
            documents,
            concurrency=concurrency,
            rpm=rpm,
            tpm=tpm,
            **_over_defaults(cls, options),
        )

    @classmethod
    def aextract_many(
        cls,
        documents: Iterable[Any],
        *,
        concurrency: int = 16,
        rpm: float | None = None,
        tpm: float | None = None,
        **options: Unpack[Options],
    ) -> AsyncIterator[BatchResult[Self]]:
        """The async form of `extract_many`: `async for result in Invoice.aextract_many(...)`."""
        return default_client().aextract_many(
            cls,
            documents,
            concurrency=concurrency,
            rpm=rpm,
            tpm=tpm,
            **_over_defaults(cls, options),
        )


def _over_defaults(target: type, options: Mapping[str, Any]) -> dict[str, Any]:
    """A call's options over its class's `@extractable` defaults."""
    defaults: Mapping[str, Any] = getattr(target, "__extractor_options__", {})
    return {**defaults, **options}


#: What `@extractable` copies onto a class that does not inherit `Extractable`.
_METHODS = tuple(
    name for name, value in vars(Extractable).items() if isinstance(value, classmethod)
)


def _method_for(target: type, name: str) -> classmethod[Any, Any, Any]:
    """`Extractable`'s method `name`, copied onto `target` under `target`'s name.

    A copy of the function, not a wrapper around it: the same code (so an async method
    is still a coroutine function to `inspect`) with the class's name and docstring.
    """
    function = vars(Extractable)[name].__func__
    copy = types.FunctionType(function.__code__, function.__globals__, name, function.__defaults__)
    copy.__kwdefaults__ = function.__kwdefaults__
    copy.__annotations__ = function.__annotations__
    copy.__qualname__ = f"{target.__qualname__}.{name}"
    copy.__doc__ = (
        f"{name.replace('_', ' ')} {target.__name__} records from documents, "
        "concurrently (see `Client.extract_many`; options override the decorator's)."
        if name.endswith("_many")
        else f"{name.replace('_', ' ')} a {target.__name__} from a document "
        "(options override the decorator's)."
    )
    return classmethod(copy)


@overload
def extractable(cls: C, /) -> C: ...
@overload
def extractable(cls: None = None, /, **options: Unpack[Options]) -> Callable[[C], C]: ...
def extractable(cls: C | None = None, /, **options: Unpack[Options]) -> C | Callable[[C], C]:
    """Give a model class `extract`, `aextract`, `extract_result`, `aextract_result`,
    `extract_many` and `aextract_many`, with these options as their defaults.

    It also gains `stream` / `astream` (partial instances, then the record) and
    `stream_items` / `astream_items` (a `list` of the class, each item once complete).

    Works bare (`@extractable`) or with defaults (`@extractable(model=..., max_retries=2,
    temperature=0)`); every default can be overridden per call. Options are checked here,
    so a bad one fails at import time, not at the first call.

    Type checkers do not see methods a decorator adds, so to have `Invoice.extract(text)`
    typed as an `Invoice`, inherit `Extractable` too: `class Invoice(Extractable,
    BaseModel)`. The class then keeps its own (inherited) methods and the decorator only
    sets their defaults.
    """
    check_call(options)

    def decorate(target: C) -> C:
        if not (isinstance(target, type) and issubclass(target, Extractable)):
            for name in _METHODS:
                setattr(target, name, _method_for(target, name))
        # any class may be decorated; `Extractable` declares the attribute, others gain it
        target.__extractor_options__ = dict(options)  # type: ignore[attr-defined]
        return target

    return decorate(cls) if cls is not None else decorate
