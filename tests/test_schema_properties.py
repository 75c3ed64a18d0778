"""Property tests for the schema compiler (`extractor._schema`).

Hypothesis builds Pydantic model classes at random (nested models to depth 3, optional
fields, lists, enums, literals, unions of scalars and of models, constrained numbers and
strings, defaults and default factories) and, for each class, instances of it. Properties:

- A: the `openai-strict` dialect follows OpenAI's strict rules at every node, is valid
  Draft 2020-12, keeps every constraint strict mode supports; `mistral` keeps all but the
  annotations; building dialects leaves the full schema untouched.
- B: every instance survives dump -> validate against the dialect -> load, equal to itself,
  through every dialect: as a model, as `list[Model]`, and any field type as the target.
- C: the nulls a strict model sends for fields it could have left out mean "not given":
  `load` gives the field's default (or None, where the field's type admits None).

Examples after them pin what strict mode refuses, its limits, a recursive model, and the
bugs these properties found."""

from __future__ import annotations

import copy
import datetime
import enum
import functools
import ipaddress
import itertools
import json
import string
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Annotated, Any, Literal, cast

import jsonschema
import pydantic_core
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import AnyUrl, BaseModel, Field, TypeAdapter, create_model

from extractor._errors import SchemaError
from extractor._schema import DIALECTS, compile_schema

# --- OpenAI's strict rules -------------------------------------------------------------------

STRICT_KEYWORDS = frozenset(
    {
        "type", "properties", "required", "additionalProperties", "items", "enum", "anyOf",
        "$ref", "$defs", "description", "pattern", "format", "multipleOf", "minimum",
        "maximum", "exclusiveMinimum", "exclusiveMaximum", "minItems", "maxItems",
    }
)  # fmt: skip
STRICT_FORMATS = frozenset(
    {"date-time", "time", "date", "duration", "email", "hostname", "ipv4", "ipv6", "uuid"}
)
JSON_TYPES = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "null": (type(None),),
    "object": (dict,),
    "array": (list,),
}


def _fits_type(value: Any, name: str) -> bool:
    if isinstance(value, bool) and name in ("integer", "number"):
        return False
    return isinstance(value, JSON_TYPES[name])


def strict_violations(schema: dict[str, Any]) -> list[str]:
    """Every place `schema` breaks OpenAI's strict structured-output rules (empty: none)."""
    problems: list[str] = []
    defs = schema.get("$defs", {})

    def visit(node: Any, where: str) -> None:
        if not isinstance(node, dict):
            problems.append(f"{where}: a boolean or non-object schema {node!r}")
            return
        unknown = sorted(node.keys() - STRICT_KEYWORDS)
        if unknown:
            problems.append(f"{where}: unsupported keywords {unknown}")
        if "$ref" in node:
            if set(node) != {"$ref"}:
                problems.append(f"{where}: $ref with siblings {sorted(set(node) - {'$ref'})}")
            ref = node["$ref"]
            if not (isinstance(ref, str) and ref.startswith("#/$defs/")):
                problems.append(f"{where}: $ref {ref!r} does not point into $defs")
            elif ref.removeprefix("#/$defs/") not in defs:
                problems.append(f"{where}: $ref {ref!r} points at no $defs entry")
            return
        if "$defs" in node:
            problems.append(f"{where}: $defs below the root")
        if not node.keys() & {"type", "anyOf", "enum"}:
            problems.append(f"{where}: a schema that says nothing of its type")
        if "format" in node and node["format"] not in STRICT_FORMATS:
            problems.append(f"{where}: format {node['format']!r}")
        kind = node.get("type")
        types = [kind] if isinstance(kind, str) else kind if isinstance(kind, list) else []
        if kind is not None and (not types or any(t not in JSON_TYPES for t in types)):
            problems.append(f"{where}: bad type {kind!r}")
        if "enum" in node:
            if not isinstance(node["enum"], list) or not node["enum"]:
                problems.append(f"{where}: enum {node.get('enum')!r}")
            elif types and any(
                not any(_fits_type(v, t) for t in types if t in JSON_TYPES) for v in node["enum"]
            ):
                problems.append(f"{where}: enum {node['enum']!r} breaks its type {kind!r}")
        if "additionalProperties" in node and node["additionalProperties"] is not False:
            problems.append(f"{where}: additionalProperties {node['additionalProperties']!r}")
        if "object" in types or "properties" in node:
            props = node.get("properties")
            if not isinstance(props, dict):
                problems.append(f"{where}: an object without properties")
                props = {}
            if node.get("additionalProperties") is not False:
                problems.append(f"{where}: an object without additionalProperties: false")
            required = node.get("required")
            if not isinstance(required, list) or sorted(required) != sorted(props):
                problems.append(f"{where}: required {required!r} is not {sorted(props)}")
            for name, sub in props.items():
                visit(sub, f"{where}.{name}")
        if "items" in node:
            visit(node["items"], f"{where}[]")
        if "anyOf" in node:
            if not isinstance(node["anyOf"], list) or not node["anyOf"]:
                problems.append(f"{where}: anyOf {node['anyOf']!r}")
            else:
                for i, branch in enumerate(node["anyOf"]):
                    visit(branch, f"{where}|{i}")

    if schema.get("type") != "object" or "anyOf" in schema:
        problems.append("(root): not a plain object")
    visit({k: v for k, v in schema.items() if k != "$defs"}, "(root)")
    if not isinstance(defs, dict):
        problems.append("(root): $defs is not an object")
        defs = {}
    for name, sub in defs.items():
        visit(sub, f"$defs.{name}")
    return problems


