"""The live panel on a session page and the moderators' console (helper: live UI)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from sqlalchemy.orm import Session

from shanju.accounts.models import User
from shanju.summit.models import Summit, SummitSession

router = APIRouter()


def live_context(
    request: Request,  # noqa: ARG001 - placeholder until the live UI lands
    db: Session,  # noqa: ARG001
    *,
    summit: Summit,  # noqa: ARG001
    session: SummitSession,  # noqa: ARG001
    user: User | None,  # noqa: ARG001
) -> dict[str, Any] | None:
    """What the session page's template needs to render ``summit/_live_panel.html`` (None:
    no live panel). The events helper's session view calls this and passes it as ``live``."""
    return None
