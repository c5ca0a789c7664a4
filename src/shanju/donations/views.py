"""HTML pages of the donations domain."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