def assert_strict(schema: dict[str, Any]) -> None:
    jsonschema.Draft202012Validator.check_schema(schema)
    problems = strict_violations(schema)
    assert not problems, "\n".join(problems)


def validate(data: Any, schema: dict[str, Any]) -> None:
    jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    ).validate(data)


def wire(value: Any) -> Any:
    """What reaches us from a provider: the JSON dump of `value`, encoded and decoded."""
    return json.loads(json.dumps(value))


# --- generated models ------------------------------------------------------------------------

MAX_DEPTH = 3  # models nest at most this deep
MAX_FIELDS = 6
MAX_LIST = 3  # lists hold at most this many values, whatever their maxItems

_ids = itertools.count()


def fresh(prefix: str) -> str:
    """A name no other generated class has: Pydantic's `$defs` keys stay distinct."""
    return f"{prefix}{next(_ids)}"


@dataclass(frozen=True)
class Kind:
    """A field type: its annotation, a strategy of its values, and whether it admits None."""

    annotation: Any
    values: st.SearchStrategy[Any]
    nullable: bool = False
    is_list: bool = False


@dataclass(frozen=True)
class FieldSpec:
    name: str
    kind: Kind
    required: bool
    default: Any = None
    factory: Callable[[], Any] | None = None

    def default_value(self) -> Any:
        return self.factory() if self.factory is not None else copy.deepcopy(self.default)


@dataclass(frozen=True)
class ModelSpec:
    cls: type[BaseModel]
    fields: tuple[FieldSpec, ...]


#: The spec of every generated class, for property C's walk over instances.
SPECS: dict[type[BaseModel], ModelSpec] = {}

#: Field names, with JSON Schema keywords among them: a property may be called `type`.
FIELD_NAMES = (
    "name", "value", "type", "items", "enum", "title", "default", "required", "properties",
    "description", "anyOf", "ref", "defs", "format", "pattern", "minimum", "count", "note",
)  # fmt: skip

PLAIN_SCALARS = (
    Kind(str, st.text(max_size=8)),
    Kind(int, st.integers()),
    Kind(float, st.floats(allow_nan=False, allow_infinity=False)),
    Kind(bool, st.booleans()),
    Kind(datetime.date, st.dates()),
    Kind(uuid.UUID, st.uuids()),
    Kind(ipaddress.IPv4Address, st.ip_addresses(v=4)),
    Kind(ipaddress.IPv6Address, st.ip_addresses(v=6)),
    Kind(  # format "uri": not one strict mode knows, so the dialect drops it
        AnyUrl,
        st.builds(
            lambda host, path: AnyUrl(f"https://{host}.example/{path}"),
            st.text(string.ascii_lowercase, min_size=1, max_size=6),
            st.text(string.ascii_lowercase + "/", max_size=6),
        ),
    ),
)
#: Scalars whose JSON form tells them apart, so a union of two of them round-trips.
UNION_SCALARS = PLAIN_SCALARS[:4]


