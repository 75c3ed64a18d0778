"""Documents in: PDF, Word, HTML, Markdown and text, as text with a map back to pages.

`read(source)` takes a path, bytes or text, recognises the kind by content (a PDF starts
`%PDF-`, a DOCX is a zip holding `word/document.xml`, HTML opens with a tag) and by
extension, and returns a `Document`: its text, with pages separated by form feeds, and
the offset where each page starts, so any character span (a grounded value, a chunk)
says which page it came from.

- **PDF** (the `pdf` extra, pypdfium2: `benchmarks/pdf_text.py` compares it): the text
  layer, page by page. PDFium is native code: it runs in a worker process with a time
  limit, so a file that crashes or hangs it costs that document only. An encrypted PDF,
  a broken one and one with no text layer (a scan: it needs OCR first) are each a clear
  `InputError`.
- **DOCX**: the standard library reads the zip and its XML: paragraphs, headings, tables,
  page breaks. A member that would inflate past the size cap (a zip bomb) is refused
  before it is read.
- **HTML**: the main text (`<main>`, `<article>`, else the body), without scripts, styles,
  navigation, headers, footers and forms.
- **Markdown and text**: as they are, UTF-8.

Every failure is an `InputError` saying what to do, within a bounded time.
"""

from __future__ import annotations

import atexit
import bisect
import html
import html.parser
import io
import json
import os
import re
import struct
import subprocess
import sys
import threading
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Final, TypeAlias
from xml.etree import ElementTree

from extractor._errors import InputError

__all__ = ["KINDS", "MAX_DOCUMENT_BYTES", "Document", "Source", "detect", "read"]

#: Larger inputs are refused: split them first.
MAX_DOCUMENT_BYTES: Final = 64 * 2**20
#: The most text a document's XML may inflate to (a DOCX member, uncompressed).
MAX_XML_BYTES: Final = 64 * 2**20
#: A zip member compressed more than this is not a document: a zip bomb.
MAX_COMPRESSION_RATIO: Final = 200
#: Seconds a PDF may take to read in the worker.
PDF_TIMEOUT: Final = 60.0
KINDS: Final = ("pdf", "docx", "html", "markdown", "text")

_PAGE: Final = "\f"
_W: Final = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"


@dataclass(frozen=True)
class Document:
    """A document's text, what it was read from, and where each of its pages starts."""

    text: str
    kind: str = "text"
    pages: tuple[int, ...] = (0,)  # the offset in `text` where each page starts
    name: str | None = None

    def page_at(self, offset: int) -> int:
        """The page (1-based) holding the character at `offset`."""
        return max(1, bisect.bisect_right(self.pages, offset))

    def pages_of(self, span: tuple[int, int] | list[int]) -> tuple[int, ...]:
        """The pages a `[start, end)` span runs over."""
        start, end = span[0], max(span[0], span[1] - 1)
        return tuple(range(self.page_at(start), self.page_at(end) + 1))


#: What extraction takes as a document: its text (a `str`), a path to a file, a file's
#: bytes, or a `Document` already read.
Source: TypeAlias = "str | os.PathLike[str] | bytes | Document"


def read(
    source: Source,
    *,
    name: str | None = None,
    kind: str | None = None,
) -> Document:
    """Read a document from a path (a `str` here is a path) or a file's bytes.

    Raises `InputError` for a file that cannot be read as a document, saying why.
    (Extraction calls take a `str` as the document's text itself.)
    """
    if isinstance(source, Document):
        return source
    if isinstance(source, bytes):
        data = source
    else:
        path = Path(source)
        name = name or str(path)
        try:
            if path.stat().st_size > MAX_DOCUMENT_BYTES:
                raise InputError(
                    f"{name} is larger than {MAX_DOCUMENT_BYTES // 2**20} MB; split it first"
                )
            data = path.read_bytes()
        except OSError as exc:
            raise InputError(f"cannot read {name}: {exc.strerror or exc}") from None
    if len(data) > MAX_DOCUMENT_BYTES:
        raise InputError(f"the document is larger than {MAX_DOCUMENT_BYTES // 2**20} MB")
    found = kind or detect(data, name)
    claimed = Path(name).suffix.lower() if name else ""
    if claimed in (".pdf", ".docx") and found != claimed[1:]:
        what = "PDF (it does not start with %PDF-)" if claimed == ".pdf" else "DOCX zip"
        raise InputError(f"{name} is not a {what}: the file is damaged or misnamed")
    if found == "pdf":
        return _pdf(data, name)
    if found == "docx":
        return _docx(data, name)
    text = _decode(data)
    if found == "html":
        return _text_document(_html_text(text), "html", name)
    return _text_document(text, found, name)


