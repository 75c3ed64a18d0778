"""Splitting long documents: properties over generated texts, and where the cuts go.

Whatever the text, budget and overlap, the chunks are slices of the document that
cover it in order, none over the budget, consecutive ones sharing at most the overlap
(starting on a boundary), a cut inside a word only for a word longer than the budget,
and the pages each covers are those its characters stand on.
"""

from __future__ import annotations

import bisect
import itertools
import re
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from extractor._chunks import Chunk, describe_pages, page_starts, split
from extractor._errors import ConfigurationError

PIECES = st.sampled_from(
    [
        "a",
        "word",
        "Sentence ends. ",
        " ",
        "  ",
        "\n",
        "\n\n",
        "\f",
        "# Heading\n",
        "TOTALS\n\n",
        "Question? Yes! ",
        "extraordinarilylongword",
        "\t",
        "é",
    ]
)
TEXTS = st.lists(PIECES, max_size=60).map("".join)


@st.composite
def cases(draw: st.DrawFn) -> tuple[str, int, int]:
    text = draw(TEXTS)
    budget = draw(st.integers(min_value=1, max_value=80))
    overlap = draw(st.integers(min_value=0, max_value=budget - 1))
    return text, budget, overlap


@st.composite
def paged_cases(draw: st.DrawFn) -> tuple[str, int, int, list[int]]:
    text, budget, overlap = draw(cases())
    inner = draw(st.lists(st.integers(min_value=0, max_value=len(text)), max_size=6))
    return text, budget, overlap, [0, *sorted(inner)]


def reference_page(starts: list[int], position: int) -> int:
    return bisect.bisect_right(starts, position)


def is_boundary(text: str, position: int, starts: tuple[int, ...]) -> bool:
    return position in starts or text[position - 1].isspace()


@settings(max_examples=600, deadline=None)
@given(cases())
def test_chunks_are_slices_that_cover_the_document_in_order(case: tuple[str, int, int]) -> None:
    text, budget, overlap = case
    chunks = split(text, budget_chars=budget, overlap_chars=overlap)
    if not text:
        assert chunks == []
        return
    assert chunks[0].start == 0
    assert chunks[-1].end == len(text)
    for index, chunk in enumerate(chunks):
        assert chunk.index == index
        assert chunk.text == text[chunk.start : chunk.end]
        assert chunk.start < chunk.end
    for before, after in itertools.pairwise(chunks):
        assert before.start < after.start  # always progress
        assert before.end < after.end
        assert after.start <= before.end  # no gap
    assert split(text, budget_chars=budget, overlap_chars=overlap) == chunks  # deterministic


@settings(max_examples=600, deadline=None)
@given(cases())
def test_every_chunk_is_within_its_budget(case: tuple[str, int, int]) -> None:
    text, budget, overlap = case
    assert all(
        len(c.text) <= budget for c in split(text, budget_chars=budget, overlap_chars=overlap)
    )


@settings(max_examples=600, deadline=None)
@given(cases())
def test_consecutive_chunks_overlap_by_at_most_the_overlap_from_a_boundary(
    case: tuple[str, int, int],
) -> None:
    text, budget, overlap = case
    starts = page_starts(text)
    chunks = split(text, budget_chars=budget, overlap_chars=overlap)
    for before, after in itertools.pairwise(chunks):
        shared = before.end - after.start
        assert 0 <= shared <= overlap
        if shared:
            assert is_boundary(text, after.start, starts)
            assert text[after.start : before.end].strip()  # never whitespace alone


