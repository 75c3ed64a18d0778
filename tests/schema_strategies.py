"""Hypothesis strategies for JSON Schemas as people write them, and for values they accept.

`schemas()` draws whole documents in one of four drafts (Draft-04, -06, -07, 2020-12) that
mix the keywords real schemas carry: nested objects and arrays, `$ref` into `definitions`
or `$defs` (nested definitions too, recursive trees and linked lists among them), `$ref`
into `properties` and `items`, `$ref` with annotation siblings, `type` arrays, `const`,
`enum`, `oneOf`/`anyOf`/`allOf`, every nullable form (`type: [x, "null"]`, `anyOf` with
null, an enum holding null, OpenAPI's `nullable: true`), untyped subschemas (`{}`, `true`),
`additionalProperties` open, closed or a schema, `patternProperties`, formats, patterns
from a small safe set, `x-` keywords and annotations. Roots are objects, arrays, strings
or unions.

`instances(schema)` draws values the schema accepts. It reads only the keywords
`schemas()` writes (it is no general JSON Schema generator): `$ref` is resolved as a
JSON pointer into the document or as the root's `$id`, and the drafts' differences
that matter here (`exclusiveMaximum` as a flag in Draft-04, the keys of definitions)
are followed. `nullable: true` is an annotation to JSON Schema, so it never yields null.
"""

from __future__ import annotations

import math
import string
from typing import Any
from urllib.parse import unquote

from hypothesis import strategies as st

JSON = dict[str, Any]

DRAFTS = ("draft-04", "draft-06", "draft-07", "2020-12")
META = {
    "draft-04": "http://json-schema.org/draft-04/schema#",
    "draft-06": "http://json-schema.org/draft-06/schema#",
    "draft-07": "http://json-schema.org/draft-07/schema#",
    "2020-12": "https://json-schema.org/draft/2020-12/schema",
}

#: Patterns that Python's `re`, ECMA-262 and the providers' regex subsets all read alike.
PATTERNS = (
    "^[A-Z]{3}$",
    "^[a-z][a-z0-9_-]*$",
    "^\\d{4}-\\d{2}-\\d{2}$",
    "^[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}$",
    "^\\+?[0-9 ]{7,15}$",
    "^(GET|POST|PUT|DELETE)$",
)
#: Property-name patterns for `patternProperties`, each with a prefix that matches it.
NAME_PATTERNS = {"^x-": "x-", "^[0-9]+$": "", "^[A-Z]+_": "ENV_"}
FORMATS = ("date-time", "date", "time", "email", "uuid", "uri", "ipv4", "ipv6", "hostname")

_NAMES = st.text(alphabet=string.ascii_lowercase + "_", min_size=1, max_size=8)
_DEF_NAMES = st.sampled_from(
    ["Address", "Item", "Money", "Node", "Tag", "User", "Status", "Link", "Point", "Entry"]
)


# --- schemas --------------------------------------------------------------------------------


class _Doc:
    """What one document being drawn knows: its draft and the definitions made so far."""

    def __init__(self, draft: str, defs_key: str) -> None:
        self.draft = draft
        self.defs_key = defs_key
        self.defs: dict[str, Any] = {}
        self.refs: list[str] = []  # pointers a subschema may use, in order of creation

    def pointer(self, *parts: str) -> str:
        escaped = (p.replace("~", "~0").replace("/", "~1") for p in parts)
        return "#/" + "/".join(escaped)


