"""The accounts' end-to-end fixtures (the parts are in :mod:`tests.accounts.world`).

- ``sink``: a mail sink over SMTP. A test that takes it gets an app whose ``settings`` send
  email there (the others keep the database outbox).
- ``clock``: the app's clock (starting now), which its fresh in-memory rate limiter follows
  too (from the start of an hour); a module that moves only the app's clock overrides it.
- ``emulator``: the Alibaba Cloud SMS emulator, with the app texting through it.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from shanju.accounts.sms_emulator import AliyunSmsEmulator
from shanju.core.config import Settings
from shanju.core.mailsink import MailSink
from shanju.core.ratelimit import RateLimiter
from tests.accounts.world import Clock, sms_emulator, with_smtp


@pytest.fixture
def sink() -> Iterator[MailSink]:
    with MailSink() as running:
        yield running


@pytest.fixture
def settings(settings: Settings, request: pytest.FixtureRequest) -> Settings:
    if "sink" in request.fixturenames:
        return with_smtp(settings, request.getfixturevalue("sink"))
    return settings


# Where the rate limiter's clock starts: on the hour (and so the minute), plus 5 s. Its
# windows are fixed windows; started at the real "now", a test's few minutes crossed an hour's
# end when run at hh:55 and its hourly limit started counting again.
LIMITER_START = 1_800_000_000.0 + 5


@pytest.fixture
def clock(app) -> Clock:  # type: ignore[no-untyped-def]
    clock = Clock()
    start = clock.now
    app.state.clock = clock
    app.state.ratelimiter = RateLimiter(
        "memory://", clock=lambda: LIMITER_START + (clock.now - start).total_seconds())
    return clock


@pytest.fixture
def emulator(app, clock: Clock) -> Iterator[AliyunSmsEmulator]:  # type: ignore[no-untyped-def]
    with sms_emulator(clock) as (running, sender):
        app.state.sms = sender
        yield running
