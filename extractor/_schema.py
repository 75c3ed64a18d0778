"""From a target (a Pydantic model, `list[Model]`, a JSON Schema dict) to a compiled schema.

Pydantic's JSON Schema is the source of truth (`plain`). Providers get a dialect of it:

- `openai-strict`: the subset OpenAI's strict structured outputs accept. Every property
  is required, optional ones become nullable, every object is closed, unsupported
  keywords are removed.
- `mistral`: the plain schema, closed objects, without the keywords that only annotate.
- `plain`: Draft 2020-12 as Pydantic writes it.

A keyword a dialect drops is not lost: `CompiledSchema.load` validates the answer against
the full schema (through Pydantic for models, jsonschema for dicts). A root that is not an
object (a list, a scalar) is wrapped in a one-property object for the wire and unwrapped
on the way back.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Final, Generic, TypeVar, cast, overload

import pydantic

from extractor._drafts import normalize, python_patterns
from extractor._errors import ErrorDetail, InvalidAnswer, SchemaError

__all__ = [
    "DIALECTS",
    "CompiledSchema",
    "WorkedExample",
    "compile_schema",
    "untyped",
    "worked_examples",
]

T = TypeVar("T")
C = TypeVar("C", bound=type)
JSON = dict[str, Any]

#: Where `worked_examples` keeps a class's examples (read from the class itself only).
_EXAMPLES_ATTRIBUTE: Final = "__extractor_examples__"


@dataclass(frozen=True)
class WorkedExample:
    """A document and the record it should give, shown to the model before the real one.

    `record` is an instance of the target or plain data it validates. A worked example
    shows what a schema cannot say: where in a document a value is found and how far it
    runs. Write your own documents: shown to the model, they are part of every prompt.
    """

    text: str
    record: Any


def worked_examples(*examples: WorkedExample) -> Callable[[C], C]:
    """Attach worked examples to a model class; every extraction of it shows them.

    Each record is validated against the class here, so a wrong example fails at import
    time with what is wrong, not in the middle of a run. Remote models see each example
    as a user message and the assistant's answer before the document; the local model
    sees them as documents with their records before the document.
    """

    def attach(cls: C) -> C:
        setattr(cls, _EXAMPLES_ATTRIBUTE, tuple(examples))
        try:  # compiled (and cached) once, here: the examples are validated on the way
            compile_schema(cls)
        except SchemaError:
            delattr(cls, _EXAMPLES_ATTRIBUTE)
            raise
        return cls

    return attach


DIALECTS: Final = ("openai-strict", "openai", "mistral", "plain")

#: Every keyword of Draft 2020-12 (core, applicators, validation, formats, annotations):
#: the allow-list of the dialects that take full JSON Schema. Anything else (vendor
#: `x-*` keywords, OpenAPI's, misspellings) is dropped on the wire.
_DRAFT_KEYWORDS: Final = frozenset(
    {
        "$ref", "$defs", "$anchor", "$dynamicRef", "$dynamicAnchor",
        "allOf", "anyOf", "oneOf", "not", "if", "then", "else", "dependentSchemas",
        "prefixItems", "items", "contains", "properties", "patternProperties",
        "additionalProperties", "propertyNames", "unevaluatedItems", "unevaluatedProperties",
        "type", "enum", "const", "multipleOf", "maximum", "exclusiveMaximum", "minimum",
        "exclusiveMinimum", "maxLength", "minLength", "pattern", "maxItems", "minItems",
        "uniqueItems", "maxContains", "minContains", "maxProperties", "minProperties",
        "required", "dependentRequired", "format", "title", "description", "default",
        "deprecated", "readOnly", "writeOnly", "examples",
    }
)  # fmt: skip

#: Formats OpenAI's strict mode accepts; other `format` values are dropped (and still checked).
_STRICT_FORMATS: Final = frozenset(
    {"date-time", "time", "date", "duration", "email", "hostname", "ipv4", "ipv6", "uuid"}
)
#: Keywords OpenAI's strict mode accepts; everything else is dropped from the dialect.
_STRICT_KEYWORDS: Final = frozenset(
    {
        "type", "properties", "required", "additionalProperties", "items", "enum", "anyOf",
        "$ref", "$defs", "description", "pattern", "format", "multipleOf", "minimum",
        "maximum", "exclusiveMinimum", "exclusiveMaximum", "minItems", "maxItems",
    }
)  # fmt: skip
_STRICT_MAX_PROPERTIES: Final = 5000
_STRICT_MAX_DEPTH: Final = 10
_STRICT_MAX_ENUM_VALUES: Final = 1000
#: The total length of property names, definition names, enum and const values.
_STRICT_MAX_STRING_TOTAL: Final = 120_000
#: An enum of more than this many values may total at most `_STRICT_MAX_LARGE_ENUM` chars.
_STRICT_LARGE_ENUM: Final = 250
_STRICT_MAX_LARGE_ENUM: Final = 15_000
#: Keywords that only say something about a value, never constrain it.
_NOTES: Final = frozenset(
    {"title", "description", "default", "examples", "deprecated", "readOnly", "writeOnly",
     "$comment", "discriminator", "$anchor"}
)  # fmt: skip
#: Keywords that give a schema a shape; a schema with none of them takes any value.
_SHAPES: Final = frozenset(
    {"type", "$ref", "anyOf", "oneOf", "allOf", "enum", "const", "properties", "items",
     "prefixItems", "not"}
)  # fmt: skip
_ANNOTATIONS: Final = frozenset({"title", "examples", "discriminator", "default"})
_NAME_RE: Final = re.compile(r"[^a-zA-Z0-9_-]+")


class CompiledSchema(Generic[T]):
    """A target compiled once: its wire schema in each dialect, and how to load answers.

    Build it with `compile_schema`, which caches one per target.
    """

    def __init__(
        self,
        name: str,
        schema: JSON,
        *,
        wrap_key: str | None,
        validate: Callable[[Any], T],
        dump: Callable[[T], Any] | None = None,
        description: str | None = None,
    ) -> None:
        self.name = name
        #: The full Draft 2020-12 schema of the wire object (wrapped where needed).
        self.schema = schema
        #: The property holding the value when the target's root is not an object.
        self.wrap_key = wrap_key
        self.description = description
        #: The target's worked examples as (document, wire record) pairs (`worked_examples`).
        self.examples: tuple[tuple[str, JSON], ...] = ()
        self._validate = validate
        self._dump = dump
        self._dialects: dict[str, JSON | SchemaError] = {}
        self._lock = threading.Lock()

    @cached_property
    def fingerprint(self) -> str:
        """A short stable hash of the full schema: equal schemas, equal fingerprints."""
        text = json.dumps(self.schema, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @cached_property
    def size(self) -> int:
        """Characters of the full schema as JSON: what it takes of a prompt, near enough."""
        return len(json.dumps(self.schema))

    def dialect(self, name: str) -> JSON:
        """The schema as a provider of that dialect should receive it (cached; do not mutate).

        A dialect that cannot carry the schema raises its `SchemaError` each time, from the
        cache too: `auto` asks once per document whether strict mode fits.
        """
        cached = self._dialects.get(name)
        if cached is None:
            with self._lock:
                if name not in self._dialects:
                    try:
                        self._dialects[name] = _to_dialect(self.schema, name)
                    except SchemaError as exc:
                        self._dialects[name] = exc
                cached = self._dialects[name]
        if isinstance(cached, SchemaError):
            raise SchemaError(cached.reason, path=cached.path)
        return cached

    def dropped(self, name: str) -> list[tuple[str, str]]:
        """What a dialect leaves out, as (path, keyword): still checked on every answer.

        Raises `SchemaError` when the dialect cannot carry the schema at all.
        """
        self.dialect(name)
        if name == "plain":
            return []
        allowed = (
            _STRICT_KEYWORDS | {"oneOf", "const", "allOf"}
            if name == "openai-strict"
            else (_DRAFT_KEYWORDS - (_ANNOTATIONS if name == "mistral" else frozenset()))
        )
        found: list[tuple[str, str]] = []

        def walk(node: Any, path: str) -> None:
            if isinstance(node, list):
                for sub in node:
                    walk(sub, path)
                return
            if not isinstance(node, dict):
                return
            for key, value in node.items():
                if key in ("$schema", "$id", "id") or key in _NOTES:
                    continue  # about the document, or notes on a value: nothing to check
                if key not in allowed or (
                    name == "openai-strict" and key == "format" and value not in _STRICT_FORMATS
                ):
                    found.append((path or "(root)", key))
                elif key in ("properties", "patternProperties"):
                    for prop, sub in value.items():
                        walk(sub, f"{path}.{prop}" if path else prop)
                elif key == "$defs":
                    for definition, sub in value.items():
                        walk(sub, f"$defs.{definition}")
                elif key == "items":
                    walk(value, f"{path}[]")
                elif key not in ("enum", "const", "default", "examples", "required"):
                    walk(value, path)

        walk(self.schema, "")
        return found

    def worked(self, examples: Sequence[WorkedExample]) -> tuple[tuple[str, JSON], ...]:
        """Worked examples as (document, wire record) pairs, each record validated first.

        Raises `SchemaError` naming the example that does not fit the schema.
        """
        pairs = []
        for index, example in enumerate(examples):
            if not isinstance(example, WorkedExample) or not example.text.strip():
                raise SchemaError(f"worked example {index} must be a WorkedExample with a text")
            try:
                record = self.dump(self._validate(example.record))
            except InvalidAnswer as exc:
                problems = "; ".join(str(d) for d in exc.errors)
                raise SchemaError(
                    f"worked example {index} for {self.name} does not validate: {problems}"
                ) from None
            pairs.append((example.text, {self.wrap_key: record} if self.wrap_key else record))
        return tuple(pairs)

    def dump(self, value: T) -> Any:
        """The value as plain JSON data, keyed as the schema names the fields (by alias)."""
        return value if self._dump is None else self._dump(value)

    def load(self, data: Any) -> T:
        """Turn decoded JSON into the target's value, or raise `InvalidAnswer`.

        Nulls the strict dialect allowed for optional fields are removed first, so
        defaults apply; then the wrapper, if any, is taken off; then the full schema holds.
        """
        if _has_null(data):
            data = _drop_foreign_nulls(data, self.schema, self.schema.get("$defs", {}))
        if self.wrap_key is not None:
            if not isinstance(data, dict) or self.wrap_key not in data:
                raise InvalidAnswer(
                    [ErrorDetail("", f"expected an object with the key {self.wrap_key!r}")]
                )
            data = data[self.wrap_key]
        return self._validate(data)


_cache: dict[Any, CompiledSchema[Any]] = {}
_cache_lock = threading.Lock()


@overload
def compile_schema(target: type[T]) -> CompiledSchema[T]: ...
@overload
def compile_schema(target: Mapping[str, Any]) -> CompiledSchema[dict[str, Any]]: ...
@overload
def compile_schema(target: Any) -> CompiledSchema[Any]: ...
def compile_schema(target: Any) -> CompiledSchema[Any]:
    """Compile a Pydantic model, any type Pydantic can validate, or a JSON Schema dict.

    The result is cached per target, so calling this on every extraction costs a lookup.
    """
    key = _cache_key(target)
    compiled = _cache.get(key)
    if compiled is None:
        built = _compile(target)
        with _cache_lock:
            compiled = _cache.setdefault(key, built)
    return compiled


def _cache_key(target: Any) -> Any:
    if isinstance(target, Mapping):
        return ("json", json.dumps(target, sort_keys=True, default=str))
    try:
        hash(target)
    except TypeError as exc:
        raise SchemaError(f"cannot use {target!r} as an extraction target") from exc
    return ("type", target)


def _compile(target: Any) -> CompiledSchema[Any]:
    if isinstance(target, Mapping):
        return _compile_json_schema(dict(target))
    try:
        adapter: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(target)
        schema = adapter.json_schema()
    except (pydantic.PydanticSchemaGenerationError, pydantic.PydanticUserError) as exc:
        raise SchemaError(f"cannot build a JSON Schema for {target!r}: {exc}") from exc
    name = _target_name(target, schema)

    def validate(data: Any) -> Any:
        try:
            return adapter.validate_python(data)
        except pydantic.ValidationError as exc:
            raise InvalidAnswer(_pydantic_details(exc)) from None

    def dump(value: Any) -> Any:
        # by alias, as the schema names the fields: a dumped record validates again, and
        # a worked example shows the model the keys it is asked for
        return adapter.dump_python(value, mode="json", by_alias=True)

    wire, wrap_key = _wrap(schema, "items" if _is_list_schema(schema) else "value")
    compiled = CompiledSchema(
        name,
        wire,
        wrap_key=wrap_key,
        validate=validate,
        dump=dump,
        description=schema.get("description"),
    )
    attached = vars(target).get(_EXAMPLES_ATTRIBUTE, ()) if isinstance(target, type) else ()
    compiled.examples = compiled.worked(attached)
    return compiled


def _compile_json_schema(schema: JSON) -> CompiledSchema[Any]:
    """A dict target of any draft: checked and validated by its own draft's rules; sent
    as Draft 2020-12 with every definition under `$defs` (`drafts.normalize`)."""
    import jsonschema  # imported here: only dict targets need it

    schema = python_patterns(schema)  # ECMA 262 regular expressions, as Python reads them
    draft = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    # without `$schema`, the newest draft it is valid in (an older one's forms, such as
    # Draft-04's boolean exclusiveMinimum, are invalid in 2020-12)
    candidates = [draft] if "$schema" in schema else [draft, *_older_drafts()]
    for index, candidate in enumerate(candidates):
        try:
            candidate.check_schema(schema)
        except jsonschema.SchemaError as exc:
            if index + 1 < len(candidates):
                continue
            first = exc if index == 0 else _first_error(candidates[0], schema)
            path = ".".join(str(p) for p in first.path)
            raise SchemaError(f"not a valid JSON Schema: {first.message}", path=path) from None
        draft = candidate
        break
    normalized = normalize(schema)
    wire, wrap_key = _wrap(normalized, "items" if _is_list_schema(normalized) else "value")
    validator = draft(schema, format_checker=draft.FORMAT_CHECKER)

    def validate(data: Any) -> Any:
        errors = sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path))
        if errors:
            raise InvalidAnswer(
                [ErrorDetail(_dotted(e.absolute_path), e.message) for e in errors[:20]]
            )
        return data

    name = _target_name(None, schema)
    return CompiledSchema(
        name, wire, wrap_key=wrap_key, validate=validate, description=schema.get("description")
    )


def _older_drafts() -> list[Any]:
    import jsonschema

    return [jsonschema.Draft7Validator, jsonschema.Draft6Validator, jsonschema.Draft4Validator]


def _first_error(draft: Any, schema: JSON) -> Any:
    import jsonschema

    try:
        draft.check_schema(schema)
    except jsonschema.SchemaError as exc:
        return exc
    raise AssertionError("unreachable: the schema failed this draft before")  # pragma: no cover


def _target_name(target: Any, schema: JSON) -> str:
    raw = getattr(target, "__name__", None) if isinstance(target, type) else None
    if raw is None:
        if _is_list_schema(schema):
            items = schema.get("items", {})
            ref = items.get("$ref", "") if isinstance(items, dict) else ""
            raw = (ref.rsplit("/", 1)[-1] or "item") + "_list"
        else:
            raw = str(schema.get("title") or "record")
    return _NAME_RE.sub("_", raw)[:64] or "record"


def _is_list_schema(schema: JSON) -> bool:
    return schema.get("type") == "array"


def _is_object_root(schema: JSON) -> bool:
    return schema.get("type") == "object" and "anyOf" not in schema and "oneOf" not in schema


def _wrap(schema: JSON, key: str) -> tuple[JSON, str | None]:
    """Give the wire an object root; return the wire schema and the wrapper key (or None)."""
    schema = copy.deepcopy(schema)
    ref = schema.get("$ref")
    defs = schema.get("$defs", {})
    if isinstance(ref, str) and ref.startswith("#/$defs/") and len(schema.keys() - {"$defs"}) == 1:
        resolved = defs.get(ref.removeprefix("#/$defs/"))
        if isinstance(resolved, dict) and _is_object_root(resolved):
            # a recursive model's root is a bare reference; its definition stands in
            return {**resolved, "$defs": defs}, None
    if _is_object_root(schema):
        return schema, None
    defs = schema.pop("$defs", None)
    wrapper: JSON = {
        "type": "object",
        "properties": {key: schema},
        "required": [key],
        "additionalProperties": False,
    }
    if defs:
        wrapper["$defs"] = defs
    return wrapper, key


def _pydantic_details(exc: pydantic.ValidationError) -> list[ErrorDetail]:
    details = []
    for err in exc.errors(include_url=False, include_context=False):
        message = err["msg"]
        if err["type"] not in ("missing", "extra_forbidden") and "input" in err:
            shown = json.dumps(err["input"], default=str)
            message += f" (got {shown[:60]}{'…' if len(shown) > 60 else ''})"
        details.append(ErrorDetail(_dotted(err["loc"]), message))
    return details


def _dotted(path: Any) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


# --- dialects -------------------------------------------------------------------------------


def _to_dialect(schema: JSON, dialect: str) -> JSON:
    if dialect == "plain":
        return schema
    if dialect == "openai-strict":
        strict = _Strict(schema.get("$defs", {}))
        out = strict.node(schema, "", root=True)
        strict.check_limits(out)
        return out
    if dialect == "openai":
        loose = cast(JSON, _allowed(schema))
        if loose.get("type") == "object" and "properties" not in loose:
            loose["properties"] = {}  # tools parameters need the key, even empty
        return loose
    if dialect == "mistral":
        return _mistral(cast(JSON, _allowed(schema)))
    raise SchemaError(f"unknown schema dialect {dialect!r}; choose one of {', '.join(DIALECTS)}")


def _allowed(schema: Any) -> Any:
    """The schema with only Draft 2020-12 keywords (vendor and unknown ones dropped)."""
    if isinstance(schema, list):
        return [_allowed(v) for v in schema]
    if not isinstance(schema, dict):
        return schema
    out: JSON = {}
    for key, value in schema.items():
        if key not in _DRAFT_KEYWORDS:
            continue
        if key in ("properties", "patternProperties", "$defs", "dependentSchemas"):
            out[key] = {name: _allowed(sub) for name, sub in value.items()}
        elif key == "examples" and not isinstance(value, list):
            continue  # not what the keyword holds: a provider may refuse the schema for it
        elif key in ("enum", "const", "default", "examples", "required", "dependentRequired"):
            out[key] = value
        else:
            out[key] = _allowed(value)
    return out


def untyped(node: JSON) -> bool:
    """Whether a schema takes any JSON value: it has no keyword that gives a shape."""
    return not (node.keys() & _SHAPES)


def _types(node: JSON) -> list[str] | None:
    kind = node.get("type")
    if kind is None:
        return None
    return [kind] if isinstance(kind, str) else list(kind)


#: Keywords that constrain one JSON type only: a branch of a split `type` array keeps its own.
_TYPE_KEYWORDS: Final = {
    "string": {"pattern", "format", "minLength", "maxLength"},
    "number": {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"},
    "integer": {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"},
    "array": {"items", "minItems", "maxItems", "prefixItems", "uniqueItems", "contains"},
    "object": {"properties", "required", "additionalProperties", "patternProperties"},
}
_STRICTER: Final = {
    "minimum": max, "exclusiveMinimum": max, "minLength": max, "minItems": max,
    "minProperties": max, "maximum": min, "exclusiveMaximum": min, "maxLength": min,
    "maxItems": min, "maxProperties": min,
}  # fmt: skip


class _Strict:
    """The openai-strict transformation, with the field path kept for error messages.

    Input is a normalized schema (`drafts.normalize`): every reference is `#/$defs/...`.
    `allOf` is merged where its parts agree, a `$ref` with constraints beside it is
    merged with its definition, `oneOf` becomes `anyOf`, a `type` array of several types
    becomes a union. What strict mode cannot say (an untyped value, an open-ended object,
    a tuple, `not`) raises `SchemaError` naming the path; `auto` then sends the schema
    as non-strict `json_schema` instead.
    """

    def __init__(self, defs: JSON) -> None:
        self.defs = defs

    def node(self, node: Any, path: str, *, root: bool = False) -> JSON:
        if node is True:
            node = {}
        if not isinstance(node, dict):
            raise SchemaError("a schema that accepts nothing (false) cannot be sent", path=path)
        node = dict(node)
        if "allOf" in node:
            node = self._merge_all_of(node, path, frozenset())
        if "$ref" in node and (node.keys() - {"$ref"} - _NOTES - {"$defs"}):
            node = self._merge_all_of(
                {"allOf": [{"$ref": node.pop("$ref")}], **node}, path, frozenset()
            )
        if "oneOf" in node:
            node["anyOf"] = node.pop("oneOf")
        if "const" in node:
            node["enum"] = [node.pop("const")]
        for keyword, what in (("prefixItems", "tuples (prefixItems)"), ("not", "`not`")):
            if keyword in node:
                raise SchemaError(
                    f"{what} cannot be expressed in openai-strict; use a list or a model",
                    path=path,
                )
        if untyped({k: v for k, v in node.items() if k != "$defs"}):
            raise SchemaError(
                "an untyped value (any JSON) cannot be expressed in openai-strict", path=path
            )
        types = _types(node)
        if types is not None and len([t for t in types if t != "null"]) > 1 and not root:
            return self.node(self._split_types(node, types), path)
        if node.get("format") not in _STRICT_FORMATS:
            node.pop("format", None)
        if isinstance(node.get("pattern"), str) and _STRICT_BAD_REGEX.search(node["pattern"]):
            node.pop("pattern")  # lookaround and backreferences: OpenAI refuses them
        if "enum" in node and "type" not in node:
            node["type"] = _enum_type(node["enum"])
        out: JSON = {k: v for k, v in node.items() if k in _STRICT_KEYWORDS}
        if "$ref" in out:
            ref: JSON = {"$ref": out["$ref"]}
            return (
                {"anyOf": [ref], "description": out["description"]} if "description" in out else ref
            )
        if "$defs" in out:
            out["$defs"] = {k: self.node(v, f"$defs.{k}") for k, v in out["$defs"].items()}
        if "anyOf" in out:
            if root:
                raise SchemaError(
                    "the root of an openai-strict schema cannot be a union", path=path
                )
            if "type" in out:  # strict wants a union alone: each branch gets the type
                kind = out.pop("type")
                out["anyOf"] = [
                    {"type": kind, **b} if isinstance(b, dict) and "type" not in b else b
                    for b in out["anyOf"]
                ]
            out["anyOf"] = [self.node(b, path) for b in out["anyOf"]]
        if "items" in out:
            out["items"] = self.node(out["items"], f"{path}[]")
        elif "array" in (_types(out) or ()):
            raise SchemaError(
                "an array whose items are untyped (any JSON) cannot be expressed in openai-strict",
                path=path,
            )
        types = _types(out)
        is_object = types is not None and "object" in types
        if is_object or "properties" in out:
            self._close_object(out, node, path)
        elif root:
            raise SchemaError("the root of an openai-strict schema must be an object", path=path)
        return out

    def _split_types(self, node: JSON, types: list[str]) -> JSON:
        """`type: [a, b, ...]` as a union of one branch per type, each with its keywords."""
        shared = {k: v for k, v in node.items() if k in _NOTES}
        branches = []
        for kind in types:
            own = _TYPE_KEYWORDS.get(kind, set())
            branch = {k: v for k, v in node.items() if k in own or k in ("enum",)}
            branches.append({"type": kind, **branch})
        return {**shared, "anyOf": branches}

    def _definition(self, ref: str, path: str) -> JSON:
        name = ref.rsplit("/", 1)[-1]
        found = self.defs.get(name)
        if not isinstance(found, dict):
            raise SchemaError(f"$ref {ref!r} points to nothing", path=path)
        return found

    def _merge_all_of(self, node: JSON, path: str, inlined: frozenset[str]) -> JSON:
        """`allOf` as one schema: its parts (definitions inlined) merged, or SchemaError."""
        parts = list(node.get("allOf", ()))
        merged: JSON = {k: v for k, v in node.items() if k != "allOf"}
        for part in parts:
            if part is True:
                continue
            if not isinstance(part, dict):
                raise SchemaError("allOf with a false part accepts nothing", path=path)
            part = dict(part)
            if "$ref" in part:
                name = str(part["$ref"]).rsplit("/", 1)[-1]
                if name in inlined or self._recursive(name):
                    raise SchemaError(
                        f"allOf over the recursive definition {name!r} cannot be merged for "
                        "openai-strict",
                        path=path,
                    )
                body = {**self._definition(part.pop("$ref"), path), **part}
                part = self._merge_all_of(body, path, inlined | {name}) if "allOf" in body else body
            elif "allOf" in part:
                part = self._merge_all_of(part, path, inlined)
            merged = _merge(merged, part, path)
        return merged

    def _recursive(self, name: str) -> bool:
        """Whether a definition refers back to itself, directly or through others."""
        seen: set[str] = set()
        stack = [name]
        while stack:
            current = stack.pop()
            for ref in _refs(self.defs.get(current, {})):
                target = ref.rsplit("/", 1)[-1]
                if target == name:
                    return True
                if target not in seen:
                    seen.add(target)
                    stack.append(target)
        return False

    def _close_object(self, out: JSON, original: JSON, path: str) -> None:
        extra = original.get("additionalProperties")
        props = original.get("properties") or {}
        open_ended = "properties" not in original and extra is not False
        if (
            isinstance(extra, dict)
            or extra is True
            or open_ended
            or original.get("patternProperties")
        ):
            raise SchemaError(
                "open-ended objects (dict[str, ...] or bare `object`) cannot be expressed in "
                "openai-strict; use a model with named fields or a list of key/value models",
                path=path,
            )
        required = set(original.get("required", ()))
        new_props: JSON = {}
        for name, sub in props.items():
            if sub is False:
                continue  # a property that may not appear: strict lists only those that may
            child = self.node(sub, f"{path}.{name}" if path else name)
            if name not in required and not _accepts_null(sub, self.defs):
                child = _nullable(child)
            new_props[name] = child
        out["properties"] = new_props
        out["required"] = list(new_props)
        out["additionalProperties"] = False
        out.setdefault("type", "object")

    def check_limits(self, schema: JSON) -> None:
        props = enums = strings = 0
        defs = schema.get("$defs", {})  # the transformed definitions: unions are anyOf there
        strings += sum(len(name) for name in defs)

        def walk(node: Any, depth: int, path: str, seen: frozenset[str]) -> None:
            nonlocal props, enums, strings
            if not isinstance(node, dict):
                return
            if "$ref" in node:
                name = node["$ref"].rsplit("/", 1)[-1]
                if name not in seen:  # a recursive model may nest without end: count once
                    walk(defs.get(name, {}), depth, path, seen | {name})
                return
            if "properties" in node:
                depth += 1
                if depth > _STRICT_MAX_DEPTH:
                    raise SchemaError(
                        f"nests objects deeper than {_STRICT_MAX_DEPTH} levels (openai-strict)",
                        path=path,
                    )
                props += len(node["properties"])
                strings += sum(len(name) for name in node["properties"])
                for name, sub in node["properties"].items():
                    walk(sub, depth, f"{path}.{name}" if path else name, seen)
            values = node.get("enum", ())
            enums += len(values)
            text = sum(len(str(v)) for v in values if v is not None)
            strings += text
            if len(values) > _STRICT_LARGE_ENUM and text > _STRICT_MAX_LARGE_ENUM:
                raise SchemaError(
                    f"an enum of {len(values)} values totals {text} characters; openai-strict "
                    f"allows {_STRICT_MAX_LARGE_ENUM} for an enum of more than "
                    f"{_STRICT_LARGE_ENUM}",
                    path=path,
                )
            for branch in node.get("anyOf", ()):
                walk(branch, depth, path, seen)
            if "items" in node:
                walk(node["items"], depth, f"{path}[]", seen)

        walk({k: v for k, v in schema.items() if k != "$defs"}, 0, "", frozenset())
        if props > _STRICT_MAX_PROPERTIES:
            raise SchemaError(f"has {props} properties; openai-strict allows 5000")
        if enums > _STRICT_MAX_ENUM_VALUES:
            raise SchemaError(f"has {enums} enum values; openai-strict allows 1000")
        if strings > _STRICT_MAX_STRING_TOTAL:
            raise SchemaError(
                f"its names and enum values total {strings} characters; openai-strict allows "
                f"{_STRICT_MAX_STRING_TOTAL}"
            )


#: Regex features OpenAI's strict mode refuses: lookahead, lookbehind, backreferences.
_STRICT_BAD_REGEX: Final = re.compile(r"\(\?<?[=!]|\\[1-9]|\\k<")


def _enum_type(values: list[Any]) -> str | list[str]:
    """The JSON type(s) of an enum's values, which strict mode wants spelled out."""
    kinds: list[str] = []
    for value in values:
        if value is None:
            kind = "null"
        elif isinstance(value, bool):
            kind = "boolean"
        elif isinstance(value, int):
            kind = "integer"
        elif isinstance(value, float):
            kind = "number"
        elif isinstance(value, str):
            kind = "string"
        else:
            kind = "object" if isinstance(value, dict) else "array"
        if kind not in kinds:
            kinds.append(kind)
    if "integer" in kinds and "number" in kinds:
        kinds.remove("integer")
    return kinds[0] if len(kinds) == 1 else kinds


