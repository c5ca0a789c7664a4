"""The live gateway: the WebSocket endpoint of the summit's live rooms (helper: live server)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI

router = APIRouter()


@asynccontextmanager
async def live_lifespan(app: FastAPI) -> AsyncIterator[None]:  # noqa: ARG001 - placeholder
    """Start the broker and the room hubs with the app; stop them (closing every connection)
    when it stops. Without a lifespan (tests), the gateway starts them on first use."""
    yield
