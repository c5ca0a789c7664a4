"""Uploaded files (photos, receipts, invoices): checked by their bytes, stored by content hash.

A file is accepted only when its first bytes say it is a JPEG, PNG, WebP or PDF — the name
and the browser's claimed type are not trusted — and it is at most :data:`MAX_UPLOAD_BYTES`.
The bytes are written once under ``upload_dir/<sha[:2]>/<sha>``; each upload gets its own
:class:`Attachment` row naming what it belongs to.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import BigInteger, ForeignKey, Index, String, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from shanju.core import audit
from shanju.core.clock import utcnow
from shanju.core.db import Base, get_or_404
from shanju.core.errors import InvalidInput, NotFound
from shanju.core.i18n import N_

MAX_UPLOAD_BYTES = 5 * 1024 * 1024
MAX_FILES_PER_POST = 9
ALLOWED_TYPES = ("image/jpeg", "image/png", "image/webp", "application/pdf")
IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/webp"})


class Attachment(Base):
    """An uploaded file (photo, receipt, invoice), stored by content hash."""

    __tablename__ = "attachments"

    id: Mapped[int] = mapped_column(primary_key=True)
    owner_type: Mapped[str] = mapped_column(String(30))
    owner_id: Mapped[int | None]
    filename: Mapped[str] = mapped_column(String(200))
    content_type: Mapped[str] = mapped_column(String(100))
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    uploaded_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    # Pictures only (core/images.py): the organization's description for people who cannot
    # see it, and the size of the stored (largest) variant. None for other files.
    alt_text: Mapped[str] = mapped_column(String(200), default="", server_default="")
    width: Mapped[int | None]
    height: Mapped[int | None]

    __table_args__ = (Index("ix_attachments_owner", "owner_type", "owner_id"),)


@dataclass(frozen=True)
class Upload:
    """A file received from a form or the API, read into memory (at most 5 MB + 1 byte)."""

    filename: str
    data: bytes


def sniff_content_type(data: bytes) -> str | None:
    """Return the content type the file's magic bytes show, or None if not an allowed type."""
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data.startswith(b"%PDF-"):
        return "application/pdf"
    return None


def check_upload(upload: Upload, *, field: str = "files", images_only: bool = False) -> str:
    """Validate one upload and return its real content type."""
    name = clean_filename(upload.filename)
    if not upload.data:
        raise InvalidInput("The file “%(name)s” is empty.", code="file_empty", field=field,
                           params={"name": name})
    if len(upload.data) > MAX_UPLOAD_BYTES:
        raise InvalidInput(
            "The file “%(name)s” is larger than 5 MB. Please upload a smaller file.",
            code="file_too_large",
            field=field,
            params={"name": name},
        )
    content_type = sniff_content_type(upload.data)
    if content_type is None or (images_only and content_type not in IMAGE_TYPES):
        message = (
            N_("The file “%(name)s” is not a JPEG, PNG or WebP image.") if images_only
            else N_("The file “%(name)s” is not a JPEG, PNG, WebP or PDF file.")
        )
        raise InvalidInput(
            message,
            code="file_type_not_allowed",
            field=field,
            params={"name": name},
        )
    return content_type


def check_uploads(
    uploads: list[Upload], *, field: str = "files", images_only: bool = False
) -> list[str]:
    """Validate several uploads (all or nothing) and return their content types."""
    if len(uploads) > MAX_FILES_PER_POST:
        raise InvalidInput(
            "Attach at most %(n)s files at a time.",
            code="too_many_files",
            field=field,
            params={"n": MAX_FILES_PER_POST},
        )
    return [check_upload(u, field=field, images_only=images_only) for u in uploads]


def clean_filename(name: str) -> str:
    """Return a display name: no directories, no control characters, at most 200 chars."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    cleaned = "".join(ch for ch in base if ch.isprintable()).strip()
    return (cleaned or "file")[:200]


def path_for(upload_dir: Path, sha256: str) -> Path:
    """Return where the bytes with this hash live."""
    return upload_dir / sha256[:2] / sha256


def write_once(upload_dir: Path, sha256: str, data: bytes) -> None:
    """Write ``data`` under its hash unless it is already there (atomically: a reader never
    sees half a file)."""
    target = path_for(upload_dir, sha256)
    if target.exists():
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".upload-")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def do_store_upload(
    *,
    session: Session,
    upload_dir: Path,
    upload: Upload,
    owner_type: str,
    owner_id: int | None,
    actor_id: int | None,
    images_only: bool = False,
) -> Attachment:
    """Check and store one upload, returning its attachment row (flushed)."""
    content_type = check_upload(upload, images_only=images_only)
    digest = hashlib.sha256(upload.data).hexdigest()
    # The bytes may outlive a rolled-back transaction; being content-addressed they are
    # harmless and are reused by the next upload of the same file.
    write_once(upload_dir, digest, upload.data)
    attachment = Attachment(
        owner_type=owner_type,
        owner_id=owner_id,
        filename=clean_filename(upload.filename),
        content_type=content_type,
        size=len(upload.data),
        sha256=digest,
        uploaded_by_id=actor_id,
    )
    session.add(attachment)
    session.flush()
    audit.record(
        session,
        actor_id=actor_id,
        action="files.attachment.uploaded",
        object_type="attachment",
        object_id=attachment.id,
        data={"new": {"owner_type": owner_type, "owner_id": owner_id, "sha256": digest,
                      "size": len(upload.data), "content_type": content_type}},
    )
    return attachment


def attachments_of(
    *, session: Session, owner_type: str, owner_ids: list[int]
) -> dict[int, list[Attachment]]:
    """List attachments of several owners of one type, oldest first, keyed by owner id."""
    result: dict[int, list[Attachment]] = {oid: [] for oid in owner_ids}
    if not owner_ids:
        return result
    rows = session.scalars(
        select(Attachment)
        .where(Attachment.owner_type == owner_type, Attachment.owner_id.in_(owner_ids))
        .order_by(Attachment.id)
    )
    for row in rows:
        if row.owner_id is not None:
            result.setdefault(row.owner_id, []).append(row)
    return result


def get_attachment(*, session: Session, attachment_id: int) -> Attachment:
    """Return an attachment or raise NotFound ``file_not_found``."""
    return get_or_404(session, Attachment, attachment_id, message=N_("No such file."),
                      code="file_not_found")


def read_bytes(upload_dir: Path, attachment: Attachment, *, sha256: str | None = None) -> bytes:
    """Return the stored bytes of an attachment, or of its picture variant ``sha256``
    (NotFound if the file left the disk)."""
    path = path_for(upload_dir, sha256 or attachment.sha256)
    if not path.is_file():
        raise NotFound("No such file.", code="file_not_found")
    return path.read_bytes()
