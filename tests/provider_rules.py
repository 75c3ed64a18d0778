"""What each provider accepts as a schema, checked from its documentation rather than our code.

Every checker takes a JSON Schema as it goes on the wire and returns the `Violation`s it
finds, an empty list when the provider would take the schema. A violation names the place
(a JSON pointer, `#` for the root), the rule (an id in `RULES`) and how sure we are of the
rule: `documented` (the provider's documentation says so), `observed` (the provider's own
error messages, its SDK, or its converter's code say so), or `conservative` (the
documentation is silent or ambiguous and we chose the stricter reading).

Sources, read on 2026-12-01 (`SOURCES` gives the addresses):

- OpenAI's Structured Outputs guide, section "Supported schemas" (the copy of the page
  updated 2025-11-30, the latest one stored), its Function calling guide ("Strict mode"), its
  API reference (openai/openai-openapi at f85dbe2, 2026-08-21), the strict-schema helper in
  openai-python (`lib/_pydantic.py`), and the API's error messages as users reported them.
- Mistral's "Custom Structured Outputs" page and its API reference (`JSONSchema`, `Function`).
- llama.cpp's `grammars/README.md` ("JSON Schemas -> GBNF") and the converter the embedded
  model really runs: llama-cpp-python 0.3.36's `llama_grammar.py` with its bundled grammar
  parser, exercised case by case (`llama_converts` runs it in a subprocess).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast
from urllib.parse import unquote, urldefrag, urljoin

import jsonschema

__all__ = [
    "RULES",
    "SOURCES",
    "Rule",
    "Violation",
    "llama_converts",
    "llama_grammar",
    "mistral_json_schema",
    "openai_strict",
    "refs_resolve",
    "tool_parameters",
]

SOURCES: dict[str, str] = {
    "openai-guide": "OpenAI, Structured model outputs, Supported schemas: "
    "https://developers.openai.com/api/docs/guides/structured-outputs#supported-schemas",
    "openai-functions": "OpenAI, Function calling, Strict mode: "
    "https://platform.openai.com/docs/guides/function-calling#strict-mode",
    "openai-api": "OpenAI API reference, FunctionParameters and ResponseFormatJsonSchemaSchema "
    "(github.com/openai/openai-openapi f85dbe2, copied in tests/data/openai-chat-schemas.json)",
    "openai-sdk": "openai-python, src/openai/lib/_pydantic.py (to_strict_json_schema): a $ref "
    "with other keys is unravelled because strict mode cannot take it",
    "openai-errors": "OpenAI API errors as reported: \"schema must have a 'type' key\" "
    "(can1357/oh-my-pi#211), \"'oneOf' is not permitted\" (ai-dynamo/dynamo#15153), "
    '"regex lookaround is not supported" (vercel/ai#21037, pydantic/pydantic-ai#5519), '
    '"\'uri\' is not a valid format" (can1357/oh-my-pi#206), "object schema missing '
    'properties" (tailcallhq/forgecode#1359), "uniqueItems is not permitted" '
    "(openclaw/clownfish#280), \"$ref cannot have keywords {'description'}\" "
    '(camel-ai/camel#3001), "schema must be a JSON Schema of \'type: \\"object\\"\'" '
    "(browserbase/stagehand#1159)",
    "mistral-guide": "Mistral, Custom Structured Outputs: "
    "https://docs.mistral.ai/capabilities/structured-output/custom_structured_output/",
    "mistral-api": "Mistral API reference: JSONSchema {name, schema: object, description, "
    "strict} and Function {name, description, strict, parameters: object} "
    "(mistralai/client-python models/jsonschema.py, models/function.py)",
    "json-schema": "JSON Schema 2020-12, Core section 8.2 ($id, $anchor, $ref) and its "
    "meta-schema: https://json-schema.org/draft/2020-12/schema",
    "llama-readme": "llama.cpp, grammars/README.md, JSON Schemas -> GBNF, known limitations: "
    "https://github.com/ggml-org/llama.cpp/blob/master/grammars/README.md",
    "llama-converter": "llama-cpp-python 0.3.36, llama_cpp/llama_grammar.py "
    "(json_schema_to_gbnf) and the llama.cpp grammar parser it feeds, run on each case",
}

Basis = Literal["documented", "observed", "conservative"]


@dataclass(frozen=True)
class Rule:
    """One rule a provider states (or that we infer, see `basis`), and where it comes from."""

    basis: Basis
    source: str
    text: str


#: Each rule: its id, basis and source, then what it says (on the indented lines below).
_RULE_TABLE = """
ref.resolves documented json-schema
    every $ref points to a schema inside this document
schema.draft-2020-12 conservative json-schema
    nothing narrower is documented, so the schema must be valid JSON Schema 2020-12
openai.root-object documented openai-guide
    the root must be an object and not use anyOf
openai.additional-properties-false documented openai-guide
    additionalProperties: false must always be set in objects
openai.all-required documented openai-guide
    all fields must be required (every property in required)
openai.properties-present observed openai-errors
    an object schema must have properties ({} when empty)
openai.type-present observed openai-errors
    every schema has a type key, unless it is an anyOf or a $ref
openai.literal-type conservative openai-guide
    an enum or const declares its type, as every example does (that the API exempts
    them from its type-key check is not documented)
openai.type-supported documented openai-guide
    supported types: string, number, boolean, integer, object, array (and null in unions)
openai.type-union conservative openai-guide
    a type array is one type and "null", the only form the guide shows
openai.keyword-unsupported documented openai-guide
    not supported: allOf, not, dependentRequired, dependentSchemas, if, then, else
