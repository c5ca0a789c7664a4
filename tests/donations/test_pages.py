"""Giving through the pages: the donate form, the sandbox cashier and "my donations"."""

from __future__ import annotations

import re
from typing import Any

from fastapi.testclient import TestClient

from shanju.core.db import Database
from shanju.ledger import service as ledger
from tests.factories import PASSWORD
from tests.money import World


def csrf(client: TestClient, path: str) -> str:
    page = client.get(path)
    match = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert match, page.text[:500]
    return match.group(1)


def login(client: TestClient, db: Database, world: World) -> None:
    from shanju.accounts import service as accounts
    from shanju.accounts.models import User

    with db.transaction() as s:
        user = s.get_one(User, world.donor_id)
        token = accounts.do_start_session(session=s, user=user)
    client.cookies.set("sj_session", token)
    assert PASSWORD  # the same user can also sign in through /login


def form(client: TestClient, world: World, **overrides: str) -> dict[str, str]:
    data = {"csrf_token": csrf(client, f"/projects/{world.project_id}/donate"), "amount": "20",
            "custom_amount": "", "donor_name": "张三丰", "message": "加油",
            "province": "四川", "idempotency_key": "form-key-1"}
    data.update(overrides)
    return data


def test_donate_pay_and_see_it_in_my_donations(client: TestClient, world: World, db: Database
                                               ) -> None:
    login(client, db, world)
    response = client.post(f"/projects/{world.project_id}/donate", data=form(client, world),
                           follow_redirects=False)
    assert response.status_code == 303, response.text
    cashier = response.headers["location"]
    assert cashier.startswith("/pay/sandbox/pi_")
    page = client.get(cashier)
    assert "¥20.00" in page.text
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token
    paid = client.post(cashier, data={"csrf_token": token.group(1), "action": "pay"})
    assert paid.status_code == 200
    assert "data-code" not in paid.text
    mine = client.get("/me/donations")
    assert "¥20.00" in mine.text
    with db.transaction(write=False) as s:
        assert ledger.balance(s, ledger.project_fund(world.project_id)) == 2000


def test_double_submit_of_the_same_form_creates_one_donation(
    client: TestClient, world: World, db: Database, snapshot: Any
) -> None:
    login(client, db, world)
    data = form(client, world)
    first = client.post(f"/projects/{world.project_id}/donate", data=data,
                        follow_redirects=False)
    before = snapshot()
    second = client.post(f"/projects/{world.project_id}/donate", data=data,
                         follow_redirects=False)
    assert first.headers["location"] == second.headers["location"]
    assert snapshot() == before


def test_form_errors_are_readable_and_change_nothing(
    client: TestClient, world: World, db: Database, snapshot: Any
) -> None:
    login(client, db, world)
    before = snapshot()
    for custom, code in [("0", "amount_not_positive"), ("1.234", "amount_not_whole_fen"),
                         ("abc", "amount_not_a_number"), ("-5", "amount_not_positive")]:
        response = client.post(f"/projects/{world.project_id}/donate",
                               data=form(client, world, custom_amount=custom))
        assert response.status_code == 422
        assert f'data-code="{code}"' in response.text
        assert 'value="' + custom + '"' in response.text  # the input is kept
    closed = client.post(f"/projects/{world.closed_project_id}/donate",
                         data=form(client, world))
    assert closed.status_code == 409
    assert snapshot() == before


def test_donating_requires_sign_in_and_a_csrf_token(
    client: TestClient, world: World, db: Database, snapshot: Any
) -> None:
    before = snapshot()
    anonymous = client.post(f"/projects/{world.project_id}/donate", data=form(client, world),
                            follow_redirects=False)
    assert anonymous.status_code == 303
    assert anonymous.headers["location"].startswith("/login")
    login(client, db, world)
    forged = client.post(f"/projects/{world.project_id}/donate",
                         data=form(client, world, csrf_token="forged"))
    assert forged.status_code == 403
    assert 'data-code="csrf_failed"' in forged.text
    assert snapshot() == before


def test_choices_made_before_signing_in_come_back_on_the_donate_form(
    client: TestClient, world: World, db: Database, snapshot: Any
) -> None:
    before = snapshot()
    anonymous = client.post(
        f"/projects/{world.project_id}/donate",
        data=form(client, world, amount="100", donor_name="", message="孩子们 加油&冲"),
        follow_redirects=False)
    assert snapshot() == before  # nothing is created before signing in
    login_page = anonymous.headers["location"]
    assert login_page.startswith("/login?next=")
    # The sign-in page (and its sign-up link) hands the donate page back with the choices.
    html = client.get(login_page).text
    next_path = re.search(r'name="next" value="([^"]+)"', html)
    assert next_path
    donate_path = next_path.group(1).replace("&amp;", "&")
    assert donate_path.startswith(f"/projects/{world.project_id}/donate?")
    login(client, db, world)
    page = client.get(donate_path).text
    assert re.search(r'name="amount" value="100" checked', page)
    assert 'value="孩子们 加油&amp;冲"' in page
    assert 'value="四川" selected' in page


def test_an_amount_error_is_shown_once_under_the_field_it_belongs_to(
    client: TestClient, world: World, db: Database
) -> None:
    login(client, db, world)
    response = client.post(f"/projects/{world.project_id}/donate",
                           data=form(client, world, amount="20", custom_amount="1.234"))
    assert response.status_code == 422
    html = response.text
    # One message, under the amount field, which points to it and is marked invalid.
    assert html.count("金额最多保留两位小数") == 1
    assert 'class="form-error"' not in html
    assert re.search(r'<div class="field-error" id="amount-error" role="alert" '
                     r'data-code="amount_not_whole_fen">', html)
    amount_input = re.search(r'<input [^>]*id="custom_amount"[^>]*>', html)
    assert amount_input
    assert 'aria-invalid="true"' in amount_input.group(0)
    assert 'aria-describedby="amount-error"' in amount_input.group(0)
    assert 'value="1.234"' in amount_input.group(0)
    # The amount the donor typed wins: no preset stays chosen next to it.
    assert not re.search(r'name="amount" value="\d+" checked', html)
    # The other fields are not marked.
    assert html.count('aria-invalid="true"') == 1


def test_an_error_of_no_field_is_shown_once_above_the_form(
    client: TestClient, world: World, db: Database
) -> None:
    login(client, db, world)
    html = client.post(f"/projects/{world.closed_project_id}/donate",
                       data=form(client, world)).text
    assert len(re.findall(r'class="(?:form|field)-error"', html)) <= 1
    assert 'aria-invalid="true"' not in html


def test_a_chosen_preset_is_kept_after_an_error_of_another_field(
    client: TestClient, world: World, db: Database
) -> None:
    login(client, db, world)
    html = client.post(f"/projects/{world.project_id}/donate",
                       data=form(client, world, amount="50", message="长" * 201)).text
    assert re.search(r'name="amount" value="50" checked', html)
    message_input = re.search(r'<input [^>]*id="message"[^>]*>', html)
    assert message_input and 'aria-describedby="message-error"' in message_input.group(0)
