"""Who may fetch an uploaded file: whoever may see the project it belongs to (item 7 of
issue 11: ``/files/{id}`` served a draft project's files to anyone by sequential id)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from shanju.core import files
from shanju.core.config import Settings
from shanju.core.db import Database
from shanju.projects import service
from shanju.projects.models import ProjectStatus
from tests.factories import make_org, make_project
from tests.projects.helpers import PDF, PNG, paid_donation, reviewer, sign_in, staff_of

S = ProjectStatus


def _project_with_files(db: Database, upload_dir: Path, status: ProjectStatus
                        ) -> dict[str, int]:
    """A project of ``status`` with a cover, an update photo and a disclosure's receipt."""
    with db.transaction() as s:
        org = make_org(s)
        project = make_project(s, org=org, status=S.FUNDRAISING)
        staff = staff_of(s, org)
        paid_donation(s, project, amount_fen=10_000)
        cover = service.do_set_cover(session=s, actor=staff, project=project,
                                     upload=files.Upload("c.png", PNG), upload_dir=upload_dir)
        update = service.do_post_update(session=s, actor=staff, project=project, title="进展",
                                        body="第一批", photos=[files.Upload("p.png", PNG)],
                                        upload_dir=upload_dir)
        usage = service.do_disclose_fund_usage(
            session=s, actor=staff, project=project, amount="10", purpose="采购",
            spent_on="2020-01-02", attachments=[files.Upload("发票.pdf", PDF)],
            upload_dir=upload_dir)
        atts = {a.owner_type: a.id for owner_type, ids in (
            ("project_update", [update.id]), ("fund_usage", [usage.id]))
            for a in files.attachments_of(session=s, owner_type=owner_type,
                                          owner_ids=ids)[ids[0]]}
        project.status = status  # e.g. back to a draft: as if never published
        other_staff = staff_of(s, make_org(s))
        return {"cover": cover.id, **atts, "staff": staff.id, "other_staff": other_staff.id,
                "reviewer": reviewer(s).id}


@pytest.mark.parametrize("status", [S.DRAFT, S.SUBMITTED, S.REJECTED])
def test_an_unpublished_projects_files_are_not_served_to_others(
        client: TestClient, db: Database, settings: Settings, status: ProjectStatus) -> None:
    ids = _project_with_files(db, settings.upload_dir, status)
    kinds = ("cover", "project_update", "fund_usage")
    for kind in kinds:  # anonymous: the same answer as a file that does not exist
        got = client.get(f"/files/{ids[kind]}")
        assert got.status_code == 404, kind
        assert 'data-code="file_not_found"' in got.text
    sign_in(client, db, ids["other_staff"])
    assert all(client.get(f"/files/{ids[k]}").status_code == 404 for k in kinds)
    for who in ("staff", "reviewer"):
        sign_in(client, db, ids[who])
        for kind in kinds:
            got = client.get(f"/files/{ids[kind]}")
            assert got.status_code == 200, (who, kind)
            assert got.headers["cache-control"] == "private, no-store"


def test_a_public_projects_files_are_served_to_anyone(client: TestClient, db: Database,
                                                      settings: Settings) -> None:
    ids = _project_with_files(db, settings.upload_dir, S.EXECUTING)
    for kind in ("cover", "project_update", "fund_usage"):
        got = client.get(f"/files/{ids[kind]}")
        assert got.status_code == 200, kind
        assert got.headers["cache-control"] == "public, max-age=86400"


def test_a_file_of_no_project_is_only_for_its_uploader_and_reviewers(
        client: TestClient, db: Database, settings: Settings) -> None:
    with db.transaction() as s:
        org = make_org(s)
        uploader = staff_of(s, org)
        colleague = staff_of(s, org)
        att = files.do_store_upload(session=s, upload_dir=settings.upload_dir,
                                    upload=files.Upload("a.png", PNG), owner_type="unlinked",
                                    owner_id=None, actor_id=uploader.id)
        ids = {"att": att.id, "uploader": uploader.id, "colleague": colleague.id,
               "reviewer": reviewer(s).id}
    assert client.get(f"/files/{ids['att']}").status_code == 404
    sign_in(client, db, ids["colleague"])
    assert client.get(f"/files/{ids['att']}").status_code == 404
    for who in ("uploader", "reviewer"):
        sign_in(client, db, ids[who])
        assert client.get(f"/files/{ids['att']}").status_code == 200


def test_the_donate_pages_of_an_unpublished_project_are_not_found(client: TestClient,
                                                                  db: Database) -> None:
    with db.transaction() as s:
        pid = make_project(s, org=make_org(s), status=S.DRAFT, title="尚未公开的草稿").id
    page = client.get(f"/projects/{pid}/donate")
    assert page.status_code == 404 and "尚未公开的草稿" not in page.text