@st.composite
def constrained_ints(draw: st.DrawFn) -> Kind:
    step = draw(st.sampled_from([1, 2, 3, 7]))
    low_k = draw(st.integers(-20, 20))
    high_k = low_k + draw(st.integers(0, 20))
    lower = draw(st.sampled_from(["ge", "gt", None]))
    upper = draw(st.sampled_from(["le", "lt", None]))
    rules: dict[str, int] = {}
    if step > 1:
        rules["multiple_of"] = step
    if lower == "ge":
        rules["ge"] = low_k * step
    elif lower == "gt":
        rules["gt"] = low_k * step - 1
    if upper == "le":
        rules["le"] = high_k * step
    elif upper == "lt":
        rules["lt"] = high_k * step + 1
    ks = st.integers(low_k if lower else low_k - 1000, high_k if upper else high_k + 1000)
    return Kind(Annotated[int, Field(**rules)], ks.map(lambda k: k * step))


@st.composite
def constrained_floats(draw: st.DrawFn) -> Kind:
    step = draw(st.sampled_from([None, 0.5, 0.25]))  # exact in binary: no rounding quarrels
    low = float(draw(st.integers(-100, 100)))
    high = low + draw(st.integers(1, 100))
    lower = draw(st.sampled_from(["ge", "gt", None]))
    upper = draw(st.sampled_from(["le", "lt", None]))
    rules: dict[str, float] = {}
    if lower is not None:
        rules[lower] = low
    if upper is not None:
        rules[upper] = high
    if step is None:
        values = st.floats(
            min_value=low if lower else None,
            max_value=high if upper else None,
            exclude_min=lower == "gt",
            exclude_max=upper == "lt",
            allow_nan=False,
            allow_infinity=False,
        )
    else:
        rules["multiple_of"] = step
        low_k = int(low / step) + (lower == "gt") - (0 if lower else 1000)
        high_k = int(high / step) - (upper == "lt") + (0 if upper else 1000)
        values = st.integers(low_k, high_k).map(lambda k: k * step)
    return Kind(Annotated[float, Field(**rules)], values)


@st.composite
def constrained_strs(draw: st.DrawFn) -> Kind:
    pattern = draw(st.sampled_from([None, "^[a-z]+$", "^[a-z0-9_]+$"]))
    min_length = draw(st.sampled_from([None, 0, 1, 3]))
    max_length = draw(st.sampled_from([None, max(min_length or 0, 1) + draw(st.integers(0, 5))]))
    rules: dict[str, Any] = {"pattern": pattern}
    if min_length is not None:
        rules["min_length"] = min_length
    if max_length is not None:
        rules["max_length"] = max_length
    alphabet = (  # no lone surrogates: Pydantic refuses them
        st.characters(codec="utf-8") if pattern is None else st.sampled_from(string.ascii_lowercase)
    )
    values = st.text(
        alphabet,
        min_size=max(min_length or 0, 1 if pattern else 0),
        max_size=max_length if max_length is not None else 8,
    )
    return Kind(Annotated[str, Field(**rules)], values)


@st.composite
def literals(draw: st.DrawFn) -> Kind:
    options = draw(
        st.lists(
            st.one_of(st.text(max_size=5), st.integers(-5, 5)), min_size=1, max_size=4, unique=True
        )
    )
    return Kind(Literal[tuple(options)], st.sampled_from(options))


@st.composite
def enums(draw: st.DrawFn) -> Kind:
    values = draw(st.lists(st.text(max_size=5), min_size=1, max_size=5, unique=True))
    base = draw(st.sampled_from([enum.Enum, str]))
    members = [(f"M{i}", v) for i, v in enumerate(values)]
    cls = (
        enum.Enum(fresh("Enum"), members)
        if base is enum.Enum
        else enum.Enum(fresh("StrEnum"), members, type=str)
    )
    return Kind(cls, st.sampled_from(list(cls)))


@st.composite
def scalar_unions(draw: st.DrawFn) -> Kind:
    first, second = draw(st.permutations(UNION_SCALARS))[:2]
    return Kind(first.annotation | second.annotation, st.one_of(first.values, second.values))


