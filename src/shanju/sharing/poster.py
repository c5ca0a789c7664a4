"""The share poster: a PNG made on the server (Pillow) with the project's title, its cover if it
has one, the donor's masked name and a QR code (segno) that opens the project.

Pure drawing: no database, no request. :func:`render_poster` takes what it draws and returns
PNG bytes of :data:`SIZE`; ``sharing/service.py`` gathers the inputs (and caches the result).

Fonts: Chinese needs a CJK font. The first of these that exists is used —
``settings.poster_font`` (``SHANJU_POSTER_FONT``), then Debian's ``fonts-noto-cjk`` (Noto Sans
CJK SC), then WenQuanYi Zen Hei and Droid Sans Fallback. Without any, Pillow's built-in font
draws the poster (the QR code and Latin text are right; Chinese characters show as boxes) and
a warning is logged once: install ``fonts-noto-cjk`` (ADR 0035, docs/sharing.md).
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import segno
import structlog
from PIL import Image, ImageDraw, ImageFont, ImageOps

log = structlog.get_logger(__name__)

SIZE = (750, 1200)  # a phone-sized poster (WeChat's usual 750-px width)
COVER_SIZE = (750, 422)  # 16:9
QR_BOX = 280  # pixels the QR code (with its quiet zone) fits in
MARGIN = 48
RED = (214, 52, 58)
INK = (31, 41, 55)
MUTED = (107, 114, 128)
PAPER = (255, 255, 255)
BAND = (253, 242, 242)

# (path, face family to pick from a collection) — the first that exists wins.
NOTO_DIR = Path("/usr/share/fonts/opentype/noto")
WQY = Path("/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc")
DROID = Path("/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf")
FONT_CANDIDATES: tuple[tuple[Path, Path], ...] = (
    (NOTO_DIR / "NotoSansCJK-Regular.ttc", NOTO_DIR / "NotoSansCJK-Bold.ttc"),
    (WQY, WQY),
    (DROID, DROID),
)
FACE_SUFFIX = " SC"  # in a CJK collection, the Simplified Chinese face

Font = ImageFont.FreeTypeFont | ImageFont.ImageFont


@dataclass(frozen=True)
class PosterText:
    """The words on a poster, already in the reader's language."""

    title: str
    summary: str
    donor_line: str  # "张** gave to this project" (or an invitation without a donor)
    call: str  # "Scan to give together"
    scan_hint: str  # "Long-press or scan the QR code"
    brand: str  # the platform's name


def _face_index(path: Path) -> int:
    """The index of the Simplified Chinese face in a font collection (0 otherwise)."""
    if path.suffix.lower() != ".ttc":
        return 0
    for index in range(12):
        try:
            family = ImageFont.truetype(str(path), 12, index=index).getname()[0] or ""
        except OSError:
            break
        if family.endswith(FACE_SUFFIX):
            return index
    return 0


@lru_cache(maxsize=8)
def font_files(configured: str = "") -> tuple[tuple[Path, int], tuple[Path, int]] | None:
    """The (regular, bold) font files and face indexes the poster uses, or None (fallback)."""
    candidates: list[tuple[Path, Path]] = []
    if configured:
        candidates.append((Path(configured), Path(configured)))
    candidates.extend(FONT_CANDIDATES)
    for regular, bold in candidates:
        if regular.is_file():
            bold = bold if bold.is_file() else regular
            return (regular, _face_index(regular)), (bold, _face_index(bold))
    log.warning("sharing.poster.no_cjk_font",
                hint="apt-get install fonts-noto-cjk, or set SHANJU_POSTER_FONT")
    return None


@lru_cache(maxsize=32)
def _font(size: int, bold: bool, configured: str) -> Font:
    files = font_files(configured)
    if files is None:
        return ImageFont.load_default(size=size)
    path, index = files[1] if bold else files[0]
    return ImageFont.truetype(str(path), size, index=index)


def _wrap(draw: ImageDraw.ImageDraw, text: str, font: Font, width: int,
          max_lines: int) -> list[str]:
    """Break ``text`` into lines no wider than ``width`` (character by character, as Chinese
    is written), at most ``max_lines``, the last one cut with an ellipsis."""
    lines: list[str] = []
    current = ""
    for char in text.replace("\n", " "):
        if draw.textlength(current + char, font=font) <= width:
            current += char
            continue
        lines.append(current)
        current = char.lstrip()
        if len(lines) == max_lines:
            break
    else:
        if current:
            lines.append(current)
        return lines
    last = lines[-1]
    while last and draw.textlength(last + "…", font=font) > width:
        last = last[:-1]
    lines[-1] = last + "…"
    return lines


