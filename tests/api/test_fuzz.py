"""Fuzz the JSON API from its own OpenAPI document: whatever a client sends, the answer is
never a server error, and every JSON error has the documented shape (a code and a message).

Every operation in ``/openapi.json`` gets generated requests (Schemathesis strategies, run by
Hypothesis), once as an anonymous client and once as a signed-in donor.
"""

from __future__ import annotations

from typing import Any

import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings

from tests.money import World

EXAMPLES_PER_OPERATION = 15


def check(response: Any, label: str) -> None:
    assert response.status_code < 500, (label, response.status_code, response.text[:500])
    content_type = response.headers.get("content-type") or ""
    if isinstance(content_type, list):  # Schemathesis keeps every value of a header
        content_type = content_type[0]
    if response.status_code >= 400 and content_type.startswith("application/json"):
        error = response.json()["error"]
        assert isinstance(error["code"], str) and error["code"], label
        assert isinstance(error["message"], str) and error["message"], label


def test_api_never_answers_with_a_server_error(app: FastAPI, world: World) -> None:
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 20  # the whole API, not a stub

    for operation in operations:
        fuzz(operation, world)


def fuzz(operation: Any, world: World) -> None:
    label = f"{operation.method.upper()} {operation.path}"

    @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy())
    def run(case: Any) -> None:
        for auth in ({}, world.auth()):
            case.headers = {**(case.headers or {}), **auth, "Idempotency-Key": "fuzz"}
            check(case.call(), label)

    run()
