"""Attendance downloads: CSV (UTF-8 with a BOM, for Excel) and Excel .xlsx.

Who may download what:

- the summit's organizers: every organization (or one, ``organization_id``), with people's
  **full display names** — they run the summit and answer for its attendance lists;
- an organization's staff: their own organization's rows only, names masked (``张**``).

Columns: :data:`shanju.summit.attendance.EXPORT_COLUMNS`. The workbook is written with
XlsxWriter in constant-memory mode, as the disclosure exports are (ADR 0012); text a person
typed never starts a CSV cell as a formula.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from fastapi import Request
from fastapi.responses import FileResponse, Response, StreamingResponse
from sqlalchemy.orm import Session
from starlette.background import BackgroundTask

from shanju.accounts.models import Role, User
from shanju.core.errors import InvalidInput, PermissionDenied
from shanju.disclosure import export as tables
from shanju.summit import attendance
from shanju.summit.access import is_organizer
from shanju.summit.models import Summit

FORMATS = ("csv", "xlsx")
MEDIA_TYPES = {f: tables.MEDIA_TYPES[f] for f in FORMATS}


def attendance_scope(viewer: User, summit: Summit, organization_id: int | None) -> int | None:
    """Which organization's attendance ``viewer`` may see: ``organization_id`` (None: all)
    for organizers, their own organization for its staff; PermissionDenied otherwise."""
    if is_organizer(viewer, summit):
        return organization_id
    if viewer.role == Role.ORG_STAFF and viewer.organization_id is not None:
        if organization_id not in (None, viewer.organization_id):
            raise PermissionDenied("You can see your own organization's attendance only.",
                                   code="own_organization_only")
        return viewer.organization_id
    raise PermissionDenied("Only the summit's organizers and registered organizations' staff "
                           "can see attendance.", code="organizer_only")


def links(slug: str, organization_id: int | None) -> dict[str, str]:
    """Download links of the attendance (of one organization, or all)."""
    base = f"/api/v1/summits/{slug}/attendance/export?format="
    suffix = f"&organization_id={organization_id}" if organization_id is not None else ""
    return {f: base + f + suffix for f in FORMATS}


def download(request: Request, session: Session, *, summit: Summit, viewer: User, fmt: str,
             organization_id: int | None) -> Response:
    """The attendance file ``viewer`` may have, as ``fmt``."""
    del request
    if fmt not in FORMATS:
        raise InvalidInput("Choose csv or xlsx.", code="invalid_format", field="format")
    scope = attendance_scope(viewer, summit, organization_id)
    full = is_organizer(viewer, summit)
    rows = [r.values() for r in attendance.attendance_rows(
        session, summit_id=summit.id, organization_id=scope, full_names=full)]
    name = f"shanju-{summit.slug}-attendance" + (f"-org{scope}" if scope is not None else "")
    disposition = {"Content-Disposition": f'attachment; filename="{name}.{fmt}"'}
    if fmt == "csv":
        return StreamingResponse(tables.csv_table(attendance.EXPORT_COLUMNS, rows),
                                 media_type=MEDIA_TYPES["csv"], headers=disposition)
    fd, raw_path = tempfile.mkstemp(prefix="shanju-attendance-", suffix=".xlsx")
    os.close(fd)
    path = Path(raw_path)
    try:
        tables.write_xlsx(path, [("attendance", attendance.EXPORT_COLUMNS, rows)])
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return FileResponse(path, media_type=MEDIA_TYPES["xlsx"], headers=disposition,
                        background=BackgroundTask(path.unlink, missing_ok=True))