openai.keyword-rejected observed openai-errors
    the API refuses this keyword (oneOf, uniqueItems)
openai.keyword-implied conservative openai-guide
    minLength, maxLength and patternProperties are only implied (by the fine-tuned models'
    exclusion list), not listed as supported
openai.keyword-not-listed conservative openai-guide
    only the listed keywords are supported: type, enum, const, anyOf, $ref, $defs,
    definitions, description, title; pattern, format; multipleOf, maximum,
    exclusiveMaximum, minimum, exclusiveMinimum; items, minItems, maxItems; properties,
    required, additionalProperties
openai.keyword-wrong-type conservative openai-guide
    a type's keywords are supported for that type (pattern for strings, ...)
openai.format documented openai-guide
    supported formats: date-time, time, date, duration, email, hostname, ipv4, ipv6, uuid
openai.pattern-lookaround observed openai-errors
    regex lookaround is not supported in pattern
openai.pattern-backreference conservative openai-guide
    backreferences are not regular; the guide names no regex features
openai.ref-alone observed openai-sdk
    a $ref cannot have sibling keywords, not even a description
openai.ref-form conservative openai-guide
    the documented $ref forms are # (root recursion) and #/$defs/<name> (definitions);
    #/definitions/<name> is taken as the same
openai.defs-at-root conservative openai-guide
    definitions are documented at the root only
openai.anyof documented openai-guide
    for anyOf, the nested schemas must each be a valid schema of this subset
openai.anyof-siblings conservative openai-guide
    an anyOf carries only description and title beside it, as in the guide's examples
openai.enum conservative openai-guide
    enum is a non-empty list of strings, numbers, booleans or null, each of the declared
    type (and const likewise)
openai.keyword-value conservative json-schema
    a keyword's value has the type JSON Schema gives it
openai.array-items conservative openai-errors
    an array has an items schema (with a type)
openai.max-properties documented openai-guide
    up to 5000 object properties in total
openai.max-depth documented openai-guide
    up to 10 levels of nesting (counted here as objects and arrays, the root being level
    1, through $refs; the guide does not say how it counts)
openai.max-enum-values documented openai-guide
    up to 1000 enum values across all enums (a const counted as one, conservatively)
openai.max-string-length documented openai-guide
    property names, definition names, enum and const values total at most 120,000 chars
openai.max-enum-string-length documented openai-guide
    an enum of more than 250 string values totals at most 15,000 characters
tools.root-object observed openai-errors
    parameters must be a JSON Schema of type: "object" (OpenAI says so in its error;
    Mistral documents nothing else, conservatively the same)
tools.root-properties observed openai-errors
    the parameters object must have properties ({} when none)
api.schema-object documented openai-api
    the schema (or parameters) is a JSON object (not a boolean schema); Mistral's API
    types it the same (mistral-api)
llama.boolean-schema observed llama-converter
    a true/false schema crashes the converter
llama.untyped observed llama-converter
    a schema needs a type (or $ref, anyOf, const, enum, properties, items): with only
    annotations it crashes the converter, and {} (or additionalProperties: true) is
    narrowed to any object
llama.type-unknown observed llama-converter
    a type outside JSON's seven crashes the converter
llama.siblings-dropped documented llama-readme
    can't mix properties with anyOf/oneOf; likewise the converter drops what sits beside a
    $ref, a type array, a const or an enum
llama.keyword-unsupported documented llama-readme
    unsupported: uniqueItems, contains, minContains, $anchor, not, if/then/else,
    dependentSchemas, patternProperties, prefixItems (broken), remote $refs
