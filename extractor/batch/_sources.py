"""Where a batch's documents come from, read lazily: a folder, a JSONL or CSV file, stdin.

Every source yields `Document`s one at a time, so a million documents never sit in
memory together. A document that cannot be extracted (empty, not UTF-8, too large, a
broken JSONL line) still comes out, with its `problem` set: the job writes it to the
failures file instead of crashing or losing it. Mistakes that concern the whole input
(no such file, a CSV without the id column) raise `SourceError` before anything runs.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Final

from extractor._errors import ExtractorError, InputError, json_kind

__all__ = [
    "MAX_DOCUMENT_BYTES",
    "Document",
    "DocumentError",
    "Source",
    "SourceError",
    "open_source",
]

logger = logging.getLogger("extractor.batch")

#: A larger document is a failure, not a read: no extraction prompt is this big.
MAX_DOCUMENT_BYTES: Final = 16 * 1024 * 1024

DocumentId = str | int


class SourceError(ExtractorError):
    """The input as a whole cannot be read (missing, wrong kind, no id or text field)."""


class DocumentError(InputError):
    """One document cannot be extracted: empty, not UTF-8, too large, or a broken line."""


@dataclass(frozen=True)
class Document:
    """One document of a batch: its id and text, or why it cannot be extracted."""

    id: DocumentId
    text: str = ""
    #: Set when the document cannot be extracted; it then becomes a failure line.
    problem: str | None = None
    #: Where each page starts in `text`, for a file with pages (a PDF); else empty.
    pages: tuple[int, ...] = ()
    #: A file to read the text from when the document's turn comes (`load`), if any.
    path: str | None = None


class Source:
    """An input of documents: iterate it for `Document`s; `count()` for progress."""

    #: Whether reading may block for long (a pipe): the runner then reads off the event loop.
    blocking = False

    def __init__(self, name: str) -> None:
        self.name = name

    def __iter__(self) -> Iterator[Document]:
        raise NotImplementedError

    def check(self) -> None:
        """Raise `SourceError` now for a mistake that concerns the whole input."""

    def count(self) -> int | None:
        """How many documents there are, cheaply and roughly (for time left); None if unknown."""
        return None


def open_source(
    spec: str, *, id_field: str = "id", text_field: str = "text", path_field: str = "path"
) -> Source:
    """The source INPUT names: a folder, a `.jsonl`/`.ndjson` or `.csv` file, or `-` (JSONL).

    A JSONL or CSV record gives its text in `text_field`, or names a file to read in
    `path_field` (PDF, DOCX, HTML, text; relative to the input's folder, or to the
    working directory for stdin). Raises `SourceError` when it does not exist, is of
    another kind, or (JSONL, CSV) its first record lacks the id field or both the text
    and path fields.
    """
    if spec == "-":
        return JsonLinesSource("-", id_field, text_field, path_field)
    path = Path(spec)
    if path.is_dir():
        folder = FolderSource(path)
        folder.check()
        return folder
    if not path.exists():
        raise SourceError(f"input {spec} does not exist")
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        source: Source = JsonLinesSource(spec, id_field, text_field, path_field)
    elif suffix == ".csv":
        source = CsvSource(spec, id_field, text_field, path_field)
    else:
        raise SourceError(
            f"input {spec} is neither a folder nor a .jsonl, .ndjson or .csv file "
            "(for one text file, use `extractor extract`)"
        )
    source.check()
    return source


def _text(data: bytes) -> tuple[str, str | None]:
    """Decode a document's bytes; the text, or why it cannot be used."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        return "", (
            f"not UTF-8 text (byte {data[exc.start]:#04x} at offset {exc.start}); "
            "convert it first, e.g. iconv -f latin1 -t utf-8"
        )
    return _checked(text)


def load(document: Document) -> Document:
    """A document that names a file, read: its text and pages, or why it cannot be used.

    Blocking (a PDF is parsed in a worker process, up to its time limit): the batch
    runner calls it in a thread, when the document's turn comes.
    """
    if document.path is None:
        return document
    path = Path(document.path)
    try:
        if path.stat().st_size > MAX_DOCUMENT_BYTES:
            limit = MAX_DOCUMENT_BYTES // 2**20
            return Document(document.id, problem=f"{path} is larger than {limit} MB; split it")
        data = path.read_bytes()
    except OSError as exc:
        return Document(document.id, problem=f"cannot read {path}: {exc.strerror or exc}")
    return _file_document(document.id, data, path.name)


def _file_document(id_: DocumentId, data: bytes, name: str) -> Document:
    """A file as `extractor.documents` reads it (PDF, DOCX, HTML, text), or why it cannot be."""
    from extractor.documents import read  # PDF reading starts its worker on first use

    try:
        read_ = read(data, name=name)
    except InputError as exc:
        return Document(id_, problem=str(exc))
    text, problem = _checked(read_.text)
    return Document(id_, text, problem, read_.pages if len(read_.pages) > 1 else ())