@settings(max_examples=600, deadline=None)
@given(cases())
def test_a_word_is_cut_only_when_it_is_longer_than_the_budget(
    case: tuple[str, int, int],
) -> None:
    text, budget, overlap = case
    for chunk in split(text, budget_chars=budget, overlap_chars=overlap)[:-1]:
        end = chunk.end
        if text[end - 1].isspace() or text[end].isspace():
            continue
        # inside a word: the chunk is a budget-long piece of a word longer than the budget
        assert len(chunk.text) == budget
        assert not re.search(r"\s", chunk.text)
        run_start = chunk.start
        while run_start and not text[run_start - 1].isspace():
            run_start -= 1
        run = re.match(r"\S+", text[run_start:])
        assert run is not None and len(run.group()) > budget


@settings(max_examples=600, deadline=None)
@given(cases())
def test_pages_come_from_form_feeds(case: tuple[str, int, int]) -> None:
    text, budget, overlap = case
    starts = [0, *(i + 1 for i, c in enumerate(text) if c == "\f")]
    for chunk in split(text, budget_chars=budget, overlap_chars=overlap):
        expected = sorted({reference_page(starts, i) for i in range(chunk.start, chunk.end)})
        assert list(chunk.pages) == expected
        for position in range(chunk.start, chunk.end):
            assert chunk.page_at(position) == reference_page(starts, position)
            assert text[:position].count("\f") + 1 == chunk.page_at(position)


@settings(max_examples=600, deadline=None)
@given(paged_cases())
def test_pages_come_from_given_page_starts(case: tuple[str, int, int, list[int]]) -> None:
    text, budget, overlap, starts = case
    chunks = split(text, budget_chars=budget, overlap_chars=overlap, pages=starts)
    covered: set[int] = set()
    for chunk in chunks:
        expected = sorted({reference_page(starts, i) for i in range(chunk.start, chunk.end)})
        assert list(chunk.pages) == expected
        covered.update(chunk.pages)
        for position in (chunk.start, chunk.end - 1):
            assert chunk.page_at(position) == reference_page(starts, position)
    assert covered == {reference_page(starts, i) for i in range(len(text))}


# --- where the cuts go ------------------------------------------------------------------------


def cuts(text: str, budget: int, *, pages: list[int] | None = None) -> list[str]:
    return [c.text for c in split(text, budget_chars=budget, overlap_chars=0, pages=pages)]


def test_a_page_break_beats_every_other_boundary() -> None:
    text = "one line.\ntwo lines.\n\nA para.\fpage two starts here and runs on"
    first = cuts(text, 40)[0]
    assert first == "one line.\ntwo lines.\n\nA para.\f"


def test_given_page_starts_are_page_breaks() -> None:
    text = "first page text. more.\nsecond page text and more words"
    first = cuts(text, 30, pages=[0, 17])[0]
    assert first == "first page text. "


def test_a_heading_beats_a_paragraph() -> None:
    text = "Intro words here.\n\nMore words.\n\n# Results\nThe rest of the document."
    assert cuts(text, 45)[0] == "Intro words here.\n\nMore words.\n\n"
    shouting = "Intro words here.\n\nMore words.\nSUMMARY\n\nThe rest of the text."
    assert cuts(shouting, 42)[0] == "Intro words here.\n\nMore words.\n"


def test_a_paragraph_beats_a_line_and_a_line_beats_a_sentence() -> None:
    assert cuts("aaaa bbbb.\n\ncccc.\ndddd. eeee ffff", 24)[0] == "aaaa bbbb.\n\n"
    assert cuts("aaaa bbbb cccc.\ndddd. eeee ffff gggg", 26)[0] == "aaaa bbbb cccc.\n"


def test_a_sentence_beats_a_word() -> None:
    assert cuts("aaaa bbbb cccc. dddd eeee ffff", 22)[0] == "aaaa bbbb cccc. "


def test_a_strong_boundary_early_in_the_room_does_not_make_a_tiny_chunk() -> None:
    # the paragraph break is in the first half of the room: the chunk fills on to a word
    text = "Hi.\n\n" + "word " * 20
    assert cuts(text, 40)[0] == "Hi.\n\n" + "word " * 7


