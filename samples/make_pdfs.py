"""Write the sample documents and the hostile test files, with the standard library only.

* ``samples/pdfs/``: an invoice, a 3-page letter with headings (two columns on page 2, a
  table drawn column by column on page 3), a shop receipt, and a 60-page expense
  statement holding one receipt per page;
* ``samples/docs/``: a Word document (DOCX) and a web page (HTML with menus and scripts);
* ``tests/data/documents/``: files a document reader must refuse cleanly (see the README
  there).

Every name, address and figure is made up. The PDFs use the 14 standard fonts, so they
embed nothing; their objects, cross-reference table and trailer are written here. The
output is byte-for-byte reproducible: ``--check`` regenerates everything in memory and
fails when a file on disk differs. ``benchmarks/pdf_text.py`` imports ``pdf_samples()``
for the text each page is known to hold.

    python samples/make_pdfs.py            # (re)write every file
    python samples/make_pdfs.py --check    # exit 1 if a checked-in file is stale
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import io
import random
import struct
import sys
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

ROOT = Path(__file__).resolve().parent.parent
PDF_DIR = ROOT / "samples" / "pdfs"
DOC_DIR = ROOT / "samples" / "docs"
HOSTILE_DIR = ROOT / "tests" / "data" / "documents"
A4 = (595.0, 842.0)
SHY = "~"  # in the samples' text: where a word may break across lines, printed as "-"
ENCRYPTED_PASSWORD = "secret"

# --- PDF objects and the file around them ---------------------------------------------


class Name(str):
    """A PDF name such as ``/Page``; a plain ``str`` is written as a text string."""


class Raw(bytes):
    """Bytes written as they are: for the deliberately malformed objects."""


@dataclass(frozen=True)
class Ref:
    num: int


@dataclass
class Stream:
    meta: dict[str, Any]
    data: bytes  # already encoded with the filters the meta names


Crypt = Callable[[bytes], bytes]


def deflated(data: bytes, **meta: Any) -> Stream:
    return Stream({**meta, "Filter": Name("FlateDecode")}, zlib.compress(data, 9))


def literal(data: bytes) -> bytes:
    escaped = data.replace(b"\\", b"\\\\").replace(b"(", b"\\(").replace(b")", b"\\)")
    return b"(" + escaped.replace(b"\r", b"\\r") + b")"


def number(value: float) -> bytes:
    return (f"{value:.2f}".rstrip("0").rstrip(".") or "0").encode()


def serialize(value: Any, crypt: Crypt | None = None) -> bytes:
    """One PDF object; strings go through ``crypt`` when the file is encrypted."""
    if isinstance(value, Raw):
        return bytes(value)
    if value is None:
        return b"null"
    if isinstance(value, bool):
        return b"true" if value else b"false"
    if isinstance(value, Name):
        return b"/" + value.encode("ascii")
    if isinstance(value, Ref):
        return b"%d 0 R" % value.num
    if isinstance(value, int):
        return b"%d" % value
    if isinstance(value, float):
        return number(value)
    if isinstance(value, str):
        value = value.encode("latin-1")
    if isinstance(value, bytes):
        return b"<" + crypt(value).hex().encode() + b">" if crypt else literal(value)
    if isinstance(value, list):
        return b"[" + b" ".join(serialize(item, crypt) for item in value) + b"]"
    if isinstance(value, dict):
        items = (b"/%s %s" % (key.encode(), serialize(item, crypt)) for key, item in value.items())
        return b"<<" + b" ".join(items) + b">>"
    raise TypeError(f"no PDF form for {value!r}")


class Pdf:
    """A list of numbered objects, written with a classic cross-reference table."""

    def __init__(self) -> None:
        self.objects: list[Any] = []

    def add(self, obj: Any) -> Ref:
        self.objects.append(obj)
        return Ref(len(self.objects))

    def put(self, ref: Ref, obj: Any) -> None:
        self.objects[ref.num - 1] = obj

    def to_bytes(
        self, root: Ref, info: Ref | None = None, security: Rc4Security | None = None
    ) -> bytes:
        out = bytearray(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
        objects = list(self.objects)
        if security:
            objects.append(security.dictionary())
        offsets = []
        for num, obj in enumerate(objects, 1):
            offsets.append(len(out))
            crypt = security.crypt(num) if security and num < len(objects) else None
            if isinstance(obj, Stream):
                data = crypt(obj.data) if crypt else obj.data
                body = serialize({**obj.meta, "Length": len(data)}, crypt)
                body += b"\nstream\n" + data + b"\nendstream"
            else:
                body = serialize(obj, crypt)
            out += b"%d 0 obj\n%s\nendobj\n" % (num, body)
        xref = len(out)
        out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
        out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
        file_id = security.file_id if security else hashlib.md5(bytes(out)).digest()
        trailer: dict[str, Any] = {"Size": len(objects) + 1, "Root": root, "ID": [file_id] * 2}
        if info:
            trailer["Info"] = info
        if security:
            trailer["Encrypt"] = Ref(len(objects))
        out += b"trailer\n%s\nstartxref\n%d\n%%%%EOF\n" % (serialize(trailer), xref)
        return bytes(out)


# --- the standard security handler, revision 3 (RC4, 128-bit keys; PDF 1.7, 7.6.3) ------

PASSWORD_PAD = bytes.fromhex("28bf4e5e4e758a4164004e56fffa01082e2e00b6d0683e802f0ca9fe6453697a")


def rc4(key: bytes, data: bytes) -> bytes:
    box = list(range(256))
    j = 0
    for i in range(256):
        j = (j + box[i] + key[i % len(key)]) % 256
        box[i], box[j] = box[j], box[i]
    out = bytearray()
    i = j = 0
    for byte in data:
        i = (i + 1) % 256
        j = (j + box[i]) % 256
        box[i], box[j] = box[j], box[i]
        out.append(byte ^ box[(box[i] + box[j]) % 256])
    return bytes(out)


def rc4_rounds(key: bytes, data: bytes) -> bytes:
    """RC4 with the key, then 19 more times with the key XORed with 1..19 (revision 3)."""
    for round_ in range(20):
        data = rc4(bytes(byte ^ round_ for byte in key), data)
    return data


def md5_rounds(data: bytes) -> bytes:
    digest = hashlib.md5(data).digest()
    for _ in range(50):
        digest = hashlib.md5(digest).digest()
    return digest


class Rc4Security:
    """Encrypts a file for a user password (empty: anyone may open it) and an owner one."""

    def __init__(self, user: str, owner: str, file_id: bytes, permissions: int) -> None:
        self.file_id = file_id
        self.permissions = permissions
        padded_user = (user.encode("latin-1") + PASSWORD_PAD)[:32]
        owner_key = md5_rounds((owner.encode("latin-1") + PASSWORD_PAD)[:32])
        self.owner_entry = rc4_rounds(owner_key, padded_user)
        self.key = md5_rounds(
            padded_user + self.owner_entry + struct.pack("<i", permissions) + file_id
        )
        self.user_entry = rc4_rounds(self.key, hashlib.md5(PASSWORD_PAD + file_id).digest())
        self.user_entry += bytes(16)

    def dictionary(self) -> dict[str, Any]:
        return {
            "Filter": Name("Standard"),
            "V": 2,
            "R": 3,
            "Length": 128,
            "P": self.permissions,
            "O": self.owner_entry,
            "U": self.user_entry,
        }

    def crypt(self, num: int) -> Crypt:
        key = hashlib.md5(self.key + num.to_bytes(3, "little") + bytes(2)).digest()
        return lambda data: rc4(key, data)


# --- fonts and pages -----------------------------------------------------------------

# Advance widths (1/1000 em) of characters 32..126 in the standard Helvetica fonts.
_HELVETICA = """278 278 355 556 556 889 667 191 333 333 389 584 278 333 278 278 556 556 556
556 556 556 556 556 556 556 278 278 584 584 584 556 1015 667 667 722 722 667 611 778 722
278 500 667 556 833 722 778 667 778 722 667 611 722 667 944 667 667 611 278 278 278 469
556 333 556 556 500 556 556 278 556 556 222 222 500 222 833 556 556 556 556 333 500 278
556 500 722 500 500 500 334 260 334 584"""
_HELVETICA_BOLD = """278 333 474 556 556 889 722 238 333 333 389 584 278 333 278 278 556 556
556 556 556 556 556 556 556 556 333 333 584 584 584 611 975 722 722 722 722 667 611 778
722 278 556 722 611 833 722 778 667 778 722 667 611 722 667 944 667 667 611 333 278 333
584 556 333 556 611 556 611 556 333 611 611 278 278 556 278 889 611 611 611 611 389 556
333 611 556 778 556 556 500 389 280 389 584"""
#: Windows-1252 characters beyond ASCII: euro, curly quotes, bullet, dashes, pound, dot, e-acute.
_EXTRA = {0x80: 556, 0x91: 222, 0x92: 222, 0x93: 333, 0x94: 333, 0x95: 350, 0x96: 556}
_EXTRA |= {0x97: 1000, 0xA3: 556, 0xB7: 278, 0xE9: 556}
FI, FL = 0x1C, 0x1D  # where the ligature font puts the fi and fl glyphs


def _widths(table: str) -> dict[int, int]:
    return dict(enumerate(map(int, table.split()), 32)) | _EXTRA | {FI: 500, FL: 500}


@dataclass(frozen=True)
class Font:
    key: str
    base: str
    widths: dict[int, int]
    ligatures: bool = False  # set "fi" and "fl" with their ligature glyphs, as TeX does

    def encode(self, text: str) -> bytes:
        data = text.encode("cp1252")
        if self.ligatures:
            data = data.replace(b"fi", bytes([FI])).replace(b"fl", bytes([FL]))
        return data

    def width(self, text: str, size: float) -> float:
        return sum(self.widths.get(byte, 600) for byte in self.encode(text)) * size / 1000

    def resource(self) -> dict[str, Any]:
        font: dict[str, Any] = {"Type": Name("Font"), "Subtype": Name("Type1")}
        font["BaseFont"] = Name(self.base)
        if self.ligatures:
            font["Encoding"] = {
                "Type": Name("Encoding"),
                "BaseEncoding": Name("WinAnsiEncoding"),
                "Differences": [FI, Name("fi"), Name("fl")],
            }
        else:
            font["Encoding"] = Name("WinAnsiEncoding")
        return font


HELVETICA = Font("F1", "Helvetica", _widths(_HELVETICA))
BOLD = Font("F2", "Helvetica-Bold", _widths(_HELVETICA_BOLD))
COURIER = Font("F3", "Courier", {})
COURIER_BOLD = Font("F4", "Courier-Bold", {})
BODY = Font("F5", "Helvetica", _widths(_HELVETICA), ligatures=True)
FONTS = (HELVETICA, BOLD, COURIER, COURIER_BOLD, BODY)


def wrap(
    text: str, font: Font, size: float, width: float
) -> tuple[list[str], list[tuple[str, str]]]:
    """Greedy line breaking; a word may break at a soft hyphen, printed as "-".

    Returns the lines and the (head, tail) of every word broken across two lines.
    """

    def fits(words: list[str]) -> bool:
        return font.width(" ".join(words).replace(SHY, ""), size) <= width

    lines: list[str] = []
    broken: list[tuple[str, str]] = []
    current: list[str] = []
    for word in text.split():  # also joins the source's lines
        if not current or fits([*current, word]):
            current.append(word)
            continue
        pieces = word.split(SHY)
        for cut in range(len(pieces) - 1, 0, -1):
            head = "".join(pieces[:cut])
            if fits([*current, head + "-"]):
                lines.append(" ".join([*current, head + "-"]))
                broken.append((head, "".join(pieces[cut:]).rstrip(".,;:")))
                current = [SHY.join(pieces[cut:])]
                break
        else:
            lines.append(" ".join(current))
            current = [word]
    lines.append(" ".join(current))
    return [line.replace(SHY, "") for line in lines], broken


@dataclass
class Page:
    """One page's content stream, and what a reader should get out of it.

    ``expected`` holds the page's lines in reading order (which need not be the order
    they are drawn in); ``label`` names what the page tests.
    """

    label: str
    width: float = A4[0]
    height: float = A4[1]
    ops: list[bytes] = field(default_factory=list)
    expected: list[str] = field(default_factory=list)
    hyphenated: list[tuple[str, str]] = field(default_factory=list)
    ligature_words: list[str] = field(default_factory=list)
    images: dict[str, Stream] = field(default_factory=dict)

    def text(
        self,
        x: float,
        y: float,
        text: str,
        font: Font = HELVETICA,
        size: float = 10,
        *,
        mode: str = "plain",
        align: str = "left",
        justify: float | None = None,
        expect: bool = True,
    ) -> None:
        """Draw one line. ``mode``: "plain" (one string, spaces included), "kerned" (no
        space glyphs: words moved apart in a TJ array, as TeX does) or "words" (every
        word placed on its own, as browsers print)."""
        if expect:
            self.expected.append(text)
        if font.ligatures:
            self.ligature_words += [w for w in text.split() if "fi" in w or "fl" in w]
        if align != "left":
            x -= font.width(text, size) / (2 if align == "center" else 1)
        words = [text] if mode == "plain" else text.split(" ")
        gap = font.width(" ", size)
        if justify and len(words) > 1:
            inked = sum(font.width(word, size) for word in words)
            gap = (justify - inked) / (len(words) - 1)
        if mode == "kerned":
            shift = b" " + number(-gap * 1000 / size) + b" "
            shown = shift.join(literal(font.encode(word)) for word in words)
            self.show(font, size, x, y, b"[" + shown + b"] TJ")
            return
        for word in words:  # "plain": one word, the whole line
            self.show(font, size, x, y, literal(font.encode(word)) + b" Tj")
            x += font.width(word, size) + gap

    def show(self, font: Font, size: float, x: float, y: float, shown: bytes) -> None:
        start = b"BT /%s %s Tf %s %s Td " % (font.key.encode(), number(size), number(x), number(y))
        self.ops.append(start + shown + b" ET")

    def row(
        self,
        y: float,
        cells: list[tuple[float, str, str]],
        font: Font = HELVETICA,
        size: float = 10,
        mode: str = "plain",
    ) -> None:
        """Cells on one line, each (x, text, "left" or "right"); read as one line."""
        for x, text, align in cells:
            self.text(x, y, text, font, size, mode=mode, align=align, expect=False)
        self.expected.append(" ".join(text for _, text, _ in cells))

    def paragraph(
        self,
        x: float,
        y: float,
        width: float,
        text: str,
        font: Font = BODY,
        size: float = 10,
        leading: float = 13.5,
        mode: str = "kerned",
    ) -> float:
        """A justified paragraph; returns the baseline below its last line."""
        lines, broken = wrap(text, font, size, width)
        self.hyphenated += broken
        for index, line in enumerate(lines):
            last = index == len(lines) - 1
            self.text(x, y, line, font, size, mode=mode, justify=None if last else width)
            y -= leading
        return y

    def line(self, x1: float, y1: float, x2: float, y2: float, width: float = 0.5) -> None:
        self.ops.append(b"%s w %s %s m %s %s l S" % tuple(map(number, (width, x1, y1, x2, y2))))

    def box(self, x: float, y: float, w: float, h: float, gray: float = 0.92) -> None:
        self.ops.append(b"%s g %s %s %s %s re f 0 g" % tuple(map(number, (gray, x, y, w, h))))

    def image(self, name: str, image: Stream, x: float, y: float, w: float, h: float) -> None:
        self.images[name] = image
        place = b" ".join(map(number, (w, 0, 0, h, x, y)))
        self.ops.append(b"q %s cm /%s Do Q" % (place, name.encode()))


def render(
    pages: list[Page],
    title: str,
    security: Rc4Security | None = None,
    labels: dict[str, Any] | None = None,
) -> bytes:
    """The PDF file of ``pages``: catalog, page tree, shared fonts, one stream per page."""
    pdf = Pdf()
    catalog, tree = pdf.add(None), pdf.add(None)
    fonts = {font.key: pdf.add(font.resource()) for font in FONTS}
    kids = []
    for page in pages:
        content = pdf.add(deflated(b"\n".join(page.ops)))
        resources: dict[str, Any] = {"Font": fonts}
        if page.images:
            resources["XObject"] = {name: pdf.add(img) for name, img in page.images.items()}
        kids.append(
            pdf.add(
                {
                    "Type": Name("Page"),
                    "Parent": tree,
                    "MediaBox": [0, 0, page.width, page.height],
                    "Resources": resources,
                    "Contents": content,
                }
            )
        )
    pdf.put(tree, {"Type": Name("Pages"), "Kids": kids, "Count": len(kids)})
    root: dict[str, Any] = {"Type": Name("Catalog"), "Pages": tree}
    if labels:
        root["PageLabels"] = labels
    pdf.put(catalog, root)
    info = pdf.add({"Title": title, "Producer": "extractor samples/make_pdfs.py"})
    return pdf.to_bytes(catalog, info, security)


# --- the sample PDFs --------------------------------------------------------------------


@dataclass
class Sample:
    """A generated PDF: its file name, its pages (with the text they hold), its bytes."""

    name: str
    pages: list[Page]
    data: bytes


def invoice_pages() -> list[Page]:
    page = Page("invoice: address blocks side by side, a table drawn row by row")
    left, right = 56.0, 539.0
    page.text(left, 780, "FERNHILL JOINERY LTD", BOLD, 15)
    for index, line in enumerate(
        [
            "Unit 4, Quarry Road Trading Estate",
            "Penrith CA11 9XR",
            "accounts@fernhill-joinery.example",
            "VAT reg. GB 000 1111 22",
        ]
    ):
        page.text(left, 764 - 12 * index, line, size=9)
    page.text(right, 778, "INVOICE", BOLD, 20, align="right")
    for index, line in enumerate(
        [
            "Invoice no. FJ-2025-0412",
            "Issue date: 14 March 2025",
            "Due date: 13 April 2025",
            "Order ref: MVA/PO/7731",
        ]
    ):
        page.text(right, 758 - 13 * index, line, size=9.5, align="right")
    page.text(left, 680, "Bill to:", BOLD, 10)
    for index, line in enumerate(
        ["Marlow & Vance Architects", "18 Canal Street", "Leeds LS1 4DX", "Attn: Dana Okafor"]
    ):
        page.text(left, 666 - 13 * index, line)
    columns = [(left, "left"), (370.0, "right"), (455.0, "right"), (right, "right")]
    items = [
        ("Oak casement window frames, 1200 x 900 mm", "6", "310.00", "1,860.00"),
        ("Sash window refurbishment, per unit", "4", "145.00", "580.00"),
        ("Internal door, solid ash, 826 mm", "3", "265.00", "795.00"),
        ("Site survey and measuring (hours)", "2.5", "48.00", "120.00"),
        ("Delivery to site, Leeds", "1", "75.00", "75.00"),
    ]
    page.box(left - 4, 577, right - left + 8, 17)
    header = ("Description", "Qty", "Unit price (GBP)", "Amount (GBP)")
    page.row(582, [(x, text, a) for (x, a), text in zip(columns, header, strict=True)], BOLD, 9.5)
    y = 560.0
    for item in items:
        page.row(y, [(x, text, a) for (x, a), text in zip(columns, item, strict=True)], size=9.5)
        page.line(left - 4, y - 6, right + 4, y - 6, 0.3)
        y -= 20
    for label, amount in [("Subtotal", "3,430.00"), ("VAT at 20%", "686.00")]:
        page.row(y - 6, [(370.0, label, "left"), (right, amount, "right")], size=9.5)
        y -= 16
    page.row(y - 8, [(370.0, "Total due", "left"), (right, "GBP 4,116.00", "right")], BOLD, 11)
    notes = (
        "Payment within 30 days by bank transfer to Fernhill Joinery Ltd, sort code "
        "00-11-22, account 31415926. Please quote the invoice number with your payment. "
        "Title to the goods passes on payment in full."
    )
    y = 330.0
    page.text(left, y, "Payment terms", BOLD, 10)
    lines, _ = wrap(notes, HELVETICA, 9.5, right - left)
    for line in lines:
        y -= 13
        page.text(left, y, line, size=9.5)
    footer = "Fernhill Joinery Ltd \xb7 registered in England and Wales no. 00123456"
    page.text(A4[0] / 2, 40, footer, size=7.5, align="center")
    return [page]


LETTER_SUMMARY = [
    """\
    Thank you for in~struct~ing us to in~spect 27 Alder Row. This letter con~firms what
    we found on our vis~it of 2 June 2025 and what we re~com~mend you do, in order of
    ur~gency. The house is a semi-de~tached brick house of the 1930s with a pitched roof
    of clay tiles, a flat-roofed rear exten~sion and a de~tached gar~age. It is in fair
    con~di~tion for its age, and we found no sign of struc~tural move~ment that is still
    ac~tive.
    """,
    """\
    Two mat~ters need at~ten~tion before the com~ing win~ter: the lead flash~ing around the
    chim~ney stack has lifted, and the flat roof over the kitch~en has reached the end of
    its use~ful life. Nei~ther is an em~er~gency, but both let wa~ter into the build~ing
    and will cost more the longer they are left. The re~main~ing items are main~te~nance
    that can be planned over the next five years.
    """,
]
LETTER_SCOPE = """\
    We in~spect~ed the roof from the ground and from a lad~der at the eaves, the loft,
    every room of the house and the gar~age. We did not lift floor cov~er~ings, open up the
    walls or test the drains, the wir~ing or the boil~er; where we say a spe~cial~ist
    should look at some~thing, our find~ings are lim~ited to what was vis~i~ble. A full
    pho~to~graph~ic record is en~closed with the docu~men~ta~tion of this sur~vey, and our
    office will keep a copy on file for six years.
    """
LETTER_FINDINGS = [
    [
        (
            "Roof and chimney",
            """\
            The clay tiles are orig~i~nal and mostly sound; eight are slipped or
            crack~ed on the rear slope. The flash~ing at the chim~ney has pulled away
            from the brick~work, and damp stain~ing on the bed~room ceil~ing below
            con~firms that wa~ter gets in during heavy rain. The chim~ney pots are
            sound.
            """,
        ),
        (
            "External walls",
            """\
            The brick~work is in good order. Point~ing has eroded on the west gable, where
            the wall takes the weather, and should be raked out and re~pointed in a lime
            mortar within two years. The air bricks are clear.
            """,
        ),
        (
            "Windows and doors",
            """\
            The double-gla~zed win~dows date from about 2005; two sealed units in the
            liv~ing room have failed and mist be~tween the panes. The back door sticks in
            wet weather and needs eas~ing.
            """,
        ),
    ],
    [
        (
            "Damp and ventilation",
            """\
            Read~ings at the base of the walls were nor~mal except in the un~der-stairs
            cup~board, where a blocked air brick and a raised path out~side hold
            mois~ture against the wall. Low~er~ing the path will solve this; no chem~i~cal
            damp-proof~ing is needed. The bath~room fan does not work and the room shows
            mould: fit a new ex~trac~tor fan with an over-run timer.
            """,
        ),
        (
            "Services",
            """\
            The con~sumer unit is mod~ern. The boil~er was ser~viced last year ac~cord~ing
            to its la~bel, which is enough for now.
            """,
        ),
        (
            "Interior",
            """\
            Ceil~ings and floors are sound. The first-floor land~ing floor creaks, which
            is com~mon and harm~less.
            """,
        ),
    ],
]
LETTER_WORKS = [
    ("Priority", "Work", "Timing", "Estimate (GBP)"),
    ("1", "Re-dress chimney flashing", "Before October", "650"),
    ("1", "Replace kitchen flat roof", "Before October", "3,200"),
    ("2", "Lower path, clear air brick", "Within a year", "480"),
    ("2", "New bathroom extractor fan", "Within a year", "320"),
    ("3", "Repoint west gable", "Within two years", "1,900"),
    ("3", "Replace two sealed units", "Within two years", "540"),
]
LETTER_NEXT = """\
    The es~ti~mates are our own and include VAT; quo~ta~tions from two con~trac~tors
    will confirm them. We would be glad to pre~pare a spec~i~fi~ca~tion for the flat roof
    and to over~see the work. Please call or write if any~thing in this letter is un~clear;
    our office is open from 9 to 5 on week~days.
    """


def letter_pages() -> list[Page]:
    left, width = 64.0, A4[0] - 128
    first = Page("letter p1: justified lines without space glyphs, fi/fl ligatures, hyphens")
    first.text(left, 786, "ALDER & WREN BUILDING SURVEYORS", BOLD, 13)
    first.text(
        left, 772, "2 Weavers Yard, Kettleby KB3 8LN \xb7 01632 960 733", size=8.5, mode="words"
    )
    for index, line in enumerate(["Ms Harriet Coombe", "27 Alder Row", "Kettleby KB2 4QT"]):
        first.text(left, 720 - 13 * index, line)
    first.text(left + width, 720, "9 June 2025", align="right")
    first.text(left, 668, "Our ref: AW/2025/118")
    first.text(left, 640, "Dear Ms Coombe,")
    first.text(left, 616, "Condition survey of 27 Alder Row", BOLD, 11)
    first.text(left, 590, "1. Summary", BOLD, 11)
    y = 572.0
    for text in LETTER_SUMMARY:
        y = first.paragraph(left, y, width, text) - 6
    first.text(left, y - 10, "2. Scope of the inspection", BOLD, 11)
    first.paragraph(left, y - 28, width, LETTER_SCOPE)
    first.text(A4[0] / 2, 40, "Page 1 of 3", size=8, align="center")

    second = Page("letter p2: two columns, drawn column by column")
    second.text(left, 786, "3. Findings", BOLD, 11)
    gutter = 20.0
    column = (width - gutter) / 2
    for index, sections in enumerate(LETTER_FINDINGS):
        x, y = left + index * (column + gutter), 764.0
        for heading, text in sections:
            second.text(x, y, heading, BOLD, 9.5)
            y = second.paragraph(x, y - 14, column, text, size=9.5, leading=12.5) - 10
    second.text(A4[0] / 2, 40, "Page 2 of 3", size=8, align="center")

    third = Page("letter p3: a table drawn column by column")
    third.text(left, 786, "4. Recommended works and estimates", BOLD, 11)
    columns = [(left, "left"), (left + 60, "left"), (left + 250, "left"), (left + width, "right")]
    for (x, align), cells in zip(columns, zip(*LETTER_WORKS, strict=True), strict=True):
        for index, cell in enumerate(cells):
            font = BOLD if index == 0 else HELVETICA
            third.text(x, 760 - 18 * index, cell, font, 9.5, align=align, expect=False)
    third.expected += [" ".join(row) for row in LETTER_WORKS]
    bottom = 760 - 18 * len(LETTER_WORKS)
    third.line(left, bottom + 8, left + width, bottom + 8)
    third.row(bottom - 8, [(left + 60, "Total", "left"), (left + width, "7,090", "right")], BOLD)
    third.text(left, bottom - 44, "5. Next steps", BOLD, 11)
    y = third.paragraph(left, bottom - 62, width, LETTER_NEXT) - 14
    signature = [
        "Yours sincerely,",
        "Tomasz Brennan MRICS",
        "Senior Building Surveyor",
        "tomasz.brennan@alderwren.example \xb7 01632 960 734",
    ]
    for index, line in enumerate(signature):
        third.text(left, y - (36 if index else 0) - 13 * index, line)
    third.text(A4[0] / 2, 40, "Page 3 of 3", size=8, align="center")
    return [first, second, third]


RECEIPT_LINES = [
    ("center", "THE COPPER KETTLE"),
    ("center", "TEA ROOM & DELI"),
    ("center", "3 Bridge Street, Ashby Hollow"),
    ("center", "AH4 2PL"),
    ("center", "Tel: 01632 960 418"),
    ("center", "VAT No: GB 000 2222 33"),
    ("left", "-" * 38),
    ("left", "Date: 21/05/2025          Time: 14:37"),
    ("left", "Table: 6                Server: Elin"),
    ("left", "-" * 38),
    ("left", "2 x Cream tea                    13.90"),
    ("left", "1 x Smoked trout sandwich         7.25"),
    ("left", "1 x Ginger beer                   3.10"),
    ("left", "1 x Lemon drizzle (slice)         3.40"),
    ("left", "-" * 38),
    ("left", "SUBTOTAL                         27.65"),
    ("left", "Service (optional) 10%            2.77"),
    ("left", "TOTAL                            30.42"),
    ("left", "VISA CONTACTLESS                 30.42"),
    ("left", "  of which VAT 20%                5.07"),
    ("left", "-" * 38),
    ("center", "Thank you - come back soon!"),
]


def receipt_pages() -> list[Page]:
    page = Page("receipt: monospace lines padded with spaces", width=226.0, height=400.0)
    for index, (align, line) in enumerate(RECEIPT_LINES):
        font = COURIER_BOLD if index == 0 else COURIER
        x = page.width / 2 if align == "center" else 16.0
        page.text(x, 370 - 14.5 * index, line, font, 8, align=align)
    return [page]


@dataclass(frozen=True)
class Shop:
    name: str
    address: tuple[str, str]
    items: tuple[tuple[str, float], ...]


SHOPS = [
    Shop("GREENLEAF GROCERS", ("14 Market Place,", "Ashby Hollow AH4 1RT"),
         (("Milk 2L", 1.65), ("Sourdough loaf", 3.20), ("Apples 1kg", 2.40),
          ("Cheddar 400g", 4.10), ("Coffee beans 250g", 5.95), ("Oat biscuits", 1.85))),
    Shop("RIVERSIDE FUEL", ("A61 Riverside Road,", "Kettleby KB1 7HD"),
         (("Unleaded 32.4L", 47.90), ("Unleaded 28.1L", 41.55), ("Screen wash 5L", 6.50),
          ("Sandwich", 3.75))),
    Shop("BRAMBLE & CO STATIONERS", ("9 Chapel Lane,", "Wexcombe WX2 3NB"),
         (("A4 paper 500 sheets", 6.99), ("Box files x3", 8.25), ("Gel pens x10", 4.50),
          ("Printer toner", 39.00), ("Envelopes C5 x50", 5.20))),
    Shop("THE HOLLOW BAKEHOUSE", ("2 Mill Street,", "Ashby Hollow AH4 2QS"),
         (("Flat white", 3.10), ("Almond croissant", 2.95), ("Pasty", 4.20),
          ("Tea", 2.20), ("Cinnamon bun", 2.80))),
    Shop("NORTHWAY HARDWARE", ("Unit 7, Northway Retail Park,", "Kettleby KB4 9GA"),
         (("Wood screws 4x40", 3.49), ("Masking tape", 2.99), ("Extension lead 4m", 14.99),
          ("Sandpaper pack", 5.49), ("Padlock", 9.99))),
    Shop("PEAR TREE PHARMACY", ("31 High Street,", "Wexcombe WX1 5EE"),
         (("Plasters", 2.79), ("Hand gel 500ml", 4.49), ("Paracetamol 16", 0.89),
          ("Sun cream SPF30", 7.99))),
    Shop("STATION ROAD CAFE", ("1 Station Road,", "Linfield LF3 8AA"),
         (("Full breakfast", 9.50), ("Americano", 2.60), ("Orange juice", 2.40),
          ("Toasted teacake", 2.30))),
    Shop("HOLLIS BOOKS", ("22 Abbey Walk,", "Linfield LF1 2CC"),
         (("Road atlas 2025", 12.99), ("Notebook A5", 6.50), ("Paperback", 9.99))),
    Shop("QUAYSIDE PARKING", ("Quayside Car Park,", "Kettleby KB1 1QP"),
         (("Parking 2 hours", 4.40), ("Parking all day", 9.00), ("Parking 4 hours", 6.80))),
    Shop("ORCHARD TAXIS", ("5 Orchard Yard,", "Ashby Hollow AH4 3LT"),
         (("Fare, station to office", 11.50), ("Fare, office to hotel", 8.70),
          ("Waiting time", 3.00))),
]  # fmt: skip


def statement_receipts() -> list[dict[str, Any]]:
    """The 60 receipts of ``statement.pdf``, one a page, with the four fields of
    ``schemas/receipt.py:Receipt`` as printed (the address's two lines joined by a space).
    """
    rng = random.Random(4821)
    receipts = []
    day = dt.date(2025, 4, 1)
    for page in range(1, 61):
        day += dt.timedelta(days=rng.choice((0, 1, 1, 2)))
        shop = rng.choice(SHOPS)
        lines, cents = [], 0
        for name, price in rng.sample(shop.items, rng.randint(1, min(4, len(shop.items)))):
            quantity = 1 if price > 8 else rng.choice((1, 1, 2, 3))
            amount = round(quantity * price * 100)
            lines.append((quantity, name, f"{amount / 100:.2f}"))
            cents += amount
        total = cents / 100
        receipts.append(
            {
                "page": page,
                "company": shop.name,
                "address": " ".join(shop.address),
                "date": day.strftime("%d/%m/%Y"),
                "time": f"{rng.randint(7, 19):02d}:{rng.randint(0, 59):02d}",
                "number": f"{rng.randint(1000, 9999)}",
                "lines": lines,
                "total": f"{total:.2f}",
                "vat": f"{total / 6:.2f}",
            }
        )
    return receipts


def statement_pages() -> list[Page]:
    pages = []
    for receipt in statement_receipts():
        number_ = receipt["page"]
        page = Page("statement (60 pages): every word placed on its own")
        header = "Harbour Lane Consulting \xb7 expense statement, April to June 2025"
        page.text(56, 792, header, BOLD, 11, mode="words")
        page.text(539, 792, f"Receipt {number_} of 60", size=9, mode="words", align="right")
        page.text(56, 777, "Cardholder: R. Adeyemi \xb7 card ending 4821", size=9, mode="words")
        left, right, y = 170.0, 425.0, 700.0
        under = len(page.ops)  # the box goes under the receipt, once its height is known
        page.text(A4[0] / 2, y, receipt["company"], COURIER_BOLD, 11, mode="words", align="center")
        for line in next(shop.address for shop in SHOPS if shop.name == receipt["company"]):
            y -= 14
            page.text(A4[0] / 2, y, line, COURIER, 9.5, mode="words", align="center")
        date, time = f"Date: {receipt['date']}", f"Time: {receipt['time']}"
        items = [(f"{q} x {name}", amount) for q, name, amount in receipt["lines"]]
        totals = [("TOTAL", receipt["total"]), ("VAT 20% included", receipt["vat"])]
        cells = [
            [(left, date, "left"), (right, time, "right")],
            [(left, f"Receipt no: {receipt['number']}", "left")],
            *([(left, label, "left"), (right, value, "right")] for label, value in items),
            *([(left, label, "left"), (right, value, "right")] for label, value in totals),
            [(left, "CARD ****4821", "left"), (right, receipt["total"], "right")],
        ]
        y -= 28
        for index, row in enumerate(cells):
            gap = 26 if index in (2, len(cells) - 3) else 14
            y -= gap if index else 0
            page.row(y, row, COURIER, 9.5, mode="words")
            if index == len(cells) - 3:
                page.line(left, y + 15, right, y + 15)
        page.box(left - 14, y - 20, right - left + 28, 745 - y, gray=0.96)
        page.ops.insert(under, page.ops.pop())
        page.text(A4[0] / 2, 40, f"Page {number_} of 60", size=8, mode="words", align="center")
        pages.append(page)
    return pages


STATEMENT_LABELS = {"Nums": [0, {"S": Name("D"), "P": "S-"}]}


def pdf_samples() -> list[Sample]:
    """The sample PDFs with the text each page holds; quick (no file is written)."""
    made = [
        ("invoice.pdf", invoice_pages(), "Invoice FJ-2025-0412", None),
        ("letter.pdf", letter_pages(), "Condition survey of 27 Alder Row", None),
        ("receipt.pdf", receipt_pages(), "The Copper Kettle, receipt", None),
        ("statement.pdf", statement_pages(), "Expense statement Q2 2025", STATEMENT_LABELS),
    ]
    return [
        Sample(name, pages, render(pages, title, labels=labels))
        for name, pages, title, labels in made
    ]


# --- hostile files ------------------------------------------------------------------


def scanned_pdf() -> bytes:
    """A receipt as a scanner makes it: one grey image with dark word-shaped marks, specks
    of dust, and no text layer at all."""
    rng = random.Random(7)
    width, height = 180, 320
    pixels = bytearray([236]) * (width * height)
    for top in range(24, height - 20, 11):
        x = rng.randint(14, 40)
        while x < width - 24:
            end = min(x + rng.randint(8, 34), width - 16)
            for row in range(top, top + 6):
                pixels[row * width + x : row * width + end] = b"\x30" * (end - x)
            x = end + rng.randint(5, 9)
    for _ in range(width * height // 40):
        pixels[rng.randrange(len(pixels))] = rng.randint(150, 220)
    image = deflated(
        bytes(pixels),
        Type=Name("XObject"),
        Subtype=Name("Image"),
        Width=width,
        Height=height,
        ColorSpace=Name("DeviceGray"),
        BitsPerComponent=8,
    )
    page = Page("scan")
    page.image("Im1", image, 148, 160, 300, 533)
    return render([page], "Scanned receipt")


def flate_bomb_pdf() -> bytes:
    """A page whose 2 kB content stream inflates, through two Flate filters, to 256 MiB:
    one line of text, then 64 Mi empty ``q Q`` operations."""
    pdf = Pdf()
    catalog, tree = pdf.add(None), pdf.add(None)
    ops = b"BT /F1 12 Tf 72 720 Td (Boom) Tj ET\n" + b"q Q\n" * (64 << 20)
    filters = [Name("FlateDecode"), Name("FlateDecode")]
    content = pdf.add(Stream({"Filter": filters}, zlib.compress(zlib.compress(ops, 9), 9)))
    page = pdf.add({"Type": Name("Page"), "Parent": tree, "MediaBox": [0, 0, 595, 842],
                    "Resources": {"Font": {"F1": HELVETICA.resource()}},
                    "Contents": content})  # fmt: skip
    pdf.put(tree, {"Type": Name("Pages"), "Kids": [page], "Count": 1})
    pdf.put(catalog, {"Type": Name("Catalog"), "Pages": tree})
    return pdf.to_bytes(catalog)


def page_cycle_pdf() -> bytes:
    """A page tree whose inner node lists its own parent among its kids."""
    pdf = Pdf()
    catalog, tree, inner = pdf.add(None), pdf.add(None), pdf.add(None)
    content = pdf.add(deflated(b"BT /F1 12 Tf 72 720 Td (Round and round) Tj ET"))
    fonts = {"F1": {"Type": Name("Font"), "Subtype": Name("Type1"), "BaseFont": Name("Helvetica")}}
    page = pdf.add({"Type": Name("Page"), "Parent": inner, "MediaBox": [0, 0, 595, 842],
                    "Resources": {"Font": fonts}, "Contents": content})  # fmt: skip
    pdf.put(tree, {"Type": Name("Pages"), "Kids": [inner], "Count": 2})
    pdf.put(inner, {"Type": Name("Pages"), "Parent": tree, "Kids": [page, tree], "Count": 2})
    pdf.put(catalog, {"Type": Name("Catalog"), "Pages": tree})
    return pdf.to_bytes(catalog)


def nested_pdf() -> bytes:
    """A page whose dictionary holds an array nested 20,000 deep (recursive parsers)."""
    pdf = Pdf()
    catalog, tree = pdf.add(None), pdf.add(None)
    content = pdf.add(deflated(b"BT /F1 12 Tf 72 720 Td (Deep) Tj ET"))
    page = pdf.add({"Type": Name("Page"), "Parent": tree, "MediaBox": [0, 0, 595, 842],
                    "Resources": {}, "Contents": content,
                    "Deep": Raw(b"[" * 20000 + b"]" * 20000)})  # fmt: skip
    pdf.put(tree, {"Type": Name("Pages"), "Kids": [page], "Count": 1})
    pdf.put(catalog, {"Type": Name("Catalog"), "Pages": tree})
    return pdf.to_bytes(catalog)


DOCX_TYPES = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
    '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.'
    'relationships+xml"/><Default Extension="xml" ContentType="application/xml"/>'
    '<Override PartName="/word/document.xml" ContentType="application/vnd.openxmlformats-'
    'officedocument.wordprocessingml.document.main+xml"/>{extra}</Types>'
)
DOCX_RELS = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
    '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/'
    'relationships/officeDocument" Target="word/document.xml"/>{extra}</Relationships>'
)
W_NS = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"
ZIP_TIME = (2025, 6, 9, 12, 0, 0)


def zip_member(archive: zipfile.ZipFile, name: str, data: bytes | str, method: int) -> None:
    info = zipfile.ZipInfo(name, ZIP_TIME)
    info.compress_type = method
    info.external_attr = 0o644 << 16
    archive.writestr(info, data, compresslevel=9)


def zip_bomb(method: int, size: int) -> bytes:
    """A DOCX whose document.xml is ``size`` bytes of one text run: tiny on disk."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        zip_member(archive, "[Content_Types].xml", DOCX_TYPES.format(extra=""), 8)
        zip_member(archive, "_rels/.rels", DOCX_RELS.format(extra=""), 8)
        head = f'<?xml version="1.0"?><w:document xmlns:w="{W_NS}"><w:body><w:p><w:r><w:t>'
        tail = "</w:t></w:r></w:p></w:body></w:document>"
        info = zipfile.ZipInfo("word/document.xml", ZIP_TIME)
        info.compress_type = method
        info.external_attr = 0o644 << 16
        chunk = b"A" * (1 << 24)
        with archive.open(info, "w") as member:
            member.write(head.encode())
            for _ in range(size // len(chunk)):
                member.write(chunk)
            member.write(tail.encode())
    return buffer.getvalue()


def hostile_files(samples: list[Sample]) -> Iterator[tuple[str, bytes]]:
    """The files of ``tests/data/documents/`` (the zip bombs take some seconds)."""
    by_name = {sample.name: sample for sample in samples}
    receipt, invoice = by_name["receipt.pdf"], by_name["invoice.pdf"]
    locked = Rc4Security(ENCRYPTED_PASSWORD, "owner", hashlib.md5(b"encrypted").digest(), -3904)
    yield "encrypted.pdf", render(receipt.pages, "Locked receipt", locked)
    open_ = Rc4Security("", "owner", hashlib.md5(b"restricted").digest(), -3904)
    yield "encrypted-empty-password.pdf", render(invoice.pages, "Restricted invoice", open_)
    letter = by_name["letter.pdf"].data
    yield "truncated.pdf", letter[: len(letter) * 3 // 4]  # cut inside page 3
    yield "scanned.pdf", scanned_pdf()
    yield "random.pdf", random.Random(1).randbytes(16384)
    yield "random-after-header.pdf", b"%PDF-1.7\n" + random.Random(2).randbytes(16384)
    yield "page-cycle.pdf", page_cycle_pdf()
    yield "nested-arrays.pdf", nested_pdf()
    yield "flate-bomb.pdf", flate_bomb_pdf()
    yield "zip-bomb.docx", zip_bomb(zipfile.ZIP_BZIP2, 1 << 30)
    yield "zip-bomb-deflate.docx", zip_bomb(zipfile.ZIP_DEFLATED, 128 << 20)


# --- the Word document and the web page ---------------------------------------------------


def w_paragraph(*runs: str, style: str | None = None) -> str:
    """A DOCX paragraph; each run is text, or raw run content (a tab, a break) in <>."""
    props = f'<w:pPr><w:pStyle w:val="{style}"/></w:pPr>' if style else ""
    body = "".join(
        f"<w:r>{run}</w:r>" if run.startswith("<") else
        f'<w:r><w:t xml:space="preserve">{escape(run)}</w:t></w:r>' for run in runs if run
    )  # fmt: skip
    return f"<w:p>{props}{body}</w:p>"


def w_table(rows: list[tuple[str, ...]]) -> str:
    cells = (
        "".join(f"<w:tc><w:tcPr><w:tcW w:w=\"0\" w:type=\"auto\"/></w:tcPr>"
                f"{w_paragraph(cell)}</w:tc>" for cell in row) for row in rows
    )  # fmt: skip
    grid = '<w:tblPr><w:tblStyle w:val="TableGrid"/><w:tblW w:w="0" w:type="auto"/></w:tblPr>'
    return f"<w:tbl>{grid}" + "".join(f"<w:tr>{row}</w:tr>" for row in cells) + "</w:tbl>"


PURCHASE_ORDER = [
    w_paragraph("Purchase order KCT-PO-0093", style="Title"),
    w_paragraph("Kettleby Community Theatre, 40 Playhouse Lane, Kettleby KB2 6RR"),
    w_paragraph("Order date:", "<w:tab/>", "3 February 2025"),
    w_paragraph("Supplier", style="Heading1"),
    w_paragraph(
        "Fernhill Joinery Ltd",
        "<w:br/>",
        "Unit 4, Quarry Road Trading Estate",
        "<w:br/>",
        "Penrith CA11 9XR",
    ),
    w_paragraph("Items", style="Heading1"),
    w_table(
        [
            ("Item", "Qty", "Unit price (GBP)", "Total (GBP)"),
            ("Stage flats, 2.4 m x 1.2 m, primed", "8", "95.00", "760.00"),
            ("Treads for stage steps, oak", "6", "38.50", "231.00"),
            ("Scaffold tower hire, one week", "1", "120.00", "120.00"),
            ("Order total", "", "", "1,111.00"),
        ]
    ),
    w_paragraph("Delivery", style="Heading1"),
    # Word splits runs wherever editing history or spell-checking did: mid-word too.
    w_paragraph(
        "Deliver to the stage door at the rear of the building between 9:00 and "
        "12:00 on 17 February 2025, and ask for the sta",
        "ge manager. Unload on the loading bay only; the car park is for visitors.",
    ),
    w_paragraph("Terms", style="Heading1"),
    w_paragraph(
        "Payment 30 days from receipt of a correct invoice quoting the order "
        "number above. Goods remain at the supplier's risk until delivered."
    ),
    w_paragraph("Contact", style="Heading1"),
    w_paragraph(
        "Questions about this order: Imogen Farrow, production manager, "
        "imogen.farrow@kettleby-theatre.example, 01632 960 281."
    ),
]
DOCX_STYLES = "".join(
    f'<w:style w:type="paragraph" w:styleId="{style_id}"><w:name w:val="{name}"/>'
    f'<w:basedOn w:val="Normal"/><w:pPr><w:outlineLvl w:val="{level}"/></w:pPr>'
    f'<w:rPr><w:b/><w:sz w:val="{size}"/></w:rPr></w:style>'
    for style_id, name, level, size in [("Title", "Title", 0, 40), ("Heading1", "heading 1", 0, 28)]
)


def docx_sample() -> bytes:
    """A purchase order as Word writes one: styles, a header, a table, runs split mid-word."""
    ns = f'xmlns:w="{W_NS}" xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships"'
    section = (
        '<w:sectPr><w:headerReference w:type="default" r:id="rId2"/>'
        '<w:pgSz w:w="11906" w:h="16838"/></w:sectPr>'
    )
    document = (
        f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<w:document {ns}>'
        f"<w:body>{''.join(PURCHASE_ORDER)}{section}</w:body></w:document>"
    )
    rel = "http://schemas.openxmlformats.org/officeDocument/2006/relationships/"
    main = "application/vnd.openxmlformats-officedocument.wordprocessingml."
    parts = {
        "[Content_Types].xml": DOCX_TYPES.format(
            extra=f'<Override PartName="/word/styles.xml" ContentType="{main}styles+xml"/>'
            f'<Override PartName="/word/header1.xml" ContentType="{main}header+xml"/>'
            '<Override PartName="/docProps/core.xml" ContentType="application/vnd.'
            'openxmlformats-package.core-properties+xml"/>'
        ),
        "_rels/.rels": DOCX_RELS.format(
            extra='<Relationship Id="rId2" Type="http://schemas.openxmlformats.org/package/'
            '2006/relationships/metadata/core-properties" Target="docProps/core.xml"/>'
        ),
        "docProps/core.xml": (
            '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<cp:coreProperties '
            'xmlns:cp="http://schemas.openxmlformats.org/package/2006/metadata/core-properties"'
            ' xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:title>Purchase order '
            "KCT-PO-0093</dc:title><dc:creator>Imogen Farrow</dc:creator></cp:coreProperties>"
        ),
        "word/_rels/document.xml.rels": (
            '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<Relationships xmlns='
            '"http://schemas.openxmlformats.org/package/2006/relationships">'
            f'<Relationship Id="rId1" Type="{rel}styles" Target="styles.xml"/>'
            f'<Relationship Id="rId2" Type="{rel}header" Target="header1.xml"/></Relationships>'
        ),
        "word/document.xml": document,
        "word/styles.xml": (
            f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<w:styles xmlns:w="{W_NS}">'
            '<w:style w:type="paragraph" w:default="1" w:styleId="Normal"><w:name w:val="Normal"/>'
            f"</w:style>{DOCX_STYLES}</w:styles>"
        ),
        "word/header1.xml": (
            f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<w:hdr {ns}>'
            + w_paragraph("Kettleby Community Theatre \u2014 purchase order")
            + "</w:hdr>"
        ),
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, text in parts.items():
            zip_member(archive, name, text, zipfile.ZIP_DEFLATED)
    return buffer.getvalue()


HTML_PAGE = """\
<!doctype html>
<html lang="en-GB">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Alder Row community orchard wins county grant | Kettleby Gazette</title>
<link rel="stylesheet" href="/static/site.css">
<style>
  body { font-family: Georgia, serif; margin: 0 }
  .site-header nav ul { display: flex; gap: 1rem; list-style: none }
  .cookie-banner { position: fixed; bottom: 0; background: #222; color: #fff }
</style>
<script>
  window.dataLayer = window.dataLayer || [];
  function gtag() { dataLayer.push(arguments); }
  gtag("js", new Date()); gtag("config", "G-EXAMPLE0000");
</script>
<script type="application/ld+json">
{"@context": "https://schema.org", "@type": "NewsArticle",
 "headline": "Alder Row community orchard wins county grant",
 "datePublished": "2025-06-12", "author": {"@type": "Person", "name": "Sam Okonjo"}}
</script>
</head>
<body>
<div class="cookie-banner" role="dialog" aria-label="Cookies">
  We use cookies to understand how our readers use this site and to show you relevant
  adverts. <button>Accept all</button> <button>Manage settings</button>
</div>
<header class="site-header">
  <a class="logo" href="/">Kettleby Gazette</a>
  <nav aria-label="Main">
    <ul>
      <li><a href="/news/">News</a></li>
      <li><a href="/sport/">Sport</a></li>
      <li><a href="/whats-on/">What&rsquo;s on</a></li>
      <li><a href="/property/">Property</a></li>
      <li><a href="/jobs/">Jobs</a></li>
      <li><a href="/subscribe/">Subscribe</a></li>
    </ul>
  </nav>
  <form role="search" action="/search"><input name="q" placeholder="Search the Gazette">
  <button>Search</button></form>
</header>
<nav class="breadcrumbs" aria-label="Breadcrumb"><a href="/">Home</a> &rsaquo;
<a href="/news/">News</a> &rsaquo; <a href="/news/community/">Community</a></nav>
<main>
<article>
  <h1>Alder Row community orchard wins county grant</h1>
  <p class="byline">By <a rel="author" href="/staff/sam-okonjo">Sam Okonjo</a>, community
  reporter &middot; <time datetime="2025-06-12">12 June 2025</time></p>
  <figure>
    <img src="/images/2025/06/orchard.jpg" alt="Volunteers planting apple trees">
    <figcaption>Volunteers planted the first forty trees in March.</figcaption>
  </figure>
  <p>The community orchard on the old allotments behind Alder Row has been awarded
  &pound;18,500 by the county&rsquo;s green spaces fund, enough to finish the paths, build
  a tool store and plant another sixty fruit trees this winter.</p>
  <p>The orchard was started two years ago by residents who wanted to save the site from
  becoming a car park. It now has more than a hundred volunteers, a waiting list for its
  pruning workshops and, this autumn, its first proper harvest.</p>
  <!-- advert slot: mid-article -->
  <div class="ad" data-slot="mid-article">Advertisement</div>
  <p>&ldquo;We applied because the paths turn to mud every November and people with
  pushchairs or wheelchairs simply can&rsquo;t get in,&rdquo; said Priya Natarajan, the
  orchard&rsquo;s coordinator. &ldquo;Now everyone will be able to visit all year.&rdquo;</p>
  <h2>What the money will pay for</h2>
  <table>
    <thead><tr><th>Item</th><th>Amount</th></tr></thead>
    <tbody>
      <tr><td>All-weather paths</td><td>&pound;9,800</td></tr>
      <tr><td>Tool store and water butts</td><td>&pound;4,200</td></tr>
      <tr><td>Sixty heritage fruit trees</td><td>&pound;3,300</td></tr>
      <tr><td>Signs and benches</td><td>&pound;1,200</td></tr>
    </tbody>
  </table>
  <h2>How to get involved</h2>
  <p>Planting days run on Saturday mornings from November to February. To volunteer,
  contact the orchard coordinator, Priya Natarajan, at
  <a href="mailto:priya@alderrow-orchard.example">priya@alderrow-orchard.example</a> or on
  01632&nbsp;960&nbsp;552.</p>
</article>
<aside class="related">
  <h2>Related stories</h2>
  <ul>
    <li><a href="/news/community/allotment-rents">Allotment rents to rise by 4%</a></li>
    <li><a href="/news/community/library-hours">Library opening hours extended</a></li>
  </ul>
</aside>
<section class="newsletter">
  <h2>Get the Gazette in your inbox</h2>
  <form action="/newsletter"><input type="email" placeholder="Your email">
  <button>Sign up</button></form>
</section>
</main>
<footer class="site-footer">
  <p>&copy; 2025 Kettleby Gazette. <a href="/about">About us</a> &middot;
  <a href="/contact">Contact</a> &middot; <a href="/privacy">Privacy</a> &middot;
  <a href="/terms">Terms</a></p>
</footer>
<script src="/static/app.js" defer></script>
<script>
  document.querySelectorAll(".cookie-banner button").forEach(function (button) {
    button.addEventListener("click", function () { button.parentNode.remove(); });
  });
</script>
</body>
</html>
"""


def html_sample() -> bytes:
    """A local news article inside a page's menus, banners, forms and scripts."""
    return HTML_PAGE.encode()


def files() -> Iterator[tuple[Path, bytes]]:
    """Every generated file, with its path: what the script writes or checks."""
    samples = pdf_samples()
    for sample in samples:
        yield PDF_DIR / sample.name, sample.data
    yield DOC_DIR / "purchase-order.docx", docx_sample()
    yield DOC_DIR / "orchard-news.html", html_sample()
    for name, data in hostile_files(samples):
        yield HOSTILE_DIR / name, data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="compare, don't write")
    args = parser.parse_args(argv)
    stale = []
    for path, data in files():
        relative = path.relative_to(ROOT)
        if args.check:
            if not path.exists() or path.read_bytes() != data:
                stale.append(str(relative))
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        print(f"{relative}: {len(data):,} bytes")
    if stale:
        print("stale (run python samples/make_pdfs.py):", ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
