"""From answer text to JSON data: strict first, then the JSON inside fences and prose.

Models wrap their JSON in prose, code fences, `<think>` blocks, and make small slips
(trailing commas, comments, Python literals, single quotes...). The text is read into
*candidates*, in order: values inside code fences first, then the rest of the text from
start to end. The caller keeps the first candidate its schema accepts (`load_answer`).
Each candidate names the repairs it took (`REPAIRS`).

Nothing is ever invented: a text that ends inside an unfinished value raises
`TruncatedAnswer` (no bracket or quote is ever closed for the model), and a value
that could be read more than one way is not read: it raises `InvalidAnswer`, saying
what was wrong and where.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Final, TypeVar

from extractor._errors import ErrorDetail, InvalidAnswer, TruncatedAnswer
from extractor._repair import QUOTES, Broken, Incomplete, Reader, where

__all__ = ["REPAIRS", "Candidate", "candidates", "load_answer", "parse_json"]

T = TypeVar("T")

#: Every repair a candidate may name, in the order they are listed.
REPAIRS: Final = (
    "think",  # a <think> block before the answer was skipped
    "fence",  # the JSON was inside a ``` code fence
    "prose",  # text around the JSON was dropped
    "string_encoded",  # the JSON was inside a JSON string
    "comment",  # // , /* */ or # comments
    "trailing_comma",
    "missing_comma",  # no comma between a value and the next "key":
    "python_literal",  # True, False, None
    "single_quotes",
    "smart_quotes",  # typographic double or single quotes used as string quotes
    "unquoted_keys",  # {name: ...}
    "raw_newline",  # a line break inside a string
    "control_char",  # a raw tab or other control character inside a string
    "escape",  # \' inside a double-quoted string
    "unicode_space",  # a no-break space, byte-order mark or zero-width space between tokens
)
_RANK: Final = {name: i for i, name in enumerate(REPAIRS)}

_decoder = json.JSONDecoder()
_NOT_JSON: Final = object()  # what json.loads made of a text it could not read
_UNTRIED: Final = object()  # json.loads was not tried yet
_THINK = re.compile(r"\s*<(think|thinking|reasoning)>.*?(?:</\1>|\Z)", re.S | re.I)
#: The end of reasoning: a closing tag, or the start of the final channel (gpt-oss's format).
_THINK_CLOSE = re.compile(
    r"</(?:think|thinking|reasoning)>|<\|channel\|>\s*final\s*<\|message\|>", re.I
)
_FENCE = re.compile(r"(`{3,}|~{3,})([A-Za-z0-9_+.-]*)")
_STARTS = re.compile(r"[{\[]")
_SCALAR_START: Final = QUOTES + "-0123456789tfnTFNI"
_BLANK: Final = " \t\n\r\f\v\ufeff\u00a0\u200b"


@dataclass(frozen=True)
class Candidate:
    """One JSON value read out of an answer, and the repairs it took (empty: strict JSON)."""

    value: Any
    repairs: tuple[str, ...] = ()
    #: Where the value stands in the answer: [start, end).
    span: tuple[int, int] = (0, 0)


def parse_json(text: str | None) -> Any:
    """The first JSON value read out of the answer; see `candidates`."""
    return candidates(text)[0].value


def load_answer(text: str | None, load: Callable[[Any], T]) -> tuple[T, tuple[str, ...]]:
    """The first candidate `load` accepts, loaded, and the repairs it took.

    `load` raises `InvalidAnswer` for a value it rejects. When it rejects every one,
    the errors of the best candidate (the largest, so the likeliest answer) are raised.
    Strict JSON costs one `json.loads` and one `load`.
    """
    strict: Any = _NOT_JSON
    if text is not None:
        try:
            strict = json.loads(text)
        except (ValueError, RecursionError):
            pass
        else:
            if not isinstance(strict, str):  # a string may hold the JSON: the full path
                try:
                    return load(strict), ()
                except InvalidAnswer as exc:
                    raise InvalidAnswer(exc.errors, raw=text) from None
    scan = _scan(text, strict)
    rejected: list[tuple[int, InvalidAnswer]] = []
    for candidate in scan.candidates:
        try:
            return load(candidate.value), candidate.repairs
        except InvalidAnswer as exc:
            rejected.append((candidate.span[1] - candidate.span[0], exc))
    raise scan.failure(text or "", rejected)


def candidates(text: str | None) -> list[Candidate]:
    """Every JSON value read out of the answer, the likeliest first.

    Raises `TruncatedAnswer` when the text ends inside an unfinished value (even after
    a complete one: a cut-off answer is never half-used), `InvalidAnswer` when it holds
    no JSON value.
    """
    scan = _scan(text)
    if not scan.candidates:
        raise scan.failure(text or "", [])
    return scan.candidates


@dataclass
class _Scan:
    candidates: list[Candidate]
    #: JSON-looking values that could not be read: (size, where and what).
    broken: list[tuple[int, str]]

    def failure(self, text: str, rejected: list[tuple[int, InvalidAnswer]]) -> InvalidAnswer:
        """The error to report when no candidate is accepted: the best one's."""
        best_rejected = max(rejected, key=lambda r: r[0], default=None)
        best_broken = max(self.broken, key=lambda b: b[0], default=None)
        if best_rejected and (best_broken is None or best_rejected[0] >= best_broken[0]):
            return InvalidAnswer(best_rejected[1].errors, raw=text)
        if best_broken:
            return InvalidAnswer([ErrorDetail("", f"not valid JSON: {best_broken[1]}")], raw=text)
        return InvalidAnswer(
            [ErrorDetail("", "no JSON object in the answer; answer with the JSON object only")],
            raw=text,
        )


