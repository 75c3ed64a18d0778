"""A tolerant JSON reader: strict JSON, plus the slips models make that have one reading.

It reads one value from a position in the text and records which slips it read past:
comments, trailing commas, a comma missing before a quoted key, Python's `True`,
`False` and `None`, single-quoted or smart-quoted strings, unquoted identifier keys,
raw line breaks in strings, `\\'` escapes. On strict JSON it gives exactly what
`json.loads` gives. Anything with two readings stops with `Broken` (where, and what
was expected); text that ends inside an unfinished value stops with `Incomplete`.
Nothing is ever closed, guessed or filled in.
"""

from __future__ import annotations

import re
from typing import Any, Final

__all__ = ["QUOTES", "Broken", "Incomplete", "Reader", "where"]

#: Characters that may open a string: straight, single and smart quotes.
QUOTES: Final = "\"'\u201c\u201d\u201e\u2018"

_MAX_DEPTH: Final = 256
_SPACE: Final = " \t\n\r"
_ODD_SPACE: Final = "\u00a0\ufeff\u200b\u2028\u2029"
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?")
_NUMBER_PREFIX = re.compile(r"-?[0-9]*\.?[0-9]*(?:[eE][-+]?[0-9]*)?")
_WORD = re.compile(r"[A-Za-z_$][A-Za-z0-9_$]*")
_PLAIN = re.compile(r'[^"\\\x00-\x1f]*')
_ESCAPES: Final = {
    '"': '"',
    "\\": "\\",
    "/": "/",
    "b": "\b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
}
#: Bare words read as values, and the repair each one is (None: strict JSON as Python reads it).
_WORDS: Final[dict[str, tuple[Any, str | None]]] = {
    "true": (True, None),
    "false": (False, None),
    "null": (None, None),
    "True": (True, "python_literal"),
    "False": (False, "python_literal"),
    "None": (None, "python_literal"),
    "NaN": (float("nan"), None),
    "Infinity": (float("inf"), None),
}
#: For each loose opening quote, the quotes that may close it.
_CLOSERS: Final = {
    "'": "'",
    "\u2018": "\u2019\u2018'",
    "\u201c": '\u201d\u201c"',
    "\u201d": '\u201d\u201c"',
    "\u201e": '\u201c\u201d"',
}


def where(text: str, pos: int) -> str:
    """`line L, column C` of a position, and the text there, for error messages."""
    line = text.count("\n", 0, pos) + 1
    column = pos - (text.rfind("\n", 0, pos) + 1) + 1
    near = text[pos : pos + 24]
    shown = f" near {near!r}" if near.strip() else " at the end of the answer"
    return f"line {line}, column {column}{shown}"


class Incomplete(Exception):
    """The text ends inside a value: it was cut off."""

    def __init__(self, pos: int, inside: str) -> None:
        super().__init__(f"the answer ends inside {inside}")
        self.pos = pos
        self.inside = inside


class Broken(Exception):
    """The text is not JSON here, and no single repair makes it JSON."""

    def __init__(self, pos: int, problem: str) -> None:
        super().__init__(problem)
        self.pos = pos
        self.problem = problem