def _checked(text: str) -> tuple[str, str | None]:
    if not text.strip():
        return "", "the document is empty: nothing to extract"
    if len(text) > MAX_DOCUMENT_BYTES:
        return "", f"the document is larger than {MAX_DOCUMENT_BYTES // 2**20} MB; split it"
    return text, None


class FolderSource(Source):
    """Every regular file under a folder, recursively; the id is the path relative to it.

    Names starting with a dot are skipped (editor and VCS files). Symbolic links are
    never followed, so each file is read once, by its own path, and nothing outside the
    folder is read: a link inside the folder names a file or folder that is visited
    anyway (a loop such as `sub/loop -> ..` adds nothing), and links that lead outside
    it are skipped with one warning for them all. A folder is entered once even when a
    bind mount shows it twice. A subfolder that cannot be listed is one failure, named
    by its path. Files are visited in the order the file system lists them, one
    directory listing at a time.
    """

    def __init__(self, root: Path) -> None:
        super().__init__(str(root))
        self.root = root

    def check(self) -> None:
        """Refuse a folder that cannot be listed."""
        try:
            with os.scandir(self.root):
                pass
        except OSError as exc:
            raise self._unreadable(exc) from None

    def _unreadable(self, exc: OSError) -> SourceError:
        return SourceError(f"cannot read the folder {self.root}: {exc.strerror or exc}")

    def _files(self, *, warn: bool = False) -> Iterator[tuple[str, os.DirEntry[str] | str]]:
        """(id, entry) for each regular file; (id, why) for what cannot be listed or looked at.

        With `warn`, the first link leading outside the folder is logged, once per walk.
        """
        try:
            real_root = os.path.realpath(self.root)
            entered = {_inode(os.stat(self.root))}
        except OSError as exc:
            raise self._unreadable(exc) from None
        outside_warned = not warn
        stack = [""]
        while stack:
            relative = stack.pop()
            try:
                listing = os.scandir(self.root / relative if relative else self.root)
            except OSError as exc:
                if not relative:
                    raise self._unreadable(exc) from None
                yield relative, f"cannot list this folder: {exc.strerror or exc}"
                continue
            with listing as entries:
                for entry in entries:
                    if entry.name.startswith("."):
                        continue
                    name = f"{relative}/{entry.name}" if relative else entry.name
                    try:
                        if entry.is_symlink():
                            target = os.path.realpath(entry.path)
                            if not outside_warned and not _within(target, real_root):
                                outside_warned = True
                                logger.warning(
                                    "%s: skipping symbolic links that lead outside the folder "
                                    "(the first: %s -> %s); only files inside it are read",
                                    self.root,
                                    name,
                                    target,
                                )
                            continue  # one inside leads to a path visited by its own name
                        if entry.is_dir(follow_symlinks=False):
                            inode = _inode(entry.stat(follow_symlinks=False))
                            if inode not in entered:
                                entered.add(inode)
                                stack.append(name)
                        elif entry.is_file(follow_symlinks=False):
                            yield name, entry
                    except OSError as exc:
                        yield name, f"cannot look at it: {exc.strerror or exc}"

    def __iter__(self) -> Iterator[Document]:
        for name, entry in self._files(warn=True):
            if isinstance(entry, str):
                yield Document(name, problem=entry)
            else:  # read when its turn comes (`load`): a job resumed skips it unread
                yield Document(name, path=entry.path)

    def count(self) -> int | None:
        return sum(1 for _ in self._files())


def _inode(info: os.stat_result) -> tuple[int, int]:
    return info.st_dev, info.st_ino


def _within(path: str, root: str) -> bool:
    """Whether the resolved `path` is `root` or under it (both resolved)."""
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _record_id(value: Any) -> DocumentId | None:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return None
    return value


