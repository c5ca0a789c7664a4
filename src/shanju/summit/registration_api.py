"""JSON API of summit registration, tickets, check-in and attendance (helper: registration)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/summits", tags=["summit"])
