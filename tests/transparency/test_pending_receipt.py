"""A donor's own gift whose log entry is not there yet gets the "being recorded" page, whichever
way it came (an ordinary donation or a giving-day gift); anyone else gets the 404."""

from __future__ import annotations

from fastapi.testclient import TestClient

from shanju.core.db import Database
from tests.factories import make_campaign, make_campaign_gift, make_org, make_project, make_user
from tests.projects.helpers import paid_donation, sign_in


def test_pending_receipts_of_both_kinds_for_their_donor_only(client: TestClient,
                                                             db: Database) -> None:
    # Written as rows, without log entries: exactly the moment before the log has them.
    with db.transaction() as s:
        project = make_project(s, org=make_org(s))
        campaign = make_campaign(s, projects=[project])
        donor, stranger = make_user(s), make_user(s)
        donation = paid_donation(s, project, donor=donor).public_id
        order = make_campaign_gift(s, campaign=campaign, project=project, donor=donor).order_id
        ids = donor.id, stranger.id
    refs = [f"donation:{donation}", f"gift:{order}"]
    sign_in(client, db, ids[0])
    for ref in refs:
        page = client.get(f"/transparency/receipts/{ref}")
        assert page.status_code == 200 and 'data-verify-status="pending"' in page.text
    # The right id under the other kind's name is no gift of theirs.
    assert client.get(f"/transparency/receipts/gift:{donation}").status_code == 404
    sign_in(client, db, ids[1])
    for ref in refs:
        assert client.get(f"/transparency/receipts/{ref}").status_code == 404