def scalar_kinds() -> st.SearchStrategy[Kind]:
    return st.one_of(
        st.sampled_from(PLAIN_SCALARS),
        constrained_ints(),
        constrained_floats(),
        constrained_strs(),
        literals(),
        enums(),
        scalar_unions(),
    )


@st.composite
def nested_models(draw: st.DrawFn, depth: int) -> Kind:
    spec = draw(model_specs(depth))
    return Kind(spec.cls, instances(spec))


@st.composite
def model_unions(draw: st.DrawFn, depth: int) -> Kind:
    """A union of two models Pydantic tells apart, so that every instance round-trips:
    by a discriminator (`kind`), or by a required field only one of them has."""
    tag = draw(st.sampled_from(["discriminator", "field"]))
    left = draw(model_specs(depth, tag=tag))
    right = draw(model_specs(depth, tag=tag))
    union: Any = left.cls | right.cls
    if tag == "discriminator":
        union = Annotated[union, Field(discriminator="kind")]
    return Kind(union, st.one_of(instances(left), instances(right)))


@st.composite
def kinds(draw: st.DrawFn, depth: int, *, lists: int = 0) -> Kind:
    """A field type for a model at `depth`; `lists` is how many lists it sits in already."""
    shape = draw(st.sampled_from(["scalar"] * 6 + ["list"] * (lists < 2) + ["model", "union"]))
    if shape in ("model", "union") and depth >= MAX_DEPTH:
        shape = "scalar"
    if shape == "scalar":
        kind = draw(scalar_kinds())
    elif shape == "model":
        kind = draw(nested_models(depth + 1))
    elif shape == "union":
        kind = draw(model_unions(depth + 1))
    else:
        inner = draw(kinds(depth, lists=lists + 1))
        low = draw(st.sampled_from([None, 0, 1, 2]))
        high = draw(st.sampled_from([None, (low or 0) + draw(st.integers(0, 2))]))
        rules = {
            key: bound
            for key, bound in (("min_length", low), ("max_length", high))
            if bound is not None
        }
        annotation: Any = list[inner.annotation]
        if rules:
            annotation = Annotated[annotation, Field(**rules)]
        values = st.lists(
            inner.values,
            min_size=low or 0,
            max_size=min(high, MAX_LIST) if high is not None else MAX_LIST,
        )
        kind = Kind(annotation, values, is_list=True)
    if not kind.nullable and draw(st.integers(0, 3)) == 0:
        kind = Kind(kind.annotation | None, st.none() | kind.values, nullable=True)
    return kind


@st.composite
def model_specs(
    draw: st.DrawFn,
    depth: int = 1,
    *,
    tag: str | None = None,
    names: tuple[str, ...] = FIELD_NAMES,
) -> ModelSpec:
    """A model class at `depth` with fields named from `names`; `tag` (for union members):
    give it a `kind` discriminator, or a required field of its own."""
    name = fresh("Model")
    fields: list[FieldSpec] = []
    if tag is not None:
        kind = Kind(Literal[name], st.just(name))
        fields.append(FieldSpec("kind" if tag == "discriminator" else f"tag_{name}", kind, True))
    count = draw(st.integers(0, min(MAX_FIELDS - len(fields), len(names))))
    chosen = draw(st.lists(st.sampled_from(names), min_size=count, max_size=count, unique=True))
    for field_name in chosen:
        kind = draw(kinds(depth))
        how = draw(st.sampled_from(["required", "default", "factory" if kind.is_list else "none"]))
        if how == "required":
            fields.append(FieldSpec(field_name, kind, True))
        elif how == "factory":  # `Field(default_factory=...)`, not written into the schema
            made = draw(kind.values)
            fields.append(
                FieldSpec(field_name, kind, False, factory=functools.partial(copy.deepcopy, made))
            )
        elif how == "none" and kind.nullable:
            fields.append(FieldSpec(field_name, kind, False, default=None))
        else:  # a default of the field's own type: `int = 3`, `Color = Color.RED`
            fields.append(FieldSpec(field_name, kind, False, default=draw(kind.values)))
    definitions: dict[str, Any] = {}
    for spec in fields:
        info: dict[str, Any] = {}
        if draw(st.integers(0, 3)) == 0:
            info["description"] = f"the {spec.name}"
        if spec.factory is not None:
            info["default_factory"] = spec.factory
        elif not spec.required:
            info["default"] = spec.default
        definitions[spec.name] = (spec.kind.annotation, Field(**info))
    doc = draw(st.sampled_from([None, f"A generated model, {name}."]))
    cls = create_model(name, __doc__=doc, **definitions)
    spec = ModelSpec(cls, tuple(fields))
    SPECS[cls] = spec
    return spec