llama.keyword-skipped observed llama-converter
    keywords the converter skips silently (number bounds, multipleOf, allOf's non-property
    parts, oneOf's exclusivity, object and array counts, ...)
llama.ref-form observed llama-converter
    only #/... pointers are followed; "#", anchors and other documents raise "Unsupported
    ref"
llama.ref-recursive-name observed llama-converter
    a recursive $ref's target name must be letters, digits and dashes, else the grammar
    names a rule that does not exist
llama.pattern documented llama-readme
    patterns start with ^ and end with $, have no (?...) groups, lazy quantifiers or inner
    anchors, and only the escapes the grammar parser knows
llama.format observed llama-converter
    string formats carried: date, time, date-time, uuid
llama.one-string-constraint observed llama-converter
    a string carries one of pattern, format, or minLength/maxLength; the rest is dropped
llama.literal-quote observed llama-converter
    a property name, enum or const string containing " makes an unparsable grammar
llama.repetition observed llama-converter
    more than 1000 optional repetitions (maxLength - minLength, maxItems - minItems,
    {m,n}) exceed the grammar parser's limit
llama.bound-integer observed llama-converter
    length and item bounds are non-negative integers
"""


def _parse_rules(table: str) -> dict[str, Rule]:
    rules: dict[str, Rule] = {}
    for line in table.strip().splitlines():
        if not line.startswith(" "):
            rule_id, basis, source = line.split()
            rules[rule_id] = Rule(cast(Basis, basis), source, "")
        else:
            rule = rules[rule_id]
            text = f"{rule.text} {line.strip()}".strip()
            rules[rule_id] = Rule(rule.basis, rule.source, text)
    return rules


RULES: dict[str, Rule] = _parse_rules(_RULE_TABLE)


@dataclass(frozen=True)
class Violation:
    """A place in a schema that breaks one of `RULES`."""

    path: str
    rule: str
    detail: str

    def __str__(self) -> str:
        rule = RULES[self.rule]
        return f"{self.path}: {self.detail} [{self.rule}, {rule.basis}: {rule.text}]"


# -- walking schemas ---------------------------------------------------------------------

#: Keywords whose value is one schema, a list of schemas, or a map of names to schemas.
_ONE = (
    "additionalProperties", "additionalItems", "contains", "propertyNames", "not", "if",
    "then", "else", "unevaluatedItems", "unevaluatedProperties", "contentSchema",
)  # fmt: skip
_MANY = ("allOf", "anyOf", "oneOf", "prefixItems")
_NAMED = (
    "properties", "patternProperties", "$defs", "definitions", "dependentSchemas",
    "dependencies",
)  # fmt: skip
_DEFS = ("$defs", "definitions")
_ANNOTATIONS = frozenset(
    {
        "title", "description", "default", "examples", "$comment", "deprecated", "readOnly",
        "writeOnly", "$schema", "$id", "id", "contentEncoding", "contentMediaType",
    }
)  # fmt: skip
#: How a check reports: flag(rule, detail, where=the node's pointer).
_Flag = Callable[..., None]
_JSON_TYPES = ("string", "number", "integer", "boolean", "object", "array", "null")


def _join(path: str, *keys: object) -> str:
    for key in keys:
        path += "/" + str(key).replace("~", "~0").replace("/", "~1")
    return path


def _children(node: dict[str, Any], path: str) -> Iterator[tuple[Any, str, str]]:
    """Each subschema directly under `node`, with its pointer and the keyword holding it."""
    for key in _ONE:
        if isinstance(node.get(key), dict | bool):
            yield node[key], _join(path, key), key
    items = node.get("items")
    if isinstance(items, dict | bool):
        yield items, _join(path, "items"), "items"
    elif isinstance(items, list):
        for i, sub in enumerate(items):
            yield sub, _join(path, "items", i), "items"
    for key in _MANY:
        if isinstance(node.get(key), list):
            for i, sub in enumerate(node[key]):
                yield sub, _join(path, key, i), key
    for key in _NAMED:
        if isinstance(node.get(key), dict):
            for name, sub in node[key].items():
                if isinstance(sub, dict | bool):  # `dependencies` also maps to name lists
                    yield sub, _join(path, key, name), key


def _walk(schema: Any, path: str = "#") -> Iterator[tuple[Any, str]]:
    """Every schema in the document (refs not followed), depth first, with its pointer."""
    yield schema, path
    if isinstance(schema, dict):
        for sub, sub_path, _ in _children(schema, path):
            yield from _walk(sub, sub_path)


def _types(node: dict[str, Any]) -> set[str]:
    """The JSON types a schema names (its `type`), or that its keywords imply."""
    declared = node.get("type")
    if isinstance(declared, str):
        return {declared}
    if isinstance(declared, list):
        return {t for t in declared if isinstance(t, str)}
    implied = set()
    if "properties" in node or "additionalProperties" in node:
        implied.add("object")
    if "items" in node or "prefixItems" in node:
        implied.add("array")
    return implied


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


def _of_type(value: Any, json_type: str) -> bool:
    return {
        "string": isinstance(value, str),
        "number": isinstance(value, int | float) and not isinstance(value, bool),
        "integer": (isinstance(value, int) and not isinstance(value, bool))
        or (isinstance(value, float) and value.is_integer()),
        "boolean": isinstance(value, bool),
        "null": value is None,
        "object": isinstance(value, dict),
        "array": isinstance(value, list),
    }.get(json_type, False)


# -- $ref resolution ---------------------------------------------------------------------

_ROOT_BASE = "https://document.invalid/schema.json"


def _absolute(base: str, ref: str) -> str:
    if ref.startswith("#"):
        return urldefrag(base)[0] + ref
    return urljoin(base, ref)


def _pointer_target(node: Any, fragment: str) -> tuple[bool, Any]:
    """Follow a JSON pointer (the URI fragment, percent-encoded) from `node`."""
    for part in unquote(fragment).split("/")[1:]:
        key = part.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and key in node:
            node = node[key]
        elif isinstance(node, list) and key.isdigit() and int(key) < len(node):
            node = node[int(key)]
        else:
            return False, None
    return True, node


class _Index:
    """The resources ($id) and anchors of one document, and the base URI of each $ref."""

    def __init__(self, schema: Any) -> None:
        declared = schema.get("$schema", "") if isinstance(schema, dict) else ""
        # `id` named a schema before draft 6; read it where no later draft is declared
        self.legacy_id = not declared or "draft-03" in declared or "draft-04" in declared
        self.resources: dict[str, Any] = {}
        self.anchors: dict[tuple[str, str], Any] = {}
        self.refs: list[tuple[str, str, Any]] = []  # (pointer, base, the $ref value)
        self._index(schema, "#", _ROOT_BASE, root=True)

    def _index(self, node: Any, path: str, base: str, *, root: bool = False) -> None:
        if not isinstance(node, dict):
            if root:
                self.resources[base] = node
            return
        ident = node.get("$id")
        if not isinstance(ident, str) and self.legacy_id and "$ref" not in node:
            ident = node.get("id")
        anchor = None
        if isinstance(ident, str):
            uri, anchor = urldefrag(_absolute(base, ident))
            if not ident.startswith("#"):
                base = uri
        if root or (isinstance(ident, str) and not ident.startswith("#")):
            self.resources[urldefrag(base)[0]] = node
        for name in (anchor, node.get("$anchor"), node.get("$dynamicAnchor")):
            if isinstance(name, str) and name and not name.startswith("/"):
                self.anchors[(urldefrag(base)[0], name)] = node
        for key in ("$ref", "$dynamicRef", "$recursiveRef"):
            if key in node:
                self.refs.append((_join(path, key), base, node[key]))
        for sub, sub_path, _ in _children(node, path):
            self._index(sub, sub_path, base)

    def lookup(self, base: str, ref: str) -> tuple[bool, Any, str]:
        """(found, target, why not) for `ref` read against `base`."""
        uri, fragment = urldefrag(_absolute(base, ref))
        if uri not in self.resources:
            return False, None, f"{ref!r} points outside this document"
        resource = self.resources[uri]
        if not fragment:
            return True, resource, ""
        if fragment.startswith("/"):
            found, target = _pointer_target(resource, fragment)
            if not found:
                return False, None, f"{ref!r} points to no location in this document"
            return True, target, ""
        if (uri, unquote(fragment)) in self.anchors:
            return True, self.anchors[(uri, unquote(fragment))], ""
        return False, None, f"{ref!r} names no anchor in this document"


def refs_resolve(schema: Any) -> list[Violation]:
    """Every $ref (and $dynamicRef, $recursiveRef) points to a schema inside `schema`.

    JSON pointers (`#`, `#/$defs/x`, `#/definitions/x`, any other pointer), anchors
    (`$anchor`, or an `$id`/`id` of the form `#name` before 2019-09) and embedded resources
    (`$id`) count; other documents do not, a provider has no way to fetch them.
    """
    index = _Index(schema)
    found: list[Violation] = []
    for path, base, ref in index.refs:
        if not isinstance(ref, str):
            found.append(Violation(path, "ref.resolves", f"$ref is {ref!r}, not a string"))
            continue
        ok, target, why = index.lookup(base, ref)
        if not ok:
            found.append(Violation(path, "ref.resolves", why))
        elif not isinstance(target, dict | bool):
            found.append(Violation(path, "ref.resolves", f"{ref!r} points to a non-schema"))
    return found


def _local_target(root: Any, ref: str) -> Any:
    """The schema a `#...` pointer names in `root`, or None."""
    if ref == "#":
        return root
    if ref.startswith("#/"):
        found, target = _pointer_target(root, ref[1:])
        return target if found and isinstance(target, dict | bool) else None
    return None


def _draft_2020_12(schema: Any) -> list[Violation]:
    meta = jsonschema.Draft202012Validator(jsonschema.Draft202012Validator.META_SCHEMA)
    return [
        Violation(_join("#", *error.absolute_path), "schema.draft-2020-12", error.message[:200])
        for error in meta.iter_errors(schema)
    ]


# -- OpenAI strict mode ------------------------------------------------------------------

_OPENAI_COMMON = frozenset({"type", "enum", "const", "anyOf", "$ref", "description", "title"})
_OPENAI_NUMBER = frozenset(
    {"multipleOf", "maximum", "exclusiveMaximum", "minimum", "exclusiveMinimum"}
)
_OPENAI_BY_TYPE: dict[str, frozenset[str]] = {
    "string": frozenset({"pattern", "format"}),
    "number": _OPENAI_NUMBER,
    "integer": _OPENAI_NUMBER,
    "array": frozenset({"items", "minItems", "maxItems"}),
    "object": frozenset({"properties", "required", "additionalProperties"}),
    "boolean": frozenset(),
    "null": frozenset(),
}
_OPENAI_TYPED = frozenset().union(*_OPENAI_BY_TYPE.values())
_OPENAI_UNSUPPORTED = frozenset(
    {"allOf", "not", "dependentRequired", "dependentSchemas", "if", "then", "else"}
)
_OPENAI_REJECTED = frozenset({"oneOf", "uniqueItems"})
_OPENAI_IMPLIED = frozenset({"minLength", "maxLength", "patternProperties"})
_OPENAI_FORMATS = frozenset(
    {"date-time", "time", "date", "duration", "email", "hostname", "ipv4", "ipv6", "uuid"}
)
_OPENAI_REF = re.compile(r"^#(/(\$defs|definitions)/[^/]+)?$")
_LOOKAROUND = re.compile(r"\(\?<?[=!]")
_BACKREFERENCE = re.compile(r"\\[1-9]|\\k<")


def _unescaped(pattern: str) -> str:
    """`pattern` with every escaped character replaced by `_`, so `\\(` is not a group."""
    return re.sub(r"\\.", "_", pattern)


def openai_strict(schema: Any) -> list[Violation]:
    """OpenAI Structured Outputs with strict: true (response_format or a strict function tool)."""
    found: list[Violation] = []
    if not isinstance(schema, dict):
        return [Violation("#", "api.schema-object", f"the schema is {type(schema).__name__}")]
    if schema.get("type") != "object":
        found.append(Violation("#", "openai.root-object", f"root type {schema.get('type')!r}"))
    if "anyOf" in schema:
        found.append(Violation("#", "openai.root-object", "the root uses anyOf"))
    _openai_node(schema, "#", found, root=True)
    found.extend(refs_resolve(schema))
    found.extend(_openai_limits(schema))
    return found


def _openai_node(node: Any, path: str, found: list[Violation], *, root: bool = False) -> None:
    def flag(rule: str, detail: str, where: str = path) -> None:
        found.append(Violation(where, rule, detail))

    if not isinstance(node, dict):
        flag("openai.type-present", f"a {node!r} schema has no type key")
        return
    if "$ref" in node:
        ref = node["$ref"]
        if len(node) > 1:
            flag("openai.ref-alone", f"$ref beside {sorted(set(node) - {'$ref'})}")
        if isinstance(ref, str) and not _OPENAI_REF.match(ref):
            flag("openai.ref-form", f"$ref {ref!r}", _join(path, "$ref"))
    declared = node.get("type")
    types = _types(node) if declared is not None else set()  # what the keywords may serve
    shape = _types(node)  # what the node is, declared or implied by its keywords
    if declared is None and "$ref" not in node and "anyOf" not in node:
        literal = "enum" in node or "const" in node
        flag("openai.literal-type" if literal else "openai.type-present", "no type")
    if isinstance(declared, list):
        non_null = [t for t in declared if t != "null"]
        if len(non_null) != 1 or len(declared) != len(set(declared)) or len(declared) > 2:
            flag("openai.type-union", f"type {declared!r}", _join(path, "type"))
    elif declared is not None and not isinstance(declared, str):
        flag("openai.keyword-value", f"type {declared!r}", _join(path, "type"))
    for t in types:
        if t not in _OPENAI_BY_TYPE:
            flag("openai.type-supported", f"type {t!r}", _join(path, "type"))
    for key in node:
        where = _join(path, key)
        if key in _OPENAI_COMMON or (key in _DEFS and root):
            continue
        if key in _DEFS:
            flag("openai.defs-at-root", f"{key} below the root", where)
        elif key in _OPENAI_UNSUPPORTED:
            flag("openai.keyword-unsupported", key, where)
        elif key in _OPENAI_REJECTED:
            flag("openai.keyword-rejected", key, where)
        elif key in _OPENAI_IMPLIED:
            flag("openai.keyword-implied", key, where)
        elif key not in _OPENAI_TYPED:
            flag("openai.keyword-not-listed", key, where)
        elif not any(key in _OPENAI_BY_TYPE.get(t, ()) for t in types):
            flag("openai.keyword-wrong-type", f"{key} on type {sorted(types) or None}", where)
    if "anyOf" in node:
        branches = node["anyOf"]
        extra = set(node) - {"anyOf", "description", "title"} - (set(_DEFS) if root else set())
        if extra:
            flag("openai.anyof-siblings", f"anyOf beside {sorted(extra)}")
        if not isinstance(branches, list) or not branches:
            flag("openai.anyof", "anyOf is not a non-empty list", _join(path, "anyOf"))
        else:
            for i, branch in enumerate(branches):
                _openai_node(branch, _join(path, "anyOf", i), found)
    _openai_values(node, path, types, flag)
    if "object" in shape:
        _openai_object(node, path, found, flag)
    if "array" in shape:
        items = node.get("items")
        if isinstance(items, dict | bool):
            _openai_node(items, _join(path, "items"), found)
        elif "items" not in node:
            flag("openai.array-items", "an array without items")
    for key in _DEFS:
        if isinstance(node.get(key), dict):
            for name, sub in node[key].items():
                _openai_node(sub, _join(path, key, name), found)


def _openai_object(node: dict[str, Any], path: str, found: list[Violation], flag: _Flag) -> None:
    if node.get("additionalProperties") is not False:
        flag(
            "openai.additional-properties-false",
            f"additionalProperties is {node.get('additionalProperties', 'missing')!r}",
        )
    properties = node.get("properties")
    if properties is None:
        flag("openai.properties-present", "an object without properties")
        properties = {}
    if not isinstance(properties, dict):
        flag("openai.keyword-value", "properties is not an object", _join(path, "properties"))
        return
    required = node.get("required", [])
    if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
        flag("openai.keyword-value", "required is not a list of names", _join(path, "required"))
        return
    missing = [name for name in properties if name not in required]
    unknown = [name for name in required if name not in properties]
    if missing:
        flag("openai.all-required", f"not in required: {missing}")
    if unknown or len(required) != len(set(required)):
        flag("openai.all-required", f"required names no property or repeats: {unknown}")
    for name, sub in properties.items():
        _openai_node(sub, _join(path, "properties", name), found)


def _openai_values(node: dict[str, Any], path: str, types: set[str], flag: _Flag) -> None:
    """The values of enum, const, format, pattern and the numeric keywords."""
    choices = node["enum"] if "enum" in node else [node["const"]] if "const" in node else None
    key = "enum" if "enum" in node else "const"
    if choices is not None:
        if not isinstance(choices, list) or not choices:
            flag("openai.enum", "enum is not a non-empty list", _join(path, key))
        else:
            for value in choices:
                if not _is_scalar(value):
                    flag("openai.enum", f"{value!r} is not a scalar", _join(path, key))
                elif types and not any(_of_type(value, t) for t in types):
                    flag(
                        "openai.enum", f"{value!r} is not of type {sorted(types)}", _join(path, key)
                    )
    if "format" in node and node["format"] not in _OPENAI_FORMATS:
        flag("openai.format", f"format {node['format']!r}", _join(path, "format"))
    pattern = node.get("pattern")
    if "pattern" in node and not isinstance(pattern, str):
        flag("openai.keyword-value", "pattern is not a string", _join(path, "pattern"))
    elif isinstance(pattern, str):
        bare = _unescaped(pattern)
        if _LOOKAROUND.search(bare):
            flag("openai.pattern-lookaround", f"pattern {pattern!r}", _join(path, "pattern"))
        if _BACKREFERENCE.search(pattern.replace("\\\\", "__")):
            flag("openai.pattern-backreference", f"pattern {pattern!r}", _join(path, "pattern"))
    for key in _OPENAI_NUMBER & set(node):
        value = node[key]
        if not _of_type(value, "number") or (key == "multipleOf" and value <= 0):
            flag("openai.keyword-value", f"{key} is {value!r}", _join(path, key))
    for key in ("minItems", "maxItems"):
        value = node.get(key)
        if key in node and not (_of_type(value, "integer") and value >= 0):
            flag("openai.keyword-value", f"{key} is {value!r}", _join(path, key))
    for key in ("description", "title"):
        if key in node and not isinstance(node[key], str):
            flag("openai.keyword-value", f"{key} is not a string", _join(path, key))


def _openai_limits(schema: dict[str, Any]) -> list[Violation]:
    found: list[Violation] = []
    properties = enum_values = chars = 0
    for node, path in _walk(schema):
        if not isinstance(node, dict):
            continue
        if isinstance(node.get("properties"), dict):
            properties += len(node["properties"])
            chars += sum(len(name) for name in node["properties"])
        for key in _DEFS:
            if isinstance(node.get(key), dict):
                chars += sum(len(name) for name in node[key])
        values = list(node["enum"]) if isinstance(node.get("enum"), list) else []
        if "const" in node:
            values.append(node["const"])
        enum_values += len(values)
        chars += sum(len(v) if isinstance(v, str) else len(json.dumps(v)) for v in values)
        strings = [v for v in node.get("enum") or () if isinstance(v, str)]
        if len(strings) > 250 and sum(map(len, strings)) > 15_000:
            found.append(
                Violation(
                    _join(path, "enum"),
                    "openai.max-enum-string-length",
                    f"{len(strings)} values of {sum(map(len, strings))} characters",
                )
            )
    if properties > 5000:
        found.append(Violation("#", "openai.max-properties", f"{properties} properties"))
    if enum_values > 1000:
        found.append(Violation("#", "openai.max-enum-values", f"{enum_values} enum values"))
    if chars > 120_000:
        found.append(Violation("#", "openai.max-string-length", f"{chars} characters"))
    depth = _nesting(schema)
    if depth > 10:
        found.append(Violation("#", "openai.max-depth", f"{depth} levels of objects and arrays"))
    return found


def _nesting(root: Any) -> int:
    """Levels of objects and arrays, the root being 1, through $refs (each cycle cut once)."""
    memo: dict[str, int] = {}
    active: set[str] = set()

    def height(node: Any) -> int:
        if not isinstance(node, dict):
            return 0
        ref = node.get("$ref")
        if isinstance(ref, str):
            if ref in active:
                return 0
            if ref not in memo:
                active.add(ref)
                memo[ref] = height(_local_target(root, ref))
                active.discard(ref)
            return memo[ref]
        own = 1 if _types(node) & {"object", "array"} else 0
        below = [height(sub) for sub, _, key in _children(node, "#") if key not in _DEFS]
        return own + max(below, default=0)

    return height(root)


# -- Mistral and tools -------------------------------------------------------------------


def mistral_json_schema(schema: Any) -> list[Violation]:
    """Mistral's response_format json_schema (custom structured outputs).

    Mistral documents no supported subset, no limits and no meaning for `strict` beyond its
    examples (an object root, additionalProperties false, every property required); its
    SDK sends Pydantic's schemas as they are. So: a JSON object, valid 2020-12, refs resolve.
    """
    if not isinstance(schema, dict):
        return [Violation("#", "api.schema-object", f"the schema is {type(schema).__name__}")]
    return _draft_2020_12(schema) + refs_resolve(schema)


def tool_parameters(
    schema: Any, strict: bool, *, provider: Literal["openai", "mistral"] = "openai"
) -> list[Violation]:
    """A function tool's `parameters`: OpenAI (strict or not) or Mistral.

    OpenAI's strict mode is its Structured Outputs subset (the function calling guide says
    strict mode works by leveraging it). Without strict, OpenAI checks only that the schema
    is an object schema with properties (its error messages say so); Mistral documents no
    subset, with or without `strict`.
    """
    if provider == "openai" and strict:
        return openai_strict(schema)
    if not isinstance(schema, dict):
        return [Violation("#", "api.schema-object", f"the schema is {type(schema).__name__}")]
    found = _draft_2020_12(schema) + refs_resolve(schema)
    if schema.get("type") != "object":
        found.append(Violation("#", "tools.root-object", f"type is {schema.get('type')!r}"))
    if provider == "openai" and "properties" not in schema:
        found.append(Violation("#", "tools.root-properties", "no properties"))
    return found


# -- llama.cpp grammars ------------------------------------------------------------------

_LLAMA_CARRIED = frozenset(
    {
        "type", "properties", "required", "additionalProperties", "items", "minItems",
        "maxItems", "enum", "const", "anyOf", "$ref", "$defs", "definitions", "pattern",
        "format", "minLength", "maxLength",
    }
)  # fmt: skip
_LLAMA_UNSUPPORTED = frozenset(
    {
        "uniqueItems", "contains", "minContains", "maxContains", "$anchor", "$dynamicAnchor",
        "not", "if", "then", "else", "dependentSchemas", "patternProperties", "prefixItems",
    }
)  # fmt: skip
_LLAMA_FORMATS = frozenset(
    {"date", "time", "date-time", "uuid", *(f"uuid{n}" for n in range(1, 6))}
)
#: What the grammar parser reads after a backslash (inside and outside character classes).
_GBNF_ESCAPES = frozenset('tnr\\"[]-xuU')
#: What the converter itself unescapes outside classes (regex metacharacters).
_REGEX_METAS = frozenset("[]()|{}*+?")
_LLAMA_SPAN = 1000


def llama_grammar(schema: Any) -> list[Violation]:
    """What llama-cpp-python's JSON-schema-to-grammar converter carries, crash-free.

    The converter skips what it does not support without a word (the README says so), so
    anything outside what it carries is reported: the wire schema should hold only what the
    grammar enforces, and leave the rest to validation. Only what the converter reaches from
    the root is checked (it never looks at an unused definition). `llama_converts` runs it.
    """
    found: list[Violation] = []
    recursive = _recursive_targets(schema)
    for node, path, key in _reachable(schema):
        if node is True and key == "additionalProperties":
            found.append(Violation(path, "llama.untyped", "extra values narrowed to objects"))
        elif node is not False or key != "additionalProperties":
            _llama_node(node, path, found, recursive, root=path == "#")
    found.extend(refs_resolve(schema))
    return found


def _reachable(schema: Any) -> Iterator[tuple[Any, str, str]]:
    """The schemas reached from the root through keywords and #/... refs, each once.

    Each comes with its pointer and the keyword holding it ("" for the root and $ref targets).
    """
    seen: set[str] = set()
    stack = [(schema, "#", "")]
    while stack:
        node, path, key = stack.pop()
        if path in seen:
            continue
        seen.add(path)
        yield node, path, key
        if not isinstance(node, dict):
            continue
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/"):
            target = _local_target(schema, ref)
            if target is not None:
                stack.append((target, ref, ""))
        stack.extend(
            (sub, sub_path, key) for sub, sub_path, key in _children(node, path) if key not in _DEFS
        )


def _llama_node(
    node: Any, path: str, found: list[Violation], recursive: set[str], *, root: bool
) -> None:
    def flag(rule: str, detail: str, where: str = path) -> None:
        found.append(Violation(where, rule, detail))

    if not isinstance(node, dict):
        flag("llama.boolean-schema", f"a {node!r} schema")
        return
    constraints = {k for k in node if k not in _ANNOTATIONS and not k.startswith("x-")}
    constraints -= set(_DEFS)
    declared = node.get("type")
    shaped = constraints & {"$ref", "anyOf", "oneOf", "allOf", "const", "enum", "pattern"}
    shaped |= constraints & {"properties", "items", "prefixItems"}
    if node.get("additionalProperties", True) is not True or node.get("format") in _LLAMA_FORMATS:
        shaped.add("implied")
    if declared is None and not shaped:
        flag("llama.untyped", "{} (narrowed to any object)" if not node else "no type")
    for t in [declared] if isinstance(declared, str) else declared or []:
        if t not in _JSON_TYPES:
            flag("llama.type-unknown", f"type {t!r}", _join(path, "type"))
    # the converter's order: $ref, then anyOf/oneOf, a type array, const, enum, the rest
    winner = next((k for k in ("$ref", "anyOf", "oneOf") if k in node), None)
    if winner is None and isinstance(declared, list):
        winner = "type"
    dropped = constraints - {winner} if winner else set()
    if winner is None and ("const" in node or "enum" in node):
        winner, dropped = "const/enum", constraints - {"const", "enum", "type"}
    if dropped:
        flag("llama.siblings-dropped", f"{winner} beside {sorted(dropped)}")
    for key in sorted(node):
        where = _join(path, key)
        if key in ("$id", "id") and not root and isinstance(node[key], str):
            flag("llama.keyword-skipped", f"{key} below the root (refs ignore it)", where)
        elif key in _LLAMA_UNSUPPORTED:
            flag("llama.keyword-unsupported", key, where)
        elif not (key in _ANNOTATIONS or key in _LLAMA_CARRIED or key.startswith("x-")):
            flag("llama.keyword-skipped", key, where)
    if isinstance(node.get("$ref"), str):
        _llama_ref(node["$ref"], _join(path, "$ref"), recursive, flag)
    _llama_strings(node, path, flag)
    _llama_literals(node, path, flag)
    _llama_bounds(node, path, flag)


def _llama_ref(ref: str, where: str, recursive: set[str], flag: _Flag) -> None:
    if not ref.startswith("#/"):
        flag("llama.ref-form", f"$ref {ref!r}", where)
    elif ref in recursive and not re.fullmatch(r"[A-Za-z0-9-]+", ref.rsplit("/", 1)[-1]):
        flag("llama.ref-recursive-name", f"recursive $ref {ref!r}", where)


def _recursive_targets(schema: Any) -> set[str]:
    """The #/... refs whose target reaches itself again through refs."""
    edges: dict[str, set[str]] = {}

    def refs_under(node: Any) -> set[str]:
        return {
            sub["$ref"]
            for sub, _ in _walk(node)
            if isinstance(sub, dict) and isinstance(sub.get("$ref"), str)
        }

    pending = list(refs_under(schema))
    while pending:
        ref = pending.pop()
        if ref in edges:
            continue
        target = _local_target(schema, ref)
        edges[ref] = refs_under(target) if target is not None and ref != "#" else set()
        pending.extend(edges[ref])

    def reaches(start: str) -> bool:
        seen, stack = set(), list(edges.get(start, ()))
        while stack:
            ref = stack.pop()
            if ref == start:
                return True
            if ref not in seen:
                seen.add(ref)
                stack.extend(edges.get(ref, ()))
        return False

    return {ref for ref in edges if reaches(ref)}