def _refs(node: Any) -> list[str]:
    """Every `$ref` inside a schema."""
    found: list[str] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                found.append(value)
            else:
                found.extend(_refs(value))
    elif isinstance(node, list):
        for value in node:
            found.extend(_refs(value))
    return found


def _merge(a: JSON, b: JSON, path: str) -> JSON:
    """Two schemas that must both hold, as one; SchemaError where they cannot be merged."""
    out = dict(a)
    for key, value in b.items():
        if key not in out:
            out[key] = value
        elif out[key] == value or key in _NOTES:
            continue
        elif key == "properties":
            props = dict(out[key])
            for name, sub in value.items():
                props[name] = (
                    _merge(props[name], sub, f"{path}.{name}")
                    if name in props and isinstance(props[name], dict) and isinstance(sub, dict)
                    else sub
                )
            out[key] = props
        elif key == "required":
            out[key] = [*out[key], *(n for n in value if n not in out[key])]
        elif key == "type":
            left = set(_types(out) or ())
            kept = []
            for kind in _types(b) or ():
                if kind in left:
                    kept.append(kind)
                elif {kind, *left} >= {"number", "integer"}:
                    kept.append("integer")  # every integer is a number: they meet there
            if not kept:
                raise SchemaError("allOf parts ask for types that never meet", path=path)
            out[key] = kept[0] if len(kept) == 1 else kept
        elif key == "enum":
            kept = [v for v in out[key] if v in value]
            if not kept:
                raise SchemaError("allOf parts allow no common enum value", path=path)
            out[key] = kept
        elif key == "additionalProperties" and (value is False or out[key] is False):
            out[key] = False
        elif key in _STRICTER and isinstance(value, (int, float)):
            out[key] = _STRICTER[key](out[key], value)
        else:
            raise SchemaError(
                f"allOf parts disagree on {key!r}; openai-strict needs one schema", path=path
            )
    return out