def _annotate(draw: st.DrawFn, node: JSON, doc: _Doc, example: Any = None) -> JSON:
    """Add the annotations and vendor keywords real schemas carry beside validation ones."""
    extras = draw(
        st.sets(
            st.sampled_from(["title", "description", "examples", "default", "x", "deprecated"]),
            max_size=3,
        )
    )
    if "title" in extras:
        node["title"] = draw(st.sampled_from(["Name", "Identifier", "Amount", "Settings"]))
    if "description" in extras:
        node["description"] = draw(st.text(string.ascii_letters + " .,", max_size=40))
    if "examples" in extras and example is not None:
        node["examples"] = [example]
    if "default" in extras and example is not None:
        node["default"] = example
    if "x" in extras:
        key, value = draw(
            st.sampled_from(
                [("x-order", 1), ("x-nullable", True), ("x-go-name", "Name"), ("x-tags", ["a"])]
            )
        )
        node[key] = value
    if "deprecated" in extras and doc.draft == "2020-12":
        node["deprecated"] = draw(st.booleans())
    if doc.draft != "draft-04" and draw(st.integers(0, 9)) == 0:
        node["$comment"] = "generated"
    return node


@st.composite
def _string(draw: st.DrawFn, doc: _Doc) -> JSON:
    node: JSON = {"type": "string"}
    kind = draw(st.sampled_from(["plain", "format", "pattern", "length"]))
    if kind == "format":
        node["format"] = draw(st.sampled_from(FORMATS))
    elif kind == "pattern":
        node["pattern"] = draw(st.sampled_from(PATTERNS))
    elif kind == "length":
        low = draw(st.integers(0, 5))
        node["minLength"] = low
        if draw(st.booleans()):
            node["maxLength"] = low + draw(st.integers(0, 20))
    example = "a" * node.get("minLength", 0) if kind in ("plain", "length") else None
    return _annotate(draw, node, doc, example)


@st.composite
def _number(draw: st.DrawFn, doc: _Doc) -> JSON:
    kind = draw(st.sampled_from(["integer", "number"]))
    node: JSON = {"type": kind}
    if draw(st.booleans()):
        node["minimum"] = draw(st.integers(-100, 0))
    if draw(st.booleans()):
        top = draw(st.integers(1, 1000))
        if draw(st.booleans()):
            node["maximum"] = top
        elif doc.draft == "draft-04":
            node["maximum"], node["exclusiveMaximum"] = top, True
        else:
            node["exclusiveMaximum"] = top
    if draw(st.integers(0, 3)) == 0:
        # binary-exact steps only: jsonschema divides floats, and 0.01 does not divide 0.07
        node["multipleOf"] = draw(st.sampled_from([2, 5, 10] if kind == "integer" else [0.5, 0.25]))
    if "format" not in node and draw(st.integers(0, 3)) == 0:
        node["format"] = "int64" if kind == "integer" else "double"
    return _annotate(draw, node, doc, 0 if node.get("minimum", 0) <= 0 else None)


@st.composite
def _choice(draw: st.DrawFn, doc: _Doc) -> JSON:
    """A `const` or an `enum`, typed or untyped, sometimes holding null."""
    values = draw(
        st.lists(
            st.sampled_from(["red", "green", "blue", "one-of", "A b"]),
            min_size=1,
            max_size=4,
            unique=True,
        )
    )
    if doc.draft != "draft-04" and len(values) == 1 and draw(st.booleans()):
        node: JSON = {"const": values[0]}
    else:
        node = {"enum": values}
    if draw(st.booleans()):
        node["type"] = "string"
    if "enum" in node and draw(st.integers(0, 3)) == 0:
        node["enum"] = [*values, None]
        node["type"] = ["string", "null"]
    return _annotate(draw, node, doc, values[0])


def _leaves(doc: _Doc) -> st.SearchStrategy[Any]:
    options: list[st.SearchStrategy[Any]] = [
        _string(doc),
        _number(doc),
        _choice(doc),
        st.builds(lambda: {"type": "boolean"}),
        st.builds(dict),  # untyped: anything goes (a fresh dict each time: callers add keys)
    ]
    if doc.draft != "draft-04":
        options.append(st.just(True))  # a boolean schema
    if doc.refs:
        options.append(_reference(doc))
    return st.one_of(options)