def instances(spec: ModelSpec) -> st.SearchStrategy[BaseModel]:
    """Instances of a generated class; fields with defaults are sometimes left out."""
    required = {f.name: f.kind.values for f in spec.fields if f.required}
    optional = {f.name: f.kind.values for f in spec.fields if not f.required}
    return st.fixed_dictionaries(required, optional=optional).map(lambda kw: spec.cls(**kw))


def with_instances(spec: ModelSpec) -> st.SearchStrategy[tuple[ModelSpec, BaseModel]]:
    return st.tuples(st.just(spec), instances(spec))


models_with_instances = model_specs().flatmap(with_instances)


#: Shared by the properties. No deadline: an example's time depends mostly on how big a
#: class was drawn, and the first ones also pay for Pydantic warming up. No example
#: database: a failure prints its reproduction, and the repository stays free of files.
PROPERTY = settings(deadline=None, database=None)


# --- property A: strict rules everywhere -----------------------------------------------------


def subschemas(node: Any) -> Iterator[dict[str, Any]]:
    """`node` and every schema inside it, keyword-aware: property names are not keywords."""
    if not isinstance(node, dict):
        return
    yield node
    for key in ("properties", "$defs"):
        for sub in (node.get(key) or {}).values():
            yield from subschemas(sub)
    for key in ("items", "additionalProperties"):
        yield from subschemas(node.get(key))
    for key in ("anyOf", "oneOf", "allOf", "prefixItems"):
        for sub in node.get(key) or ():
            yield from subschemas(sub)


def keyword_counts(schema: dict[str, Any]) -> Counter[str]:
    return Counter(key for node in subschemas(schema) for key in node)


#: Constraints strict mode supports: the dialect keeps every one the full schema has.
STRICT_CONSTRAINTS = (
    "pattern", "multipleOf", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum",
    "minItems", "maxItems",
)  # fmt: skip
ANNOTATIONS = frozenset({"title", "examples", "discriminator", "default"})


def assert_dialects_keep_what_they_can(full: dict[str, Any], compiled: Any) -> None:
    plain = keyword_counts(full)
    strict = keyword_counts(compiled.dialect("openai-strict"))
    for keyword in STRICT_CONSTRAINTS:
        assert strict[keyword] == plain[keyword], keyword
    assert strict["enum"] == plain["enum"] + plain["const"]
    formats = sum(node.get("format") in STRICT_FORMATS for node in subschemas(full))
    assert strict["format"] == formats
    mistral = keyword_counts(compiled.dialect("mistral"))
    for keyword in plain.keys() | mistral.keys():
        if keyword in ANNOTATIONS:
            assert mistral[keyword] == 0, keyword
        elif keyword != "additionalProperties":
            assert mistral[keyword] == plain[keyword], keyword


@settings(PROPERTY, max_examples=120)
@given(model_specs())
def test_strict_dialect_follows_the_rules_everywhere(spec: ModelSpec) -> None:
    compiled = compile_schema(spec.cls)
    full = copy.deepcopy(compiled.schema)
    assert compiled.wrap_key is None
    assert full == spec.cls.model_json_schema()

    assert_strict(compiled.dialect("openai-strict"))
    for name in DIALECTS:
        jsonschema.Draft202012Validator.check_schema(compiled.dialect(name))
    assert_dialects_keep_what_they_can(full, compiled)
    assert compiled.schema == full, "building a dialect changed the full schema"


# --- property B: round trip ------------------------------------------------------------------


@settings(PROPERTY, max_examples=120)
@given(models_with_instances)
def test_every_instance_round_trips_through_every_dialect(
    case: tuple[ModelSpec, BaseModel],
) -> None:
    spec, instance = case
    data = wire(instance.model_dump(mode="json"))
    assert spec.cls.model_validate(data) == instance, "the generator made an ambiguous model"
    compiled = compile_schema(spec.cls)
    for name in DIALECTS:
        validate(data, compiled.dialect(name))
        assert compiled.load(copy.deepcopy(data)) == instance, name


