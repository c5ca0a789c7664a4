"""Fixtures of the gifts tests."""

from __future__ import annotations

import pytest

from shanju.core.db import Database
from tests.gifts.helpers import World, make_world


@pytest.fixture
def world(db: Database) -> World:
    """A project in a live giving day, a donor, staff and a reviewer (see make_world)."""
    return make_world(db)
