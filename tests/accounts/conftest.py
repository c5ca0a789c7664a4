"""The accounts' end-to-end fixtures (the parts are in :mod:`tests.accounts.world`).

- ``sink``: a mail sink over SMTP. A test that takes it gets an app whose ``settings`` send
  email there (the others keep the database outbox).
- ``clock``: the app's clock, which its fresh in-memory rate limiter follows too; a module
  that moves only the app's clock overrides it.
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


@pytest.fixture
def clock(app) -> Clock:  # type: ignore[no-untyped-def]
    clock = Clock()
    app.state.clock = clock
    app.state.ratelimiter = RateLimiter("memory://", clock=lambda: clock.now.timestamp())
    return clock


@pytest.fixture
def emulator(app, clock: Clock) -> Iterator[AliyunSmsEmulator]:  # type: ignore[no-untyped-def]
    with sms_emulator(clock) as (running, sender):
        app.state.sms = sender
        yield running
