"""A document too long for one request, cut into chunks on its natural boundaries.

A chunk ends at the strongest boundary in the last half of the room it has, the furthest
of equals: a page break, then a heading (a Markdown `#` line, or a line in capitals with
a blank line after it), a paragraph, a line, a sentence, a word. Only a word longer than
the budget is cut inside. Each chunk after the first opens with whole lines of the end of
the one before (about `overlap_chars`), so a record that a cut runs through is whole in
one of the two; merging (`extractor._merge`) drops the copies that this makes.

Pages come from form feeds (`\\f`, as PDF text tools write them) or from the page start
offsets a document reader gives, so every chunk, and every value taken from it, says
which pages it covers.
"""

from __future__ import annotations

import bisect
import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

from extractor._errors import ConfigurationError

__all__ = ["Chunk", "describe_pages", "page_starts", "split"]

# Boundary strengths, weakest first: a chunk ends at the strongest one it can.
_WORD: Final = 0
_SENTENCE: Final = 1
_LINE: Final = 2
_PARAGRAPH: Final = 3
_HEADING: Final = 4
_PAGE: Final = 5
_LEVELS: Final = (_PAGE, _HEADING, _PARAGRAPH, _LINE, _SENTENCE, _WORD)

_WORD_RE: Final = re.compile(r"\s+")
_SENTENCE_RE: Final = re.compile(r"[.!?\u2026][\"')\]\u00bb\u201d\u2019]*\s+")
_PARAGRAPH_RE: Final = re.compile(r"\n[^\S\n]*\n\s*")
_MARKDOWN_HEADING_RE: Final = re.compile(r" {0,3}#{1,6}(?:[ \t]|$)")


@dataclass(frozen=True)
class Chunk:
    """One piece of a document: its text, where it stands, and the pages it covers."""

    #: Its position among the document's chunks, from 0.
    index: int
    text: str
    #: Its span in the document, `[start, end)`: `text == document[start:end]`.
    start: int
    end: int
    #: The pages (from 1) with at least one character in the chunk.
    pages: tuple[int, ...]
    #: Where each of `pages` starts in the document (the first may start before the chunk).
    page_starts: tuple[int, ...] = field(default=(), repr=False)

    def page_at(self, position: int) -> int | None:
        """The page holding the document's character at `position`, if this chunk has it."""
        if not self.start <= position < self.end or not self.pages:
            return None
        return self.pages[max(0, bisect.bisect_right(self.page_starts, position) - 1)]

    def __str__(self) -> str:
        return f"chunk {self.index + 1} ({describe_pages(self.pages)})"


def describe_pages(pages: Sequence[int]) -> str:
    """Pages for a message: "page 3", "pages 3-4", "pages 1, 3-5"; "no page" if none."""
    if not pages:
        return "no page"
    runs: list[list[int]] = []
    for page in sorted(set(pages)):
        if runs and page == runs[-1][-1] + 1:
            runs[-1].append(page)
        else:
            runs.append([page])
    shown = ", ".join(str(r[0]) if len(r) == 1 else f"{r[0]}-{r[-1]}" for r in runs)
    return f"page {shown}" if len(set(pages)) == 1 else f"pages {shown}"


def page_starts(text: str, pages: Sequence[int] | None = None) -> tuple[int, ...]:
    """Where each page of `text` starts: the given offsets, checked, else after each `\\f`.

    A form feed ends the page it is on. Given offsets must start at 0 and never go back
    (two equal offsets make an empty page) nor past the end of the text.
    """
    if pages is None:
        return (0, *(i + 1 for i, char in enumerate(text) if char == "\f"))
    starts = tuple(pages)
    if not starts or starts[0] != 0:
        raise ConfigurationError(f"page starts must begin with 0, not {list(starts[:3])}")
    for before, after in itertools.pairwise(starts):
        if not before <= after <= len(text):
            raise ConfigurationError(
                f"page starts must increase and stay within the text ({len(text)} "
                f"characters), not go from {before} to {after}"
            )
    return starts


def split(
    text: str,
    *,
    budget_chars: int,
    overlap_chars: int,
    pages: Sequence[int] | None = None,
) -> list[Chunk]:
    """Cut `text` into chunks of at most `budget_chars` characters, in document order.

    Consecutive chunks overlap by at most `overlap_chars` (whole lines where the text has
    them, else sentences or words), which must be less than the budget. `pages` gives
    where each page starts (from 0); without it, form feeds separate the pages. The same
    text always gives the same chunks; an empty text gives none.
    """
    if isinstance(budget_chars, bool) or not isinstance(budget_chars, int) or budget_chars < 1:
        raise ConfigurationError(f"budget_chars must be a whole number >= 1, not {budget_chars!r}")
    if (
        isinstance(overlap_chars, bool)
        or not isinstance(overlap_chars, int)
        or not 0 <= overlap_chars < budget_chars
    ):
        raise ConfigurationError(
            f"overlap_chars must be a whole number from 0 to less than budget_chars "
            f"({budget_chars}), not {overlap_chars!r}"
        )
    starts = page_starts(text, pages)
    cutter = _Cutter(text, _boundaries(text, starts), budget_chars, overlap_chars)
    chunks: list[Chunk] = []
    for start, end in cutter.spans():
        covered = _pages_in(starts, len(text), start, end)
        chunks.append(
            Chunk(
                len(chunks),
                text[start:end],
                start,
                end,
                tuple(page for page, _ in covered),
                tuple(begin for _, begin in covered),
            )
        )
    return chunks