def _nullable(node: JSON) -> JSON:
    if "anyOf" in node:
        return {**node, "anyOf": [*node["anyOf"], {"type": "null"}]}
    if "$ref" in node:
        return {"anyOf": [node, {"type": "null"}]}
    out = dict(node)
    if "enum" in out:
        out["enum"] = [*out["enum"], None]
    kind = out.get("type")
    if isinstance(kind, str):
        out["type"] = [kind, "null"]
    elif isinstance(kind, list) and "null" not in kind:
        out["type"] = [*kind, "null"]
    elif kind is None and "enum" not in out:
        return {"anyOf": [node, {"type": "null"}]}
    return out


def _resolve(node: Any, defs: JSON) -> Any:
    seen = 0
    while isinstance(node, dict) and "$ref" in node and seen < 32:
        node = defs.get(str(node["$ref"]).rsplit("/", 1)[-1], {})
        seen += 1
    return node


def _accepts_null(node: Any, defs: JSON) -> bool:
    """Whether the schema admits `null` (a conservative reading: only the common forms)."""
    node = _resolve(node, defs)
    if not isinstance(node, dict):
        return node is True
    if untyped(node):
        return True  # takes any value: a null there is an answer
    kind = node.get("type")
    if kind == "null" or (isinstance(kind, list) and "null" in kind):
        return True
    if "enum" in node and None in node["enum"]:
        return True
    if "const" in node and node["const"] is None:
        return True
    branches = node.get("anyOf") or node.get("oneOf") or []
    return any(_accepts_null(b, defs) for b in branches)


