"""The forgiving parser piece by piece: what each repair reads, the order of candidates,
what is refused, and what the errors say."""

from __future__ import annotations

import json
from typing import Any

import pytest

from extractor._errors import ErrorDetail, InvalidAnswer, TruncatedAnswer
from extractor._parse import REPAIRS, candidates, load_answer, parse_json


def accept_all(data: Any) -> Any:
    return data


def accept_objects(data: Any) -> Any:
    if not isinstance(data, dict):
        raise InvalidAnswer([ErrorDetail("", "expected an object")])
    return data


def require(key: str) -> Any:
    """A `load` accepting only objects with `key` (a string), like a one-field schema."""

    def load(data: Any) -> Any:
        if not isinstance(data, dict) or not isinstance(data.get(key), str):
            raise InvalidAnswer([ErrorDetail(key, "required, a string")])
        return data

    return load


@pytest.mark.parametrize(
    ("text", "value", "repairs"),
    [
        ('{"a": 1}', {"a": 1}, ()),
        ('```json\n{"a": 1}\n```', {"a": 1}, ("fence",)),
        ('Here: {"a": 1}. Done.', {"a": 1}, ("prose",)),
        ('<think>{"a": 2}</think>{"a": 1}', {"a": 1}, ("think",)),
        ('"{\\"a\\": 1}"', {"a": 1}, ("string_encoded",)),
        ('{"a": 1 /* one */}', {"a": 1}, ("comment",)),
        ('{"a": [1, 2,],}', {"a": [1, 2]}, ("trailing_comma",)),
        ('{"a": 1\n "b": 2}', {"a": 1, "b": 2}, ("missing_comma",)),
        (
            '{"a": True, "b": False, "c": None}',
            {"a": True, "b": False, "c": None},
            ("python_literal",),
        ),
        ("{'a': 'x'}", {"a": "x"}, ("single_quotes",)),
        ("{\u201ca\u201d: \u201cx\u201d}", {"a": "x"}, ("smart_quotes",)),
        ("{a: 1, _b$2: 2}", {"a": 1, "_b$2": 2}, ("unquoted_keys",)),
        ('{"a": "x\ny"}', {"a": "x\ny"}, ("raw_newline",)),
        ('{"a": "x\ty"}', {"a": "x\ty"}, ("control_char",)),
        ('{"a": "it\\\'s"}', {"a": "it's"}, ("escape",)),
        ('{"a":\u00a01}', {"a": 1}, ("unicode_space",)),
    ],
)
def test_each_repair_is_read_and_named(text: str, value: Any, repairs: tuple[str, ...]):
    got, named = load_answer(text, accept_objects)
    assert got == value
    assert named == repairs


def test_repairs_are_named_in_one_stable_order():
    text = "Sure:\n```json\n{'a': True, // yes\n}\n```"
    _, repairs = load_answer(text, accept_all)
    assert repairs == (
        "fence",
        "prose",
        "comment",
        "trailing_comma",
        "python_literal",
        "single_quotes",
    )
    assert list(repairs) == sorted(repairs, key=REPAIRS.index)


def test_strict_json_is_read_exactly_as_json_loads_reads_it():
    text = json.dumps({"n": [1, 1.0, -0.0, 1e300, "\u00e9\ud83d\ude00", None, True]})
    [only] = candidates(text)
    assert only.value == json.loads(text) and only.repairs == ()
    escaped = '{"s": "\\ud83d\\ude00 \\u00e9 \\n"}'
    assert load_answer(escaped.replace("}", ",}"), accept_all)[0] == json.loads(escaped)


def test_fenced_values_come_before_the_rest_of_the_text():
    text = 'Not {"a": 1} but:\n```json\n{"a": 2}\n```\nand {"a": 3}'
    assert [c.value for c in candidates(text)] == [{"a": 2}, {"a": 1}, {"a": 3}]


def test_the_first_candidate_the_schema_accepts_wins():
    text = '{"name": 1}\n{"name": "Ann"}\n{"name": "Bob"}'
    assert load_answer(text, require("name")) == ({"name": "Ann"}, ("prose",))


