"""The records of a long document's chunks, merged into one record of the target.

The rules, declared on the target with small markers (`Annotated[str, Merge.last]`):

- a scalar field takes the first value found in document order (`Merge.first`, the
  default), or the last (`Merge.last`), or the one most chunks gave (`Merge.most_frequent`,
  the first of equals), or refuses to choose (`Merge.error_on_conflict`); a policy on a
  model or list field takes that value whole;
- a nested model merges field by field;
- a list (a list field, or a `list[Model]` target) takes every chunk's items in document
  order, without the copies the overlap between chunks makes: items with the same key
  (`Merge.key("number")` on the list, or `@Merge.key("number")` on the item's model) are
  one item, merged field by field; without a key, an item equal to one of the chunk
  before is that item again.

None, and an empty list, never count as a value. Every value that differs between chunks
is reported (`Merged.conflicts`), and every value kept says which chunk and page it came
from (`Merged.provenance`). The merged record is validated through the target again.
"""

from __future__ import annotations

import json
import threading
import types
import typing
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Final, Generic, Literal, TypeVar, Union, overload

import pydantic
import pydantic_core

from extractor._chunks import Chunk, describe_pages
from extractor._errors import ConfigurationError, ErrorDetail, ExtractorError, InvalidAnswer
from extractor._schema import compile_schema

__all__ = [
    "Conflict",
    "Found",
    "Key",
    "Merge",
    "MergeError",
    "Merged",
    "Policy",
    "Source",
    "check",
    "merge",
]

T = TypeVar("T")
M = TypeVar("M", bound=type[pydantic.BaseModel])

PolicyName = Literal["first", "last", "most_frequent", "error_on_conflict"]

#: Where `@Merge.key(...)` keeps a model's key.
_KEY_ATTRIBUTE: Final = "__extractor_merge_key__"
#: A text shorter than this is not looked for in its chunk: it would be found anywhere.
_MIN_LOCATED: Final = 3


@dataclass(frozen=True)
class Policy:
    """How a field's values from several chunks become one; see `Merge`."""

    name: PolicyName


@dataclass(frozen=True)
class Key:
    """The fields that identify a list's item: items with equal keys are one item.

    On a list field, `Annotated[list[Item], Merge.key("number")]`; on the item's model, as
    a class decorator, `@Merge.key("number")`.
    """

    fields: tuple[str, ...]

    def __call__(self, cls: M) -> M:
        fields = getattr(cls, "model_fields", {})
        unknown = [name for name in self.fields if name not in fields]
        if unknown:
            raise ConfigurationError(f"Merge.key: {cls.__name__} has no field {unknown[0]!r}")
        setattr(cls, _KEY_ATTRIBUTE, self)
        return cls


class Merge:
    """The merge markers, for `Annotated[...]` on a target's fields."""

    #: The first value found in document order (the default for scalars).
    first: ClassVar[Policy] = Policy("first")
    #: The last value found in document order.
    last: ClassVar[Policy] = Policy("last")
    #: The value most chunks gave; the first of them on a tie.
    most_frequent: ClassVar[Policy] = Policy("most_frequent")
    #: Chunks that disagree fail the merge with `MergeError`.
    error_on_conflict: ClassVar[Policy] = Policy("error_on_conflict")

    @staticmethod
    def key(*fields: str) -> Key:
        """The fields that identify a list's items (on the list field, or the item's model)."""
        if not fields or not all(isinstance(f, str) and f for f in fields):
            raise ConfigurationError(f"Merge.key takes one or more field names, not {fields!r}")
        return Key(fields)


@dataclass(frozen=True)
class Source:
    """Where a value came from: the chunk (its index) and the pages it stands on.

    The pages are those of the chunk, narrowed to where the value's text appears in it
    when it does.
    """

    chunk: int
    pages: tuple[int, ...]


@dataclass(frozen=True)
class Found:
    """One of the values chunks gave for a field (as plain JSON data), and where."""

    value: Any
    sources: tuple[Source, ...]


