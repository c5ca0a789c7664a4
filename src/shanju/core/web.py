"""Rendering pages: the Jinja2 environment, locale and CSRF per request, and error pages."""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

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
from shanju.core.errors import DomainError, InvalidInput, NotFound
from shanju.core.i18n import N_
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


# Headings and a line of advice per status, for error pages (msgids; see error.html).
ERROR_HEADINGS: dict[int, str] = {
    400: N_("Something is not right"),
    401: N_("Please sign in"),
    403: N_("You may not see this page"),
    404: N_("Page not found"),
    405: N_("This action is not available here"),
    409: N_("This could not be done just now"),
    422: N_("Please check what you entered"),
    429: N_("Please wait a moment"),
    500: N_("Something went wrong on our side"),
    503: N_("The service is busy"),
}
ERROR_ADVICE: dict[int, str] = {
    401: N_("Sign in and you will be brought back here."),
    403: N_("If you think you should see it, sign in with another account or ask your "
            "organization's administrator."),
    404: N_("The address may be mistyped, or the page has moved or was removed."),
    405: N_("Use the buttons and forms of the site instead of typing this address."),
    409: N_("Someone may have changed the same thing at the same time. Reload the page and "
            "try again."),
    422: N_("Go back, correct the value and try again."),
    429: N_("Please wait a moment before trying again."),
    500: N_("We have been told about it. Please try again in a few minutes."),
    503: N_("Please try again in a few minutes."),
}


def _same_site_referer(request: Request) -> str | None:
    """The page the person came from on this site (path and query), for a "go back" link."""
    referer = request.headers.get("referer", "")
    parts = urlsplit(referer)
    if not referer or parts.netloc != request.url.netloc or parts.scheme not in ("http", "https"):
        return None
    back = parts.path or "/"
    if not back.startswith("/") or back.startswith("//") or back == request.url.path:
        return None
    return back + (f"?{parts.query}" if parts.query else "")


def sign_in_redirect(request: Request) -> Response:
    """Send a signed-out person to the sign-in page, to come back to this page afterwards."""
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    url = login_url(target)
    if request.headers.get("hx-request"):
        # htmx swaps a fragment: have it load the sign-in page as a whole instead.
        return Response(status_code=401, headers={"HX-Redirect": url})
    return redirect(url)


def error_response(request: Request, exc: DomainError) -> Response:
    """Turn a domain error into a JSON error (API) or a readable error page.

    A page that needs a signed-in person sends a signed-out one to sign in (303 to the
    sign-in page with ``next=``) when they asked for it with GET; the API answers 401 JSON.
    """
    if wants_json(request):
        return JSONResponse(exc.to_dict(), status_code=exc.status_code,
                            headers=_retry_after(exc))
    if exc.status_code == 401 and request.method in ("GET", "HEAD") and \
            getattr(request.state, "user", None) is None:
        return sign_in_redirect(request)
    return error_page(request, exc)


def error_page(request: Request, exc: DomainError) -> Response:
    """Render the site's error page for ``exc``, in the request's language."""
    status = exc.status_code
    heading = ERROR_HEADINGS.get(status) or ERROR_HEADINGS[500 if status >= 500 else 400]
    advice = ERROR_ADVICE.get(status) or (ERROR_ADVICE[500] if status >= 500 else None)
    response = render(request, "error.html", {
        "error": exc,
        "heading": tr(request, heading),
        "message": tr(request, exc.message),
        "advice": tr(request, advice) if advice else "",
        "back_url": _same_site_referer(request),
        "login_next": request.url.path if request.method == "GET" else
        (_same_site_referer(request) or ""),
    }, status_code=status)
    response.headers.update(_retry_after(exc))
    return response


def _retry_after(exc: DomainError) -> dict[str, str]:
    # A refusal that passes with time (429, 503) says when to try again: details["retry_after"]
    # in seconds, sent as the Retry-After header too; and the error's own headers (a 429's).
    seconds = exc.details.get("retry_after") if exc.details else None
    found = {"Retry-After": str(int(seconds))} if isinstance(seconds, int | float) else {}
    return {**found, **exc.headers}


# What the page says for each kind of refused value (pydantic's error types).
_VALIDATION_MESSAGES: dict[str, str] = {
    "int_parsing": N_("“%(field)s” must be a whole number."),
    "int_from_float": N_("“%(field)s” must be a whole number."),
    "int_type": N_("“%(field)s” must be a whole number."),
    "greater_than_equal": N_("“%(field)s” must be at least %(limit)s."),
    "greater_than": N_("“%(field)s” must be more than %(limit)s."),
    "less_than_equal": N_("“%(field)s” must be at most %(limit)s."),
    "less_than": N_("“%(field)s” must be less than %(limit)s."),
    "string_too_long": N_("“%(field)s” is too long: at most %(limit)s characters."),
    "string_too_short": N_("“%(field)s” is too short: at least %(limit)s characters."),
    "missing": N_("“%(field)s” is required."),
}
# Names of query and form values as people know them.
FIELD_LABELS: dict[str, str] = {
    "page": N_("page number"), "per_page": N_("items per page"), "limit": N_("items per page"),
    "offset": N_("position in the list"), "year": N_("year"),
}


def page_validation_error(errors: Sequence[Any]) -> DomainError:
    """The error a page shows for a request FastAPI refused before its handler ran.

    A path that does not parse (``/projects/abc``, an id out of range) names no page: 404.
    Otherwise the first refused value is named, in the person's language, with what it must be.
    """
    first: dict[str, Any] = dict(errors[0]) if errors else {}
    loc = [str(p) for p in first.get("loc", ())]
    if any(e.get("loc", ("",))[0] == "path" for e in errors):
        return NotFound("This page does not exist.")
    name = ".".join(p for p in loc if p not in ("body", "query", "path", "header", "cookie"))
    template = _VALIDATION_MESSAGES.get(str(first.get("type")), N_("“%(field)s” is not valid."))
    ctx = first.get("ctx") or {}
    limit = next((ctx[k] for k in ("ge", "gt", "le", "lt", "max_length", "min_length")
                  if k in ctx), "")
    if not name:
        return InvalidInput("The request is not valid.", code="validation_error")
    label = FIELD_LABELS.get(name)
    return InvalidInput(template, code="validation_error", field=name,
                        params={"field": i18n.Msg(label) if label else name, "limit": limit})