@st.composite
def _reference(draw: st.DrawFn, doc: _Doc) -> JSON:
    """A `$ref` to a definition made earlier, now and then with annotation siblings."""
    node: JSON = {"$ref": draw(st.sampled_from(doc.refs))}
    if draw(st.integers(0, 3)) == 0:
        node["description"] = "see the definition"
    return node


def _nullable(draw: st.DrawFn, node: Any, doc: _Doc) -> Any:
    """One of the nullable forms people write, or the node unchanged."""
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        return {"anyOf": [node, {"type": "null"}]} if draw(st.booleans()) else node
    form = draw(st.sampled_from(["none", "none", "type-array", "any-of", "one-of", "openapi"]))
    kind = node.get("type")
    if (
        form == "type-array"
        and isinstance(kind, str)
        and "enum" not in node
        and "const" not in node
    ):
        return {**node, "type": [kind, "null"]}
    if form == "any-of":
        return {"anyOf": [node, {"type": "null"}]}
    if form == "one-of" and kind is not None and not _admits_null(node):
        return {"oneOf": [{"type": "null"}, node]}
    if form == "openapi" and isinstance(kind, str):
        return {**node, "nullable": True}
    return node


def _admits_null(node: JSON) -> bool:
    kind = node.get("type")
    return (
        kind == "null"
        or (isinstance(kind, list) and "null" in kind)
        or None in node.get("enum", ())
    )


def _subschema(doc: _Doc, depth: int) -> st.SearchStrategy[Any]:
    if depth <= 0:
        return _leaves(doc)
    return st.one_of(
        _leaves(doc),
        _object(doc, depth - 1),
        _array(doc, depth - 1),
        _union(doc, depth - 1),
        _type_array(doc),
    )


@st.composite
def _type_array(draw: st.DrawFn, doc: _Doc) -> JSON:
    kinds = draw(
        st.lists(
            st.sampled_from(["string", "integer", "boolean", "number"]),
            min_size=2,
            max_size=3,
            unique=True,
        )
    )
    return _annotate(draw, {"type": kinds}, doc)


@st.composite
def _object(draw: st.DrawFn, doc: _Doc, depth: int, *, root: bool = False) -> JSON:
    names = draw(st.lists(_NAMES, min_size=0 if not root else 1, max_size=5, unique=True))
    props = {}
    for name in names:
        props[name] = _nullable(draw, draw(_subschema(doc, depth)), doc)
    node: JSON = {"type": "object", "properties": props}
    if names:
        node["required"] = draw(st.lists(st.sampled_from(names), unique=True, max_size=len(names)))
        if not node["required"] and doc.draft == "draft-04":
            del node["required"]  # Draft-04 wants at least one name in `required`
    if root and names and draw(st.integers(0, 3)) == 0:
        # a $ref into the root's own properties (or an array property's items)
        source = draw(st.sampled_from(names))
        target = props[source]
        if isinstance(target, dict) and isinstance(target.get("items"), dict):
            props[source + "_item"] = {"$ref": doc.pointer("properties", source, "items")}
        else:
            props[source + "_copy"] = {"$ref": doc.pointer("properties", source)}
    extra = draw(st.sampled_from(["absent", "closed", "open", "schema", "patterns"]))
    if extra == "closed":
        node["additionalProperties"] = False
    elif extra == "open":
        node["additionalProperties"] = True
    elif extra == "schema":
        node["additionalProperties"] = draw(_leaves(doc))
    elif extra == "patterns":
        pattern = draw(st.sampled_from(sorted(NAME_PATTERNS)))
        node["patternProperties"] = {pattern: draw(_leaves(doc))}
        node["additionalProperties"] = False
    if not props and draw(st.booleans()):
        del node["properties"]
    return _annotate(draw, node, doc)