@dataclass(frozen=True)
class Conflict:
    """Chunks gave a field different values; `chosen` (JSON data) is the one kept."""

    path: str
    policy: PolicyName
    chosen: Any
    #: Every value given, in document order of its first appearance.
    values: tuple[Found, ...]

    def __str__(self) -> str:
        shown = "; ".join(
            f"{json.dumps(f.value, ensure_ascii=False)[:60]} "
            f"(chunk {', '.join(str(s.chunk + 1) for s in f.sources)}, "
            f"{_pages_text(f.sources)})"
            for f in self.values
        )
        return f"{self.path or '(root)'}: {shown}"


class MergeError(ExtractorError):
    """The chunks' records do not make one record: a declared conflict, or the merged
    record breaks the target (a required field no chunk found, say)."""

    def __init__(
        self,
        message: str,
        *,
        conflicts: Sequence[Conflict] = (),
        errors: Sequence[ErrorDetail] = (),
    ) -> None:
        super().__init__(message)
        self.conflicts = tuple(conflicts)
        self.errors = tuple(errors)


@dataclass(frozen=True)
class Merged(Generic[T]):
    """The merged record, what the chunks disagreed on, and where each value came from."""

    value: T
    #: Field path (`vendor.name`, `items[2].price`) → the values chunks disagreed on.
    conflicts: Mapping[str, Conflict]
    #: Field path or list item (`total`, `items[2]`, `[0].name`) → where its value came from.
    provenance: Mapping[str, Source]


@overload
def merge(target: type[T], partials: Sequence[tuple[Chunk, Any]]) -> Merged[T]: ...
@overload
def merge(
    target: Mapping[str, Any], partials: Sequence[tuple[Chunk, Any]]
) -> Merged[dict[str, Any]]: ...
@overload
def merge(target: Any, partials: Sequence[tuple[Chunk, Any]]) -> Merged[Any]: ...
def merge(target: Any, partials: Sequence[tuple[Chunk, Any]]) -> Merged[Any]:
    """Merge each chunk's record (`(chunk, value)`, in any order) into one of `target`.

    Raises `MergeError` when a field marked `Merge.error_on_conflict` differs between
    chunks, or when the merged record does not validate; `ConfigurationError` for a
    marker that cannot apply (see `check`).
    """
    spec = _spec_of(target)
    ordered = sorted(
        ((chunk, value) for chunk, value in partials if value is not None),
        key=lambda pair: (pair[0].start, pair[0].index),
    )
    merger = _Merger()
    data = merger.node(spec, ordered, "", {})
    if merger.refused:
        shown = "; ".join(str(c) for c in merger.refused)
        raise MergeError(f"the chunks disagree: {shown}", conflicts=merger.refused)
    compiled = compile_schema(target)
    if data is _MISSING:
        data = [] if spec.kind == "list" or compiled.wrap_key == "items" else {}
    try:
        value = compiled.load({compiled.wrap_key: data} if compiled.wrap_key else data)
    except InvalidAnswer as exc:
        shown = "; ".join(str(e) for e in exc.errors[:5])
        raise MergeError(
            f"the merged record does not fit {compiled.name}: {shown}", errors=exc.errors
        ) from None
    return Merged(value, merger.conflicts, merger.provenance)


def check(target: Any) -> None:
    """Raise `ConfigurationError` now for a marker that cannot apply (before anything is sent).

    A key on something other than a list of models, a key naming no field of the item, a
    policy and a key on the same list.
    """
    seen: set[type] = set()

    def walk(spec: _Spec) -> None:
        if spec.kind == "object" and spec.model is not None and spec.model not in seen:
            seen.add(spec.model)
            for field in _fields(spec.model):
                walk(field.spec)
        elif spec.kind in ("list", "mapping") and spec.item is not None:
            walk(spec.item)

    walk(_spec_of(target))


# --- what a target asks for: a spec per node ----------------------------------------------

Kind = Literal["value", "object", "list", "mapping", "auto"]


