"""Fuzz the summit events API where it matters: on a real summit, as its organizer and as an
attendee, with real ids in the path. Whatever the body, the answer is never a server error
and every error has a code (the site-wide fuzz test only reaches the 404s of made-up slugs).
"""

from __future__ import annotations

from typing import Any

import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings

from shanju.accounts import service as accounts
from shanju.accounts.models import User
from shanju.core.db import Database
from tests.factories import make_user
from tests.summit.events_data import build_summit

EXAMPLES = 12
OURS = "/api/v1/summits"
REGISTRATION_WORDS = ("registration", "delegation", "ticket", "attendance", "certificate",
                      "export", "live", "moderat", "poll", "question", "chat", "sanction")


def test_events_api_on_a_real_summit_never_fails(app: FastAPI, db: Database) -> None:
    with db.transaction() as session:
        world = build_summit(session)
        organizer = session.get(User, world.organizer_id)
        assert organizer is not None
        attendee = make_user(session)
        tokens = [accounts.do_create_api_token(session=session, user=u, name="fuzz")[1]
                  for u in (organizer, attendee)]
    ids = {"slug": world.slug, "session_id": world.roundtable_id,
           "speaker_id": world.speaker_ids[0], "track_id": world.track_ids[0], "room_id": 1}

    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [r.ok() for r in schema.get_all_operations()]
    ours = [op for op in operations if op.path.startswith(OURS)
            and not any(word in op.path for word in REGISTRATION_WORDS)]
    assert len(ours) >= 20
    for operation in ours:
        fuzz(operation, ids, tokens)


def fuzz(operation: Any, ids: dict[str, Any], tokens: list[str]) -> None:
    label = f"{operation.method.upper()} {operation.path}"

    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy())
    def run(case: Any) -> None:
        params = dict(case.path_parameters or {})
        for name in params:
            if name in ids:
                params[name] = ids[name]
        case.path_parameters = params
        for token in tokens:
            case.headers = {**(case.headers or {}), "Authorization": f"Bearer {token}"}
            response = case.call()
            assert response.status_code < 500, (label, response.status_code,
                                                response.text[:500])
            if response.status_code >= 400:
                error = response.json()["error"]
                assert error["code"] and error["message"], label

    run()
