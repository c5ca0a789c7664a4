"""A hidden message disappears from every page and every API that shows messages; the gift
stays. Held messages (the word list) are shown to nobody but their donor until released.

Each surface below is one place a gift's message is shown (docs/moderation.md lists them); a
test reads the templates, so a new page that prints a gift's message by itself fails here.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

import shanju
from shanju.core.db import Database
from tests.moderation.helpers import (
    GIVING_DAY_MESSAGE,
    ORDINARY_MESSAGE,
    World,
    as_user,
    make_world,
)
from tests.projects.helpers import api_token

TEMPLATES = Path(shanju.__file__).parent / "templates"


@dataclass(frozen=True)
class Surface:
    """Where a message is shown: who looks, at what, which of the two gifts it shows, and a
    text that stays there once the message is hidden (the gift)."""

    who: str  # visitor, donor, staff
    path: Callable[[World], str]
    api: bool
    shows: tuple[str, ...]  # "ordinary", "giving_day"
    gift: Callable[[World], str]


SURFACES = {
    "project page": Surface("visitor", lambda w: f"/projects/{w.project_id}", False,
                            ("ordinary", "giving_day"), lambda _w: "¥88"),
    "project gifts API": Surface("visitor", lambda w: f"/api/v1/projects/{w.project_id}/donations",
                                 True, ("ordinary", "giving_day"), lambda w: w.gift_order),
    "console project page": Surface("staff", lambda w: f"/console/projects/{w.project_id}",
                                    False, ("ordinary",), lambda _w: "¥50"),
    "donation page": Surface("donor", lambda w: f"/donations/{w.donation_id}", False,
                             ("ordinary",), lambda w: w.donation_id),
    "donation API": Surface("donor", lambda w: f"/api/v1/donations/{w.donation_id}", True,
                            ("ordinary",), lambda w: w.donation_id),
    "my donations API": Surface("donor", lambda _w: "/api/v1/donations", True, ("ordinary",),
                                lambda w: w.donation_id),
    "order page": Surface("donor", lambda w: f"/gifts/orders/{w.donation_order}", False,
                          ("ordinary",), lambda w: w.donation_order),
    "giving-day order page": Surface("donor", lambda w: f"/gifts/orders/{w.gift_order}", False,
                                     ("giving_day",), lambda w: w.gift_order),
    "giving-day thank-you page": Surface("donor", lambda w: f"/campaigns/orders/{w.gift_order}",
                                         False, ("giving_day",), lambda w: w.gift_order),
    "report page": Surface("visitor", lambda w: f"/gift-messages/{w.donation_id}/report", False,
                           ("ordinary",), lambda _w: ""),
}
TEXTS = {"ordinary": ORDINARY_MESSAGE, "giving_day": GIVING_DAY_MESSAGE}


def _look(client: TestClient, db: Database, w: World, surface: Surface) -> tuple[int, str]:
    user = {"visitor": None, "donor": w.donor_id, "staff": w.staff_id}[surface.who]
    if surface.api and user is not None:
        client.cookies.clear()
        response = client.get(surface.path(w), headers=api_token(db, user))
    else:
        as_user(client, db, user)
        response = client.get(surface.path(w))
    return response.status_code, response.text


def _decide(client: TestClient, db: Database, w: World, action: str, gift_id: str,
            reason: str = "") -> None:
    client.cookies.clear()
    answer = client.post(f"/api/v1/gift-messages/{gift_id}/{action}",
                         headers=api_token(db, w.staff_id), json={"reason": reason or None})
    assert answer.status_code == 200, answer.text


@pytest.mark.parametrize("name", list(SURFACES))
def test_a_hidden_message_disappears_and_comes_back_when_shown_again(
        name: str, client: TestClient, db: Database) -> None:
    surface = SURFACES[name]
    w = make_world(db)
    status, before = _look(client, db, w, surface)
    assert status == 200, before
    for kind in surface.shows:
        assert TEXTS[kind] in before, (name, kind)

    for gift_id in (w.donation_id, w.gift_order):
        _decide(client, db, w, "hide", gift_id, reason="含有不当内容")
    status, after = _look(client, db, w, surface)
    for text in TEXTS.values():
        assert text not in after, (name, text)
    if name == "report page":
        assert status == 404  # a hidden message cannot be reported: there is nothing to see
    else:
        assert status == 200, after
        assert surface.gift(w) in after  # the gift itself stays

    for gift_id in (w.donation_id, w.gift_order):
        _decide(client, db, w, "show", gift_id)
    status, again = _look(client, db, w, surface)
    assert status == 200
    for kind in surface.shows:
        assert TEXTS[kind] in again, (name, kind)


def test_the_donor_is_told_their_message_was_hidden_and_why(client: TestClient,
                                                           db: Database) -> None:
    w = make_world(db)
    _decide(client, db, w, "hide", w.donation_id, reason="包含他人电话")
    as_user(client, db, w.donor_id)
    page = client.get(f"/donations/{w.donation_id}")
    assert 'data-message-status="hidden"' in page.text
    assert "包含他人电话" in page.text and ORDINARY_MESSAGE not in page.text
    client.cookies.clear()
    read = client.get(f"/api/v1/donations/{w.donation_id}",
                      headers=api_token(db, w.donor_id)).json()
    assert (read["message"], read["message_status"]) == ("", "hidden")
    assert read["amount_fen"] == 5_000 and read["status"] == "paid"


HELD = "加我微信领红包"


def test_a_held_message_is_shown_only_to_its_donor_until_the_organization_publishes_it(
        client: TestClient, db: Database) -> None:
    w = make_world(db, ordinary_message=HELD)
    public = [s for s in SURFACES.values() if s.who == "visitor" and s.path(w).find("report")
              < 0]
    for surface in public:
        status, text = _look(client, db, w, surface)
        assert status == 200 and HELD not in text and GIVING_DAY_MESSAGE in text
    as_user(client, db, None)
    assert client.get(f"/gift-messages/{w.donation_id}/report").status_code == 404
    # Its donor sees it, with a word that it waits for review.
    for name in ("donation page", "order page"):
        status, text = _look(client, db, w, SURFACES[name])
        assert HELD in text and 'data-message-status="held"' in text, name
    status, text = _look(client, db, w, SURFACES["donation API"])
    assert '"message_status":"held"' in text
    # The organization's staff see it in the review queue, with what held it.
    staff = client.get("/api/v1/gift-messages", headers=api_token(db, w.staff_id)).json()
    assert [(m["gift_id"], m["held_for"]) for m in staff["held"]] == [
        (w.donation_id, ["加我微信"])]
    status, text = _look(client, db, w, SURFACES["console project page"])
    assert HELD not in text and 'data-message-status="held"' in text
    # Published: everyone sees it.
    _decide(client, db, w, "show", w.donation_id, reason="核实为正常留言")
    for surface in public:
        assert HELD in _look(client, db, w, surface)[1]


# Fields of gift-like objects a template must not print itself: a gift's message reaches a
# page only through moderation (a MessageView, or the public messages of a list).
_RAW_MESSAGE = re.compile(r"\b(?:d|g|gift|order|donation|intent|row|item)\.message\b")


def test_no_template_prints_a_gift_message_without_moderation() -> None:
    offenders = [f"{path.relative_to(TEMPLATES)}: {line.strip()}"
                 for path in sorted(TEMPLATES.rglob("*.html"))
                 for line in path.read_text(encoding="utf-8").splitlines()
                 if _RAW_MESSAGE.search(line)]
    assert offenders == [], (
        "these templates print a gift's message field: show moderation's view of it "
        f"instead (docs/moderation.md): {offenders}")


def test_the_template_check_sees_a_raw_message() -> None:
    assert _RAW_MESSAGE.search('{% if d.message %}<span>{{ d.message }}</span>{% endif %}')
    assert not _RAW_MESSAGE.search("{{ message_view.for_donor }} {{ error.message }}")
