"""Fund-usage disclosures move money through the ledger; uploads are checked by their bytes."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select

from shanju.core import files
from shanju.core.db import Database
from shanju.core.errors import Conflict, InvalidInput
from shanju.core.files import Attachment
from shanju.ledger import service as ledger
from shanju.ledger.models import JournalEntry
from shanju.projects import service
from shanju.projects.models import FundUsage, ProjectStatus, ProjectUpdate
from tests.factories import make_org, make_project
from tests.projects.helpers import JPEG, PDF, PNG, paid_donation, staff_of


def _count(s, model) -> int:  # type: ignore[no-untyped-def]
    return int(s.scalar(select(func.count()).select_from(model)) or 0)


def test_disclosure_moves_money_to_the_receiving_organization(db: Database,
                                                              tmp_path: Path) -> None:
    with db.transaction() as s:
        org = make_org(s, qualified=False)
        partner = make_org(s)
        project = make_project(s, org=org, recipient=partner)
        paid_donation(s, project, amount_fen=10_000)
        usage = service.do_disclose_fund_usage(
            session=s, actor=staff_of(s, org), project=project, amount="60.50",
            purpose="采购温暖包", description="第一批", spent_on="2020-01-02",
            attachments=[files.Upload("发票.pdf", PDF)], upload_dir=tmp_path)
        assert usage.amount_fen == 6_050 and usage.journal_entry_id is not None
        assert ledger.balance(s, ledger.project_fund(project.id)) == 3_950
        assert ledger.balance(s, ledger.organization(partner.id)) == 6_050
        assert service.disclosed_total(session=s, project_id=project.id) == 6_050
        att = s.scalars(select(Attachment).where(Attachment.owner_type == "fund_usage")).one()
        assert att.content_type == "application/pdf" and att.owner_id == usage.id
        assert files.path_for(tmp_path, att.sha256).read_bytes() == PDF


def test_disclosure_overdraft_is_refused_and_nothing_is_saved(db: Database,
                                                              tmp_path: Path) -> None:
    with db.transaction() as s:
        org = make_org(s)
        project = make_project(s, org=org)
        paid_donation(s, project, amount_fen=10_000)
        staff = staff_of(s, org)
        pid, sid = project.id, staff.id
        entries_before = _count(s, JournalEntry)
    with db.transaction() as s:
        project = service.get_project(session=s, project_id=pid)
        with pytest.raises(ledger.InsufficientFunds) as err:
            service.do_disclose_fund_usage(
                session=s, actor=s.get(staff.__class__, sid), project=project,  # type: ignore[arg-type]
                amount="100.01", purpose="超额支出", spent_on="2020-01-02",
                attachments=[files.Upload("a.png", PNG)], upload_dir=tmp_path)
        assert err.value.code == "insufficient_funds"
        assert "¥100.00" in err.value.message and "¥100.01" in err.value.message
    with db.transaction() as s:
        assert _count(s, FundUsage) == 0 and _count(s, Attachment) == 0
        assert _count(s, JournalEntry) == entries_before
        assert ledger.balance(s, ledger.project_fund(pid)) == 10_000


@pytest.mark.parametrize(("amount", "code"), [
    ("0", "amount_not_positive"), ("abc", "amount_not_a_number"), ("1.001", "amount_not_whole_fen"),
])
def test_disclosure_amount_errors(db: Database, tmp_path: Path, amount: str, code: str) -> None:
    with db.transaction() as s:
        org = make_org(s)
        project = make_project(s, org=org)
        with pytest.raises(InvalidInput) as err:
            service.do_disclose_fund_usage(session=s, actor=staff_of(s, org), project=project,
                                           amount=amount, purpose="p", spent_on="2020-01-02",
                                           upload_dir=tmp_path)
        assert err.value.code == code and _count(s, FundUsage) == 0


def test_disclosure_needs_a_project_that_has_started(db: Database, tmp_path: Path) -> None:
    with db.transaction() as s:
        org = make_org(s)
        project = make_project(s, org=org, status=ProjectStatus.APPROVED)
        with pytest.raises(Conflict) as err:
            service.do_disclose_fund_usage(session=s, actor=staff_of(s, org), project=project,
                                           amount="1", purpose="p", spent_on="2020-01-02",
                                           upload_dir=tmp_path)
        assert err.value.code == "project_not_reportable"


def test_update_with_photos_and_a_refused_photo(db: Database, tmp_path: Path) -> None:
    with db.transaction() as s:
        org = make_org(s)
        project = make_project(s, org=org)
        staff = staff_of(s, org)
        update = service.do_post_update(
            session=s, actor=staff, project=project, title="第一批物资已送达",
            body="300个温暖包送到了怒江州的两所小学。",
            photos=[files.Upload("1.jpg", JPEG), files.Upload("2.png", PNG)], upload_dir=tmp_path)
        assert len(files.attachments_of(session=s, owner_type="project_update",
                                        owner_ids=[update.id])[update.id]) == 2
        with pytest.raises(InvalidInput) as err:
            service.do_post_update(session=s, actor=staff, project=project, title="t", body="b",
                                   photos=[files.Upload("x.pdf", PDF)], upload_dir=tmp_path)
        assert err.value.code == "file_type_not_allowed"
        assert _count(s, ProjectUpdate) == 1 and _count(s, Attachment) == 2


@pytest.mark.parametrize(("data", "code"), [
    (b"", "file_empty"),
    (b"MZ\x90\x00 not an image", "file_type_not_allowed"),
    (b"<svg xmlns='http://www.w3.org/2000/svg'/>", "file_type_not_allowed"),
    (PNG + b"\x00" * files.MAX_UPLOAD_BYTES, "file_too_large"),
])
def test_upload_errors(data: bytes, code: str) -> None:
    with pytest.raises(InvalidInput) as err:
        files.check_upload(files.Upload("证书.png", data))
    assert err.value.code == code and "证书.png" in err.value.message


def test_sniffing_ignores_the_name() -> None:
    assert files.check_upload(files.Upload("invoice.exe", PDF)) == "application/pdf"
    assert files.sniff_content_type(b"RIFF\x00\x00\x00\x00WEBPVP8 ") == "image/webp"
    assert files.clean_filename("../../etc/passwd") == "passwd"
    with pytest.raises(InvalidInput) as err:
        files.check_uploads([files.Upload("a.png", PNG)] * (files.MAX_FILES_PER_POST + 1))
    assert err.value.code == "too_many_files"
