"""Giving through the JSON API: idempotency, the sandbox callback, and every user error."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from shanju.core.db import Database
from shanju.ledger import service as ledger
from tests.money import World


def give(client: TestClient, world: World, key: str = "k1", **overrides: Any) -> Any:
    body = {"project_id": world.project_id, "amount_fen": 5000, "message": "加油"}
    body.update(overrides)
    return client.post("/api/v1/donations", json=body,
                       headers={**world.auth(), "Idempotency-Key": key})


def test_give_and_pay_credits_the_project_fund_once(
    client: TestClient, world: World, db: Database
) -> None:
    created = give(client, world)
    assert created.status_code == 201, created.text
    donation = created.json()
    assert donation["status"] == "pending"
    assert donation["donor_name"] == "张三丰"
    intent_id = donation["payment"]["intent_id"]

    paid = client.post(f"/api/v1/payments/sandbox/{intent_id}/complete",
                       json={"outcome": "succeeded"}, headers=world.auth())
    assert paid.status_code == 200, paid.text
    assert paid.json()["status"] == "succeeded"

    again = client.get(f"/api/v1/donations/{donation['id']}", headers=world.auth())
    assert again.json()["status"] == "paid"
    with db.transaction(write=False) as s:
        assert ledger.balance(s, ledger.project_fund(world.project_id)) == 5000
        assert ledger.balance(s, ledger.donor_clearing("sandbox")) == -5000
        assert ledger.check(s).ok

    listing = client.get("/api/v1/donations", headers=world.auth()).json()
    assert listing["total"] == 1 and listing["items"][0]["id"] == donation["id"]


def test_retry_with_same_key_and_body_returns_the_first_donation(
    client: TestClient, world: World, snapshot: Any
) -> None:
    first = give(client, world)
    before = snapshot()
    second = give(client, world)
    assert second.status_code == 200
    assert second.json()["id"] == first.json()["id"]
    assert snapshot() == before


def test_same_key_with_a_different_body_is_refused_and_changes_nothing(
    client: TestClient, world: World, snapshot: Any
) -> None:
    give(client, world)
    before = snapshot()
    response = give(client, world, amount_fen=6000)
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "idempotency_key_reused"
    assert snapshot() == before


@pytest.mark.parametrize(
    ("overrides", "status", "code"),
    [
        ({"amount_fen": 0}, 422, "amount_not_positive"),
        ({"amount_fen": -100}, 422, "amount_not_positive"),
        ({"amount_fen": 12.5}, 422, "amount_not_whole_fen"),
        ({"amount_fen": "100"}, 422, "amount_not_whole_fen"),
        ({"amount_fen": True}, 422, "amount_not_whole_fen"),
        ({"amount_fen": 10**13}, 422, "amount_too_large"),
        ({"project_id": 999999}, 404, "project_not_found"),
        ({"message": "很" * 201}, 422, "message_too_long"),
        ({"project_id": "abc"}, 422, "validation_error"),
        ({"surprise": 1}, 422, "validation_error"),
    ],
)
def test_bad_donation_requests_get_a_clear_error_and_change_nothing(
    client: TestClient, world: World, snapshot: Any, overrides: dict[str, Any], status: int,
    code: str,
) -> None:
    before = snapshot()
    response = give(client, world, **overrides)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert error["message"]
    assert snapshot() == before


def test_project_not_fundraising_is_refused(client: TestClient, world: World, snapshot: Any
                                            ) -> None:
    before = snapshot()
    response = give(client, world, project_id=world.closed_project_id)
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "project_not_fundraising"
    assert snapshot() == before


def test_missing_idempotency_key_and_missing_token_are_refused(
    client: TestClient, world: World, snapshot: Any
) -> None:
    before = snapshot()
    no_key = client.post("/api/v1/donations", headers=world.auth(),
                         json={"project_id": world.project_id, "amount_fen": 100})
    assert no_key.status_code == 422
    assert no_key.json()["error"]["code"] == "idempotency_key_required"
    anonymous = client.post("/api/v1/donations", headers={"Idempotency-Key": "x"},
                            json={"project_id": world.project_id, "amount_fen": 100})
    assert anonymous.status_code == 401
    bad_token = client.post("/api/v1/donations",
                            headers={"Idempotency-Key": "x", "Authorization": "Bearer nope"},
                            json={"project_id": world.project_id, "amount_fen": 100})
    assert bad_token.status_code == 401
    assert bad_token.json()["error"]["code"] == "invalid_token"
    assert snapshot() == before


def test_other_people_cannot_see_or_refund_a_donation(
    client: TestClient, world: World, snapshot: Any
) -> None:
    donation = give(client, world).json()
    client.post(f"/api/v1/payments/sandbox/{donation['payment']['intent_id']}/complete",
                json={}, headers=world.auth())
    before = snapshot()
    other = client.get(f"/api/v1/donations/{donation['id']}",
                       headers=world.auth(world.other_staff_token))
    assert other.status_code == 404
    refund = client.post(f"/api/v1/donations/{donation['id']}/refunds", json={"reason": "x"},
                         headers=world.auth(world.other_staff_token))
    assert refund.status_code == 404
    donor_refund = client.post(f"/api/v1/donations/{donation['id']}/refunds",
                               json={"reason": "x"}, headers=world.auth())
    assert donor_refund.status_code == 403
    assert donor_refund.json()["error"]["code"] == "refund_not_allowed"
    assert snapshot() == before


def test_receiving_organization_refunds_through_the_provider(
    client: TestClient, world: World, db: Database
) -> None:
    donation = give(client, world).json()
    client.post(f"/api/v1/payments/sandbox/{donation['payment']['intent_id']}/complete",
                json={}, headers=world.auth())
    refund = client.post(f"/api/v1/donations/{donation['id']}/refunds",
                         json={"reason": "捐赠人误操作"}, headers=world.auth(world.staff_token))
    assert refund.status_code == 201, refund.text
    after = client.get(f"/api/v1/donations/{donation['id']}", headers=world.auth()).json()
    assert after["status"] == "refunded"
    with db.transaction(write=False) as s:
        assert ledger.balance(s, ledger.project_fund(world.project_id)) == 0
        assert ledger.balance(s, ledger.REFUNDS) == 0
        assert ledger.balance(s, ledger.donor_clearing("sandbox")) == 0
        assert ledger.check(s).ok
    twice = client.post(f"/api/v1/donations/{donation['id']}/refunds",
                        json={"reason": "again"}, headers=world.auth(world.reviewer_token))
    assert twice.status_code == 409
    assert twice.json()["error"]["code"] == "not_refundable"