def test_a_nested_object_is_never_a_candidate_of_its_own():
    assert [c.value for c in candidates('{"contact": {"name": "Ann"}} ok')] == [
        {"contact": {"name": "Ann"}}
    ]
    with pytest.raises(InvalidAnswer):  # nor inside a broken one
        load_answer('{"n": 1 2, "contact": {"name": "Ann"}}', require("name"))


def test_when_nothing_is_accepted_the_largest_candidate_s_errors_are_raised():
    text = '{"x": 1}\n{"y": 2, "z": [1, 2, 3]}'

    def load(data: Any) -> Any:
        raise InvalidAnswer([ErrorDetail("", f"rejected {sorted(data)}")])

    with pytest.raises(InvalidAnswer, match=r"rejected \['y', 'z'\]") as caught:
        load_answer(text, load)
    assert caught.value.raw == text


def test_broken_json_says_what_was_expected_and_where():
    text = 'Here you go:\n{\n  "name": "Ann",\n  "age": 41 years\n}'
    with pytest.raises(InvalidAnswer) as caught:
        load_answer(text, accept_all)
    message = str(caught.value)
    assert "expected ',' or '}' after the value of 'age'" in message
    assert "line 4, column 13" in message and "years" in message


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('{"path": "C:\\Users\\ann"}', "the escape \\U means nothing in JSON"),
        ('{"tags": ["a", ...]}', "unexpected character '.'"),
        ('{"a": undefined}', "unexpected word 'undefined'"),
        ('{"a": 1,, "b": 2}', "expected a key"),
        ('{"a": 012}', "a malformed number"),
        ('{"q": "say "hi" now"}', "after the value of 'q'"),
        ('{"tags": ["a" "b"]}', "expected ',' or ']' after item 0"),  # or "ab", as in Python?
    ],
)
def test_what_has_two_readings_is_refused(text: str, problem: str):
    with pytest.raises(InvalidAnswer, match="not valid JSON") as caught:
        load_answer(text, accept_all)
    assert problem in str(caught.value)


@pytest.mark.parametrize(
    "text",
    [
        '{"a": 1, "b": "unfini',
        '{"a": [1, 2',
        '```json\n{"a": {"b": 1}, "c": ',
        '{"a": 1} and then {"b": ',  # a complete value before is not used either
        '{"a": nu',
        '{"a": -',
        '{"a": "\\u00',
        "{'a': 'x', 'b': 'it\\'",
        '{"a": 1 /',
        "<think>\nstill thinking about {",
    ],
)
def test_an_answer_that_ends_inside_a_value_is_truncated(text: str):
    with pytest.raises(TruncatedAnswer, match="cut off: it ends inside") as caught:
        load_answer(text, accept_all)
    assert caught.value.raw == text
    assert caught.value.reaskable


def test_a_stray_quote_in_prose_is_not_a_truncation():
    with pytest.raises(InvalidAnswer, match="no JSON object"):
        load_answer("'Fraid there is no contact here.", accept_all)


def test_nesting_is_bounded():
    deep = "[" * 100_000 + "]" * 100_000
    with pytest.raises(InvalidAnswer, match="nested deeper than"):
        load_answer(deep, accept_all)


@pytest.mark.parametrize("text", [None, "", "  \n"])
def test_an_empty_answer_is_invalid(text: str | None):
    with pytest.raises(InvalidAnswer, match="empty"):
        load_answer(text, accept_all)


def test_parse_json_gives_the_first_candidate():
    assert parse_json('Sure!\n```json\n{"a": 1,}\n```') == {"a": 1}
    with pytest.raises(InvalidAnswer):
        parse_json("no json here")


def test_an_answer_encoded_as_a_string_is_read_both_ways_the_string_first():
    text = json.dumps('{"a": 1}')
    assert [(c.value, c.repairs) for c in candidates(text)] == [
        ('{"a": 1}', ()),
        ({"a": 1}, ("string_encoded",)),
    ]