def qr_image(url: str, box: int = QR_BOX) -> Image.Image:
    """The QR code of ``url`` (error correction M, a 4-module quiet zone) as an image that
    fits in ``box`` pixels with whole-pixel modules."""
    qr = segno.make(url, error="m")
    border = 4
    modules = qr.symbol_size(scale=1, border=border)[0]
    scale = max(1, box // modules)
    buffer = io.BytesIO()
    qr.save(buffer, kind="png", scale=scale, border=border, dark="#000000", light="#ffffff")
    buffer.seek(0)
    with Image.open(buffer) as image:
        return image.convert("RGB")


def open_cover(data: bytes | None) -> Image.Image | None:
    """The cover cropped to :data:`COVER_SIZE`, or None when there is none or it cannot be
    read (never an error: the poster is drawn without it)."""
    if not data:
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                image.draft("RGB", (COVER_SIZE[0] * 2, COVER_SIZE[1] * 2))
                upright = ImageOps.exif_transpose(image) or image
                return ImageOps.fit(upright.convert("RGB"), COVER_SIZE,
                                    method=Image.Resampling.LANCZOS)
    except (OSError, ValueError, Image.DecompressionBombError, Image.DecompressionBombWarning):
        log.warning("sharing.poster.cover_unreadable", size=len(data))
        return None


def render_poster(*, text: PosterText, url: str, cover: bytes | None = None,
                  font: str = "") -> bytes:
    """Draw the poster: cover (or a band with the platform's name), title, donor line, QR code
    of ``url`` with the call to give; return it as PNG bytes of :data:`SIZE`."""
    width, height = SIZE
    poster = Image.new("RGB", SIZE, PAPER)
    draw = ImageDraw.Draw(poster)
    picture = open_cover(cover)
    if picture is not None:
        poster.paste(picture, (0, 0))
        top = COVER_SIZE[1]
    else:
        # HOOK (issue 14, pictures): a project without a cover gets this band; once covers
        # exist they are passed in as ``cover`` by sharing.service.poster_cover.
        top = 300
        draw.rectangle((0, 0, width, top), fill=BAND)
        brand_font = _font(96, True, font)
        draw.text((width // 2, top // 2), text.brand, font=brand_font, fill=RED, anchor="mm")
    qr = qr_image(url)
    qr_top = height - MARGIN - 60 - qr.height
    # The donor's line just above the QR code; the title and summary fill what is above it.
    donor_font = _font(32, True, font)
    donor_lines = _wrap(draw, text.donor_line, donor_font, width - 2 * MARGIN, 2)
    donor_top = qr_top - 24 - 46 * len(donor_lines)
    y = top + 40
    title_font = _font(44, True, font)
    title_room = max(1, min(3, (donor_top - 24 - y) // 60))
    for line in _wrap(draw, text.title, title_font, width - 2 * MARGIN, title_room):
        draw.text((MARGIN, y), line, font=title_font, fill=INK)
        y += 60
    summary_font = _font(28, False, font)
    summary_room = min(3, (donor_top - 24 - y) // 40)
    if summary_room > 0:
        for line in _wrap(draw, text.summary, summary_font, width - 2 * MARGIN, summary_room):
            draw.text((MARGIN, y), line, font=summary_font, fill=MUTED)
            y += 40
    for n, line in enumerate(donor_lines):
        draw.text((MARGIN, donor_top + 46 * n), line, font=donor_font, fill=INK)
    # The QR code and its call, in the lower part of the poster.
    qr_left = MARGIN
    poster.paste(qr, (qr_left, qr_top))
    call_font = _font(38, True, font)
    hint_font = _font(26, False, font)
    text_left = qr_left + qr.width + 32
    text_width = width - MARGIN - text_left
    call_y = qr_top + 60
    for line in _wrap(draw, text.call, call_font, text_width, 2):
        draw.text((text_left, call_y), line, font=call_font, fill=RED)
        call_y += 52
    for line in _wrap(draw, text.scan_hint, hint_font, text_width, 3):
        draw.text((text_left, call_y + 8), line, font=hint_font, fill=MUTED)
        call_y += 36
    draw.line((MARGIN, height - MARGIN - 30, width - MARGIN, height - MARGIN - 30),
              fill=BAND, width=2)
    draw.text((width // 2, height - MARGIN), text.brand, font=_font(24, False, font),
              fill=MUTED, anchor="mb")
    out = io.BytesIO()
    poster.save(out, format="PNG")
    return out.getvalue()

