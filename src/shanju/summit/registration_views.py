"""Registration pages: register, my ticket, organizers' applications and attendance."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
