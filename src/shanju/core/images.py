"""Pictures (covers, galleries, progress photos): checked, cleaned and resized with Pillow.

An uploaded picture is never stored as it came. :func:`check_image` decodes it (JPEG, PNG or
WebP by its first bytes, at most :data:`MAX_PIXELS`), turns it upright by its EXIF
orientation, converts it to sRGB and re-encodes it as WebP at the widths of
:data:`WIDTHS` that it reaches (a 900 px photo gives 320, 640 and 900). Only the pixels are
kept: EXIF (GPS position, camera, time), XMP, comments and colour profiles are not written, so
no stored file says where or with what a photo was taken. A file that is not such an image,
is damaged, or has too many pixels (a decompression bomb) is refused before anything is
written.

Each variant is stored by content hash through :mod:`shanju.core.files`; the
:class:`~shanju.core.files.Attachment` row names the largest (what ``/files/{id}`` serves) and
one :class:`ImageVariant` row per width lets pages offer ``srcset``. See ADR 0031.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageCms, ImageOps
from sqlalchemy import BigInteger, ForeignKey, Integer, String, UniqueConstraint, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from shanju.core import audit, files
from shanju.core.clock import utcnow
from shanju.core.db import Base
from shanju.core.errors import InvalidInput
from shanju.core.files import Attachment
from shanju.core.i18n import N_
from shanju.core.text import check_text

# Widths a picture is stored at: a phone card (320), a phone's full width at 2x or a desktop
# card (640), a desktop hero (1280). Pages choose with srcset/sizes.
WIDTHS: tuple[int, ...] = (320, 640, 1280)
# Decoded size limit. A JPEG is decoded at a reduced scale (libjpeg's DCT scaling), so a
# 48-megapixel phone photo costs little; PNG and WebP decode in full: 40 MP is at most 160 MB
# of RGBA while it is resized.
MAX_PIXELS = 40_000_000
MAX_ALT_LENGTH = 200
CONTENT_TYPE = "image/webp"
WEBP_QUALITY = 80
WEBP_METHOD = 4  # libwebp's default effort: ~50 ms for a 1280 px photo here
_DECODERS = {"image/jpeg": ["JPEG"], "image/png": ["PNG"], "image/webp": ["WEBP"]}
_IMAGE_TYPES = (*_DECODERS, CONTENT_TYPE)


class ImageVariant(Base):
    """One stored width of a picture (an attachment whose bytes are the largest width)."""

    __tablename__ = "image_variants"
    __table_args__ = (UniqueConstraint("attachment_id", "width"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    attachment_id: Mapped[int] = mapped_column(ForeignKey("attachments.id"), index=True)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    content_type: Mapped[str] = mapped_column(String(100))
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


@dataclass(frozen=True)
class PreparedVariant:
    """One re-encoded width of a picture, not yet stored."""

    width: int
    height: int
    data: bytes

    @property
    def sha256(self) -> str:
        """The hex SHA-256 the bytes are stored under."""
        return hashlib.sha256(self.data).hexdigest()


@dataclass(frozen=True)
class PreparedImage:
    """A checked picture: its variants, smallest first, all WebP and free of metadata."""

    filename: str
    variants: tuple[PreparedVariant, ...]

    @property
    def largest(self) -> PreparedVariant:
        """The widest variant (what ``/files/{id}`` serves)."""
        return self.variants[-1]


@dataclass(frozen=True)
class Picture:
    """What a page needs to show a stored picture: its size, alt text and widths."""

    id: int
    width: int
    height: int
    alt: str
    widths: tuple[int, ...]

    @property
    def resized(self) -> bool:
        """Whether the picture was stored resized (an upload from before 0012 was not)."""
        return bool(self.widths)

    def src(self, width: int | None = None) -> str:
        """The address of the variant ``width`` (the largest without one)."""
        return f"/files/{self.id}" if width is None else f"/files/{self.id}?w={width}"

    @property
    def srcset(self) -> str:
        """The ``srcset`` attribute: every stored width."""
        return ", ".join(f"{self.src(w)} {w}w" for w in self.widths)

    def src_for(self, width: int) -> str:
        """The address of the smallest variant at least ``width`` wide (else the largest)."""
        if not self.widths:
            return self.src()
        chosen = next((w for w in self.widths if w >= width), self.widths[-1])
        return self.src(chosen)


# --- checking and preparing ----------------------------------------------------------------


def _too_large(name: str) -> InvalidInput:
    return InvalidInput(
        "The image “%(name)s” has too many pixels (at most %(max)s million). Please make it "
        "smaller and upload it again.",
        code="image_too_large", field=None,
        params={"name": name, "max": MAX_PIXELS // 1_000_000},
    )


def _corrupt(name: str) -> InvalidInput:
    return InvalidInput(
        "The file “%(name)s” could not be read as an image: it may be damaged or incomplete. "
        "Please save or export it again and upload it once more.",
        code="image_corrupt", field=None, params={"name": name},
    )


def check_image(upload: files.Upload, *, field: str = "photos") -> PreparedImage:
    """Decode, clean and resize one uploaded picture, or raise InvalidInput.

    Codes: ``file_empty``, ``file_too_large`` (bytes), ``file_type_not_allowed`` (not JPEG,
    PNG or WebP by its bytes), ``image_too_large`` (pixels), ``image_corrupt`` (does not
    decode). Nothing is written.
    """
    content_type = files.check_upload(upload, field=field, images_only=True)
    name = files.clean_filename(upload.filename)
    try:
        with warnings.catch_warnings():
            # Pillow warns past 89 MP and refuses past 179 MP; our limit is lower, and a
            # warning must refuse too rather than go on decoding.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(upload.data), formats=_DECODERS[content_type]) as im:
                if im.width * im.height > MAX_PIXELS:
                    raise _too_large(name)
                upright = _decode_upright(im)
    except InvalidInput as exc:
        exc.field = field
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise _with_field(_too_large(name), field) from None
    except Exception:
        # Whatever a damaged file makes a decoder raise (OSError, ValueError, SyntaxError,
        # struct.error, EOFError…), it is the uploader's file, not our fault: a 400.
        raise _with_field(_corrupt(name), field) from None
    return PreparedImage(filename=name, variants=_variants(upright))


def _with_field(exc: InvalidInput, field: str) -> InvalidInput:
    exc.field = field
    return exc


def _decode_upright(im: Image.Image) -> Image.Image:
    """Decode the first frame, turned as its EXIF orientation says, in RGB(A) sRGB."""
    if im.format == "JPEG":
        # Decode at the smallest DCT scale still at least the widest variant on both sides
        # (either side may become the width once the orientation is applied).
        im.draft("RGB", (WIDTHS[-1], WIDTHS[-1]))
    im.load()
    try:
        upright = ImageOps.exif_transpose(im)
    except Exception:
        # A picture whose pixels decode but whose EXIF block does not: keep it as stored
        # rather than refuse it (the block is dropped either way).
        upright = im.copy()
    icc = upright.info.get("icc_profile")
    has_alpha = upright.mode in ("RGBA", "LA", "PA") or (
        upright.mode == "P" and "transparency" in upright.info)
    mode = "RGBA" if has_alpha else "RGB"
    if upright.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        # 16-bit or float greyscale: scale to 8 bits rather than clip to white.
        upright = upright.convert("I").point(lambda v: v * (1 / 256)).convert("L")
    converted = None
    if icc and upright.mode in ("RGB", "RGBA", "CMYK", "L"):
        try:
            converted = ImageCms.profileToProfile(
                upright, ImageCms.ImageCmsProfile(io.BytesIO(icc)),
                ImageCms.createProfile("sRGB"), outputMode=mode)
        except (ImageCms.PyCMSError, OSError, ValueError):
            converted = None  # a broken or mismatched profile: use the pixels as they are
    result = converted if converted is not None else upright.convert(mode)
    result.info.clear()
    return result


def _variants(im: Image.Image) -> tuple[PreparedVariant, ...]:
    width, height = im.size
    targets = sorted({w for w in WIDTHS if w < width} | {min(width, WIDTHS[-1])})
    out: list[PreparedVariant] = []
    source = im
    # Largest first, each smaller one from the one before: cheaper than from the original,
    # and a Lanczos filter at each step keeps it sharp.
    for target in reversed(targets):
        size = (target, max(1, round(height * target / width)))
        if size != source.size:
            source = source.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
        out.append(PreparedVariant(width=size[0], height=size[1], data=_encode(source)))
    return tuple(reversed(out))


def _encode(im: Image.Image) -> bytes:
    buffer = io.BytesIO()
    # No exif, xmp or icc_profile argument: Pillow writes none of them. The image's info was
    # cleared, so nothing is carried over from the upload either.
    im.save(buffer, "WEBP", quality=WEBP_QUALITY, method=WEBP_METHOD)
    return buffer.getvalue()


def check_alt_text(text: str | None, *, field: str = "alt") -> str:
    """Return the alt text stripped (may be empty), or raise InvalidInput
    ``alt_text_too_long`` / ``control_character``."""
    return check_text(
        text, field=field, max_length=MAX_ALT_LENGTH, code="alt_text_too_long",
        message=N_("The picture's description can be at most %(n)s characters."))


# --- storing -------------------------------------------------------------------------------


def do_store_image(
    *,
    session: Session,
    upload_dir: Path,
    image: PreparedImage,
    owner_type: str,
    owner_id: int | None,
    actor_id: int | None,
    alt_text: str = "",
) -> Attachment:
    """Write a prepared picture's variants and return its attachment row (flushed)."""
    for variant in image.variants:
        # Content-addressed: bytes outliving a rolled-back transaction are harmless and
        # reused by the next upload of the same picture.
        files.write_once(upload_dir, variant.sha256, variant.data)
    largest = image.largest
    attachment = Attachment(
        owner_type=owner_type, owner_id=owner_id, filename=image.filename,
        content_type=CONTENT_TYPE, size=len(largest.data), sha256=largest.sha256,
        uploaded_by_id=actor_id, alt_text=alt_text, width=largest.width,
        height=largest.height,
    )
    session.add(attachment)
    session.flush()
    session.add_all(
        ImageVariant(attachment_id=attachment.id, width=v.width, height=v.height,
                     content_type=CONTENT_TYPE, size=len(v.data), sha256=v.sha256)
        for v in image.variants
    )
    session.flush()
    audit.record(
        session, actor_id=actor_id, action="files.attachment.uploaded",
        object_type="attachment", object_id=attachment.id,
        data={"new": {"owner_type": owner_type, "owner_id": owner_id,
                      "sha256": largest.sha256, "size": len(largest.data),
                      "content_type": CONTENT_TYPE,
                      "widths": [v.width for v in image.variants]}},
    )
    return attachment