def _llama_strings(node: dict[str, Any], path: str, flag: _Flag) -> None:
    fmt = node.get("format")
    if fmt is not None and fmt not in _LLAMA_FORMATS:
        flag("llama.format", f"format {fmt!r}", _join(path, "format"))
    carried = ["pattern"] * ("pattern" in node) + ["format"] * (fmt in _LLAMA_FORMATS)
    if "minLength" in node or "maxLength" in node:
        carried.append("minLength/maxLength")
    if len(carried) > 1:
        flag("llama.one-string-constraint", f"{' and '.join(carried)} on one string")
    if isinstance(node.get("pattern"), str):
        problem = _llama_pattern(node["pattern"])
        if problem:
            flag("llama.pattern", f"{node['pattern']!r}: {problem}", _join(path, "pattern"))


def _llama_pattern(pattern: str) -> str | None:
    """Why the converter or the grammar parser cannot carry `pattern`, or None."""
    if not (pattern.startswith("^") and pattern.endswith("$")) or pattern == "^":
        return "not anchored with ^...$"
    body = pattern[1:-1]
    i, in_class, previous = 0, False, ""
    while i < len(body):
        c = body[i]
        if c == "\\":
            escaped = body[i + 1 : i + 2]
            if escaped not in _GBNF_ESCAPES and (in_class or escaped not in _REGEX_METAS):
                return f"escape \\{escaped} is unknown to the grammar"
            i, previous = i + 2, "x"
            continue
        if in_class:
            in_class = c != "]"
        elif c == "[":
            in_class = True
        elif c == "(" and body[i + 1 : i + 2] == "?":
            return "a (?...) group (lookaround, non-capturing or named)"
        elif c in "*+?{" and previous in ("", "(", "|"):
            return f"{c} repeats nothing"
        elif c == "?" and previous == "quantifier":
            return "a lazy quantifier"
        elif c in "^$":
            return f"an inner {c}"
        elif c == "{":
            end = body.find("}", i)
            counts = body[i + 1 : end].split(",") if end > 0 else ["x"]
            if len(counts) > 2 or not all(n.strip().isdigit() or not n.strip() for n in counts):
                return f"quantifier {body[i : end + 1]!r}"
            low = int(counts[0] or 0)
            high = int(counts[-1]) if counts[-1].strip() else low
            if high - low > _LLAMA_SPAN:
                return f"{{{counts}}} spans more than {_LLAMA_SPAN} optional repetitions"
            i, previous = end + 1, "quantifier"
            continue
        previous = "quantifier" if c in "*+?" else c
        i += 1
    return None


