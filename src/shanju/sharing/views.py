"""Share posters as PNG images (the pages that offer them: the project page, the thank-you
page).

    GET /projects/{project_id}/poster.png   an invitation to the project (anyone who may see it)
    GET /gifts/orders/{order_id}/poster.png a donor's gift: their masked name (the order's page's
                                            access: its donor, or ``?k=`` of its link)
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from shanju.core.db import DbId
from shanju.core.deps import DbSession, Viewer
from shanju.core.web import request_locale
from shanju.sharing import service as sharing

router = APIRouter()


def _png(data: bytes, *, cache: str, filename: str) -> Response:
    return Response(content=data, media_type="image/png", headers={
        "Cache-Control": cache,
        "Content-Disposition": f'inline; filename="{filename}"',
    })


@router.get("/projects/{project_id}/poster.png")
def project_poster(project_id: DbId, request: Request, session: DbSession,
                   viewer: Viewer) -> Response:
    """The project's share poster: title, cover, a QR code of its page."""
    settings = request.app.state.settings
    png, public = sharing.project_poster(
        session=session, project_id=project_id, viewer=viewer,
        locale=request_locale(request), base_url=settings.base_url,
        brand=settings.platform_name, upload_dir=settings.upload_dir,
        font=settings.poster_font)
    return _png(png, cache="public, max-age=600" if public else "private, no-store",
                filename=f"shanju-project-{project_id}.png")


@router.get("/gifts/orders/{order_id}/poster.png")
def order_poster(order_id: str, request: Request, session: DbSession, viewer: Viewer,
                 k: Annotated[str, Query(max_length=64)] = "") -> Response:
    """A donor's poster of their gift: the project, their masked name, the QR code."""
    settings = request.app.state.settings
    png = sharing.order_poster(
        session=session, order_id=order_id, key=k, viewer=viewer,
        secret_key=settings.secret_key, locale=request_locale(request),
        base_url=settings.base_url, brand=settings.platform_name,
        upload_dir=settings.upload_dir, font=settings.poster_font)
    response = _png(png, cache="private, max-age=3600", filename="shanju-poster.png")
    response.headers["Referrer-Policy"] = "no-referrer"  # the key may be in the address
    return response
