"""Properties of the forgiving parser, over generated schemas and values.

Any JSON value, written with any mix of the slips models make and wrapped in any mix
of the packaging they add (prose, fences, tags, a reasoning block holding a different
draft, double encoding), reads back as exactly that value; and strict JSON reads back
with no repair at all, exactly as `json.loads` reads it.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from extractor._errors import InvalidAnswer, TruncatedAnswer
from extractor._parse import REPAIRS, load_answer
from tests.parsing import loader, same

SCALAR_SCHEMAS = [
    {"type": "string"},
    {"type": "integer"},
    {"type": "number"},
    {"type": "boolean"},
    {"type": "null"},
]
KEYS = st.text(max_size=8)
IDENTIFIER = re.compile(r"[A-Za-z_$][A-Za-z0-9_$]*\Z")

PROSE_BEFORE = [
    "Here is the JSON:",
    "Sure! Here's the extracted data:",
    "Based on the document, I filled each {field} as follows.",
    "The record [see below] is complete.",
    "I'm confident about the name; the rest is as the document says.",
    "json",
]
PROSE_AFTER = [
    "Let me know if you need anything else!",
    "Note: fields missing from the document are null.",
    "I hope this helps. (Values in {braces} came straight from the text.)",
]
COMMENTS = ["// from the document\n", "/* checked */", "# note\n"]
SPACES = ["", " ", "\n", "\n  ", "\t", "\u00a0"]


def object_schema(properties: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": sorted(properties),
        "additionalProperties": False,
    }


SCHEMAS = st.recursive(
    st.sampled_from(SCALAR_SCHEMAS),
    lambda inner: st.one_of(
        inner.map(lambda items: {"type": "array", "items": items}),
        st.dictionaries(KEYS, inner, max_size=4).map(object_schema),
    ),
    max_leaves=10,
)
ROOT_SCHEMAS = st.dictionaries(KEYS, SCHEMAS, min_size=1, max_size=5).map(object_schema)


def values(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values that validate against one of the generated schemas."""
    kind = schema["type"]
    if kind == "string":
        return st.text(max_size=12)
    if kind == "integer":
        return st.integers()
    if kind == "number":
        return st.floats(allow_nan=False, allow_infinity=False) | st.integers()
    if kind == "boolean":
        return st.booleans()
    if kind == "null":
        return st.none()
    if kind == "array":
        return st.lists(values(schema["items"]), max_size=3)
    return st.fixed_dictionaries({key: values(sub) for key, sub in schema["properties"].items()})


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEYS, inner, max_size=3),
    max_leaves=12,
)


# --- writing JSON the way a careless model does ------------------------------------------


def string(draw: st.DrawFn, text: str, *, key: bool = False) -> str:
    """A string in double, single or smart quotes, maybe with raw line breaks and tabs."""
    style = draw(st.sampled_from(["double", "single", "smart", "unquoted"]))
    if style == "unquoted" and not (key and IDENTIFIER.match(text)):
        style = "double"
    if style == "unquoted":
        return text
    raw_breaks = draw(st.booleans())
    out = []
    for char in text:
        if char == "\\":
            out.append("\\\\")
        elif (style == "double" and char == '"') or (style == "single" and char == "'"):
            out.append("\\" + char)
        elif style == "smart" and char in '"\u201c\u201d':
            out.append(f"\\u{ord(char):04x}")
        elif char in "\n\t" and raw_breaks:
            out.append(char)
        elif char < " ":
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    body = "".join(out)
    if style == "double":
        return f'"{body}"'
    if style == "single":
        return f"'{body}'"
    return f"\u201c{body}\u201d"


def gap(draw: st.DrawFn) -> str:
    """White space between tokens, maybe with a comment in it."""
    space = draw(st.sampled_from(SPACES))
    if draw(st.integers(0, 4)) == 0:
        return space + draw(st.sampled_from(COMMENTS)) + draw(st.sampled_from(SPACES))
    return space


@st.composite
def sloppy(draw: st.DrawFn, value: Any) -> str:
    """`value` written as JSON with any mix of comments, trailing or missing commas, Python
    literals, single or smart quotes, unquoted keys and raw line breaks."""
    if value is None or isinstance(value, bool):
        strict = json.dumps(value)
        return draw(
            st.sampled_from([strict, {"true": "True", "false": "False"}.get(strict, "None")])
        )
    if isinstance(value, (int, float)):
        return json.dumps(value)
    if isinstance(value, str):
        return string(draw, value)
    if isinstance(value, list):
        items = [gap(draw) + draw(sloppy(item)) + gap(draw) for item in value]
        trailing = "," + gap(draw) if items and draw(st.booleans()) else ""
        return "[" + ",".join(items) + trailing + "]"
    out = "{"
    for i, (key, item) in enumerate(value.items()):
        written = string(draw, key, key=True)
        if i:
            # a comma, or none before a quoted key (a line ends without its comma); not
            # after a single- or smart-quoted string, whose end is known by what follows
            quoted = written[0] in "\"'\u201c" and out[-1] not in "'\u201d"
            out += "\n" if quoted and draw(st.integers(0, 3)) == 0 else ","
        out += gap(draw) + written + gap(draw) + ":" + gap(draw) + draw(sloppy(item))
    trailing = "," + gap(draw) if value and draw(st.booleans()) else ""
    return out + trailing + gap(draw) + "}"


