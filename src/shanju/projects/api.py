"""JSON API routes of the projects domain (under /api/v1)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["projects"])