def do_delete_image(*, session: Session, attachment: Attachment) -> None:
    """Delete a picture's rows (its address then answers 404). The bytes stay on disk,
    content-addressed and unreachable by any address, until a sweep removes them."""
    for variant in session.scalars(
        select(ImageVariant).where(ImageVariant.attachment_id == attachment.id)
    ):
        session.delete(variant)
    session.flush()
    session.delete(attachment)
    session.flush()


# --- reading -------------------------------------------------------------------------------


def pictures(*, session: Session, attachment_ids: Sequence[int | None]) -> dict[int, Picture]:
    """Return the pictures among these attachments, keyed by id (two queries)."""
    ids = sorted({i for i in attachment_ids if i is not None})
    if not ids:
        return {}
    rows = session.scalars(select(Attachment).where(Attachment.id.in_(ids))).all()
    return pictures_of(session=session, attachments=rows)


def pictures_of(*, session: Session, attachments: Sequence[Attachment]) -> dict[int, Picture]:
    """Return the loaded attachments that are pictures as such, keyed by id (one query for
    all their widths)."""
    shown = [a for a in attachments if a.content_type in _IMAGE_TYPES]
    if not shown:
        return {}
    widths: dict[int, list[int]] = {a.id: [] for a in shown}
    for attachment_id, width in session.execute(
        select(ImageVariant.attachment_id, ImageVariant.width)
        .where(ImageVariant.attachment_id.in_(list(widths)))
        .order_by(ImageVariant.attachment_id, ImageVariant.width)
    ):
        widths[attachment_id].append(width)
    # Pictures uploaded before they were resized (migration 0012) have no size or widths:
    # shown as they are, without srcset.
    return {
        a.id: Picture(id=a.id, width=a.width or 0, height=a.height or 0, alt=a.alt_text or "",
                      widths=tuple(widths[a.id]))
        for a in shown
    }


def variant_for(*, session: Session, attachment: Attachment, width: int) -> ImageVariant | None:
    """The smallest stored variant at least ``width`` wide (else the widest), or None when
    the attachment is not a picture."""
    variants = list(session.scalars(
        select(ImageVariant).where(ImageVariant.attachment_id == attachment.id)
        .order_by(ImageVariant.width)
    ))
    if not variants:
        return None
    return next((v for v in variants if v.width >= width), variants[-1])