def _scan(text: str | None, strict: Any = _UNTRIED) -> _Scan:
    """Read the candidates; `strict` is the text as `json.loads` read it, if already tried."""
    if text is None or not text.strip():
        raise InvalidAnswer(
            [ErrorDetail("", "the answer is empty; expected a JSON object")], raw=text
        )
    if strict is _UNTRIED:
        try:
            strict = json.loads(text)
        except (ValueError, RecursionError):
            strict = _NOT_JSON
    if strict is not _NOT_JSON:
        whole = Candidate(strict, (), (0, len(text)))
        return _Scan([whole, *_decoded(whole)], [])

    hidden, thinking = _think_spans(text)
    fences, markers = _fences(text, hidden)
    content = _content_bounds(text, [*hidden, *markers])
    reader = Reader(text)
    found: list[Candidate] = []
    broken: list[tuple[int, str]] = []
    covered, in_fences = 0, True  # no candidate starts inside a value already read

    for start, fenced in _starts(text, hidden[0][1] if hidden else 0, fences):
        if fenced != in_fences:  # the pass over the whole text starts afresh
            covered, in_fences = 0, fenced
        if start < covered:
            continue
        scalar = text[start] not in "{["
        try:
            value, end = _decoder.raw_decode(text, start)
            repairs: set[str] = set()
        except (ValueError, RecursionError):
            try:
                value, end = reader.read(start)
            except Incomplete as exc:
                if scalar:
                    continue  # a quote in prose that never closes is not a cut-off value
                detail = f"it ends inside {exc.inside} ({where(text, exc.pos)})"
                raise TruncatedAnswer(raw=text, detail=detail) from None
            except Broken as exc:
                if reader.jsonlike:
                    # skip the broken value whole: nothing nested in it becomes a candidate
                    covered = reader.skim(start)
                    if covered <= exc.pos:  # its brackets close before the error: unsure
                        covered = len(text)
                    broken.append((covered - start, f"{exc.problem} at {where(text, exc.pos)}"))
                continue
            repairs = reader.repairs
        covered = end
        if fenced:
            repairs.add("fence")
        if hidden:
            repairs.add("think")
        if content[0] >= 0 and (content[0] < start or content[1] >= end):
            repairs.add("prose")
        candidate = Candidate(value, _ordered(repairs), (start, end))
        found.append(candidate)
        found.extend(_decoded(candidate))
    if not found and thinking:
        raise TruncatedAnswer(raw=text, detail="it ends inside a <think> block")
    return _Scan(found, broken)