def _has_null(data: Any) -> bool:
    """Whether decoded JSON holds a null anywhere (most answers do not: no walk of the schema)."""
    stack = [data]
    while stack:
        node = stack.pop()
        if type(node) is dict:
            node = node.values()
        elif type(node) is not list:
            if node is None:
                return True
            continue
        for value in node:
            if value is None:
                return True
            if type(value) is dict or type(value) is list:
                stack.append(value)
    return False


def _drop_foreign_nulls(data: Any, node: Any, defs: JSON) -> Any:
    """Remove nulls the strict dialect allowed where the full schema has no null.

    Strict mode makes every optional property required-but-nullable; a null there means
    "not given", so the key is dropped and the target's default applies.
    """
    if isinstance(data, dict):
        shape = _object_branch(data, node, defs)
        if shape is None:
            return data
        props, required = shape["properties"], shape.get("required", ())
        out = {}
        for key, value in data.items():
            sub = props.get(key)
            if sub is None:
                out[key] = value
            elif value is None and key not in required and not _accepts_null(sub, defs):
                continue
            else:
                out[key] = _drop_foreign_nulls(value, sub, defs)
        return out
    if isinstance(data, list):
        items = _array_items(node, defs)
        if items is not None:
            return [_drop_foreign_nulls(v, items, defs) for v in data]
    return data