@st.composite
def _array(draw: st.DrawFn, doc: _Doc, depth: int) -> JSON:
    node: JSON = {"type": "array", "items": draw(_subschema(doc, depth))}
    if draw(st.booleans()):
        node["minItems"] = draw(st.integers(0, 2))
    if draw(st.booleans()):
        node["maxItems"] = node.get("minItems", 0) + draw(st.integers(1, 5))
    if node.get("minItems", 0) <= 1 and draw(st.integers(0, 4)) == 0:
        node["uniqueItems"] = True  # never with minItems 2: items may admit one value only
    return _annotate(draw, node, doc)


@st.composite
def _union(draw: st.DrawFn, doc: _Doc, depth: int) -> JSON:
    keyword = draw(st.sampled_from(["anyOf", "oneOf", "allOf"]))
    if keyword == "allOf":
        # the form generators and OpenAPI specs write: object fragments that merge
        parts = [draw(_object(doc, max(depth - 1, 0))) for _ in range(draw(st.integers(1, 2)))]
        seen: set[str] = set()
        for part in parts:
            part.pop(
                "additionalProperties", None
            )  # a closed fragment would refuse the other's keys
            part.pop("patternProperties", None)
            props = part.get("properties", {})
            for name in [n for n in props if n in seen]:  # one schema per name across fragments
                del props[name]
            if "required" in part:
                part["required"] = [n for n in part["required"] if n in props]
                if not part["required"]:
                    del part["required"]
            seen |= set(props)
        return {"allOf": parts}
    if keyword == "oneOf":
        # branches told apart by type, as real discriminated unions are
        kinds = draw(
            st.lists(
                st.sampled_from(["string", "integer", "boolean", "object", "array"]),
                min_size=2,
                max_size=3,
                unique=True,
            )
        )
        branches = []
        for kind in kinds:
            if kind == "object":
                branches.append(draw(_object(doc, max(depth - 1, 0))))
            elif kind == "array":
                branches.append(draw(_array(doc, max(depth - 1, 0))))
            else:
                branches.append(_annotate(draw, {"type": kind}, doc))
        return {"oneOf": branches}
    branches = [draw(_subschema(doc, max(depth - 1, 0))) for _ in range(draw(st.integers(2, 3)))]
    return {"anyOf": branches}


def _recursive_definition(draw: st.DrawFn, doc: _Doc, name: str) -> JSON:
    """A tree or a linked list: the self-reference sits where a value can stop."""
    self_ref = {"$ref": doc.pointer(doc.defs_key, name)}
    value = draw(_leaves(doc))
    if draw(st.booleans()):
        return {
            "type": "object",
            "properties": {"value": value, "children": {"type": "array", "items": self_ref}},
            "required": ["value"],
        }
    if draw(st.booleans()):
        link: Any = {"anyOf": [self_ref, {"type": "null"}]}
        required = ["value", "next"]
    else:
        link, required = self_ref, ["value"]
    return {"type": "object", "properties": {"value": value, "next": link}, "required": required}


