"""JSON API routes of the complaints domain (under /api/v1)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["complaints"])