@dataclass(frozen=True)
class _Spec:
    """How one node of the target merges."""

    kind: Kind
    policy: Policy = Merge.first
    model: type[pydantic.BaseModel] | None = None  # "object": whose fields
    item: _Spec | None = None  # "list": each item; "mapping": each value
    key: tuple[str, ...] | None = None  # "list": the items' key fields


@dataclass(frozen=True)
class _Field:
    name: str  # the attribute, and the name in paths
    write: str  # the key validation reads: the validation alias, else the name
    spec: _Spec


_AUTO: Final = _Spec("auto")
_LISTS: Final = (list, tuple, set, frozenset, Sequence)
_fields_cache: dict[type, tuple[_Field, ...]] = {}
_fields_lock = threading.Lock()


def _spec_of(annotation: Any, metadata: Sequence[Any] = ()) -> _Spec:
    """The spec of a type, with the markers of its `Annotated` layers and field metadata."""
    if isinstance(annotation, Mapping):  # a JSON Schema target: merged by the data's shape
        return _AUTO
    kind, markers = _unwrap(annotation, metadata)
    policies = [m for m in markers if isinstance(m, Policy)]
    keys = [m for m in markers if isinstance(m, Key)]
    origin = typing.get_origin(kind)
    args = typing.get_args(kind)
    is_list = origin in _LISTS and bool(args) and (origin is not tuple or args[-1] is Ellipsis)
    if keys and not is_list:
        raise ConfigurationError(f"Merge.key goes on a list of models, not on {_name(kind)}")
    if policies:
        if keys:
            raise ConfigurationError("a list takes Merge.key or a policy, not both")
        return _Spec("value", policies[-1])
    if isinstance(kind, type) and issubclass(kind, pydantic.BaseModel):
        return _Spec("object", model=kind)
    if is_list:
        item, item_markers = _unwrap(args[0], ())
        key = keys[-1] if keys else next((m for m in item_markers if isinstance(m, Key)), None)
        if key is None and isinstance(item, type):
            key = getattr(item, _KEY_ATTRIBUTE, None)
        others = [m for m in item_markers if not isinstance(m, Key)]  # the key is the list's
        return _Spec("list", item=_spec_of(item, others), key=_checked_key(key, item))
    if origin in (dict, Mapping) and len(args) == 2:
        return _Spec("mapping", item=_spec_of(args[1]))
    if kind is Any or kind is dict:
        return _AUTO
    return _Spec("value")


def _unwrap(annotation: Any, metadata: Sequence[Any]) -> tuple[Any, list[Any]]:
    """The type under `Annotated` layers and `Optional`, and every marker found on the way."""
    markers = list(metadata)
    while True:
        if typing.get_origin(annotation) is typing.Annotated:
            annotation, *extra = typing.get_args(annotation)
            markers.extend(extra)
            continue
        if typing.get_origin(annotation) in (Union, types.UnionType):
            members = [a for a in typing.get_args(annotation) if a is not type(None)]
            if len(members) == 1:
                annotation = members[0]
                continue
        return annotation, markers


def _checked_key(key: Key | None, item: Any) -> tuple[str, ...] | None:
    """The key's fields, checked against the item's model."""
    if key is None:
        return None
    if not (isinstance(item, type) and issubclass(item, pydantic.BaseModel)):
        raise ConfigurationError(f"Merge.key goes on a list of models, not of {_name(item)}")
    unknown = [name for name in key.fields if name not in item.model_fields]
    if unknown:
        raise ConfigurationError(f"Merge.key: {item.__name__} has no field {unknown[0]!r}")
    return key.fields


def _fields(model: type[pydantic.BaseModel]) -> tuple[_Field, ...]:
    """A model's fields and their specs, built once per model (and lazily: a model that
    contains itself is fine)."""
    cached = _fields_cache.get(model)
    if cached is not None:
        return cached
    built = tuple(
        _Field(name, _write_key(name, info), _spec_of(info.annotation, info.metadata))
        for name, info in model.model_fields.items()
    )
    with _fields_lock:
        return _fields_cache.setdefault(model, built)