@st.composite
def schemas(draw: st.DrawFn, draft: str | None = None, max_depth: int = 3) -> JSON:
    """A JSON Schema document of one draft that mixes the keywords real schemas carry."""
    draft = draft or draw(st.sampled_from(DRAFTS))
    defs_key = "definitions" if draft != "2020-12" or draw(st.integers(0, 3)) == 0 else "$defs"
    doc = _Doc(draft, defs_key)
    for name in draw(st.lists(_DEF_NAMES, max_size=4, unique=True)):
        if draw(st.integers(0, 3)) == 0:
            doc.defs[name] = _recursive_definition(draw, doc, name)
        else:
            doc.defs[name] = _nullable(draw, draw(_subschema(doc, 1)), doc)
        doc.refs.append(doc.pointer(defs_key, name))
        if draw(st.integers(0, 5)) == 0 and isinstance(doc.defs[name], dict):
            # a definition nested inside another one, reached by a longer pointer
            inner = draw(_leaves(doc))
            doc.defs[name].setdefault(defs_key, {})["Inner"] = inner
            doc.refs.append(doc.pointer(defs_key, name, defs_key, "Inner"))
    root_kind = draw(st.sampled_from(["object"] * 6 + ["array", "string", "union", "ref"]))
    if root_kind == "object":
        root = draw(_object(doc, max_depth - 1, root=True))
    elif root_kind == "array":
        root = draw(_array(doc, max_depth - 1))
    elif root_kind == "string":
        root = draw(_string(doc))
    elif root_kind == "union":
        root = draw(_union(doc, max_depth - 1))
    elif doc.refs:
        root = {"$ref": doc.refs[0]}
    else:
        root = draw(_object(doc, max_depth - 1, root=True))
    out: JSON = {"$schema": META[draft]}
    if draw(st.booleans()):
        out["id" if draft == "draft-04" else "$id"] = "https://example.com/schemas/generated.json"
    out.update(root)
    if doc.defs:
        out[defs_key] = doc.defs
    return out


# --- instances ------------------------------------------------------------------------------


def _resolve(ref: str, root: JSON) -> Any:
    """Follow a `$ref` the strategy writes: "#", a JSON pointer, or the root's own $id."""
    if ref in (root.get("$id"), root.get("id")):
        return root
    fragment = ref.split("#", 1)[1] if "#" in ref else ""
    node: Any = root
    for part in fragment.split("/")[1:] if fragment else ():
        key = unquote(part).replace("~1", "/").replace("~0", "~")
        node = node[int(key)] if isinstance(node, list) else node[key]
    return node


_ANY = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.text(max_size=5))
_FORMAT_VALUES: dict[str, st.SearchStrategy[str]] = {
    "date-time": st.datetimes(timezones=st.just(__import__("datetime").timezone.utc)).map(
        lambda d: d.isoformat()
    ),
    "date": st.dates().map(lambda d: d.isoformat()),
    "time": st.times().map(lambda t: t.strftime("%H:%M:%S") + "Z"),
    "email": st.sampled_from(["ann@example.com", "b.lee+tag@example.org"]),
    "uuid": st.uuids().map(str),
    "uri": st.sampled_from(["https://example.com/a", "urn:isbn:0451450523"]),
    "ipv4": st.ip_addresses(v=4).map(str),
    "ipv6": st.ip_addresses(v=6).map(str),
    "hostname": st.sampled_from(["example.com", "a-b.example.org"]),
}


def instances(schema: Any, max_depth: int = 4) -> st.SearchStrategy[Any]:
    """Values `schema` (drawn by `schemas()`) accepts."""
    root = schema if isinstance(schema, dict) else {}

    @st.composite
    def build(draw: st.DrawFn) -> Any:
        return _value(draw, schema, root, max_depth)

    return build()


def _value(draw: st.DrawFn, node: Any, root: JSON, depth: int) -> Any:
    if node is True:
        return draw(_ANY)
    if not isinstance(node, dict):
        raise ValueError(f"no instance for {node!r}")
    if "$ref" in node:
        return _value(draw, _resolve(node["$ref"], root), root, depth)
    if "const" in node:
        return node["const"]
    if "enum" in node:
        allowed = node.get("type")
        values = [v for v in node["enum"] if v is not None or allowed in (None, ["string", "null"])]
        return draw(st.sampled_from(values))
    if "allOf" in node:
        merged: JSON = {"type": "object", "properties": {}, "required": []}
        for part in node["allOf"]:
            merged["properties"].update(part.get("properties", {}))
            merged["required"] += part.get("required", [])
        return _value(draw, merged, root, depth)
    for keyword in ("anyOf", "oneOf"):
        if keyword in node:
            branches = node[keyword]
            stops = [b for b in branches if isinstance(b, dict) and b.get("type") == "null"]
            if depth <= 0 and stops:
                return None
            return _value(draw, draw(st.sampled_from(branches)), root, depth - 1)
    kind = node.get("type")
    if isinstance(kind, list):
        kind = draw(st.sampled_from([k for k in kind if k != "null" or depth > 0] or kind))
    if kind is None:
        return draw(_ANY)
    if kind == "null":
        return None
    if kind == "boolean":
        return draw(st.booleans())
    if kind in ("integer", "number"):
        return _number_value(draw, node, kind)
    if kind == "string":
        return _string_value(draw, node)
    if kind == "array":
        return _array_value(draw, node, root, depth)
    return _object_value(draw, node, root, depth)