def _decoded(candidate: Candidate) -> list[Candidate]:
    """The JSON inside a string value (an answer encoded twice), as one more candidate."""
    value = candidate.value
    if not isinstance(value, str) or value.strip()[:1] not in ("{", "["):
        return []
    reader = Reader(value)
    try:
        inner, end = reader.read(0)
    except (Incomplete, Broken, RecursionError):
        return []
    if value[end:].strip():
        return []
    repairs = {*candidate.repairs, "string_encoded", *reader.repairs}
    return [Candidate(inner, _ordered(repairs), candidate.span)]


def _ordered(repairs: set[str]) -> tuple[str, ...]:
    return tuple(sorted(repairs, key=_RANK.__getitem__))


def _think_spans(text: str) -> tuple[list[tuple[int, int]], bool]:
    """The reasoning block the answer opens with, which may hold drafts: never read from.

    Also says whether it is still open at the end of the text. Some servers strip the
    opening tag (it was in the prompt) and keep the closing one, or pass on gpt-oss's
    analysis channel: then the block runs from the start of the text to where the
    reasoning ends.
    """
    block = _THINK.match(text)
    if block is not None:
        return [block.span()], _THINK_CLOSE.search(block.group()) is None
    close = _THINK_CLOSE.search(text)
    if close is not None:
        return [(0, close.end())], False
    return [], False


def _fences(
    text: str, hidden: list[tuple[int, int]]
) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """Code fence contents, and the fence markers (with their language tags).

    A marker with a language tag inside an open fence is a repeated opening
    (```json twice), not a close; a fence left open runs to the end of the text.
    """
    contents: list[tuple[int, int]] = []
    markers: list[tuple[int, int]] = []
    opened: re.Match[str] | None = None
    for marker in _FENCE.finditer(text):
        if _inside(marker.start(), hidden):
            continue
        markers.append(marker.span())
        if opened is None:
            opened = marker
        elif marker.group(1)[0] == opened.group(1)[0] and not marker.group(2):
            contents.append((opened.end(), marker.start()))
            opened = None
    if opened is not None:
        contents.append((opened.end(), len(text)))
    return contents, markers


def _starts(text: str, begin: int, fences: list[tuple[int, int]]) -> Iterator[tuple[int, bool]]:
    """Where a value may start, in order: inside fences, then in the rest of the text.

    Each pass yields rising positions; the text before `begin` (thinking) is never read.
    """
    for a, b in fences:
        first = a
        while first < b and text[first] in _BLANK:
            first += 1
        if first < b and text[first] in _SCALAR_START:
            yield first, True
        for match in _STARTS.finditer(text, a, b):
            yield match.start(), True
    first = begin
    while first < len(text) and text[first] in _BLANK:
        first += 1
    if first < len(text) and text[first] in QUOTES:
        yield first, False
    pos = begin
    for a, b in [*fences, (len(text), len(text))]:
        for match in _STARTS.finditer(text, pos, a):
            yield match.start(), False
        pos = max(pos, b)


def _inside(pos: int, spans: list[tuple[int, int]]) -> bool:
    return any(a <= pos < b for a, b in spans)


def _content_bounds(text: str, ignored: list[tuple[int, int]]) -> tuple[int, int]:
    """The first and last position of text that is not white space, fence markers or thinking.

    A value has prose around it when this text starts before it or ends after it.
    """
    first = last = -1
    pos = 0
    for a, b in [*sorted(ignored), (len(text), len(text))]:
        segment = text[pos:a]
        lead = len(segment) - len(segment.lstrip())
        if lead < len(segment):
            first = pos + lead if first < 0 else first
            last = pos + len(segment.rstrip()) - 1
        pos = max(pos, b)
    return first, last