def _write_key(name: str, info: pydantic.fields.FieldInfo) -> str:
    alias = info.validation_alias
    if isinstance(alias, str):
        return alias
    if isinstance(alias, pydantic.AliasChoices) and isinstance(alias.choices[0], str):
        return alias.choices[0]
    return info.alias or name


def _name(kind: Any) -> str:
    return getattr(kind, "__name__", None) or repr(kind)


# --- the merge itself ------------------------------------------------------------------------


class _Missing:
    """No chunk gave a value."""


_MISSING: Final = _Missing()

#: The values chunks gave for one node: (chunk, value), in document order.
Values = list[tuple[Chunk, Any]]
#: Where the record holding a node stands, by chunk index.
Near = Mapping[int, Source]


class _Merger:
    """Merges one target's nodes, collecting the conflicts and provenance on the way."""

    def __init__(self) -> None:
        self.conflicts: dict[str, Conflict] = {}
        self.provenance: dict[str, Source] = {}
        self.refused: list[Conflict] = []

    def node(self, spec: _Spec, found: Values, path: str, near: Near) -> Any:
        """The merged data of the values `found` (chunk, value) for one node, or _MISSING.

        `near` is where, in each chunk, the record holding this node stands: a value not
        found in its chunk's text is placed there.
        """
        found = [(c, v) for c, v in found if v is not None]
        if not found:
            return _MISSING
        kind = spec.kind if spec.kind != "auto" else _shape([v for _, v in found])
        if kind == "object":
            return self._object(spec, found, path, near)
        if kind == "mapping":
            return self._mapping(spec.item or _AUTO, found, path, near)
        if kind == "list":
            return self._list(spec, found, path, near)
        return self._value(spec.policy, found, path, near)

    def _value(self, policy: Policy, found: Values, path: str, near: Near) -> Any:
        found = [(c, v) for c, v in found if not _is_empty_list(v)]
        if not found:
            return _MISSING
        groups: dict[str, list[tuple[Chunk, Any]]] = {}
        for chunk, value in found:
            groups.setdefault(_canonical(value), []).append((chunk, value))
        if policy.name == "last":
            chosen = found[-1]
        elif policy.name == "most_frequent":
            chosen = max(groups.values(), key=len)[0]  # max keeps the first of equals
        else:
            chosen = found[0]
        self.provenance[path] = _source(chosen[0], chosen[1], near)
        if len(groups) > 1:
            conflict = Conflict(
                path,
                policy.name,
                _plain(chosen[1]),
                tuple(
                    Found(_plain(pairs[0][1]), tuple(_source(c, v, near) for c, v in pairs))
                    for pairs in groups.values()
                ),
            )
            self.conflicts[path] = conflict
            if policy.name == "error_on_conflict":
                self.refused.append(conflict)
        return chosen[1]

    def _object(self, spec: _Spec, found: Values, path: str, near: Near) -> Any:
        assert spec.model is not None
        out: dict[str, Any] = {}
        for field in _fields(spec.model):
            values = [(chunk, _get(value, field)) for chunk, value in found]
            merged = self.node(field.spec, values, _join(path, field.name), near)
            if merged is not _MISSING:
                out[field.write] = merged
        return out

    def _mapping(self, item: _Spec, found: Values, path: str, near: Near) -> Any:
        keys: dict[Any, None] = {}
        for _, value in found:
            if isinstance(value, Mapping):
                keys.update(dict.fromkeys(value))
        out: dict[Any, Any] = {}
        for key in keys:
            values = [(c, v.get(key)) for c, v in found if isinstance(v, Mapping)]
            merged = self.node(item, values, _join(path, str(key)), near)
            if merged is not _MISSING:
                out[key] = merged
        return out

    def _list(self, spec: _Spec, found: Values, path: str, near: Near) -> Any:
        item = spec.item or _AUTO
        groups: list[list[tuple[Chunk, Any]]] = []
        by_key: dict[str, int] = {}
        before: list[tuple[str, int]] = []  # the previous list's items: (canonical, group)
        before_chunk: Chunk | None = None
        for chunk, values in found:
            if not isinstance(values, (list, tuple, set, frozenset)):
                values = [values]
            again: dict[str, deque[int]] = {}
            if before_chunk is not None and _overlap(before_chunk, chunk):
                for canonical, group in before:
                    again.setdefault(canonical, deque()).append(group)
            current: list[tuple[str, int]] = []
            for value in values:
                if value is None:
                    continue
                canonical = _canonical(value)
                key = _key_of(value, spec.key)
                if key is not None and key in by_key:
                    group = by_key[key]
                elif key is None and again.get(canonical):
                    group = again[canonical].popleft()
                else:
                    group = len(groups)
                    groups.append([])
                    if key is not None:
                        by_key[key] = group
                groups[group].append((chunk, value))
                current.append((canonical, group))
            before, before_chunk = current, chunk
        out = []
        for index, occurrences in enumerate(groups):
            where = f"{path}[{index}]"
            places: dict[int, Source] = {}
            for chunk, value in occurrences:
                places.setdefault(chunk.index, _source(chunk, value, near))
            out.append(self.node(item, occurrences, where, places))
            self.provenance.setdefault(where, places[occurrences[0][0].index])
        return out


