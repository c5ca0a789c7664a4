"""Summit pages: the summit, timetable, speakers, sessions' stage, my agenda (helper: events)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
