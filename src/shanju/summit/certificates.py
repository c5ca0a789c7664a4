"""Attendance certificates (参会证明) as PDF, with Chinese text.

Written with fpdf2 (ADR 0015), which embeds a subset of a CJK font found on the machine:
Noto Sans CJK SC from Debian's ``fonts-noto-cjk`` (a ``.ttc`` collection with CFF outlines)
or any other font fontconfig says covers Simplified Chinese. The PDF then shows the same
everywhere and stays small (only the glyphs used, a few KiB).

If the machine has no CJK font at all, the certificate is still produced, by a tiny writer
of our own (:func:`_cid_pdf`) that names Adobe's standard Chinese font ``STSong-Light`` without
embedding it (as ReportLab's built-in CID fonts do): readers substitute a Song typeface (Adobe
Reader, pdf.js, Preview and Chrome all have one), the text can be searched and copied, but
the look depends on the reader. :func:`font_status` says which way this machine goes.
"""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
import zlib
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path

from fpdf import FPDF

from shanju.core.clock import CHINA_TZ
from shanju.core.i18n import N_, translate

KNOWN_FONTS: tuple[tuple[str, int], ...] = (
    # (path, index in the collection): Debian/Ubuntu, Fedora, Arch; then other CJK fonts.
    ("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc", 2),  # 2: Noto Sans CJK SC
    ("/usr/share/fonts/google-noto-cjk/NotoSansCJK-Regular.ttc", 2),
    ("/usr/share/fonts/noto-cjk/NotoSansCJK-Regular.ttc", 2),
    ("/usr/share/fonts/opentype/noto/NotoSerifCJK-Regular.ttc", 2),
    ("/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc", 0),
    ("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc", 0),
    ("/usr/share/fonts/truetype/arphic/uming.ttc", 0),
)


@dataclass(frozen=True)
class FontFile:
    path: str
    index: int