def _shape(values: list[Any]) -> Kind:
    """How plain data of no declared type merges: by key, by item, or as a value."""
    if all(isinstance(v, Mapping) for v in values):
        return "mapping"
    if all(isinstance(v, list) for v in values):
        return "list"
    return "value"


def _get(value: Any, field: _Field) -> Any:
    if isinstance(value, pydantic.BaseModel):
        return getattr(value, field.name, None)
    if isinstance(value, Mapping):
        return value.get(field.name, value.get(field.write))
    return None


def _key_of(value: Any, fields: tuple[str, ...] | None) -> str | None:
    """The item's key as text, or None (no key declared, or a key field missing)."""
    if fields is None:
        return None
    parts = []
    for name in fields:
        part = getattr(value, name, None) if isinstance(value, pydantic.BaseModel) else None
        if part is None and isinstance(value, Mapping):
            part = value.get(name)
        if part is None:
            return None
        parts.append(_plain(part))
    return _canonical(parts)


def _overlap(before: Chunk, after: Chunk) -> bool:
    """Whether two chunks share text (the same chunk does): an item may be in both."""
    return before.index == after.index or (before.start < after.end and after.start < before.end)


def _plain(value: Any) -> Any:
    """A value as plain JSON data, for comparing and reporting."""
    return pydantic_core.to_jsonable_python(value, fallback=repr)


def _canonical(value: Any) -> str:
    return json.dumps(_plain(value), sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def _is_empty_list(value: Any) -> bool:
    return isinstance(value, (list, tuple, set, frozenset)) and not value


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _source(chunk: Chunk, value: Any, near: Near) -> Source:
    """The chunk, and the pages where the value's text first appears in it; else those of
    the record holding it (`near`), else all the chunk's."""
    texts: list[str] = []

    def strings(data: Any) -> None:
        if isinstance(data, str):
            if len(data.strip()) >= _MIN_LOCATED:
                texts.append(data.strip())
        elif isinstance(data, Mapping):
            for sub in data.values():
                strings(sub)
        elif isinstance(data, list):
            for sub in data:
                strings(sub)

    strings(_plain(value))
    pages = set()
    for text in texts:
        at = chunk.text.find(text)
        if at >= 0:
            page = chunk.page_at(chunk.start + at)
            if page is not None:
                pages.add(page)
    if pages:
        return Source(chunk.index, tuple(sorted(pages)))
    return near.get(chunk.index) or Source(chunk.index, chunk.pages)


def _pages_text(sources: Sequence[Source]) -> str:
    return describe_pages(sorted({p for s in sources for p in s.pages}))