@settings(PROPERTY, max_examples=50)
@given(
    model_specs().flatmap(
        lambda spec: st.tuples(st.just(spec), st.lists(instances(spec), max_size=MAX_LIST))
    )
)
def test_lists_of_models_round_trip(case: tuple[ModelSpec, list[BaseModel]]) -> None:
    spec, records = case
    compiled = compile_schema(list[spec.cls])
    assert compiled.wrap_key == "items"
    strict = compiled.dialect("openai-strict")
    assert_strict(strict)
    data = wire({"items": [r.model_dump(mode="json") for r in records]})
    for name in DIALECTS:
        validate(data, compiled.dialect(name))
        assert compiled.load(copy.deepcopy(data)) == records, name

    sent, expected = strict_nulls(records)
    validate({"items": sent}, strict)
    assert compiled.load(wire({"items": sent})) == expected


@st.composite
def targets(draw: st.DrawFn) -> tuple[Any, Any]:
    """Any field type as the target itself, with a value of it."""
    kind = draw(kinds(1))
    return kind.annotation, draw(kind.values)


@settings(PROPERTY, max_examples=80)
@given(targets())
def test_any_field_type_as_the_target_is_wrapped_and_round_trips(case: tuple[Any, Any]) -> None:
    target, value = case
    compiled = compile_schema(target)
    dumped = wire(TypeAdapter(target).dump_python(value, mode="json"))
    full_root = TypeAdapter(target).json_schema()
    if compiled.wrap_key is None:  # a model: already an object
        assert isinstance(value, BaseModel)
        data = dumped
    else:
        assert compiled.wrap_key == ("items" if full_root.get("type") == "array" else "value")
        assert compiled.schema["required"] == [compiled.wrap_key]
        data = {compiled.wrap_key: dumped}
    assert_strict(compiled.dialect("openai-strict"))
    for name in DIALECTS:
        validate(data, compiled.dialect(name))
        assert compiled.load(copy.deepcopy(data)) == value, name


# --- property C: strict nulls mean "not given" -----------------------------------------------


def strict_nulls(value: Any) -> tuple[Any, Any]:
    """The answer a strict model may send for `value` with every optional field null, and
    the value `load` should make of it: defaults where the type has no null, else None."""
    if isinstance(value, BaseModel):
        spec = SPECS[type(value)]
        sent: dict[str, Any] = {}
        expected: dict[str, Any] = {}
        for f in spec.fields:
            if f.required:
                sent[f.name], expected[f.name] = strict_nulls(getattr(value, f.name))
            else:
                sent[f.name] = None
                expected[f.name] = None if f.kind.nullable else f.default_value()
        return sent, type(value)(**expected)
    if isinstance(value, list):
        pairs = [strict_nulls(v) for v in value]
        return [s for s, _ in pairs], [e for _, e in pairs]
    return pydantic_core.to_jsonable_python(value), value


def schema_of(cls: type[BaseModel], schema: dict[str, Any]) -> dict[str, Any] | None:
    if schema.get("title") == cls.__name__:
        return schema
    found: dict[str, Any] | None = schema.get("$defs", {}).get(cls.__name__)
    return found


@settings(PROPERTY, max_examples=120)
@given(models_with_instances)
def test_strict_nulls_for_optional_fields_mean_not_given(
    case: tuple[ModelSpec, BaseModel],
) -> None:
    spec, instance = case
    compiled = compile_schema(spec.cls)
    for cls, each in SPECS.items():  # "optional" here means what it means in the schema
        node = schema_of(cls, compiled.schema)
        if node is not None:
            assert set(node.get("required", ())) == {f.name for f in each.fields if f.required}
    sent, expected = strict_nulls(instance)
    sent = wire(sent)
    validate(sent, compiled.dialect("openai-strict"))
    assert compiled.load(sent) == expected


# --- examples --------------------------------------------------------------------------------


class Counts(BaseModel):
    label: str
    counts: dict[str, int]


class Pair(BaseModel):
    pair: tuple[int, str]


class Node(BaseModel):
    name: str
    weight: float | None = None
    children: list[Node] = []