@cache
def find_cjk_font() -> FontFile | None:
    """A font file on this machine with Simplified Chinese glyphs, or None."""
    for path, index in KNOWN_FONTS:
        if Path(path).is_file():
            return FontFile(path, index)
    fc_list = shutil.which("fc-list")
    if fc_list is None:
        return None
    try:
        out = subprocess.run(  # noqa: S603 - a fixed program and arguments
            [fc_list, ":lang=zh-cn", "file", "index", "style"],
            capture_output=True, text=True, timeout=10, check=False,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    found: list[tuple[int, FontFile]] = []
    for line in out.splitlines():
        # "/path/font.ttc: :index=2:style=Regular"
        path, _, rest = line.partition(": ")
        fields = dict(part.split("=", 1) for part in rest.split(":") if "=" in part)
        if not path.lower().endswith((".ttf", ".otf", ".ttc", ".otc")):
            continue
        index = int(fields.get("index", "0") or 0)
        regular = "regular" in fields.get("style", "").lower()
        found.append((0 if regular else 1, FontFile(path, index)))
    return min(found, key=lambda item: (item[0], item[1].path))[1] if found else None


def font_status() -> str:
    """Which font certificates use here (for docs, logs and tests)."""
    font = find_cjk_font()
    return f"embedded: {font.path}#{font.index}" if font else "STSong-Light (not embedded)"


@dataclass(frozen=True)
class SessionLine:
    title: str
    starts_at: dt.datetime
    seconds: int


@dataclass(frozen=True)
class Certificate:
    number: str  # e.g. "ciis-2026-00042"
    summit_title: str
    summit_title_en: str | None
    starts_on: dt.date
    ends_on: dt.date
    person: str
    organization: str | None
    sessions: tuple[SessionLine, ...]
    issued_on: dt.date


def _minutes(seconds: int) -> int:
    return (seconds + 30) // 60


@dataclass(frozen=True)
class _Line:
    text: str
    size: float
    center: bool = False
    gap: float = 2.0  # mm after the line


def _lines(cert: Certificate, locale: str) -> list[_Line]:
    def t(msgid: str, **params: object) -> str:
        return translate(locale, msgid, params)

    title = cert.summit_title
    if locale != "zh_CN" and cert.summit_title_en:
        title = f"{cert.summit_title_en} · {cert.summit_title}"
    period = f"{cert.starts_on:%Y-%m-%d}" if cert.starts_on == cert.ends_on else \
        f"{cert.starts_on:%Y-%m-%d} – {cert.ends_on:%Y-%m-%d}"
    total = sum(_minutes(s.seconds) for s in cert.sessions)
    lines = [
        _Line(t(N_("Certificate of attendance")), 24, center=True, gap=8),
        _Line(title, 15, center=True, gap=1),
        _Line(period, 11, center=True, gap=10),
        _Line(t(N_("This certifies that %(person)s attended the summit online."),
                person=cert.person), 12, gap=2),
    ]
    if cert.organization:
        lines.append(_Line(t(N_("Delegation: %(organization)s"),
                             organization=cert.organization), 12, gap=2))
    lines.append(_Line(t(N_("Sessions attended: %(n)s · %(minutes)s minutes in all"),
                         n=len(cert.sessions), minutes=total), 12, gap=6))
    for s in cert.sessions:
        when = s.starts_at.astimezone(CHINA_TZ).strftime("%m-%d %H:%M")
        lines.append(_Line(t(N_("%(when)s  %(title)s — %(minutes)s min"), when=when,
                             title=s.title, minutes=_minutes(s.seconds)), 10.5, gap=1.5))
    lines.append(_Line(t(N_("Certificate number: %(number)s"), number=cert.number), 9,
                       gap=1))
    lines.append(_Line(t(N_("Issued on %(date)s by the summit's organizers on Shanju."),
                         date=f"{cert.issued_on:%Y-%m-%d}"), 9))
    lines[-3] = _Line(lines[-3].text, lines[-3].size, gap=10)  # space before the footer
    return lines


@lru_cache(maxsize=256)
def render(cert: Certificate, *, locale: str = "zh_CN") -> bytes:
    """The certificate as a one- or more-page A4 PDF.

    Embedding a subset of Noto Sans CJK costs ~0.4 s of CPU (fontTools parses the collection
    and subsets its CFF outlines; measured on the idle 2-core machine, seconds when it is
    busy), so the last certificates rendered are kept in memory: a person downloading theirs
    again costs nothing."""
    lines = _lines(cert, locale)
    font = find_cjk_font()
    if font is None:
        return _cid_pdf(lines, title=cert.summit_title)
    return _fpdf(lines, font, title=cert.summit_title)


def _fpdf(lines: list[_Line], font: FontFile, *, title: str) -> bytes:
    pdf = FPDF(format="A4")
    pdf.set_creator("Shanju")
    pdf.set_title(title)
    pdf.set_margins(20, 25, 20)
    pdf.set_auto_page_break(auto=True, margin=20)
    pdf.add_font("cjk", "", font.path, collection_font_number=font.index)
    pdf.add_page()
    pdf.set_draw_color(192, 57, 43)
    pdf.set_line_width(0.8)
    pdf.rect(10, 10, pdf.w - 20, pdf.h - 20)
    for line in lines:
        pdf.set_font("cjk", size=line.size)
        height = line.size * 0.5
        pdf.multi_cell(0, height, line.text, align="C" if line.center else "L",
                       new_x="LMARGIN", new_y="NEXT")
        pdf.ln(line.gap)
    return bytes(pdf.output())


# --- the fallback: a minimal PDF naming STSong-Light ---------------------------------------

_A4 = (595.28, 841.89)  # points
_MM = 72 / 25.4


def _width(text: str, size: float) -> float:
    """Approximate width in points: CJK full width, the rest half width."""
    return sum(size if ord(ch) > 0x2E7F else size / 2 for ch in text)


def _wrap(text: str, size: float, room: float) -> list[str]:
    out, current = [], ""
    for ch in text:
        if current and _width(current + ch, size) > room:
            out.append(current)
            current = ""
        current += ch
    return [*out, current]


def _cid_pdf(lines: list[_Line], *, title: str) -> bytes:
    """A PDF of ``lines`` in the non-embedded Adobe-GB1 font STSong-Light (UTF-16 text)."""
    width, height = _A4
    left, room = 20 * _MM, width - 40 * _MM
    pages: list[list[str]] = [[]]
    y = height - 25 * _MM
    for line in lines:
        for part in _wrap(line.text, line.size, room):
            if y < 25 * _MM:
                pages.append([])
                y = height - 25 * _MM
            y -= line.size * 1.4
            x = left + (room - _width(part, line.size)) / 2 if line.center else left
            hex_text = part.encode("utf-16-be").hex().upper()
            pages[-1].append(f"BT /F1 {line.size:.1f} Tf {x:.2f} {y:.2f} Td <{hex_text}> Tj ET")
        y -= line.gap * _MM
    objects: list[bytes] = []

    def add(body: bytes) -> int:
        objects.append(body)
        return len(objects)

    catalog = add(b"")  # filled in below
    pages_id = add(b"")
    descriptor = add(b"<< /Type /FontDescriptor /FontName /STSong-Light /Flags 6 "
                     b"/FontBBox [-25 -254 1000 880] /ItalicAngle 0 /Ascent 880 "
                     b"/Descent -120 /CapHeight 880 /StemV 93 >>")
    cid_font = add(b"<< /Type /Font /Subtype /CIDFontType0 /BaseFont /STSong-Light "
                   b"/CIDSystemInfo << /Registry (Adobe) /Ordering (GB1) /Supplement 4 >> "
                   b"/FontDescriptor %d 0 R /DW 1000 /W [1 95 500] >>" % descriptor)
    font = add(b"<< /Type /Font /Subtype /Type0 /BaseFont /STSong-Light "
               b"/Encoding /UniGB-UTF16-H /DescendantFonts [%d 0 R] >>" % cid_font)
    kids = []
    for ops in pages:
        content = zlib.compress("\n".join(ops).encode("ascii"))
        stream = add(b"<< /Length %d /Filter /FlateDecode >>\nstream\n%s\nendstream"
                     % (len(content), content))
        kids.append(add(b"<< /Type /Page /Parent %d 0 R /MediaBox [0 0 %.2f %.2f] "
                        b"/Resources << /Font << /F1 %d 0 R >> >> /Contents %d 0 R >>"
                        % (pages_id, width, height, font, stream)))
    objects[catalog - 1] = b"<< /Type /Catalog /Pages %d 0 R >>" % pages_id
    objects[pages_id - 1] = b"<< /Type /Pages /Kids [%s] /Count %d >>" % (
        b" ".join(b"%d 0 R" % k for k in kids), len(kids))
    info = add(b"<< /Producer (Shanju) /Title <FEFF%s> >>"
               % title.encode("utf-16-be").hex().upper().encode())
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for n, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (n, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % off for off in offsets)
    out += b"trailer\n<< /Size %d /Root %d 0 R /Info %d 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1, catalog, info, xref)
    return bytes(out)