def _pages_in(starts: tuple[int, ...], size: int, start: int, end: int) -> list[tuple[int, int]]:
    """The (page, where it starts) of every non-empty page with a character in the span."""
    if start >= end:
        return []
    first = bisect.bisect_right(starts, start) - 1
    last = bisect.bisect_right(starts, end - 1) - 1
    found = []
    for index in range(first, last + 1):
        page_end = starts[index + 1] if index + 1 < len(starts) else size
        if starts[index] < page_end:  # an empty page has nothing in any chunk
            found.append((index + 1, starts[index]))
    return found


def _boundaries(text: str, starts: tuple[int, ...]) -> list[list[int]]:
    """For each strength, the sorted positions where a cut at least that strong may go.

    A position is where the next chunk would begin: never 0 nor the end of the text.
    """
    size = len(text)
    strength: dict[int, int] = {}

    def mark(position: int, level: int) -> None:
        if 0 < position < size and strength.get(position, -1) < level:
            strength[position] = level

    for match in _WORD_RE.finditer(text):
        mark(match.end(), _WORD)
    for match in _SENTENCE_RE.finditer(text):
        mark(match.end(), _SENTENCE)
    position = text.find("\n")
    while position != -1:
        mark(position + 1, _LINE)
        position = text.find("\n", position + 1)
    for match in _PARAGRAPH_RE.finditer(text):
        mark(match.end(), _PARAGRAPH)
    for position in _headings(text):
        mark(position, _HEADING)
    for position in starts[1:]:
        mark(position, _PAGE)
    by_level: list[list[int]] = [[] for _ in _LEVELS]
    for position in sorted(strength):
        for level in range(strength[position] + 1):
            by_level[level].append(position)
    return by_level


def _headings(text: str) -> list[int]:
    """Where each heading line starts: a Markdown `#` heading, or a line in capitals
    (letters, all upper case) with a blank line after it."""
    found = []
    lines = text.split("\n")
    offset = 0
    for number, line in enumerate(lines):
        shown = line.strip()
        if _MARKDOWN_HEADING_RE.match(line) or (
            shown
            and shown.upper() == shown
            and shown.lower() != shown
            and number + 1 < len(lines)
            and not lines[number + 1].strip()
        ):
            found.append(offset)
        offset += len(line) + 1
    return found


class _Cutter:
    """Walks the text chunk by chunk; see the module docstring for where it cuts."""

    def __init__(self, text: str, boundaries: list[list[int]], budget: int, overlap: int) -> None:
        self._text = text
        self._at = boundaries
        self._budget = budget
        self._overlap = overlap

    def spans(self) -> list[tuple[int, int]]:
        size = len(self._text)
        spans: list[tuple[int, int]] = []
        start = cut = 0
        while cut < size:
            start, end = self._end(start, cut)
            spans.append((start, end))
            cut = end
            if end < size:
                start = self._overlap_start(start, end)
        return spans

    def _end(self, start: int, cut: int) -> tuple[int, int]:
        """Where a chunk starting at `start`, with new text from `cut` on, ends.

        When no boundary fits because the overlap takes the room of a long word, the
        overlap goes; only a word longer than the whole budget is cut inside.
        """
        size = len(self._text)
        while True:
            limit = start + self._budget
            if limit >= size:
                return start, size
            half = cut + max(1, (limit - cut) // 2)
            end = self._strongest(half, limit)
            if end is None:
                end = self._strongest(cut + 1, limit)
            if end is not None:
                return start, end
            if start == cut:
                return start, limit
            start = cut

    def _strongest(self, low: int, high: int) -> int | None:
        """The furthest position in `[low, high]` of the strongest boundary there."""
        for level in _LEVELS:
            positions = self._at[level]
            index = bisect.bisect_right(positions, high) - 1
            if index >= 0 and positions[index] >= low:
                return positions[index]
        return None

    def _overlap_start(self, start: int, end: int) -> int:
        """Where the chunk after `[start, end)` starts: the longest run of whole lines (else
        sentences, else words) of its end within `overlap` characters; `end` if none."""
        low = max(end - self._overlap, start + 1)
        if low >= end:
            return end
        for level in (_LINE, _SENTENCE, _WORD):
            positions = self._at[level]
            index = bisect.bisect_left(positions, low)
            if (
                index < len(positions)
                and positions[index] < end
                and self._text[positions[index] : end].strip()
            ):
                return positions[index]
        return end