def detect(data: bytes, name: str | None = None) -> str:
    """The kind of a document, from its first bytes (and its name, for Markdown)."""
    head = data[:1024].lstrip()
    if head.startswith(b"%PDF-") or data[:1024].find(b"%PDF-") >= 0:
        return "pdf"
    if data.startswith(b"PK\x03\x04"):
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                if "word/document.xml" in archive.namelist():
                    return "docx"
        except zipfile.BadZipFile:
            pass
        raise InputError("a zip archive, not a document: only DOCX zips are read")
    lowered = head[:512].lower().lstrip(b"\xef\xbb\xbf")
    if lowered.startswith((b"<!doctype html", b"<html")) or (
        lowered.startswith(b"<") and b"<body" in data[:4096].lower()
    ):
        return "html"
    suffix = Path(name).suffix.lower() if name else ""
    if suffix in (".htm", ".html", ".xhtml"):
        return "html"
    if suffix in (".md", ".markdown"):
        return "markdown"
    return "text"


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(
            f"not UTF-8 text (byte {data[exc.start]:#04x} at offset {exc.start}); "
            "convert it first, e.g. iconv -f latin1 -t utf-8"
        ) from None


def _text_document(text: str, kind: str, name: str | None) -> Document:
    if not text.strip():
        raise InputError("the document is empty: nothing to extract")
    starts = [0, *(m.end() for m in re.finditer(_PAGE, text))]
    return Document(text, kind, tuple(starts), name)


# --- PDF: in a worker process ---------------------------------------------------------------


class _Worker:
    """One child process that reads PDFs, restarted when a file kills or stalls it."""

    def __init__(self) -> None:
        self._process: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()

    def read(self, data: bytes, timeout: float) -> dict[str, Any]:
        with self._lock:
            process = self._process
            if process is None or process.poll() is not None:
                process = self._process = subprocess.Popen(
                    [sys.executable, "-m", "extractor.documents", "--worker"],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.DEVNULL,
                    preexec_fn=_limit_memory if sys.platform == "linux" else None,
                )
            assert process.stdin is not None
            assert process.stdout is not None
            fired = threading.Event()

            def stop(child: subprocess.Popen[bytes] = process) -> None:
                fired.set()
                child.kill()

            timer = threading.Timer(timeout, stop)
            timer.start()
            try:
                process.stdin.write(struct.pack(">Q", len(data)) + data)
                process.stdin.flush()
                answer = _receive(process.stdout)
            except (OSError, ValueError):
                answer = None
            finally:
                timer.cancel()
            if answer is None:  # it died, or was killed at the time limit
                process.kill()
                process.wait()
                self._process = None
                return {"error": "crash", "timed_out": fired.is_set()}
            return answer

    def close(self) -> None:
        """Stop the worker (at exit): it reads no more PDFs."""
        with self._lock:
            process, self._process = self._process, None
        if process is not None:
            for pipe in (process.stdin, process.stdout):
                if pipe is not None:
                    pipe.close()
            process.kill()
            process.wait()


#: The address space the PDF worker may take: a flate bomb inflates past it and fails.
PDF_MEMORY: Final = 1536 * 2**20


def _limit_memory() -> None:  # pragma: no cover - runs in the child, before exec
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (PDF_MEMORY, PDF_MEMORY))