class Reader:
    """Reads values out of one text; `repairs` gathers the slips read past since `read`."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.repairs: set[str] = set()
        #: Whether the last read looked like JSON before it failed (a key and a colon,
        #: or an array's first element), as opposed to a brace in prose such as `{name}`.
        self.jsonlike = False
        self._depth = 0

    def read(self, pos: int) -> tuple[Any, int]:
        """The value starting at `pos` (after any space or comments) and where it ends."""
        self.repairs = set()
        self.jsonlike = False
        self._depth = 0
        return self._value(pos)

    # --- values --------------------------------------------------------------------------

    def _value(self, pos: int) -> tuple[Any, int]:
        text = self.text
        pos = self._skip(pos)
        if pos >= len(text):
            raise Incomplete(pos, "an unfinished value")
        char = text[pos]
        if char == "{":
            return self._object(pos)
        if char == "[":
            return self._array(pos)
        if char == '"':
            return self._string(pos)
        if char in QUOTES:
            return self._loose_string(pos)
        if char == "-" or "0" <= char <= "9":
            return self._number(pos)
        word = _WORD.match(text, pos)
        if word is None:
            raise Broken(pos, f"unexpected character {char!r} where a value should start")
        return self._word(pos, word.group())

    def _object(self, start: int) -> tuple[Any, int]:
        text = self.text
        self._enter(start)
        out: dict[str, Any] = {}
        pos = self._skip(start + 1)
        if pos < len(text) and text[pos] == "}":
            self._depth -= 1
            return out, pos + 1
        while True:
            pos = self._skip(pos)
            if pos >= len(text):
                raise Incomplete(pos, "an unfinished object")
            char = text[pos]
            word = None
            if char in QUOTES:
                key, pos = self._string(pos) if char == '"' else self._loose_string(pos)
                self.jsonlike = True  # a quoted key: JSON, however broken what follows
            elif (word := _WORD.match(text, pos)) is not None:
                key, pos = word.group(), word.end()
            else:
                raise Broken(pos, "expected a key in double quotes")
            pos = self._skip(pos)
            if pos >= len(text):
                raise Incomplete(pos, "an unfinished object")
            if text[pos] != ":":
                raise Broken(pos, f"expected ':' after the key {key!r}")
            if word is not None:
                self.repairs.add("unquoted_keys")
                self.jsonlike = True
            out[key], pos = self._value(pos + 1)
            pos = self._skip(pos)
            if pos >= len(text):
                raise Incomplete(pos, "an unfinished object")
            char = text[pos]
            if char == ",":
                pos = self._skip(pos + 1)
                if pos >= len(text):
                    raise Incomplete(pos, "an unfinished object")
                if text[pos] == "}":
                    self.repairs.add("trailing_comma")
                    char = "}"
                else:
                    continue
            if char == "}":
                self._depth -= 1
                return out, pos + 1
            if char in QUOTES and self._key_follows(pos):
                self.repairs.add("missing_comma")  # a value, then `"key":` - nothing else fits
                continue
            raise Broken(pos, f"expected ',' or '}}' after the value of {key!r}")

    def _key_follows(self, pos: int) -> bool:
        """Whether a quoted key and its colon start at `pos` (the repairs are left as found)."""
        text = self.text
        found = set(self.repairs)
        try:
            _, end = self._string(pos) if text[pos] == '"' else self._loose_string(pos)
            end = self._skip(end)
        except Broken:
            return False
        finally:
            self.repairs = found
        if end >= len(text):
            raise Incomplete(end, "an unfinished object")
        return text[end] == ":"

    def _array(self, start: int) -> tuple[Any, int]:
        text = self.text
        self._enter(start)
        out: list[Any] = []
        pos = self._skip(start + 1)
        if pos < len(text) and text[pos] == "]":
            self._depth -= 1
            return out, pos + 1
        if pos < len(text) and text[pos] in QUOTES + "{[":
            self.jsonlike = True
        while True:
            item, pos = self._value(pos)
            out.append(item)
            self.jsonlike = True
            pos = self._skip(pos)
            if pos >= len(text):
                raise Incomplete(pos, "an unfinished array")
            char = text[pos]
            if char == ",":
                pos = self._skip(pos + 1)
                if pos >= len(text):
                    raise Incomplete(pos, "an unfinished array")
                if text[pos] == "]":
                    self.repairs.add("trailing_comma")
                    char = "]"
                elif text[pos] == ",":
                    raise Broken(pos, "two commas in a row: is a value missing?")
                else:
                    continue
            if char == "]":
                self._depth -= 1
                return out, pos + 1
            raise Broken(pos, f"expected ',' or ']' after item {len(out) - 1} of an array")

    def _enter(self, pos: int) -> None:
        self._depth += 1
        if self._depth > _MAX_DEPTH:
            raise Broken(pos, f"nested deeper than {_MAX_DEPTH} levels")

    def _number(self, pos: int) -> tuple[Any, int]:
        text = self.text
        if text.startswith("-Infinity", pos):
            return float("-inf"), pos + len("-Infinity")
        match = _NUMBER.match(text, pos)
        end = match.end() if match else pos
        if end >= len(text) or not (text[end].isalnum() or text[end] in ".+-_"):
            if match is None:
                raise Incomplete(pos, "an unfinished number")
            digits, fraction, exponent = match.group(), match.group(1), match.group(2)
            try:
                value: Any = float(digits) if fraction or exponent else int(digits)
            except ValueError as exc:  # more digits than Python converts
                raise Broken(pos, f"a number Python cannot read ({exc})") from None
            return value, end
        if _NUMBER_PREFIX.fullmatch(text, pos):
            raise Incomplete(pos, "an unfinished number")
        raise Broken(pos, "a malformed number")

    def _word(self, pos: int, word: str) -> tuple[Any, int]:
        known = _WORDS.get(word)
        end = pos + len(word)
        if known is None:
            if end >= len(self.text) and any(w.startswith(word) for w in _WORDS):
                raise Incomplete(pos, "an unfinished literal")
            raise Broken(pos, f"unexpected word {word!r} where a value should start")
        value, repair = known
        if repair:
            self.repairs.add(repair)
        return value, end

    def skim(self, start: int) -> int:
        """Just past the bracket that closes the one at `start`, or the end of the text.

        Reads strings by the same rules as `read`, so brackets inside them don't count;
        where the strings themselves can't be told apart, the end of the text is the
        answer: a broken value is then taken to run to the end.
        """
        text = self.text
        found = self.repairs
        depth = 0
        pos = start
        try:
            while pos < len(text):
                char = text[pos]
                if char in QUOTES:
                    _, pos = self._string(pos) if char == '"' else self._loose_string(pos)
                    continue
                if char in "{[":
                    depth += 1
                elif char in "}]":
                    depth -= 1
                    if depth == 0:
                        return pos + 1
                pos += 1
        except (Broken, Incomplete):
            pass
        finally:
            self.repairs = found
        return len(text)

    # --- strings ---------------------------------------------------------------------------

    def _string(self, start: int) -> tuple[str, int]:
        """A double-quoted string; raw line breaks and `\\'` are the only slips read past."""
        text = self.text
        parts: list[str] = []
        pos = start + 1
        while True:
            plain = _PLAIN.match(text, pos)
            assert plain is not None  # the pattern matches the empty string
            parts.append(plain.group())
            pos = plain.end()
            if pos >= len(text):
                raise Incomplete(start, "an unfinished string")
            char = text[pos]
            if char == '"':
                return "".join(parts), pos + 1
            if char == "\\":
                decoded, pos = self._escape(pos, quote='"')
                parts.append(decoded)
                continue
            self._control(char)
            parts.append(char)
            pos += 1

    def _loose_string(self, start: int) -> tuple[str, int]:
        """A string in single or smart quotes.

        A closing quote counts only where a comma, colon, bracket, comment or the end of
        the text follows it, so an apostrophe inside (`'it's'`) stays in the string.
        """
        text = self.text
        opener = text[start]
        closers = _CLOSERS[opener]
        self.repairs.add("single_quotes" if opener == "'" else "smart_quotes")
        parts: list[str] = []
        pos = start + 1
        while True:
            if pos >= len(text):
                raise Incomplete(start, "an unfinished string")
            char = text[pos]
            if char in closers and self._closes(pos + 1):
                return "".join(parts), pos + 1
            if char == "\\":
                decoded, pos = self._escape(pos, quote=opener)
                parts.append(decoded)
                continue
            if char < " ":
                self._control(char)
            parts.append(char)
            pos += 1

    def _closes(self, pos: int) -> bool:
        text = self.text
        while pos < len(text) and (text[pos] in _SPACE or text[pos] in _ODD_SPACE):
            pos += 1
        return pos >= len(text) or text[pos] in ",:}]#" or text.startswith(("//", "/*"), pos)

    def _escape(self, pos: int, *, quote: str) -> tuple[str, int]:
        text = self.text
        if pos + 1 >= len(text):
            raise Incomplete(pos, "an unfinished string")
        char = text[pos + 1]
        simple = _ESCAPES.get(char)
        if simple is not None:
            return simple, pos + 2
        if char == "'":
            if quote != "'":
                self.repairs.add("escape")
            return "'", pos + 2
        if char != "u":
            raise Broken(pos, f"the escape \\{char} means nothing in JSON")
        code = self._hex4(pos)
        if 0xD800 <= code <= 0xDBFF and text.startswith("\\u", pos + 6):
            low = self._hex4(pos + 6)
            if 0xDC00 <= low <= 0xDFFF:
                return chr(0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)), pos + 12
        return chr(code), pos + 6

    def _hex4(self, pos: int) -> int:
        digits = self.text[pos + 2 : pos + 6]
        if len(digits) < 4 and pos + 6 > len(self.text):
            raise Incomplete(pos, "an unfinished string")
        try:
            if len(digits) == 4 and digits.isascii() and digits.isalnum():
                return int(digits, 16)
        except ValueError:
            pass
        raise Broken(pos, "\\u must be followed by four hexadecimal digits")

    def _control(self, char: str) -> None:
        self.repairs.add("raw_newline" if char in "\n\r" else "control_char")

    # --- between tokens --------------------------------------------------------------------

    def _skip(self, pos: int) -> int:
        """Past white space and comments (`//`, `/* */`, `#`)."""
        text = self.text
        end = len(text)
        while pos < end:
            char = text[pos]
            if char in _SPACE:
                pos += 1
            elif char == "#" or (char == "/" and text.startswith("//", pos)):
                self.repairs.add("comment")
                newline = text.find("\n", pos)
                pos = end if newline < 0 else newline + 1
            elif char == "/" and text.startswith("/*", pos):
                self.repairs.add("comment")
                close = text.find("*/", pos + 2)
                if close < 0:
                    raise Incomplete(pos, "an unfinished /* comment */")
                pos = close + 2
            elif char == "/" and pos + 1 == end:
                raise Incomplete(pos, "an unfinished comment")
            elif char in _ODD_SPACE:
                self.repairs.add("unicode_space")
                pos += 1
            else:
                break
        return pos