class JsonLinesSource(Source):
    """One JSON object per line, with an id field and a text field; `-` reads stdin.

    Blank lines are skipped. A line that is not an object, or lacks a usable id, is a
    failure whose id is `line N` (N counts from 1), so it is reported, not lost.
    """

    def __init__(self, name: str, id_field: str, text_field: str, path_field: str = "path") -> None:
        super().__init__(name)
        self.blocking = name == "-"
        self.id_field = id_field
        self.text_field = text_field
        self.path_field = path_field
        self.base = Path.cwd() if name == "-" else Path(name).resolve().parent

    def _open(self) -> IO[bytes]:
        if self.name == "-":
            return os.fdopen(os.dup(sys.stdin.fileno()), "rb")
        return open(self.name, "rb")  # closed by the callers' `with`

    def check(self) -> None:
        """Refuse a file whose first record lacks the id or text field, naming its keys."""
        with self._open() as lines:
            for raw in lines:
                if not raw.strip():
                    continue
                try:
                    first = json.loads(raw)
                except ValueError:
                    return  # reported as a failure of line 1, with the others
                if isinstance(first, dict):
                    _require_fields(
                        self.name, first.keys(), self.id_field, self.text_field, self.path_field
                    )
                return

    def __iter__(self) -> Iterator[Document]:
        with self._open() as lines:
            for number, raw in enumerate(lines, 1):
                if raw.strip():
                    yield self._document(number, raw)

    def _document(self, number: int, raw: bytes) -> Document:
        where = f"line {number}"
        try:
            record = json.loads(raw)
        except ValueError as exc:
            return Document(where, problem=f"{where} is not JSON: {exc}")
        if not isinstance(record, dict):
            return Document(where, problem=f"{where} is {json_kind(record)}, not an object")
        doc_id = _record_id(record.get(self.id_field))
        if doc_id is None:
            return Document(
                where, problem=f"{where} has no string or integer {self.id_field!r} field"
            )
        text = record.get(self.text_field)
        if not isinstance(text, str):
            named = record.get(self.path_field)
            if isinstance(named, str) and named:
                return Document(doc_id, path=str(self.base / named))
            return Document(
                doc_id,
                problem=f"{where} has no string {self.text_field!r} or {self.path_field!r} field",
            )
        text, problem = _checked(text)
        return Document(doc_id, text, problem)

    def count(self) -> int | None:
        if self.name == "-":
            return None
        total = 0
        with open(self.name, "rb") as data:
            while chunk := data.read(1 << 20):
                total += chunk.count(b"\n")
        return total


class CsvSource(Source):
    """A UTF-8 CSV file whose header row names the id and text columns."""

    def __init__(self, name: str, id_field: str, text_field: str, path_field: str = "path") -> None:
        super().__init__(name)
        self.id_field = id_field
        self.text_field = text_field
        self.path_field = path_field
        self.base = Path(name).resolve().parent
        # the default field limit (128 KiB) would turn a long document into a crash
        csv.field_size_limit(max(csv.field_size_limit(), MAX_DOCUMENT_BYTES + 1))

    def _reader(self, handle: IO[str]) -> csv.DictReader[str]:
        return csv.DictReader(handle)

    def _open(self) -> io.TextIOWrapper:
        # surrogateescape: a bad byte spoils one document, found and reported below
        return open(self.name, encoding="utf-8-sig", errors="surrogateescape", newline="")

    def check(self) -> None:
        """Refuse a file whose header lacks the id or text column, naming its columns."""
        with self._open() as handle:
            columns = self._reader(handle).fieldnames or []
        _require_fields(self.name, columns, self.id_field, self.text_field, self.path_field)

    def __iter__(self) -> Iterator[Document]:
        with self._open() as handle:
            reader = self._reader(handle)
            for row in reader:
                yield self._document(reader.line_num, row)

    def _document(self, line: int, row: dict[str, str]) -> Document:
        doc_id = row.get(self.id_field)
        text = row.get(self.text_field)
        if not doc_id:
            where = f"line {line}"
            return Document(where, problem=f"{where} has an empty {self.id_field!r} column")
        if _has_bad_bytes(doc_id):
            doc_id = doc_id.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
            return Document(doc_id, problem=f"line {line}: the id is not UTF-8 text")
        named = row.get(self.path_field)
        if not text and named and not _has_bad_bytes(named):
            return Document(doc_id, path=str(self.base / named))
        if text is None:
            return Document(doc_id, problem=f"line {line} has no {self.text_field!r} column")
        if _has_bad_bytes(text):
            data = text.encode("utf-8", "surrogateescape")
            return Document(doc_id, problem=_text(data)[1])
        text, problem = _checked(text)
        return Document(doc_id, text, problem)

    def count(self) -> int | None:
        total = 0
        with open(self.name, "rb") as data:
            while chunk := data.read(1 << 20):
                total += chunk.count(b"\n")
        return max(total - 1, 0)


_BAD_BYTE: Final = re.compile("[\udc80-\udcff]")  # what surrogateescape made of a bad byte


def _has_bad_bytes(text: str) -> bool:
    return _BAD_BYTE.search(text) is not None


def _require_fields(name: str, keys: Any, id_field: str, text_field: str, path_field: str) -> None:
    present = list(keys)
    shown = ", ".join(map(str, present)) or "none"
    if id_field not in present:
        raise SourceError(
            f"{name}: the first record has no {id_field!r} field (fields: {shown}); "
            "name the right one with --id-field"
        )
    if text_field not in present and path_field not in present:
        raise SourceError(
            f"{name}: the first record has no {text_field!r} field, nor a {path_field!r} "
            f"naming a file (fields: {shown}); name the right one with --text-field "
            "or --path-field"
        )