def _llama_literals(node: dict[str, Any], path: str, flag: _Flag) -> None:
    def strings(value: Any) -> Iterator[str]:
        if isinstance(value, str):
            yield value
        elif isinstance(value, list):
            for item in value:
                yield from strings(item)
        elif isinstance(value, dict):
            for key, item in value.items():
                yield key
                yield from strings(item)

    if isinstance(node.get("properties"), dict):
        for name in node["properties"]:
            if '"' in name:
                flag("llama.literal-quote", f"property {name!r}", _join(path, "properties", name))
    for key in ("enum", "const"):
        if key in node and any('"' in s for s in strings(node[key])):
            flag("llama.literal-quote", f"{key} holds a string with a quote", _join(path, key))


def _llama_bounds(node: dict[str, Any], path: str, flag: _Flag) -> None:
    for low_key, high_key in (("minLength", "maxLength"), ("minItems", "maxItems")):
        bounds = {k: node[k] for k in (low_key, high_key) if k in node}
        odd = [k for k, v in bounds.items() if not isinstance(v, int) or isinstance(v, bool)]
        for key in odd:
            flag("llama.bound-integer", f"{key} is {bounds[key]!r}", _join(path, key))
        if (
            not odd
            and high_key in bounds
            and bounds[high_key] - bounds.get(low_key, 0) > _LLAMA_SPAN
        ):
            span = bounds[high_key] - bounds.get(low_key, 0)
            flag("llama.repetition", f"{low_key}..{high_key} leaves {span} optional repetitions")
    if ("minItems" in node or "maxItems" in node) and "items" not in node:
        flag("llama.keyword-skipped", "minItems/maxItems without items are dropped")