def _branches(node: Any, defs: JSON) -> list[Any]:
    """The schema itself, or the members of its union, flattened through nested unions."""
    node = _resolve(node, defs)
    if not isinstance(node, dict):
        return []
    members = node.get("anyOf") or node.get("oneOf")
    if not members:
        return [node]
    return [leaf for member in members for leaf in _branches(member, defs)]


def _object_branch(data: dict[str, Any], node: Any, defs: JSON) -> JSON | None:
    """The object schema `data` is an instance of: its keys fit, its constants match.

    Where several fit, the first that has all its required keys and takes every null as
    it is wins: a null the full schema accepts there is an answer, not a strict "not given".
    """
    fitting: list[JSON] = []
    for branch in _branches(node, defs):
        props = branch.get("properties")
        if not isinstance(props, dict) or not data.keys() <= props.keys():
            continue
        if all(_constant_matches(data[k], props[k], defs) for k in data):
            fitting.append(branch)

    def rank(branch: JSON) -> tuple[bool, bool]:
        props = branch["properties"]
        complete = set(branch.get("required", ())) <= data.keys()
        as_is = all(v is not None or _accepts_null(props[k], defs) for k, v in data.items())
        return complete, as_is

    return max(fitting, key=rank) if fitting else None


def _constant_matches(value: Any, node: Any, defs: JSON) -> bool:
    """False only where the schema pins a single value (a discriminator) and `value` differs."""
    node = _resolve(node, defs)
    if value is None or not isinstance(node, dict):
        return True  # a null never tells branches apart: it may be a strict "not given"
    if "const" in node:
        return bool(node["const"] == value)
    enum = node.get("enum")
    if isinstance(enum, list) and len(enum) == 1:
        return bool(enum[0] == value)
    return True


def _array_items(node: Any, defs: JSON) -> Any:
    for branch in _branches(node, defs):
        if "items" in branch:
            return branch["items"]
    return None


def _mistral(schema: JSON) -> JSON:
    def walk(node: Any) -> Any:
        if isinstance(node, list):
            return [walk(v) for v in node]
        if not isinstance(node, dict):
            return node
        out: JSON = {}
        for key, value in node.items():
            if key in _ANNOTATIONS:
                continue
            if key in ("properties", "$defs"):
                out[key] = {name: walk(sub) for name, sub in value.items()}
            elif key in ("const", "enum"):
                out[key] = value
            else:
                out[key] = walk(value)
        if out.get("type") == "object" and "properties" in out:
            out.setdefault("additionalProperties", False)
        return out

    return cast(JSON, walk(schema))