def _number_value(draw: st.DrawFn, node: JSON, kind: str) -> Any:
    low = node.get("minimum", -1000)
    high = node.get("maximum", 1000)
    top = node.get("exclusiveMaximum")
    if isinstance(top, bool):
        high = high - 1 if top else high
    elif top is not None:
        high = top - 1
    step = node.get("multipleOf")
    if step is not None:
        k = draw(st.integers(math.ceil(low / step), math.floor(high / step)))
        return k * step
    if kind == "integer":
        return draw(st.integers(low, high))
    return draw(st.one_of(st.integers(low, high), st.floats(low, high, allow_nan=False)))


def _string_value(draw: st.DrawFn, node: JSON) -> str:
    if "format" in node and node["format"] in _FORMAT_VALUES:
        return draw(_FORMAT_VALUES[node["format"]])
    if "pattern" in node:
        return draw(st.from_regex(node["pattern"], fullmatch=True))
    low = node.get("minLength", 0)
    return draw(
        st.text(string.ascii_letters, min_size=low, max_size=node.get("maxLength", low + 8))
    )


def _array_value(draw: st.DrawFn, node: JSON, root: JSON, depth: int) -> list[Any]:
    low = node.get("minItems", 0)
    high = node.get("maxItems", low + 3) if depth > 0 else low
    items = node.get("items", {})
    values = draw(
        st.lists(
            _item(items, root, depth - 1),
            min_size=low,
            max_size=max(low, high),
            unique_by=(lambda v: repr(v)) if node.get("uniqueItems") else None,
        )
    )
    if node.get("uniqueItems"):
        # 1 and True, 1 and 1.0 are distinct reprs but equal JSON values: keep the first
        kept: list[Any] = []
        for value in values:
            if not any(_same(value, other) for other in kept):
                kept.append(value)
        values = kept
    return values


def _same(a: Any, b: Any) -> bool:
    return type(a) is type(b) and a == b if isinstance(a, bool) or isinstance(b, bool) else a == b


def _item(items: Any, root: JSON, depth: int) -> st.SearchStrategy[Any]:
    @st.composite
    def one(draw: st.DrawFn) -> Any:
        return _value(draw, items, root, depth)

    return one()


def _object_value(draw: st.DrawFn, node: JSON, root: JSON, depth: int) -> JSON:
    props = node.get("properties", {})
    required = set(node.get("required", ()))
    out: JSON = {}
    for name, sub in props.items():
        if name in required or (depth > 0 and draw(st.booleans())):
            out[name] = _value(draw, sub, root, depth - 1)
    patterns = node.get("patternProperties", {})
    extra = node.get("additionalProperties", True)
    if patterns and depth > 0 and draw(st.booleans()):
        pattern, sub = draw(st.sampled_from(sorted(patterns.items())))
        key = NAME_PATTERNS[pattern] + str(draw(st.integers(0, 99)))
        if key not in props:
            out[key] = _value(draw, sub, root, depth - 1)
    if extra is not False and depth > 0 and draw(st.integers(0, 3)) == 0:
        key = "extra_" + draw(_NAMES)
        if key not in props and not any(key.startswith(p) for p in NAME_PATTERNS.values() if p):
            out[key] = _value(draw, {} if extra is True else extra, root, depth - 1)
    return out
