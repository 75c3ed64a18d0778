"""Streaming extraction: partial records while the answer arrives, then the validated one.

`ExtractionStream` / `AsyncExtractionStream` drive the one extraction loop
(`extractor._conversation.run` / `arun`, the drivers `extract` uses, so modes, fallbacks
and reasks behave the same; a reask is a fresh stream) and yield what changed: previews
of the record, or for a list target each item once it is complete and valid. The wire
side (server-sent events, chunks) is `extractor._sse`'s.

Transport retries cover opening the stream (up to the response headers); a failure once
the stream is flowing is raised, never retried behind the caller's back.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import AsyncGenerator, AsyncIterator, Generator, Iterator
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from extractor._conversation import arun, run
from extractor._errors import InvalidAnswer
from extractor._partial import MISSING, PartialReader, Preview
from extractor._result import Extraction

if TYPE_CHECKING:
    from extractor._conversation import Plan
    from extractor._schema import CompiledSchema
    from extractor.backend import Backend
    from extractor.events import Emitter

__all__ = ["AsyncExtractionStream", "ExtractionStream", "shown_for"]

T = TypeVar("T")


# --- what is shown while an answer streams ----------------------------------------------


class _Previews:
    """Partial values of the target, each one different from the one before."""

    def __init__(self, target: Any, schema: CompiledSchema[Any]) -> None:
        self._target = target
        self._wrap_key = schema.wrap_key
        self.restart()

    def restart(self) -> None:
        # a reask is a fresh stream: its previews start over
        self._reader = PartialReader()
        self._preview = Preview(self._target, self._wrap_key)
        self._last: Any = MISSING

    def update(self, text: str) -> list[Any]:
        start = text.find("{")  # the wire root is an object; prose or a fence may precede it
        if start < 0:
            return []
        shown = self._preview(self._reader.read(text, start=start).value)
        if shown is MISSING or (type(shown) is type(self._last) and shown == self._last):
            return []
        self._last = shown
        return [shown]

    def final(self, extraction: Extraction[Any]) -> list[Any]:
        return [extraction.value]


class _Items:
    """Each item of a list target, validated on its own, as soon as its text is complete.

    After a reask, items equal to ones already yielded are not yielded again; the rest
    of the final list is yielded once the whole list has validated.
    """

    def __init__(self, item: CompiledSchema[Any], wrap_key: str) -> None:
        self._item = item
        self._key = wrap_key
        self._seen = 0
        self._earlier: Counter[str] = Counter()  # yielded by earlier attempts, not matched yet
        self._yielded: Counter[str] = Counter()
        self._reader = PartialReader()

    def _identity(self, value: Any) -> str:
        return json.dumps(self._item.dump(value), sort_keys=True, default=str)

    def restart(self) -> None:
        self._seen = 0
        self._earlier = Counter(self._yielded)
        self._reader = PartialReader()

    def update(self, text: str) -> list[Any]:
        start = text.find("{")
        if start < 0:
            return []
        partial = self._reader.read(text, start=start)
        items = partial.value.get(self._key) if isinstance(partial.value, dict) else None
        out = []
        while isinstance(items, list) and self._seen < len(items):
            if not partial.is_complete((self._key, self._seen)):
                break
            raw = items[self._seen]
            self._seen += 1
            try:
                value = self._item.load(raw)
            except InvalidAnswer:
                continue  # the whole list will fail validation and be re-asked
            key = self._identity(value)
            if self._earlier[key] > 0:
                self._earlier[key] -= 1
                continue
            self._yielded[key] += 1
            out.append(value)
        return out

    def final(self, extraction: Extraction[Any]) -> list[Any]:
        shown = Counter(self._yielded)
        out = []
        for value in extraction.value:
            key = self._identity(value)
            if shown[key] > 0:
                shown[key] -= 1
            else:
                out.append(value)
        return out


class _Run:
    """What the sync and async streams share: the plan, what they show, the outcome."""

    def __init__(
        self, plan: Plan, backend: Backend, emit: Emitter, shown: _Previews | _Items
    ) -> None:
        self._plan = plan
        self._backend = backend
        self._emit = emit
        self._shown = shown
        self._started = False
        #: The extraction (record, usage, attempts), once the stream has ended with one.
        self.result: Extraction[Any] | None = None

    def _start(self) -> None:
        if self._started:
            raise RuntimeError("an extraction stream can be iterated only once")
        self._started = True


class ExtractionStream(_Run, Generic[T]):
    """Iterate for partial values as the answer streams in; the last one is the record.

    Partial values are not validated (see `extractor._partial.Preview`); the last value
    yielded is the validated record, and `result` then holds the `Extraction` with its
    usage and attempts. An invalid final answer is re-asked as a fresh stream, so
    partial values may start over. Iterate once; to stop early, `close()` it (or use it
    as a context manager) so its connection goes back to the pool at once.
    """

    _iterator: Generator[Any, None, None] | None = None

    def __iter__(self) -> Iterator[T]:
        self._start()
        self._iterator = self._run()
        return self._iterator

    def close(self) -> None:
        """Stop early: close the response under the stream (iterating to the end does it too)."""
        if self._iterator is not None:
            self._iterator.close()

    def __enter__(self) -> ExtractionStream[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self) -> Generator[Any, None, None]:
        driver = run(self._plan, self._backend, self._emit, stream=True)
        try:
            while True:
                text = next(driver)
                if not text:  # a new answer (a reask starts over)
                    self._shown.restart()
                yield from self._shown.update(text)
        except StopIteration as done:
            self.result = done.value
            yield from self._shown.final(done.value)
        finally:
            driver.close()


class AsyncExtractionStream(_Run, Generic[T]):
    """The async form of `ExtractionStream`: `async for` over it."""

    _iterator: AsyncGenerator[Any, None] | None = None

    def __aiter__(self) -> AsyncIterator[T]:
        self._start()
        self._iterator = self._run()
        return self._iterator

    async def aclose(self) -> None:
        """Stop early: close the response under the stream."""
        if self._iterator is not None:
            await self._iterator.aclose()

    async def __aenter__(self) -> AsyncExtractionStream[T]:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _run(self) -> AsyncGenerator[Any, None]:
        driver = arun(self._plan, self._backend, self._emit, stream=True)
        try:
            async for item in driver:
                if isinstance(item, Extraction):
                    self.result = item
                    for value in self._shown.final(item):
                        yield value
                    return
                if not item:
                    self._shown.restart()
                for value in self._shown.update(item):
                    yield value
        finally:
            await driver.aclose()


def shown_for(target: Any, schema: CompiledSchema[Any], *, items: bool) -> _Previews | _Items:
    """What a stream of `target` yields: previews of the record, or the list's items."""
    if not items:
        return _Previews(target, schema)
    import typing

    from extractor._errors import ConfigurationError
    from extractor._schema import compile_schema

    if typing.get_origin(target) is list and typing.get_args(target) and schema.wrap_key:
        return _Items(compile_schema(typing.get_args(target)[0]), schema.wrap_key)
    if isinstance(target, dict) and target.get("type") == "array" and schema.wrap_key:
        item = target.get("items", {})
        defs = target.get("$defs")
        return _Items(compile_schema({**item, "$defs": defs} if defs else item), schema.wrap_key)
    raise ConfigurationError(
        f"streaming items needs a list target such as list[Model], not {target!r}"
    )
