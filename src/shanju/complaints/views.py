"""HTML pages of the complaints domain."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