def nest(levels: int) -> type[BaseModel]:
    """A model whose objects nest `levels` deep, root included."""
    inner = create_model(fresh("Level"), leaf=(int, ...))
    for _ in range(levels - 1):
        inner = create_model(fresh("Level"), child=(inner, ...))
    return inner


@pytest.mark.parametrize(
    ("target", "path"),
    [(Counts, "counts"), (Pair, "pair"), (list[Counts], "$defs.Counts.counts")],
)
def test_what_strict_cannot_express_is_refused_naming_the_field(target: Any, path: str) -> None:
    compiled = compile_schema(target)
    with pytest.raises(SchemaError) as caught:
        compiled.dialect("openai-strict")
    assert caught.value.path == path
    assert f"field {path!r}" in str(caught.value)
    # the other dialects can say it
    for name in ("mistral", "plain"):
        jsonschema.Draft202012Validator.check_schema(compiled.dialect(name))


def test_ten_levels_of_nesting_pass_and_eleven_are_refused() -> None:
    assert_strict(compile_schema(nest(10)).dialect("openai-strict"))
    with pytest.raises(SchemaError, match="deeper than 10 levels"):
        compile_schema(nest(11)).dialect("openai-strict")


def test_a_thousand_enum_values_pass_and_more_are_refused() -> None:
    at_limit = enum.Enum(fresh("Big"), [(f"V{i}", f"v{i}") for i in range(1000)])
    over = enum.Enum(fresh("Bigger"), [(f"V{i}", f"v{i}") for i in range(1001)])
    fits = create_model(fresh("Model"), v=(at_limit, ...))
    assert_strict(compile_schema(fits).dialect("openai-strict"))
    too_many = create_model(fresh("Model"), v=(over, ...))
    with pytest.raises(SchemaError, match="1001 enum values"):
        compile_schema(too_many).dialect("openai-strict")


def test_a_recursive_model_compiles_and_round_trips() -> None:
    tree = Node(
        name="root",
        children=[Node(name="a", weight=1.5), Node(name="b", children=[Node(name="c")])],
    )
    compiled = compile_schema(Node)
    assert compiled.wrap_key is None
    strict = compiled.dialect("openai-strict")
    assert_strict(strict)
    data = wire(tree.model_dump(mode="json"))
    for name in DIALECTS:
        validate(data, compiled.dialect(name))
        assert compiled.load(data) == tree
    # `children: null` from a strict model means "not given": the default applies
    sent = {
        "name": "r",
        "weight": None,
        "children": [{"name": "a", "weight": 2.0, "children": None}],
    }
    validate(sent, strict)
    assert compiled.load(sent) == Node(name="r", children=[Node(name="a", weight=2.0)])


# --- regressions: bugs these properties found ------------------------------------------------


class Cat(BaseModel):
    kind: Literal["cat"]
    name: str | None = "Tom"


class Dog(BaseModel):
    kind: Literal["dog"]
    name: str = "Rex"
    good: bool = True


class Pet(BaseModel):
    pet: Annotated[Dog | Cat, Field(discriminator="kind")]


class MaybePet(BaseModel):
    pet: Annotated[Cat | Dog, Field(discriminator="kind")] | None = None


class Empty(BaseModel):
    pass


class Box(BaseModel):
    label: str
    extra: Empty


def test_a_null_in_a_union_member_is_read_under_its_own_member() -> None:
    # was: the branch was picked by keys alone, so Cat's null name was dropped under
    # Dog's schema and Cat's default replaced it
    record = Pet(pet=Cat(kind="cat", name=None))
    data = wire(record.model_dump(mode="json"))
    assert Pet.model_validate(data) == record
    assert compile_schema(Pet).load(data) == record


def test_strict_nulls_inside_an_optional_discriminated_union_are_dropped() -> None:
    # was: `Annotated[A | B, discriminator] | None` is a union inside a union, never
    # looked into, so the strict nulls stayed and Pydantic refused them
    compiled = compile_schema(MaybePet)
    sent = {"pet": {"kind": "dog", "name": None, "good": None}}
    validate(sent, compiled.dialect("openai-strict"))
    assert compiled.load(sent) == MaybePet(pet=Dog(kind="dog"))