@st.composite
def wrapped(draw: st.DrawFn, body: str, *, encode: bool) -> str:
    """`body` packaged as chat models package answers.

    An answer encoded as a JSON string is read where a string can start: the whole
    answer, or a code fence; so prose goes around it only when it is fenced.
    """
    encoded = encode and draw(st.integers(0, 5)) == 0
    if encoded:
        body = json.dumps(body)
    fenced = draw(st.booleans())
    if fenced:
        language = draw(st.sampled_from(["json", "JSON", "", "javascript"]))
        closing = draw(st.sampled_from(["\n```", "```", ""]))
        body = f"```{language}\n{body}{closing}"
    elif not encoded and draw(st.integers(0, 3)) == 0:
        body = f"<json>\n{body}\n</json>"
    if (fenced or not encoded) and draw(st.booleans()):
        body = draw(st.sampled_from(PROSE_BEFORE)) + draw(st.sampled_from([" ", "\n\n"])) + body
    if (fenced or not encoded) and draw(st.booleans()):
        body = body + "\n\n" + draw(st.sampled_from(PROSE_AFTER))
    if draw(st.integers(0, 3)) == 0:
        draft = json.dumps(draw(JSON_VALUES))
        body = f"<think>\nA first draft: {draft}. Let me check it again.\n</think>\n\n{body}"
    if draw(st.integers(0, 9)) == 0:
        body = "\ufeff" + body
    return body


@st.composite
def schema_and_value(draw: st.DrawFn) -> tuple[dict[str, Any], Any]:
    schema = draw(ROOT_SCHEMAS)
    return schema, draw(values(schema))


@settings(max_examples=400, deadline=None)
@given(case=schema_and_value(), data=st.data())
def test_a_value_from_a_schema_survives_any_noise(case: tuple[dict[str, Any], Any], data: Any):
    schema, value = case
    answer = data.draw(wrapped(data.draw(sloppy(value)), encode=True))
    got, repairs = load_answer(answer, loader(schema))
    assert same(got, value)
    assert set(repairs) <= set(REPAIRS)


@settings(max_examples=300, deadline=None)
@given(value=st.dictionaries(KEYS, JSON_VALUES, max_size=4), data=st.data())
def test_any_object_survives_any_noise(value: dict[str, Any], data: Any):
    answer = data.draw(wrapped(data.draw(sloppy(value)), encode=False))
    got, _ = load_answer(answer, loader({"type": "object"}))
    assert same(got, value)


@settings(max_examples=300, deadline=None)
@given(
    value=JSON_VALUES,
    ensure_ascii=st.booleans(),
    indent=st.sampled_from([None, 0, 2, "\t"]),
)
def test_strict_json_reads_as_json_loads_does_with_no_repair(
    value: Any, ensure_ascii: bool, indent: Any
):
    text = json.dumps(value, ensure_ascii=ensure_ascii, indent=indent)
    got, repairs = load_answer(text, loader({}))
    assert same(got, json.loads(text))
    assert repairs == ()


@settings(max_examples=300, deadline=None)
@given(
    value=st.dictionaries(KEYS, JSON_VALUES, min_size=1, max_size=4),
    before=st.sampled_from(["", "Here is the JSON:\n", "```json\n", "<think>ok</think>\n"]),
    data=st.data(),
)
def test_a_cut_off_answer_is_never_completed(value: dict[str, Any], before: str, data: Any):
    body = data.draw(sloppy(value))
    cut = data.draw(st.integers(1, len(body) - 1))  # inside the value, before its last brace
    with pytest.raises(TruncatedAnswer):
        load_answer(before + body[:cut], loader({"type": "object"}))


@settings(max_examples=400, deadline=None)
@given(case=schema_and_value(), data=st.data())
def test_any_prefix_of_an_answer_gives_the_value_or_an_error_never_another_value(
    case: tuple[dict[str, Any], Any], data: Any
):
    schema, value = case
    answer = data.draw(wrapped(data.draw(sloppy(value)), encode=True))
    prefix = answer[: data.draw(st.integers(1, len(answer)))]
    try:
        got, _ = load_answer(prefix, loader(schema))
    except (TruncatedAnswer, InvalidAnswer):
        return
    assert same(got, value)
