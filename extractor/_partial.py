"""Reading a record while it is being written: an incomplete JSON prefix, then a preview.

`read_partial` turns the text a model has produced so far into the JSON data it already
holds. Nothing is invented: a key appears only once its value has started, an
unfinished string is shown as far as it goes (it will only grow), an unfinished number
or literal is left out (`12` may become `125`, `t` may become anything), and containers
hold only what has arrived. It also reports which values are complete, so a list's
items can be handed out one at a time. `PartialReader` does the same for a text that
keeps growing, reading only what is new each time.

`Preview` turns that data into an instance of the target without requiring the fields
that have not arrived: see its docstring for what a partial instance looks like.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import json
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import pydantic

__all__ = ["MISSING", "PartialJSON", "PartialReader", "Preview", "read_partial"]

Path = tuple[str | int, ...]


class _Missing:
    """Marks a value that has not arrived yet (distinct from JSON null)."""

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final = _Missing()

_WS: Final = frozenset(" \t\r\n")
_NUMBER: Final = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_STRING_BODY: Final = re.compile(r'(?:[^"\\]|\\.)*', re.DOTALL)
_NUMBER_ENDS: Final = frozenset(" \t\r\n,}]")
_LITERALS: Final = (("true", True), ("false", False), ("null", None))
_decoder = json.JSONDecoder(strict=False)


@dataclass(frozen=True)
class PartialJSON:
    """What a prefix of a JSON document already says.

    `value` is `MISSING` when no value has started. Text is read in order, so the values
    still being written form one chain from the root down; `open` is the path (keys and
    indices) of the innermost of them, or None when the whole value has been read.
    """

    value: Any
    open: Path | None = ()

    @property
    def done(self) -> bool:
        """Whether the root value has been read to its end."""
        return self.open is None and self.value is not MISSING

    def is_complete(self, path: Path) -> bool:
        """Whether the value shown at `path` has been read to its end (it will not change)."""
        if self.value is MISSING:
            return False
        return self.open is None or self.open[: len(path)] != path


class _Stop(Exception):
    """The text ended (or stopped being JSON) inside a value."""


class _Reader:
    """One reading of the text; `cache` and `resume` carry over from the last reading."""

    def __init__(
        self,
        text: str,
        cache: dict[int, tuple[Any, int]],
        resume: dict[int, tuple[Any, int, int]],
    ) -> None:
        self.text = text
        self.pos = 0
        self.open: Path | None = None
        #: Values read to their end, by start offset: (value, end offset).
        self.cache = cache
        #: Containers still open, by start offset: (container, members read, where the next
        #: member starts), so the next reading goes on from there.
        self.resume = resume

    def skip(self) -> None:
        text, pos = self.text, self.pos
        while pos < len(text) and text[pos] in _WS:
            pos += 1
        self.pos = pos
        if pos >= len(text):
            raise _Stop

    def value(self, path: Path, holder: list[Any]) -> None:
        """Read one value; put what is shown so far in `holder[0]` (even if it then stops)."""
        try:
            self._value(path, holder)
        except _Stop:
            if self.open is None:  # the innermost value still open is the first to know
                self.open = path
            raise

    def _value(self, path: Path, holder: list[Any]) -> None:
        self.skip()
        start = self.pos
        known = self.cache.get(start)
        if known is not None:  # complete last time, so the same now: the text only grows
            holder[0], self.pos = known
            return
        char = self.text[start]
        if char == "{":
            self.obj(path, holder, start)
        elif char == "[":
            self.array(path, holder, start)
        elif char == '"':
            try:
                holder[0] = self.string()
            except _PartialString as cut:
                holder[0] = cut.shown  # an unfinished string value is shown as it grows
                raise _Stop from None
        else:
            holder[0] = self.scalar()
        self.cache[start] = (holder[0], self.pos)
        self.resume.pop(start, None)

    def obj(self, path: Path, holder: list[Any], start: int) -> None:
        saved = self.resume.get(start)
        if saved is not None:
            before, count, self.pos = saved
            out: dict[str, Any] = dict(itertools.islice(before.items(), count))
        else:
            out = {}
            holder[0] = out
            self.pos = start + 1
            self.skip()
            if self.text[self.pos] == "}":
                self.pos += 1
                return
        holder[0] = out
        resumable = True
        while True:
            self.skip()
            if self.text[self.pos] != '"':
                raise _Stop
            key = self.string()  # an unfinished key stops here: nothing is shown for it
            self.skip()
            if self.text[self.pos] != ":":
                raise _Stop
            self.pos += 1
            if key in out:  # a repeated key overwrites: members can no longer be counted
                resumable = False
                self.resume.pop(start, None)
            slot: list[Any] = [MISSING]
            try:
                self.value((*path, key), slot)
            finally:
                if slot[0] is not MISSING:
                    out[key] = slot[0]
            self.skip()
            char = self.text[self.pos]
            self.pos += 1
            if char == "}":
                return
            if char != ",":
                raise _Stop
            if resumable:
                self.resume[start] = (out, len(out), self.pos)

    def array(self, path: Path, holder: list[Any], start: int) -> None:
        saved = self.resume.get(start)
        if saved is not None:
            before, count, self.pos = saved
            out: list[Any] = before[:count]
        else:
            out = []
            holder[0] = out
            self.pos = start + 1
            self.skip()
            if self.text[self.pos] == "]":
                self.pos += 1
                return
        holder[0] = out
        while True:
            slot: list[Any] = [MISSING]
            try:
                self.value((*path, len(out)), slot)
            finally:
                if slot[0] is not MISSING:
                    out.append(slot[0])
            self.skip()
            char = self.text[self.pos]
            self.pos += 1
            if char == "]":
                return
            if char != ",":
                raise _Stop
            self.resume[start] = (out, len(out), self.pos)

    def string(self) -> str:
        """A whole string, or raise `_PartialString` with what the text holds of it."""
        start = self.pos
        match = _STRING_BODY.match(self.text, start + 1)
        end = match.end() if match else start + 1
        if end < len(self.text) and self.text[end] == '"':
            self.pos = end + 1
            return str(_decoder.decode(self.text[start : end + 1]))
        self.pos = len(self.text)
        raise _PartialString(_grown(self.text[start + 1 : end]))

    def scalar(self) -> Any:
        text, pos = self.text, self.pos
        match = _NUMBER.match(text, pos)
        if match:
            end = match.end()
            if end >= len(text) or text[end] not in _NUMBER_ENDS:
                raise _Stop  # the number may go on (or is not JSON): not shown
            self.pos = end
            return _decoder.decode(match.group())
        for word, value in _LITERALS:
            if text.startswith(word, pos):
                self.pos = pos + len(word)
                return value
        raise _Stop


class _PartialString(_Stop):
    """The text ended inside a string; `shown` is its content so far."""

    def __init__(self, shown: str) -> None:
        super().__init__()
        self.shown = shown


def _escape_starts(text: str, index: int) -> bool:
    """Whether the backslash at `index` begins an escape (an even run of backslashes before it)."""
    run = 0
    while index - run - 1 >= 0 and text[index - run - 1] == "\\":
        run += 1
    return run % 2 == 0


def _grown(raw: str) -> str:
    """Decode an unfinished string body, leaving out a trailing escape that is not whole.

    A `\\uXXXX` high surrogate at the end waits for its pair, which would change it.
    """
    tail = re.search(r"\\u[0-9a-fA-F]{0,3}$", raw)
    if tail and _escape_starts(raw, tail.start()):
        raw = raw[: tail.start()]
    high = re.search(r"\\u[dD][89abAB][0-9a-fA-F]{2}$", raw)
    if high and _escape_starts(raw, high.start()):
        raw = raw[: high.start()]
    try:
        return str(_decoder.decode(f'"{raw}"'))
    except ValueError:
        return ""


def read_partial(text: str, *, start: int = 0) -> PartialJSON:
    """Read the JSON value that begins at `start` in `text` as far as the text goes."""
    return PartialReader().read(text, start=start)


class PartialReader:
    """`read_partial` for a text that grows: what was complete last time is not read again.

    Each complete value is remembered by where it starts, so reading after every delta
    costs about the unfinished part rather than the whole answer. Values it returns are
    shared between readings and must not be mutated.
    """

    def __init__(self) -> None:
        self._text = ""
        self._cache: dict[int, tuple[Any, int]] = {}
        self._resume: dict[int, tuple[Any, int, int]] = {}

    def read(self, text: str, *, start: int = 0) -> PartialJSON:
        """Read the value at `start`; a text that does not extend the last one starts afresh."""
        if not text.startswith(self._text):
            self._cache, self._resume = {}, {}
        self._text = text
        reader = _Reader(text, self._cache, self._resume)
        reader.pos = start
        root: list[Any] = [MISSING]
        with contextlib.suppress(_Stop):
            reader.value((), root)
        return PartialJSON(root[0], reader.open)


class Preview:
    """Turns partial JSON data into a partial value of the target, without inventing fields.

    For a Pydantic model the preview is `Model.model_construct(...)`: no validation of
    the whole (required fields may be absent), fields that have not arrived read `None`,
    and `model_fields_set` names the fields that have. Each arrived field is checked on
    its own against its annotation, so a preview never holds a value of the wrong type: a
    nested model becomes a (partial) instance, a date appears once its text is a date, a
    string constrained by a pattern appears once it matches. A generated "all fields
    optional" model would do the same work but change the class users see, and costs a
    model build per target; `model_construct` keeps `isinstance(preview, Model)` true.

    A `list[Model]` previews as the list so far; a JSON Schema dict target as the data.

    Fed the values of one `PartialReader`, it reuses the preview of every container the
    reader reused (the same object is the same complete value), so a long list is not
    previewed again item by item after each delta.
    """

    def __init__(self, target: Any, wrap_key: str | None) -> None:
        self.target = target
        self.wrap_key = wrap_key
        self._memo: dict[tuple[int, int], tuple[Any, Any]] = {}
        self._next: dict[tuple[int, int], tuple[Any, Any]] = {}

    def __call__(self, data: Any) -> Any:
        """The preview of the data so far, or `MISSING` when there is nothing to show."""
        if self.wrap_key is not None:
            if not isinstance(data, dict) or self.wrap_key not in data:
                return MISSING
            data = data[self.wrap_key]
        if data is MISSING:
            return MISSING
        if isinstance(self.target, Mapping):
            return copy.deepcopy(data)  # the reader shares complete values between readings
        self._next = {}
        try:
            return self._preview(self.target, data)
        finally:
            # keep only what this reading used: a memo of every past reading would grow
            self._memo, self._next = self._next, {}

    def _preview(self, tp: Any, data: Any, metadata: tuple[Any, ...] = ()) -> Any:
        if not isinstance(data, (dict, list)):
            return _preview(self, tp, data, metadata)
        # one JSON position always meets the same annotation, so the pair of identities is
        # a key; holding `data` in the entry keeps its id from being reused meanwhile
        key = (id(data), id(tp))
        hit = self._memo.get(key)
        if hit is None or hit[0] is not data:
            hit = (data, _preview(self, tp, data, metadata))
        self._next[key] = hit
        return hit[1]


_adapters: dict[Any, pydantic.TypeAdapter[Any]] = {}


def _adapter(key: Any, annotation: Any) -> pydantic.TypeAdapter[Any]:
    adapter = _adapters.get(key)
    if adapter is None:
        adapter = pydantic.TypeAdapter(annotation)
        if len(_adapters) < 4096:
            _adapters[key] = adapter
    return adapter


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, pydantic.BaseModel)


def _preview(preview: Preview, tp: Any, data: Any, metadata: tuple[Any, ...] = ()) -> Any:
    """A preview of `data` as type `tp`, or `MISSING` when it cannot be one (yet).

    Types that hold a model are walked, so nested records preview partially; any other
    type is validated as it is, through a cached `TypeAdapter`.
    """
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        inner, *extra = typing.get_args(tp)
        return preview._preview(inner, data, (*metadata, *extra))
    if _is_model(tp):
        return _model(preview, tp, data) if isinstance(data, dict) else MISSING
    if origin is list and isinstance(data, list) and _holds_model(tp):
        (item,) = typing.get_args(tp)
        shown = [preview._preview(item, value) for value in data]
        return [value for value in shown if value is not MISSING]
    if origin in (typing.Union, types.UnionType) and _holds_model(tp):
        for arg in typing.get_args(tp):
            if arg is type(None):
                if data is None:
                    return None
                continue
            value = preview._preview(arg, data)
            if value is not MISSING:
                return value
        return MISSING
    annotation = _annotated(tp, metadata) if metadata else tp
    try:
        adapter = _adapter((tp, metadata), annotation)
    except TypeError:  # an unhashable annotation: no cache
        adapter = pydantic.TypeAdapter(annotation)
    try:
        return adapter.validate_python(data)
    except pydantic.ValidationError:
        return MISSING


def _annotated(tp: Any, metadata: tuple[Any, ...]) -> Any:
    annotated: Any = typing.Annotated
    key = (tp, *metadata)
    return annotated[key]


def _holds_model(tp: Any) -> bool:
    return _is_model(tp) or any(_holds_model(arg) for arg in typing.get_args(tp))


def _model(
    preview: Preview, cls: type[pydantic.BaseModel], data: dict[str, Any]
) -> pydantic.BaseModel:
    values: dict[str, Any] = {}
    for name, info in cls.model_fields.items():
        key = info.alias if info.alias and info.alias in data else name
        if key not in data:
            continue
        annotation = info.annotation
        if info.metadata:
            annotation = _annotated(annotation, tuple(info.metadata))
        shown = preview._preview(annotation, data[key])
        if shown is not MISSING:
            values[name] = shown
    every = {name: values.get(name) for name in cls.model_fields}
    return cls.model_construct(_fields_set=set(values), **every)