def _receive(stream: IO[bytes]) -> dict[str, Any] | None:
    head = stream.read(8)
    if len(head) < 8:
        return None
    size = struct.unpack(">Q", head)[0]
    body = stream.read(size)
    if len(body) < size:
        return None
    value = json.loads(body)
    return value if isinstance(value, dict) else None


_worker = _Worker()
atexit.register(_worker.close)


def _pdf(data: bytes, name: str | None) -> Document:
    answer = _worker.read(data, PDF_TIMEOUT)
    error = answer.get("error")
    if error == "missing":
        raise InputError('reading PDF needs the pdf extra: pip install "extractor[pdf]"')
    if error == "encrypted":
        raise InputError(
            "the PDF is encrypted: decrypt it first (e.g. qpdf --decrypt in.pdf out.pdf)"
        )
    if error == "broken":
        raise InputError(f"not a readable PDF ({answer.get('message', 'damaged')})")
    if error == "crash":
        raise InputError(
            f"reading the PDF took longer than {PDF_TIMEOUT:g} s"
            if answer.get("timed_out")
            else "the PDF crashed the reader: the file is damaged"
        )
    pages = [str(p) for p in answer.get("pages", [])]
    if pages and not any(p.strip() for p in pages):
        raise InputError(
            f"the PDF has no text layer ({len(pages)} page(s) of images: a scan?); "
            "run OCR first, e.g. ocrmypdf in.pdf out.pdf"
        )
    # PDFium ends lines with CRLF and marks a hyphen it joined a word across with U+FFFE
    pages = [p.replace("\ufffe\r\n", "").replace("\ufffe", "").replace("\r\n", "\n") for p in pages]
    text = _PAGE.join(p.replace(_PAGE, "\n") for p in pages)
    return _text_document(text, "pdf", name)


def _serve() -> None:
    """The worker: read length-prefixed PDFs on stdin, answer length-prefixed JSON."""
    source, sink = sys.stdin.buffer, sys.stdout.buffer
    while True:
        head = source.read(8)
        if len(head) < 8:
            return
        data = source.read(struct.unpack(">Q", head)[0])
        body = json.dumps(_pdf_pages(data)).encode()
        sink.write(struct.pack(">Q", len(body)) + body)
        sink.flush()


def _pdf_pages(data: bytes) -> dict[str, Any]:
    try:
        import pypdfium2 as pdfium
    except ImportError:
        return {"error": "missing"}
    try:
        pdf = pdfium.PdfDocument(data)
    except pdfium.PdfiumError as exc:
        message = str(exc)
        kind = "encrypted" if "password" in message.lower() else "broken"
        return {"error": kind, "message": message[:200]}
    try:
        pages = []
        for index in range(len(pdf)):
            page = pdf[index]
            textpage = page.get_textpage()
            pages.append(textpage.get_text_range())
            textpage.close()
            page.close()
        return {"pages": pages}
    finally:
        pdf.close()


# --- DOCX -------------------------------------------------------------------------------------


def _docx(data: bytes, name: str | None) -> Document:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            info = archive.getinfo("word/document.xml")
            ratio = info.file_size / max(info.compress_size, 1)
            if info.file_size > MAX_XML_BYTES or ratio > MAX_COMPRESSION_RATIO:
                raise InputError(
                    f"the DOCX would inflate to {info.file_size // 2**20} MB "
                    f"({ratio:.0f} times its size): not a document, a zip bomb"
                )
            with archive.open(info) as member:
                xml = member.read(MAX_XML_BYTES + 1)
    except (zipfile.BadZipFile, KeyError, OSError, EOFError) as exc:
        raise InputError(f"not a readable DOCX ({exc})") from None
    if len(xml) > MAX_XML_BYTES:
        raise InputError("the DOCX inflates past the size cap: not a document")
    try:
        root = ElementTree.fromstring(xml)
    except ElementTree.ParseError as exc:
        raise InputError(f"not a readable DOCX (its XML is broken: {exc})") from None
    body = root.find(f"{_W}body")
    lines: list[str] = []
    for block in list(body) if body is not None else []:
        if block.tag == f"{_W}p":
            lines.append(_paragraph(block))
        elif block.tag == f"{_W}tbl":
            for row in block.iter(f"{_W}tr"):
                cells = [
                    " ".join(_paragraph(p) for p in cell.iter(f"{_W}p")).strip()
                    for cell in row.iter(f"{_W}tc")
                ]
                lines.append(" | ".join(cells))
    text = "\n".join(lines)
    text = re.sub(r"\n*\f\n*", _PAGE, text)
    return _text_document(text, "docx", name)