def test_a_model_without_fields_is_a_closed_object() -> None:
    # was: refused as an open-ended dict
    compiled = compile_schema(Box)
    assert_strict(compiled.dialect("openai-strict"))
    assert compiled.load({"label": "x", "extra": {}}) == Box(label="x", extra=Empty())


def nest_through_unions(levels: int, *, discriminated: bool) -> type[BaseModel]:
    """Like `nest`, but each level reaches the next through a union with a stop model."""
    inner: Any = create_model(fresh("Level"), kind=(Literal["go"], ...), leaf=(int, ...))
    for _ in range(levels - 1):
        stop = create_model(fresh("Stop"), kind=(Literal["stop"], ...))
        child: Any = inner | stop
        if discriminated:
            child = Annotated[child, Field(discriminator="kind")]
        inner = create_model(fresh("Level"), kind=(Literal["go"], ...), child=(child, ...))
    return cast(type[BaseModel], inner)


@pytest.mark.parametrize("discriminated", [False, True])
def test_nesting_below_a_union_counts_toward_the_limit(discriminated: bool) -> None:
    # was: below a discriminated union (still `oneOf` in the untransformed $defs the
    # limits were counted in) nothing was counted
    fits = nest_through_unions(10, discriminated=discriminated)
    assert_strict(compile_schema(fits).dialect("openai-strict"))
    too_deep = nest_through_unions(11, discriminated=discriminated)
    with pytest.raises(SchemaError, match="deeper than 10 levels"):
        compile_schema(too_deep).dialect("openai-strict")


# --- a union member is chosen by its required keys and the nulls it accepts ------------------


class Priced(BaseModel):
    price: int = 0


class Unpriced(BaseModel):
    price: int | None = None


class Offer(BaseModel):
    item: Priced | Unpriced


class Sized(BaseModel):
    size: int
    price: int = 0


class Free(BaseModel):
    price: int | None


class Listing(BaseModel):
    item: Sized | Free


def test_a_null_the_full_schema_accepts_is_kept() -> None:
    record = Offer(item=Unpriced(price=None))
    data = wire(record.model_dump(mode="json"))  # {"item": {"price": None}}
    assert Offer.model_validate(data) == record
    assert compile_schema(Offer).load(data) == record  # got Priced(price=0)


def test_a_member_missing_required_keys_is_not_the_answers_shape() -> None:
    record = Listing(item=Free(price=None))
    data = wire(record.model_dump(mode="json"))  # {"item": {"price": None}}
    assert Listing.model_validate(data) == record
    assert compile_schema(Listing).load(data) == record  # InvalidAnswer: size, price missing


@st.composite
def flat_models(draw: st.DrawFn) -> ModelSpec:
    """A small model of `int` fields, `a` and/or `b`, each nullable or not, required or not."""
    fields = []
    for name in draw(st.lists(st.sampled_from("ab"), min_size=1, max_size=2, unique=True)):
        kind = draw(
            st.sampled_from(
                [
                    Kind(int, st.integers(0, 3)),
                    Kind(int | None, st.integers(0, 3) | st.none(), True),
                ]
            )
        )
        required = draw(st.booleans())
        fields.append(FieldSpec(name, kind, required, None if required else draw(kind.values)))
    cls = create_model(
        fresh("Flat"),
        **{f.name: (f.kind.annotation, ... if f.required else f.default) for f in fields},
    )
    return ModelSpec(cls, tuple(fields))


@st.composite
def ambiguous_unions(draw: st.DrawFn) -> tuple[type[BaseModel], BaseModel]:
    """A model whose one field is a union of two flat models with no tag, and an instance."""
    left, right = draw(flat_models()), draw(flat_models())
    holder = create_model(fresh("Holder"), v=(left.cls | right.cls, ...))
    return holder, holder(v=draw(instances(left) | instances(right)))


@settings(PROPERTY, max_examples=200)
@given(ambiguous_unions())
def test_load_reads_a_valid_answer_as_pydantic_does(case: tuple[type[BaseModel], Any]) -> None:
    """A null the full schema takes as it is was not put there by the strict dialect:
    `load` must make of a valid answer what Pydantic makes of it."""
    holder, instance = case
    data = wire(instance.model_dump(mode="json"))
    compiled = compile_schema(holder)
    validate(data, compiled.dialect("openai-strict"))
    assert compiled.load(copy.deepcopy(data)) == holder.model_validate(data)
