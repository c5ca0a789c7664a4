"""JSON API of summits: events, timetable, speakers, agenda (helper: events)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/summits", tags=["summit"])