#: Run in a subprocess: the converter raises on some schemas, and a grammar the parser
#: refuses leaves a NULL sampler that llama-cpp-python adds to its chain unchecked.
_LLAMA_PROBE = """
import sys
try:
    import llama_cpp
    from llama_cpp import LlamaGrammar, llama_grammar
except Exception:
    sys.exit(3)
schema = sys.stdin.read()
LlamaGrammar.from_json_schema(schema, verbose=False)
init = getattr(llama_cpp, "llama_sampler_init_grammar", None)
if init is not None:
    sampler = init(None, llama_grammar.json_schema_to_gbnf(schema).encode(), b"root")
    if not sampler:
        sys.exit(4)
    llama_cpp.llama_sampler_free(sampler)
"""


def llama_converts(
    schema: Any, *, timeout: float = 60.0, python: Sequence[str] = (sys.executable,)
) -> bool | None:
    """Whether llama-cpp-python turns `schema` into a grammar its parser accepts.

    Runs `LlamaGrammar.from_json_schema` and then the grammar parser (with no vocabulary,
    which parses without a model) in a child `python`, so a crash costs only the child.
    None when llama_cpp cannot be imported; False when it raises, refuses, crashes or hangs.
    """
    try:
        done = subprocess.run(
            [*python, "-c", _LLAMA_PROBE],
            input=json.dumps(schema),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return False
    if done.returncode == 3:
        return None
    return done.returncode == 0
