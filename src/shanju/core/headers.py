"""Security headers of every response: the Content-Security-Policy, HSTS, Permissions-Policy,
and ``Cache-Control: no-store`` on private answers (ADR 0022).

The middleware in ``app.py`` gives each request a fresh CSP nonce (``request.state.csp_nonce``,
``{{ csp_nonce }}`` in templates) and calls :func:`apply` on the response. A page that must
load something from another origin (the summit stage: a provider's player, an HLS stream)
names it with :func:`allow_source`, for that response only.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response

from shanju.core.config import Settings
from shanju.core.web import SESSION_COOKIE, csp_nonce

# The policy of every HTML page. 'self' everywhere; scripts only from our own files or with
# this response's nonce; no plugins; nobody else may frame us (the summit's stand-in player
# is framed by our own stage, hence 'self' and not 'none').
BASE_POLICY: dict[str, list[str]] = {
    "default-src": ["'self'"],
    "script-src": ["'self'"],  # + 'nonce-…' per response
    # Stylesheets and <style> only from our files. Style *attributes* stay allowed: progress
    # bars' widths and tracks' colours are per-row values (style="width: 40%"), and a style
    # attribute cannot run script (see ADR 0022).
    "style-src": ["'self'"],
    "style-src-attr": ["'unsafe-inline'"],
    # Organizers' speaker photos may be hosted anywhere on https; data: for inline SVG icons
    # (Swagger UI), blob: for downloads made in the page.
    "img-src": ["'self'", "data:", "blob:", "https:"],
    "media-src": ["'self'", "blob:"],  # + the stage's stream (allow_source)
    "connect-src": ["'self'"],  # + ws(s):// of this host for the summit's live rooms
    "font-src": ["'self'"],
    "frame-src": ["'self'"],  # + the stage's player (allow_source)
    "worker-src": ["'self'", "blob:"],  # hls.js may run its demuxer in a blob: worker
    "object-src": ["'none'"],
    "base-uri": ["'self'"],
    "form-action": ["'self'"],
    "frame-ancestors": ["'self'"],
}
# Features no page of ours uses: refused for us and for every frame we embed. (Autoplay,
# fullscreen and picture-in-picture stay at their defaults: the summit's player uses them.)
PERMISSIONS_POLICY = ", ".join(
    f"{feature}=()" for feature in (
        "accelerometer", "camera", "display-capture", "geolocation", "gyroscope", "hid",
        "magnetometer", "microphone", "midi", "payment", "serial", "usb",
    )
)
HSTS = "max-age=31536000; includeSubDomains"
# A host as browsers send it: name or IPv4/IPv6 literal, optional port. Anything else (a
# header someone forged with ';' to add directives to their own answer) is left out.
_HOST_RE = re.compile(r"^(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?$")
# A source as a CSP source expression: scheme://host[:port], nothing else.
_ORIGIN_RE = re.compile(r"^https?://(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?$")
# Paths whose answers are the same for everyone and may be cached even when the request
# carries a session cookie (their own Cache-Control, if any, applies).
PUBLIC_PREFIXES = ("/static/",)


def origin_of(url: str) -> str | None:
    """Return ``scheme://host[:port]`` of an http(s) URL, or None if it is not one."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.netloc or "@" in parts.netloc:
        return None
    origin = f"{parts.scheme}://{parts.netloc}"
    return origin if _ORIGIN_RE.match(origin) else None


def allow_source(request: Request, directive: str, url: str) -> None:
    """Let this response's page load ``url``'s origin under ``directive`` (e.g. frame-src).

    Only an http(s) URL's origin is added; anything else is ignored (the page then shows the
    browser's refusal rather than a policy someone widened by typing a URL).
    """
    if directive not in BASE_POLICY:
        raise ValueError(f"unknown CSP directive {directive!r}")
    origin = origin_of(url)
    if origin is None:
        return
    extra: dict[str, list[str]] = getattr(request.state, "csp_extra", None) or {}
    sources = extra.setdefault(directive, [])
    if origin not in sources:
        sources.append(origin)
    request.state.csp_extra = extra


def content_security_policy(
    *, nonce: str, host: str | None, extra: dict[str, list[str]] | None = None,
    extra_media: tuple[str, ...] = (),
) -> str:
    """Return the Content-Security-Policy header of an HTML page."""
    policy = {name: list(sources) for name, sources in BASE_POLICY.items()}
    policy["script-src"].append(f"'nonce-{nonce}'")
    if host and _HOST_RE.match(host):
        # 'self' does not cover ws:/wss: in every browser: the summit's live rooms need them.
        policy["connect-src"] += [f"ws://{host}", f"wss://{host}"]
    for origin in filter(None, map(origin_of, extra_media)):
        for name in ("media-src", "connect-src", "frame-src"):
            policy[name].append(origin)
    for name, sources in (extra or {}).items():
        policy[name] += [s for s in sources if s not in policy[name]]
    return "; ".join(f"{name} {' '.join(sources)}" for name, sources in policy.items())


def is_private(request: Request) -> bool:
    """Whether the request carries credentials: a session cookie or an Authorization header.

    The answer to such a request may depend on who is asking, so no cache may keep it.
    """
    return SESSION_COOKIE in request.cookies or "authorization" in request.headers


def apply(request: Request, response: Response, settings: Settings) -> None:
    """Set the security headers of ``response`` (headers a route set itself are kept)."""
    headers = response.headers
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("Referrer-Policy", "same-origin")
    # SAMEORIGIN, not DENY: the summit's stage may embed a player page of the site itself
    # (the demo's stand-in player); other sites cannot frame our pages (also frame-ancestors).
    headers.setdefault("X-Frame-Options", "SAMEORIGIN")
    headers.setdefault("Permissions-Policy", PERMISSIONS_POLICY)
    if settings.environment == "production":
        headers.setdefault("Strict-Transport-Security", HSTS)
    if headers.get("content-type", "").startswith("text/html"):
        extra = dict(getattr(request.state, "csp_extra", None) or {})
        # A donate form's answer redirects to the payment provider's cashier: form-action
        # applies to that redirect, so every page allows the configured gateways' cashiers.
        app = request.scope.get("app")
        providers = getattr(app.state, "providers", None) if app is not None else None
        gateways = providers.gateways if providers is not None else {}
        if gateways:
            extra["form-action"] = [*extra.get("form-action", []), *(
                o for g in gateways.values() for o in map(origin_of, g.pay_origins) if o)]
        headers.setdefault("Content-Security-Policy", content_security_policy(
            nonce=csp_nonce(request), host=request.headers.get("host"),
            extra=extra, extra_media=tuple(settings.csp_media_origins),
        ))
    if is_private(request) and not request.scope.get("path", "").startswith(PUBLIC_PREFIXES):
        # A route that chose its own caching (the transparency log's immutable tiles, a
        # project's public files) keeps it; everything else is private to this person.
        headers.setdefault("Cache-Control", "no-store")
