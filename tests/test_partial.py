"""The partial-JSON reader, the SSE decoder and previews: properties over every prefix and split."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, Field

from extractor._partial import MISSING, PartialReader, Preview, read_partial
from extractor._sse import SSEDecoder, SSEEvent

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**20), max_value=10**20)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=20,
)


def serialise(value: Any, style: int) -> str:
    """The value as a model might write it: compact, spaced, indented, with or without ASCII."""
    if style == 0:
        return json.dumps(value, separators=(",", ":"))
    if style == 1:
        return json.dumps(value, ensure_ascii=False)
    return json.dumps(value, indent=2, ensure_ascii=False)


def consistent(shown: Any, final: Any) -> bool:
    """Whether `shown` could be what a prefix of `final` holds: nothing invented, nothing wrong."""
    if shown is MISSING:
        return True
    if isinstance(shown, dict):
        return (
            isinstance(final, dict)
            and set(shown) <= set(final)
            and all(consistent(v, final[k]) for k, v in shown.items())
        )
    if isinstance(shown, list):
        return (
            isinstance(final, list)
            and len(shown) <= len(final)
            and all(consistent(v, f) for v, f in zip(shown, final, strict=False))
        )
    if isinstance(shown, str):
        return isinstance(final, str) and final.startswith(shown)
    return type(shown) is type(final) and shown == final


def paths(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Any]]:
    """Every (path, value) pair inside a value, the root first."""
    yield path, value
    if isinstance(value, dict):
        for key, inner in value.items():
            yield from paths(inner, (*path, key))
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            yield from paths(inner, (*path, index))


def at(value: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        value = value[step]
    return value


@settings(max_examples=300, deadline=None)
@given(values, st.integers(0, 2))
def test_every_prefix_reads_consistently_with_the_final_value(value: Any, style: int):
    text = serialise(value, style)
    for end in range(len(text) + 1):
        partial = read_partial(text[:end])
        assert consistent(partial.value, value), (text[:end], partial.value)
        if partial.value is MISSING:
            continue
        for path, shown in paths(partial.value):
            if partial.is_complete(path):
                assert shown == at(value, path), (text[:end], path)
    whole = read_partial(text + " ")  # a number at the very end may go on: a space ends it
    assert whole.done
    assert whole.value == value


@settings(max_examples=200, deadline=None)
@given(values, st.integers(0, 2), st.data())
def test_reading_a_growing_text_again_equals_reading_it_afresh(
    value: Any, style: int, data: st.DataObject
):
    text = serialise(value, style)
    ends = sorted(data.draw(st.lists(st.integers(0, len(text)), max_size=12)))
    reader = PartialReader()
    for end in ends:
        again, afresh = reader.read(text[:end]), read_partial(text[:end])
        assert again.value == afresh.value
        assert again.open == afresh.open
    assert reader.read(text + " ").value == value  # the cache is not lost at the end


def test_a_text_that_does_not_grow_is_read_afresh():
    reader = PartialReader()
    assert reader.read('{"a": [1, 2], "b": 3}').value == {"a": [1, 2], "b": 3}
    assert reader.read('{"a": [5], "c": 4}').value == {"a": [5], "c": 4}


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(max_size=6), values, min_size=1, max_size=4))
def test_what_is_shown_never_shrinks_or_changes(value: dict[str, Any]):
    text = json.dumps(value)
    previous: Any = MISSING
    for end in range(len(text) + 1):
        current = read_partial(text[:end]).value
        assert consistent(previous, current), (text[:end], previous, current)
        previous = current


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [
        ('{"a": 12', {}),  # 12 may still become 125
        ('{"a": 12,', {"a": 12}),
        ('{"a": tr', {}),
        ('{"a": true', {"a": True}),
        ('{"a": "x\\', {"a": "x"}),  # half an escape is not shown
        ('{"a": "x\\u00', {"a": "x"}),
        ('{"a": "x\\u00e9', {"a": "xé"}),
        ('{"a": "\\ud83d', {"a": ""}),  # half a surrogate pair waits for the rest
        ('{"a": "\\ud83d\\ude00', {"a": "😀"}),
        ('{"a', {}),
        ('{"a"', {}),
        ('{"a": ', {}),
        ('{"a": [1, {"b": "c', {"a": [1, {"b": "c"}]}),
        ("[", []),
        ("", MISSING),
    ],
)
def test_what_a_prefix_shows(prefix: str, expected: Any):
    assert read_partial(prefix).value == expected


def test_text_that_stops_being_json_shows_what_came_before():
    assert read_partial('{"a": 1, "b": oops}').value == {"a": 1}


events = st.lists(
    st.builds(
        SSEEvent,
        st.text(
            alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"),
            max_size=20,
        ).flatmap(
            lambda first: st.lists(
                st.text(
                    alphabet=st.characters(
                        blacklist_categories=("Cs",), blacklist_characters="\r\n"
                    ),
                    max_size=10,
                ),
                max_size=2,
            ).map(lambda more: "\n".join([first, *more]))
        ),
        st.sampled_from(["message", "error"]),
    ),
    max_size=6,
)


def encode(items: list[SSEEvent], newline: str, comments: bool) -> bytes:
    out = []
    for item in items:
        if comments:
            out.append(f": OPENROUTER PROCESSING{newline}")
        if item.event != "message":
            out.append(f"event: {item.event}{newline}")
        out.extend(f"data: {line}{newline}" for line in item.data.split("\n"))
        out.append(newline)
    return "".join(out).encode()


@settings(max_examples=300, deadline=None)
@given(events, st.sampled_from(["\n", "\r\n", "\r"]), st.booleans(), st.data())
def test_sse_decoder_reads_any_split_of_the_bytes(
    items: list[SSEEvent], newline: str, comments: bool, data: st.DataObject
):
    raw = encode(items, newline, comments)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(raw)), max_size=8)))
    decoder = SSEDecoder()
    got: list[SSEEvent] = []
    for start, end in zip([0, *cuts], [*cuts, len(raw)], strict=True):
        got.extend(decoder.feed(raw[start:end]))
    got.extend(decoder.close())
    assert got == items


def test_sse_decoder_takes_data_without_a_space_and_a_missing_last_blank_line():
    decoder = SSEDecoder()
    assert decoder.feed(b"data:{}\n\nid: 3\nretry: 10\ndata: [DONE]") == [SSEEvent("{}")]
    assert decoder.close() == [SSEEvent("[DONE]")]


class Item(BaseModel):
    code: str = Field(pattern=r"^[A-Z]{3}$")
    when: date
    count: int = 0


def test_preview_shows_only_values_their_field_accepts():
    preview = Preview(Item, None)
    early = preview({"code": "AB", "when": "2024-0"})
    assert early.code is None
    assert early.when is None
    assert early.model_fields_set == set()
    later = preview({"code": "ABC", "when": "2024-03-01", "count": 3})
    assert later.code == "ABC"
    assert later.when == date(2024, 3, 1)
    assert later.model_fields_set == {"code", "when", "count"}


def test_preview_of_a_wrapped_list():
    preview = Preview(list[Item], "items")
    assert preview({}) is MISSING
    shown = preview({"items": [{"code": "ABC", "when": "2024-03-01"}, {"code": "X"}]})
    assert [type(i) for i in shown] == [Item, Item]
    assert shown[1].model_fields_set == set()
