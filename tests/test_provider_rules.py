"""The provider-rule checkers themselves: each rule passes what it should and trips on a case.

A checker that cannot fail proves nothing, so every rule in `RULES` has a case below that
trips it (`test_every_rule_has_a_case_that_trips_it` keeps it so), and the llama.cpp rules
that predict a crash are checked against the real converter where it is installed.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import pytest

from extractor import compile_schema
from schemas import Contact, Contacts, Invoice, LineItem, Receipt
from tests.provider_rules import (
    RULES,
    SOURCES,
    Violation,
    llama_converts,
    llama_grammar,
    mistral_json_schema,
    openai_strict,
    refs_resolve,
    tool_parameters,
)

Schema = Any
Checker = Callable[[Schema], list[Violation]]

STRING = {"type": "string"}


def obj(**properties: Schema) -> dict[str, Any]:
    """A strict object: every property required, nothing else allowed."""
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }


def with_defs(schema: dict[str, Any], **defs: Schema) -> dict[str, Any]:
    return {**schema, "$defs": defs}


def nested(levels: int) -> dict[str, Any]:
    """`levels` objects, each the only property of the one above."""
    schema: dict[str, Any] = obj(leaf=STRING)
    for _ in range(levels - 1):
        schema = obj(child=schema)
    return schema


def tree(name: str) -> dict[str, Any]:
    """A tree whose nodes are the definition `name`, reached through a recursive $ref."""
    node = {
        "type": "object",
        "properties": {"kids": {"type": "array", "items": {"$ref": f"#/$defs/{name}"}}},
    }
    return with_defs(
        {"type": "object", "properties": {"root": {"$ref": f"#/$defs/{name}"}}}, **{name: node}
    )


RECURSIVE_UNDERSCORE = tree("Tree_Node")


def openai_tool(schema: Schema) -> list[Violation]:
    return tool_parameters(schema, strict=False)


def mistral_tool(schema: Schema) -> list[Violation]:
    return tool_parameters(schema, strict=False, provider="mistral")


# -- schemas each provider takes --------------------------------------------------------

#: The examples of OpenAI's Structured Outputs guide, rewritten here.
OPENAI_GOOD = {
    "nullable enum": obj(
        location={"type": "string", "description": "where"},
        unit={"type": ["string", "null"], "enum": ["F", "C"]},
    ),
    "string restrictions": obj(
        username={"type": "string", "pattern": "^@[a-zA-Z0-9_]+$"},
        email={"type": "string", "format": "email"},
    ),
    "number restrictions": obj(value={"type": "number", "minimum": -130, "maximum": 130}),
    "array bounds": obj(tags={"type": "array", "items": STRING, "minItems": 1, "maxItems": 5}),
    "anyOf of objects": obj(item={"anyOf": [obj(name=STRING), obj(number=STRING)]}),
    "definitions": with_defs(
        obj(steps={"type": "array", "items": {"$ref": "#/$defs/step"}}),
        step=obj(explanation=STRING, output=STRING),
    ),
    "draft-07 definitions": {
        **obj(step={"$ref": "#/definitions/step"}),
        "definitions": {"step": obj(output=STRING)},
    },
    "root recursion": obj(
        label=STRING, children={"type": "array", "items": {"$ref": "#"}, "description": "kids"}
    ),
    "explicit recursion": with_defs(
        obj(linked_list={"$ref": "#/$defs/node"}),
        node=obj(
            value={"type": "number"}, next={"anyOf": [{"$ref": "#/$defs/node"}, {"type": "null"}]}
        ),
    ),
    "const and title": {**obj(kind={"type": "string", "const": "a"}), "title": "T"},
    "empty object": obj(),
    "ten levels": nested(10),
    "1000 enum values": obj(choice={"type": "integer", "enum": list(range(1000))}),
    "250 long strings": obj(
        choice={"type": "string", "enum": [f"{i:03}" * 30 for i in range(250)]}
    ),
}


@pytest.mark.parametrize("schema", OPENAI_GOOD.values(), ids=OPENAI_GOOD)
def test_openai_strict_takes_the_documented_forms(schema: Schema) -> None:
    assert openai_strict(schema) == []
    assert tool_parameters(schema, strict=True) == []


@pytest.mark.parametrize("target", [Contact, Contacts, Invoice, LineItem, Receipt])
def test_the_compilers_openai_strict_dialect_of_the_ready_made_models_passes(target: Any) -> None:
    wire = compile_schema(target).dialect("openai-strict")
    assert [str(v) for v in openai_strict(wire)] == []


LOOSE = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "minLength": 1},
        "tags": {"type": "array", "items": STRING, "uniqueItems": True},
        "note": {"anyOf": [STRING, {"type": "null"}], "default": None},
        "extra": {"$ref": "#/definitions/extra", "description": "draft-07 style"},
    },
    "required": ["name"],
    "definitions": {"extra": {"type": "object", "additionalProperties": True}},
}


@pytest.mark.parametrize("check", [mistral_json_schema, openai_tool, mistral_tool])
def test_mistral_and_non_strict_tools_take_an_ordinary_schema(check: Checker) -> None:
    assert check(LOOSE) == []


def test_mistral_takes_a_non_object_root_and_a_tool_without_properties() -> None:
    assert mistral_json_schema({"type": "array", "items": STRING}) == []
    assert mistral_tool({"type": "object"}) == []


LLAMA_GOOD = {
    "flat": {
        "type": "object",
        "properties": {
            "code": {"type": "string", "pattern": "^[A-Z]{3}-[0-9]{2,4}$"},
            "when": {"type": "string", "format": "date"},
            "id": {"type": "string", "format": "uuid"},
            "name": {"type": "string", "minLength": 1, "maxLength": 80},
            "count": {"type": "integer"},
            "kind": {"type": "string", "enum": ["a", "b"]},
            "maybe": {"anyOf": [STRING, {"type": "null"}], "description": "x", "x-note": 1},
            "nullable": {"type": ["string", "null"]},
            "tags": {"type": "array", "items": STRING, "minItems": 1, "maxItems": 3},
            "anything": {"type": ["string", "number", "boolean", "null", "object", "array"]},
            "escapes": {"type": "string", "pattern": "^a\\(b\\)[\\-x]\\t$"},
        },
        "required": ["code"],
        "additionalProperties": False,
    },
    "recursion with a plain name": tree("Tree-Node"),
    "an unused definition is not looked at": with_defs(obj(a=STRING), unused={"not": {}}),
    "open object": {"type": "object", "additionalProperties": {"type": "integer"}},
}


@pytest.mark.parametrize("schema", LLAMA_GOOD.values(), ids=LLAMA_GOOD)
def test_llama_grammar_takes_what_the_converter_carries(schema: Schema) -> None:
    assert [str(v) for v in llama_grammar(schema)] == []
    assert llama_converts(schema) in (True, None)


# -- refs ---------------------------------------------------------------------------------

REFS_GOOD = {
    "root": {"items": {"$ref": "#"}},
    "$defs": with_defs({"$ref": "#/$defs/a"}, a=STRING),
    "definitions": {"$ref": "#/definitions/a", "definitions": {"a": STRING}},
    "any pointer": {"properties": {"a": STRING, "b": {"$ref": "#/properties/a"}}},
    "into a tuple": {"items": [STRING], "additionalItems": {"$ref": "#/items/0"}},
    "percent-encoded": with_defs({"$ref": "#/$defs/a%20b"}, **{"a b": STRING}),
    "escaped slash": with_defs({"$ref": "#/$defs/a~1b"}, **{"a/b": STRING}),
    "$anchor": with_defs({"$ref": "#item"}, a={"$anchor": "item", "type": "string"}),
    "draft-07 anchor": {"$ref": "#item", "definitions": {"a": {"$id": "#item"}}},
    "draft-04 anchor": {
        "$schema": "http://json-schema.org/draft-04/schema#",
        "$ref": "#item",
        "definitions": {"a": {"id": "#item"}},
    },
    "embedded resource": {
        "$id": "https://example.com/root.json",
        "properties": {"a": {"$ref": "item.json"}, "b": {"$ref": "item.json#/properties/x"}},
        "$defs": {"item": {"$id": "item.json", "properties": {"x": STRING}}},
    },
    "absolute self": {
        "$id": "https://example.com/root.json",
        "$ref": "https://example.com/root.json#/$defs/a",
        "$defs": {"a": STRING},
    },
    "a property named $ref": {"properties": {"$ref": STRING}},
    "a ref inside a value": {"enum": [{"$ref": "#/nowhere"}], "default": {"$ref": "x"}},
}


@pytest.mark.parametrize("schema", REFS_GOOD.values(), ids=REFS_GOOD)
def test_refs_resolve_finds_every_kind_of_target(schema: Schema) -> None:
    assert refs_resolve(schema) == []


REFS_BAD = {
    "missing definition": with_defs({"$ref": "#/$defs/b"}, a=STRING),
    "definitions dropped": with_defs({"$ref": "#/definitions/a"}, a=STRING),
    "another document": {"$ref": "other.json#/a"},
    "remote": {"$ref": "https://example.com/schema.json"},
    "no such anchor": {"$ref": "#nope"},
    "not a string": {"$ref": 3},
    "not a schema": {"required": ["a"], "items": {"$ref": "#/required/0"}},
    "nested": obj(a={"anyOf": [{"$ref": "#/$defs/gone"}]}),
}


@pytest.mark.parametrize("schema", REFS_BAD.values(), ids=REFS_BAD)
def test_refs_resolve_reports_a_dangling_ref_with_its_path(schema: Schema) -> None:
    found = refs_resolve(schema)
    assert [v.rule for v in found] == ["ref.resolves"]
    assert found[0].path.endswith("/$ref")


def test_refs_resolve_names_where_the_ref_is() -> None:
    (violation,) = refs_resolve(obj(a={"anyOf": [{"$ref": "#/$defs/gone"}]}))
    assert violation.path == "#/properties/a/anyOf/0/$ref"
    assert "gone" in str(violation) and "documented" in str(violation)


# -- each rule, tripped ------------------------------------------------------------------

#: (checker, schema, the rule it must trip). Every id in RULES appears at least once.
TRIPS: list[tuple[Checker, Schema, str]] = [
    # refs and drafts
    (refs_resolve, {"$ref": "#/$defs/x"}, "ref.resolves"),
    (openai_strict, with_defs(obj(a={"$ref": "#/$defs/b"}), a=STRING), "ref.resolves"),
    (mistral_json_schema, {"type": 5}, "schema.draft-2020-12"),
    (mistral_json_schema, {"items": [STRING]}, "schema.draft-2020-12"),
    (mistral_json_schema, {"type": "number", "exclusiveMaximum": True}, "schema.draft-2020-12"),
    (mistral_json_schema, {"$ref": "#/definitions/a"}, "ref.resolves"),
    (openai_tool, {"type": "object", "properties": {"a": {"type": 5}}}, "schema.draft-2020-12"),
    # OpenAI strict: documented
    (openai_strict, {"type": "array", "items": STRING}, "openai.root-object"),
    (openai_strict, {"anyOf": [obj(a=STRING), obj(b=STRING)]}, "openai.root-object"),
    (openai_strict, with_defs({"$ref": "#/$defs/a"}, a=obj()), "openai.root-object"),
    (
        openai_strict,
        {**obj(a=STRING), "additionalProperties": True},
        "openai.additional-properties-false",
    ),
    (
        openai_strict,
        {"type": "object", "properties": {}, "required": []},
        "openai.additional-properties-false",
    ),
    (
        openai_strict,
        obj(
            a={
                "type": "object",
                "properties": {},
                "additionalProperties": {"type": "string"},
                "required": [],
            }
        ),
        "openai.additional-properties-false",
    ),
    (openai_strict, {**obj(a=STRING, b=STRING), "required": ["a"]}, "openai.all-required"),
    (openai_strict, {**obj(a=STRING), "required": ["a", "b"]}, "openai.all-required"),
    (openai_strict, obj(a={"type": "date"}), "openai.type-supported"),
    (openai_strict, obj(a={"allOf": [STRING]}), "openai.keyword-unsupported"),
    (openai_strict, obj(a={"type": "string", "not": {"const": "x"}}), "openai.keyword-unsupported"),
    (openai_strict, {**obj(a=STRING), "if": {}, "then": {}}, "openai.keyword-unsupported"),
    (
        openai_strict,
        {**obj(a=STRING), "dependentRequired": {"a": []}},
        "openai.keyword-unsupported",
    ),
    (openai_strict, obj(a={"type": "string", "format": "uri"}), "openai.format"),
    (openai_strict, obj(a={"anyOf": []}), "openai.anyof"),
    (
        openai_strict,
        obj(a={"anyOf": [STRING, {"type": "object", "properties": {}}]}),
        "openai.additional-properties-false",
    ),
    (
        openai_strict,
        obj(
            a={
                "type": "object",
                "properties": {f"p{i}": STRING for i in range(5001)},
                "required": [f"p{i}" for i in range(5001)],
                "additionalProperties": False,
            }
        ),
        "openai.max-properties",
    ),
    (openai_strict, nested(11), "openai.max-depth"),
    (openai_strict, with_defs(obj(a={"$ref": "#/$defs/d"}), d=nested(10)), "openai.max-depth"),
    (openai_strict, obj(a={"type": "array", "items": nested(10)}), "openai.max-depth"),
    (
        openai_strict,
        obj(a={"type": "integer", "enum": list(range(1001))}),
        "openai.max-enum-values",
    ),
    (
        openai_strict,
        obj(
            a={"type": "integer", "enum": list(range(600))},
            b={"type": "integer", "enum": list(range(400))},
            c={"type": "integer", "const": 1},
        ),
        "openai.max-enum-values",
    ),
    (
        openai_strict,
        obj(**{"p" * 60_000: STRING, "q" * 60_001: STRING}),
        "openai.max-string-length",
    ),
    (
        openai_strict,
        obj(a={"type": "string", "enum": [f"{i:04}" * 15 for i in range(251)]}),
        "openai.max-enum-string-length",
    ),
    # OpenAI strict: observed in its errors or SDK
    (openai_strict, {"type": "object", "additionalProperties": False}, "openai.properties-present"),
    (openai_strict, obj(a={}), "openai.type-present"),
    (openai_strict, obj(a={"description": "anything"}), "openai.type-present"),
    (openai_strict, obj(a={"enum": ["x", "y"]}), "openai.literal-type"),
    (openai_strict, obj(a={"const": "x"}), "openai.literal-type"),
    (openai_strict, obj(a=True), "openai.type-present"),
    (openai_strict, obj(a={"oneOf": [STRING, {"type": "integer"}]}), "openai.keyword-rejected"),
    (
        openai_strict,
        obj(a={"type": "array", "items": STRING, "uniqueItems": True}),
        "openai.keyword-rejected",
    ),
    (
        openai_strict,
        obj(a={"type": "string", "pattern": "^(?=.*@).+$"}),
        "openai.pattern-lookaround",
    ),
    (openai_strict, obj(a={"type": "string", "pattern": "^(?<!x)y$"}), "openai.pattern-lookaround"),
    (
        openai_strict,
        with_defs(obj(a={"$ref": "#/$defs/a", "description": "d"}), a=STRING),
        "openai.ref-alone",
    ),
    # OpenAI strict: conservative readings
    (openai_strict, obj(a={"type": ["string", "integer"]}), "openai.type-union"),
    (openai_strict, obj(a={"type": ["string", "null", "null"]}), "openai.type-union"),
    (openai_strict, obj(a={"type": "string", "minLength": 1}), "openai.keyword-implied"),
    (openai_strict, obj(a={"type": "string", "maxLength": 9}), "openai.keyword-implied"),
    (openai_strict, {**obj(), "patternProperties": {"^x": STRING}}, "openai.keyword-implied"),
    (openai_strict, obj(a={"type": "string", "default": "x"}), "openai.keyword-not-listed"),
    (
        openai_strict,
        {**obj(a=STRING), "$schema": "https://json-schema.org/draft/2020-12/schema"},
        "openai.keyword-not-listed",
    ),
    (openai_strict, obj(a={"type": "string", "x-vendor": 1}), "openai.keyword-not-listed"),
    (
        openai_strict,
        obj(a={"type": "array", "prefixItems": [STRING], "items": STRING}),
        "openai.keyword-not-listed",
    ),
    (openai_strict, obj(a={"type": "integer", "pattern": "^1$"}), "openai.keyword-wrong-type"),
    (openai_strict, obj(a={"type": "string", "minimum": 1}), "openai.keyword-wrong-type"),
    (
        openai_strict,
        obj(a={"type": "string", "pattern": "^(a)\\1$"}),
        "openai.pattern-backreference",
    ),
    (openai_strict, with_defs(obj(a={"$ref": "#/properties/b"}, b=STRING)), "openai.ref-form"),
    (openai_strict, obj(a={"$ref": "#/$defs/x/properties/y"}), "openai.ref-form"),
    (
        openai_strict,
        obj(a=with_defs(obj(b={"$ref": "#/properties/a/$defs/c"}), c=STRING)),
        "openai.defs-at-root",
    ),
    (openai_strict, obj(a={"type": "string", "anyOf": [STRING]}), "openai.anyof-siblings"),
    (openai_strict, obj(a={"type": "string", "enum": []}), "openai.enum"),
    (
        openai_strict,
        obj(
            a={
                "type": "object",
                "properties": {},
                "required": [],
                "additionalProperties": False,
                "enum": [{}],
            }
        ),
        "openai.enum",
    ),
    (openai_strict, obj(a={"type": "string", "enum": ["x", 1]}), "openai.enum"),
    (openai_strict, obj(a={"type": "integer", "const": "1"}), "openai.enum"),
    (openai_strict, obj(a={"type": "number", "minimum": "0"}), "openai.keyword-value"),
    (openai_strict, obj(a={"type": "number", "multipleOf": 0}), "openai.keyword-value"),
    (
        openai_strict,
        obj(a={"type": "array", "items": STRING, "minItems": -1}),
        "openai.keyword-value",
    ),
    (openai_strict, obj(a={"type": "string", "description": 3}), "openai.keyword-value"),
    (openai_strict, obj(a={"type": "array"}), "openai.array-items"),
    # tools and the API's shape
    (openai_tool, {"type": "array", "items": STRING}, "tools.root-object"),
    (mistral_tool, {"properties": {"a": STRING}}, "tools.root-object"),
    (openai_tool, {"type": "object"}, "tools.root-properties"),
    (openai_strict, True, "api.schema-object"),
    (mistral_json_schema, True, "api.schema-object"),
    (openai_tool, [], "api.schema-object"),
    # llama.cpp, as the converter and its grammar parser behave
    (llama_grammar, {"type": "object", "properties": {"a": True}}, "llama.boolean-schema"),
    (llama_grammar, {"type": "array", "items": False}, "llama.boolean-schema"),
    (llama_grammar, {"type": "object", "properties": {"a": {"description": "x"}}}, "llama.untyped"),
    (llama_grammar, {"type": "object", "properties": {"a": {}}}, "llama.untyped"),
    (
        llama_grammar,
        {"type": "object", "properties": {"a": STRING}, "additionalProperties": True},
        "llama.untyped",
    ),
    (
        llama_grammar,
        {"type": "object", "properties": {"a": {"type": "date"}}},
        "llama.type-unknown",
    ),
    (
        llama_grammar,
        with_defs({"$ref": "#/$defs/a", "maxLength": 3}, a=STRING),
        "llama.siblings-dropped",
    ),
    (
        llama_grammar,
        {"anyOf": [STRING, {"type": "null"}], "properties": {"a": STRING}},
        "llama.siblings-dropped",
    ),
    (llama_grammar, {"type": ["string", "null"], "maxLength": 3}, "llama.siblings-dropped"),
    (
        llama_grammar,
        {"type": ["object", "null"], "properties": {"a": STRING}},
        "llama.siblings-dropped",
    ),
    (llama_grammar, {"type": "string", "enum": ["a"], "pattern": "^a$"}, "llama.siblings-dropped"),
    (
        llama_grammar,
        {"type": "array", "items": STRING, "uniqueItems": True},
        "llama.keyword-unsupported",
    ),
    (llama_grammar, {"type": "string", "not": {"const": "x"}}, "llama.keyword-unsupported"),
    (
        llama_grammar,
        {"type": "object", "patternProperties": {"^x": STRING}},
        "llama.keyword-unsupported",
    ),
    (llama_grammar, {"type": "array", "prefixItems": [STRING]}, "llama.keyword-unsupported"),
    (llama_grammar, {"type": "number", "minimum": 0}, "llama.keyword-skipped"),
    (llama_grammar, {"type": "integer", "multipleOf": 2}, "llama.keyword-skipped"),
    (llama_grammar, {"allOf": [obj(a=STRING)]}, "llama.keyword-skipped"),
    (llama_grammar, {"oneOf": [STRING, {"type": "integer"}]}, "llama.keyword-skipped"),
    (llama_grammar, {"type": "object", "minProperties": 1}, "llama.keyword-skipped"),
    (llama_grammar, {"type": "array", "minItems": 2}, "llama.keyword-skipped"),
    (llama_grammar, obj(a={"$id": "a.json", "type": "string"}), "llama.keyword-skipped"),
    (
        llama_grammar,
        {"type": "object", "properties": {"kids": {"type": "array", "items": {"$ref": "#"}}}},
        "llama.ref-form",
    ),
    (
        llama_grammar,
        with_defs({"$ref": "#item"}, a={"$anchor": "item", "type": "string"}),
        "llama.ref-form",
    ),
    (llama_grammar, RECURSIVE_UNDERSCORE, "llama.ref-recursive-name"),
    (llama_grammar, {"type": "string", "pattern": "ab"}, "llama.pattern"),
    (llama_grammar, {"type": "string", "pattern": "^(?:ab)+$"}, "llama.pattern"),
    (llama_grammar, {"type": "string", "pattern": "^(?=a)a$"}, "llama.pattern"),
    (llama_grammar, {"type": "string", "pattern": "^\\d{3}$"}, "llama.pattern"),
    (llama_grammar, {"type": "string", "pattern": "^a\\.b$"}, "llama.pattern"),
    (llama_grammar, {"type": "string", "pattern": "^[\\w-]+$"}, "llama.pattern"),
    (llama_grammar, {"type": "string", "pattern": "^a+?$"}, "llama.pattern"),
    (llama_grammar, {"type": "string", "pattern": "^a|^b$"}, "llama.pattern"),
    (llama_grammar, {"type": "string", "pattern": "^*a$"}, "llama.pattern"),
    (llama_grammar, {"type": "string", "pattern": "^a{x}$"}, "llama.pattern"),
    (llama_grammar, {"type": "string", "pattern": "^a{0,1001}$"}, "llama.pattern"),
    (llama_grammar, {"type": "string", "format": "email"}, "llama.format"),
    (
        llama_grammar,
        {"type": "string", "pattern": "^a+$", "maxLength": 3},
        "llama.one-string-constraint",
    ),
    (
        llama_grammar,
        {"type": "string", "format": "date", "minLength": 10},
        "llama.one-string-constraint",
    ),
    (llama_grammar, {"type": "object", "properties": {'a"b': STRING}}, "llama.literal-quote"),
    (llama_grammar, {"enum": ['say "hi"']}, "llama.literal-quote"),
    (llama_grammar, {"const": {"quote": '"'}}, "llama.literal-quote"),
    (llama_grammar, {"type": "string", "maxLength": 1001}, "llama.repetition"),
    (
        llama_grammar,
        {"type": "array", "items": STRING, "minItems": 5, "maxItems": 1006},
        "llama.repetition",
    ),
    (llama_grammar, {"type": "string", "minLength": 2.0, "maxLength": 4.0}, "llama.bound-integer"),
    (llama_grammar, {"$ref": "#/$defs/gone"}, "ref.resolves"),
]


def _case_id(case: tuple[Checker, Schema, str]) -> str:
    return f"{case[0].__name__}-{case[2]}"


@pytest.mark.parametrize(("check", "schema", "rule"), TRIPS, ids=[_case_id(c) for c in TRIPS])
def test_each_rule_trips_on_its_case(check: Checker, schema: Schema, rule: str) -> None:
    found = check(schema)
    assert rule in {v.rule for v in found}, [str(v) for v in found]
    assert all(v.path.startswith("#") and v.rule in RULES for v in found)


def test_every_rule_has_a_case_that_trips_it() -> None:
    assert {rule for _, _, rule in TRIPS} == set(RULES)


def test_every_rule_names_a_basis_and_a_source() -> None:
    for rule in RULES.values():
        assert rule.basis in ("documented", "observed", "conservative")
        assert rule.source in SOURCES and rule.text


def test_a_violation_names_the_path_and_the_rule() -> None:
    found = openai_strict({"type": "object", "properties": {"a": STRING}})
    by_rule = {v.rule: v for v in found}
    assert by_rule["openai.additional-properties-false"].path == "#"
    assert by_rule["openai.all-required"].detail == "not in required: ['a']"
    assert "additionalProperties: false must always be set" in str(
        by_rule["openai.additional-properties-false"]
    )


def test_strict_tools_follow_the_structured_outputs_rules() -> None:
    loose = {"type": "object", "properties": {"a": STRING}}
    assert tool_parameters(loose, strict=True) == openai_strict(loose) != []
    assert tool_parameters(loose, strict=False) == []
    assert tool_parameters(loose, strict=True, provider="mistral") == []


# -- llama.cpp's converter, for real -----------------------------------------------------

#: Cases where the rules predict a crash or a grammar the parser refuses.
LLAMA_BREAKS = {
    "boolean schema": {"type": "object", "properties": {"a": True}},
    "annotations only": {"type": "object", "properties": {"a": {"description": "x"}}},
    "unknown type": {"type": "foo"},
    "root ref": {
        "type": "object",
        "properties": {"kids": {"type": "array", "items": {"$ref": "#"}}},
    },
    "recursive underscore": RECURSIVE_UNDERSCORE,
    "unanchored pattern": {"type": "string", "pattern": "ab"},
    "non-capturing group": {"type": "string", "pattern": "^(?:ab)+$"},
    "digit escape": {"type": "string", "pattern": "^\\d{3}$"},
    "escaped dot": {"type": "string", "pattern": "^a\\.b$"},
    "quote in a name": {"type": "object", "properties": {'a"b': STRING}},
    "quote in an enum": {"enum": ['say "hi"']},
    "long string": {"type": "string", "maxLength": 1500},
    "float bound": {"type": "string", "minLength": 2.0, "maxLength": 4.0},
    "dangling ref": {"$ref": "#/$defs/gone"},
}


@pytest.mark.parametrize("schema", LLAMA_BREAKS.values(), ids=LLAMA_BREAKS)
def test_what_the_rules_say_breaks_llama_cpp_does_break_it(schema: Schema) -> None:
    assert llama_grammar(schema) != []
    converts = llama_converts(schema)
    if converts is None:
        pytest.skip("llama-cpp-python is not installed")
    assert converts is False


def test_llama_converts_says_none_without_llama_cpp_and_false_when_it_hangs() -> None:
    # -S leaves site-packages off the path, so llama_cpp cannot be imported
    assert llama_converts(obj(a=STRING), python=(sys.executable, "-S")) is None
    assert llama_converts(obj(a=STRING), timeout=0.001) is False
