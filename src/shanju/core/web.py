"""Rendering pages: the Jinja2 environment, locale and CSRF per request, and error pages."""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jinja2
import segno
from fastapi import Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from markupsafe import Markup
from starlette.datastructures import UploadFile

from shanju.core import files, i18n, regions
from shanju.core.clock import CHINA_TZ
from shanju.core.config import get_settings
from shanju.core.errors import DomainError
from shanju.core.masking import mask_name
from shanju.core.money import fen_to_yuan_str, format_fen
from shanju.core.security import new_token, session_csrf_token

PACKAGE_DIR = Path(__file__).resolve().parent.parent
_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(str(PACKAGE_DIR / "templates")),
    autoescape=True,
    extensions=["jinja2.ext.i18n"],
)
templates = Jinja2Templates(env=_env)
CSRF_COOKIE = "sj_csrf"
LANG_COOKIE = "sj_lang"
SESSION_COOKIE = "sj_session"
CSRF_FIELD = "csrf_token"


def request_locale(request: Request) -> str:
    """Return the locale of this request (set by the locale middleware)."""
    return str(getattr(request.state, "locale", i18n.DEFAULT_LOCALE))


def tr(request: Request, message: str, **params: Any) -> str:
    """Translate ``message`` into the request's language, then fill in ``%(name)s`` values.

    ``message`` may be a domain error's ``exc.message`` (an :class:`i18n.Msg` carrying its
    own values); ``params`` add to or override those.
    """
    return i18n.translate(request_locale(request), message, params)


def _secret_key(request: Request) -> str:
    settings = getattr(request.app.state, "settings", None) or get_settings()
    return str(settings.secret_key)


def csrf_token(request: Request) -> str:
    """Return the CSRF token for this request's forms.

    A browser with a session cookie gets the token bound to its session (an HMAC of the
    session's token, see :func:`security.session_csrf_token`): it changes at every sign-in,
    and a token from before no longer works. Without a session, the double-submit cookie's
    random value (made here when the browser has none yet).
    """
    token = getattr(request.state, "csrf_token", None)
    if token is None:
        session_token = request.cookies.get(SESSION_COOKIE)
        if session_token:
            token = session_csrf_token(_secret_key(request), session_token)
        else:
            token = request.cookies.get(CSRF_COOKIE) or new_token(nbytes=24)
        request.state.csrf_token = token
    return str(token)


def csp_nonce(request: Request) -> str:
    """Return this request's Content-Security-Policy nonce (128 random bits, made once)."""
    nonce = getattr(request.state, "csp_nonce", None)
    if nonce is None:
        nonce = request.state.csp_nonce = secrets.token_urlsafe(16)
    return str(nonce)


def _local_time(value: dt.datetime | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
    if value is None:
        return ""
    return value.astimezone(CHINA_TZ).strftime(fmt)


def qr_svg(data: str, scale: int = 4) -> Markup:
    """Return an inline SVG QR code for ``data`` (e.g. a project's share link)."""
    qr = segno.make(data, error="m")
    svg = qr.svg_inline(scale=scale, dark="#1f2937", light="#ffffff")
    return Markup(svg)  # noqa: S704 - segno produces the SVG from data it escapes itself


def render(
    request: Request,
    template: str,
    context: dict[str, Any] | None = None,
    *,
    status_code: int = 200,
) -> HTMLResponse:
    """Render a page with the request's locale, viewer and CSRF token available."""
    locale = request_locale(request)
    translations = i18n.translations(locale)
    ctx: dict[str, Any] = {
        "request": request,
        "viewer": getattr(request.state, "user", None),
        "locale": locale,
        "locales": i18n.LABELS,
        "csrf_token": csrf_token(request),
        "csp_nonce": csp_nonce(request),
        "settings": get_settings(),
        "_": translations.gettext,
        "gettext": translations.gettext,
        "ngettext": translations.ngettext,
        "money": lambda fen, cents=True: format_fen(int(fen), locale, cents=cents),
        "yuan": fen_to_yuan_str,
        "mask": mask_name,
        "province_name": lambda name: regions.display_name(name or "", locale),
        "local_time": _local_time,
        "qr_svg": qr_svg,
    }
    if context:
        ctx.update(context)
    return templates.TemplateResponse(request, template, ctx, status_code=status_code)


def redirect(url: str, *, status_code: int = 303) -> RedirectResponse:
    """Redirect after a successful form post (Post/Redirect/Get)."""
    return RedirectResponse(url, status_code=status_code)


def read_uploads(uploads: Sequence[UploadFile] | None) -> list[files.Upload]:
    """Read uploaded files into memory, never more than the size limit plus one byte.

    Blocking file reads (the parser spools large uploads to disk): call it from a sync
    handler, which runs in the threadpool, never from the event loop.
    """
    result: list[files.Upload] = []
    for upload in uploads or []:
        try:
            if not upload.filename:
                continue  # an empty file input in a browser form
            data = upload.file.read(files.MAX_UPLOAD_BYTES + 1)
            result.append(files.Upload(filename=upload.filename, data=data))
        finally:
            upload.file.close()
    return result


def login_url(next_path: str) -> str:
    """Return the sign-in page's address that leads back to ``next_path`` afterwards."""
    return "/login?next=" + quote(next_path, safe="/")


def wants_json(request: Request) -> bool:
    """API paths answer in JSON; pages answer in HTML."""
    return request.url.path.startswith("/api/")


def error_response(request: Request, exc: DomainError) -> Response:
    """Turn a domain error into a JSON error (API) or a readable error page."""
    response: Response
    if wants_json(request):
        response = JSONResponse(exc.to_dict(), status_code=exc.status_code)
    else:
        response = render(
            request,
            "error.html",
            {"error": exc, "message": tr(request, exc.message)},
            status_code=exc.status_code,
        )
    response.headers.update(exc.headers)
    return response