def _paragraph(paragraph: ElementTree.Element) -> str:
    parts: list[str] = []
    for node in paragraph.iter():
        if node.tag == f"{_W}t" and node.text:
            parts.append(node.text)
        elif node.tag == f"{_W}tab":
            parts.append("\t")
        elif node.tag == f"{_W}br":
            parts.append(_PAGE if node.get(f"{_W}type") == "page" else "\n")
    text = "".join(parts)
    style = paragraph.find(f"{_W}pPr/{_W}pStyle")
    level = re.match(r"Heading(\d)", style.get(f"{_W}val", "")) if style is not None else None
    return f"{'#' * int(level.group(1))} {text}" if level and text.strip() else text


# --- HTML -------------------------------------------------------------------------------------

_SKIP: Final = frozenset(
    {"script", "style", "noscript", "template", "svg", "nav", "header", "footer", "aside",
     "form", "iframe", "head", "button", "select"}
)  # fmt: skip
_BLOCK: Final = frozenset(
    {"p", "div", "section", "article", "main", "br", "li", "tr", "table", "ul", "ol", "h1",
     "h2", "h3", "h4", "h5", "h6", "blockquote", "pre", "hr", "dd", "dt", "figcaption"}
)  # fmt: skip
_VOID: Final = frozenset({"br", "hr", "img", "input", "meta", "link", "wbr", "source", "col"})


class _Text(html.parser.HTMLParser):
    """The text of a page, block by block; what `<main>`/`<article>` hold kept apart."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.all: list[str] = []
        self.main: list[str] = []
        self._skipping: list[str] = []
        self._in_main = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self._skipping:
            if tag == self._skipping[-1] and tag not in _VOID:
                self._skipping.append(tag)
            return
        if tag in _SKIP:
            self._skipping.append(tag)
            return
        if tag in ("main", "article"):
            self._in_main += 1
        if tag in _BLOCK:
            self._put("\n")
        if tag in ("h1", "h2", "h3", "h4", "h5", "h6"):
            self._put("#" * int(tag[1]) + " ")
        elif tag == "li":
            self._put("- ")
        elif tag in ("td", "th"):
            self._put(" | ")

    def handle_endtag(self, tag: str) -> None:
        if self._skipping:
            if tag == self._skipping[-1]:
                self._skipping.pop()
            return
        if tag in _BLOCK:
            self._put("\n")
        if tag in ("main", "article") and self._in_main:
            self._in_main -= 1

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self._put(data)

    def _put(self, text: str) -> None:
        self.all.append(text)
        if self._in_main:
            self.main.append(text)


def _html_text(page: str) -> str:
    parser = _Text()
    parser.feed(page)
    parser.close()
    main = _tidy("".join(parser.main))
    return main if len(main) >= 40 else _tidy("".join(parser.all))


def _tidy(text: str) -> str:
    lines = [re.sub(r"[ \t\r\xa0]+", " ", line).strip() for line in text.split("\n")]
    out: list[str] = []
    for line in lines:
        if line or (out and out[-1]):
            out.append(html.unescape(line))
    return "\n".join(out).strip()


if __name__ == "__main__":  # pragma: no cover - the PDF worker's own process
    if sys.argv[1:] == ["--worker"]:
        _serve()
