"""Sharing a project: its share link, the metadata WeChat and other apps read, and posters.

- :func:`share_link`: the project's public address — what every share points at, never a
  donor's own order page (its link is their receipt).
- :func:`share_meta`: ``og:*``, ``itemprop`` and ``description`` values for a page's head.
- :func:`project_poster` / :func:`order_poster`: the PNG poster (``sharing/poster.py``) of a
  project, or of a donor's gift with their masked name. An order's poster is for whoever may
  open the order's page (its donor, or the key of its link).

Posters are cached in the process by what they show, so a poster shared in a group chat is
drawn once, not once per friend who opens it.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.orm import Session

from shanju.accounts.models import User
from shanju.core import files, i18n
from shanju.core.errors import NotFound
from shanju.core.i18n import N_
from shanju.core.masking import mask_name
from shanju.gifts import flows as gift_flows
from shanju.payments.models import IntentStatus, PaymentIntent
from shanju.projects import service as projects
from shanju.projects.models import Project
from shanju.sharing.poster import PosterText, render_poster

DESCRIPTION_MAX = 120
POSTER_CACHE_SIZE = 64  # about 100 KB each
_DONOR_LINE = N_("%(name)s gave to this project and invites you to join")
_INVITE_LINE = N_("Join in and give to this project")
_CALL = N_("Give together")
_SCAN_HINT = N_("Long-press or scan the QR code to open the project")


def share_link(base_url: str, project_id: int) -> str:
    """The project's public address, for sharing."""
    return f"{base_url.rstrip('/')}/projects/{project_id}"


@dataclass(frozen=True)
class ShareMeta:
    """What a shared link's card shows: title, description, image and address."""

    title: str
    description: str
    image: str
    url: str
    site_name: str


def _shorten(text: str, limit: int = DESCRIPTION_MAX) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def share_meta(*, project: Project, base_url: str, site_name: str) -> ShareMeta:
    """The share card of a project: its title and summary, its cover (or its poster)."""
    base = base_url.rstrip("/")
    image = (f"{base}/files/{project.cover_image_id}" if project.cover_image_id
             else f"{base}/projects/{project.id}/poster.png")
    return ShareMeta(title=project.title, description=_shorten(project.summary), image=image,
                     url=share_link(base_url, project.id), site_name=site_name)


def poster_cover(*, session: Session, project: Project, upload_dir: Path) -> bytes | None:
    """The cover drawn on the poster, if the project has one that is still on disk.

    HOOK (issue 14, pictures): covers may gain resized variants; use the one closest to
    750 px wide here when they exist, instead of the original upload.
    """
    if project.cover_image_id is None:
        return None
    try:
        attachment = files.get_attachment(session=session, attachment_id=project.cover_image_id)
        return files.read_bytes(upload_dir, attachment)
    except NotFound:
        return None


class _PosterCache:
    """The last posters drawn, by everything they show (the cover by its attachment id)."""

    def __init__(self, size: int = POSTER_CACHE_SIZE) -> None:
        self.size = size
        self.items: OrderedDict[tuple[object, ...], bytes] = OrderedDict()
        self.lock = threading.Lock()

    def get(self, key: tuple[object, ...]) -> bytes | None:
        with self.lock:
            png = self.items.get(key)
            if png is not None:
                self.items.move_to_end(key)
            return png

    def put(self, key: tuple[object, ...], png: bytes) -> None:
        with self.lock:
            self.items[key] = png
            while len(self.items) > self.size:
                self.items.popitem(last=False)


_cache = _PosterCache()


def _render(*, session: Session, project: Project, donor_line: str, locale: str,
            base_url: str, brand: str, upload_dir: Path, font: str) -> bytes:
    url = share_link(base_url, project.id)
    key = (project.id, project.title, project.summary, project.cover_image_id, donor_line,
           locale, url, brand, font)
    png = _cache.get(key)
    if png is None:
        text = PosterText(title=project.title, summary=project.summary, donor_line=donor_line,
                          call=i18n.gettext(locale, _CALL),
                          scan_hint=i18n.gettext(locale, _SCAN_HINT), brand=brand)
        cover = poster_cover(session=session, project=project, upload_dir=upload_dir)
        png = render_poster(text=text, url=url, cover=cover, font=font)
        _cache.put(key, png)
    return png


def project_poster(*, session: Session, project_id: int, viewer: User | None, locale: str,
                   base_url: str, brand: str, upload_dir: Path, font: str = ""
                   ) -> tuple[bytes, bool]:
    """A project's poster (an invitation, no donor), and whether everyone may see it."""
    project = projects.get_visible_project(session=session, project_id=project_id,
                                           viewer=viewer)
    png = _render(session=session, project=project, locale=locale, base_url=base_url,
                  donor_line=i18n.gettext(locale, _INVITE_LINE), brand=brand,
                  upload_dir=upload_dir, font=font)
    return png, project.status in projects.PUBLIC_STATUSES


def order_poster(*, session: Session, order_id: str, key: str, viewer: User | None,
                 secret_key: str, locale: str, base_url: str, brand: str, upload_dir: Path,
                 font: str = "") -> bytes:
    """The poster of a paid gift: the project and the donor's masked name (爱心人士 when the
    gift is anonymous). NotFound for anyone who may not open the order's page."""
    intent = session.get(PaymentIntent, order_id) if len(order_id) <= 40 else None
    if intent is None or not ((viewer is not None and intent.donor_id == viewer.id)
                              or gift_flows.check_order_key(secret_key, order_id, key)):
        raise NotFound("No such payment.", code="payment_not_found")
    if intent.status != IntentStatus.SUCCEEDED or intent.project_id is None:
        raise NotFound("This gift is not paid, so it has no poster.", code="poster_not_ready")
    project = projects.get_project(session=session, project_id=intent.project_id)
    name = mask_name(intent.donor_name, anonymous=intent.anonymous)
    line = i18n.gettext(locale, _DONOR_LINE) % {"name": name}
    return _render(session=session, project=project, donor_line=line, locale=locale,
                   base_url=base_url, brand=brand, upload_dir=upload_dir, font=font)
