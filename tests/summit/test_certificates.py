"""Attendance certificates: a PDF that parses and carries the summit's Chinese name, with the
embedded CJK font (CI installs fonts-noto-cjk) or, without one, the STSong-Light fallback."""

from __future__ import annotations

import datetime as dt
import io

import pytest
from fastapi.testclient import TestClient
from pypdf import PdfReader

from shanju.core.db import Database
from shanju.summit import certificates
from shanju.summit.attendance import Beat, record_heartbeats
from tests.accounts.helpers import login
from tests.conftest import IN_CI
from tests.factories import make_user
from tests.summit.reg_helpers import SUMMIT_TITLE, make_session, make_staff, make_summit

T0 = dt.datetime(2026, 11, 30, 1, 0, tzinfo=dt.UTC)


def text_of(pdf: bytes) -> str:
    """The PDF's text without white space (extractors space CJK glyphs differently) and
    without NULs (pypdf reads fpdf2's two-byte codes as a NUL and the character; poppler's
    pdftotext reads them cleanly)."""
    reader = PdfReader(io.BytesIO(pdf))
    text = "".join(page.extract_text() for page in reader.pages)
    return "".join(ch for ch in text if not ch.isspace() and ch != "\x00")


def fonts_of(pdf: bytes) -> list[str]:
    reader = PdfReader(io.BytesIO(pdf))
    names = []
    for page in reader.pages:
        fonts = page["/Resources"]["/Font"]  # type: ignore[index]
        names += [str(fonts[key].get_object()["/BaseFont"]) for key in fonts]
    return names


def sample(sessions: int = 2) -> certificates.Certificate:
    return certificates.Certificate(
        number="summit-000042", summit_title=SUMMIT_TITLE,
        summit_title_en="China Internet Charity Summit 2026", starts_on=T0.date(),
        ends_on=T0.date() + dt.timedelta(days=1), person="张三丰",
        organization="北京春苗公益基金会",
        sessions=tuple(certificates.SessionLine(f"分论坛{i}:乡村振兴与数字公益", T0, 45 * 60)
                       for i in range(sessions)),
        issued_on=T0.date(),
    )


def test_the_certificate_embeds_a_cjk_font() -> None:
    font = certificates.find_cjk_font()
    if font is None:
        reason = "no CJK font on this machine (apt-get install fonts-noto-cjk)"
        if IN_CI:
            pytest.fail(f"{reason}: CI installs one")
        pytest.skip(reason)
    pdf = certificates.render(sample())
    assert pdf.startswith(b"%PDF-")
    text = text_of(pdf)
    assert SUMMIT_TITLE.replace(" ", "") in text
    assert "张三丰" in text and "北京春苗公益基金会" in text and "90" in text
    assert any("CJK" in name or "Hei" in name or "Ming" in name for name in fonts_of(pdf))
    assert len(pdf) < 200_000  # a subset, not the whole 16 MiB collection


def test_without_a_cjk_font_the_certificate_names_stsong(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(certificates, "find_cjk_font", lambda: None)
    certificates.render.cache_clear()
    assert certificates.font_status() == "STSong-Light (not embedded)"
    pdf = certificates.render(sample(sessions=40), locale="en")  # long: two pages
    reader = PdfReader(io.BytesIO(pdf))
    assert len(reader.pages) == 2
    text = text_of(pdf)
    assert SUMMIT_TITLE.replace(" ", "") in text and "张三丰" in text
    assert "Certificateofattendance" in text
    assert set(fonts_of(pdf)) == {"/STSong-Light"}
    certificates.render.cache_clear()


def test_the_certificate_page(client: TestClient, db: Database) -> None:
    with db.transaction() as s:
        summit = make_summit(s)
        keynote = make_session(s, summit=summit, title="主论坛:科技向善")
        staff = make_staff(s, name="王小明")
        donor = make_user(s)
        record_heartbeats(s, [Beat(keynote.id, staff.id, staff.organization_id, T0, 1800)])
        slug, staff_email, donor_email = summit.slug, staff.email, donor.email
    url = f"/summits/{slug}/certificate.pdf"
    assert client.get(url, follow_redirects=False).status_code == 303  # sign in first
    login(client, donor_email)
    r = client.get(url)
    assert r.status_code == 404 and "no_attendance" in r.text
    client.cookies.clear()
    login(client, staff_email)
    r = client.get(url)
    assert r.status_code == 200 and r.headers["content-type"] == "application/pdf"
    text = text_of(r.content)
    assert SUMMIT_TITLE.replace(" ", "") in text and "王小明" in text and "主论坛" in text
    assert f"{slug}/certificate.pdf" in client.get(f"/summits/{slug}/ticket").text