def test_a_word_longer_than_the_budget_is_cut_and_nothing_else_is() -> None:
    assert cuts("ab " + "x" * 25 + " cd", 10) == ["ab ", "x" * 10, "x" * 10, "x" * 5 + " cd"]


def test_the_overlap_is_whole_lines_of_the_previous_end() -> None:
    lines = [f"line number {n:02d}\n" for n in range(12)]  # 15 characters each
    text = "".join(lines)
    chunks = split(text, budget_chars=80, overlap_chars=35)
    shared = [text[after.start : before.end] for before, after in itertools.pairwise(chunks)]
    assert shared == [
        "line number 03\nline number 04\n",
        "line number 06\nline number 07\n",
        "line number 09\nline number 10\n",
    ]


def test_without_lines_the_overlap_is_sentences_then_words() -> None:
    text = "One two three. Four five six. Seven eight nine ten eleven twelve."
    chunks = split(text, budget_chars=32, overlap_chars=16)
    assert text[chunks[1].start : chunks[0].end] == "Four five six. "
    words = "alpha beta gamma delta epsilon zeta eta theta iota kappa"
    chunks = split(words, budget_chars=24, overlap_chars=12)
    assert words[chunks[1].start : chunks[0].end] == "gamma delta "  # the most within 12


def test_an_overlap_gives_way_to_a_word_that_would_not_fit_beside_it() -> None:
    text = "aa bb cc " + "y" * 18 + " zz"
    chunks = split(text, budget_chars=20, overlap_chars=6)
    # "bb cc " would open the second chunk, but then the word would not fit: it goes
    assert [c.text for c in chunks] == ["aa bb cc ", "y" * 18 + " ", "zz"]
    assert [c.start for c in chunks] == [0, 9, 28]


def test_a_text_that_fits_is_one_chunk_with_its_pages() -> None:
    assert split("a\fb\fc", budget_chars=100, overlap_chars=10) == [
        Chunk(0, "a\fb\fc", 0, 5, (1, 2, 3), (0, 2, 4))
    ]
    assert split("", budget_chars=10, overlap_chars=0) == []


def test_empty_pages_are_covered_by_no_chunk() -> None:
    (chunk,) = split("ab\f\fcd", budget_chars=100, overlap_chars=0)
    assert chunk.pages == (1, 2, 3)  # page 2 holds its form feed
    (chunk,) = split("abcd", budget_chars=100, overlap_chars=0, pages=[0, 2, 2])
    assert chunk.pages == (1, 3)


@pytest.mark.parametrize(
    ("budget", "overlap", "pages", "message"),
    [
        (0, 0, None, "budget_chars must be a whole number >= 1"),
        (10, 10, None, "overlap_chars must be a whole number from 0 to less than"),
        (10, -1, None, "overlap_chars"),
        (10, 2, [3], "page starts must begin with 0"),
        (10, 2, [0, 5, 2], "page starts must increase"),
        (10, 2, [0, 99], "stay within the text"),
    ],
)
def test_bad_arguments_are_configuration_errors(
    budget: int, overlap: int, pages: list[int] | None, message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        split("some text here", budget_chars=budget, overlap_chars=overlap, pages=pages)


def test_pages_are_described_for_messages() -> None:
    assert describe_pages([]) == "no page"
    assert describe_pages([3]) == "page 3"
    assert describe_pages([3, 4]) == "pages 3-4"
    assert describe_pages([1, 3, 4, 5]) == "pages 1, 3-5"
    assert str(Chunk(1, "x", 0, 1, (2, 3))) == "chunk 2 (pages 2-3)"


def test_a_long_document_splits_quickly() -> None:
    text = ("A sentence of words here. " * 30 + "\n\n") * 400 + "\f"  # about 300,000 chars
    started = time.perf_counter()
    chunks = split(text * 3, budget_chars=8000, overlap_chars=800)
    assert time.perf_counter() - started < 5
    assert all(len(c.text) <= 8000 for c in chunks)
