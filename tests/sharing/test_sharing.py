"""Sharing and trust in people's words (issue 14): the share poster (a PNG of the expected size
whose QR code decodes to the project's page), share metadata WeChat reads, the thank-you page
(the gift, its match — sponsor, amount, why the rest was not — its receipt and "invite friends"),
the partial-match explanation headed as what it is, and the receipt page in plain words."""

from __future__ import annotations

import io
import re

import pytest
import zxingcpp
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy.orm import Session

from shanju.core.clock import utcnow
from shanju.core.config import Settings
from shanju.core.db import Database
from shanju.core.i18n import gettext
from shanju.core.ids import public_id
from shanju.gifts import flows as gift_flows
from shanju.payments.models import IntentStatus, PaymentIntent
from shanju.projects.models import Project, ProjectStatus
from shanju.sharing import poster
from shanju.sharing.poster import PosterText, render_poster
from tests.factories import make_campaign, make_campaign_gift, make_org, make_pool, make_project

POSTER_SIZE = (750, 1200)


def zh(message: str) -> str:
    return gettext("zh_CN", message)


def _decode(png: bytes) -> list[str]:
    with Image.open(io.BytesIO(png)) as image:
        assert image.format == "PNG" and image.size == POSTER_SIZE
        return [r.text for r in zxingcpp.read_barcodes(image.convert("RGB"))]


def _text(title: str = "山区孩子过冬棉衣") -> PosterText:
    return PosterText(title=title, summary="为山区孩子送去温暖", donor_line="张** 支持了这个项目",
                      call="一起来行善", scan_hint="长按或扫描二维码", brand="善举")


def test_the_poster_is_a_png_whose_qr_code_opens_the_project() -> None:
    url = "https://give.example.org/projects/42"
    assert _decode(render_poster(text=_text(), url=url)) == [url]


def test_a_cover_is_drawn_and_a_broken_one_is_left_out() -> None:
    cover = io.BytesIO()
    Image.new("RGB", (1600, 900), (10, 120, 80)).save(cover, format="PNG")
    url = "https://give.example.org/projects/7"
    with_cover = render_poster(text=_text("标题" * 40), url=url, cover=cover.getvalue())
    assert _decode(with_cover) == [url]
    with Image.open(io.BytesIO(with_cover)) as image:
        assert image.convert("RGB").getpixel((375, 200)) == (10, 120, 80)  # the cover's colour
    broken = render_poster(text=_text(), url=url, cover=b"not an image")
    assert _decode(broken) == [url]
    with Image.open(io.BytesIO(broken)) as image:
        assert image.convert("RGB").getpixel((375, 200)) != (10, 120, 80)


def test_without_a_cjk_font_the_poster_is_still_drawn(monkeypatch: pytest.MonkeyPatch,
                                                      tmp_path: object) -> None:
    # The documented fallback: no CJK font anywhere → Pillow's own font; the QR code is right.
    monkeypatch.setattr(poster, "FONT_CANDIDATES", ())
    poster.font_files.cache_clear()
    poster._font.cache_clear()  # noqa: SLF001 - fonts are cached per process
    try:
        assert poster.font_files("") is None
        url = "https://give.example.org/projects/9"
        assert _decode(render_poster(text=_text(), url=url)) == [url]
    finally:
        poster.font_files.cache_clear()
        poster._font.cache_clear()  # noqa: SLF001


def test_the_project_poster_route(client: TestClient, db: Database, settings: Settings) -> None:
    with db.transaction() as s:
        org = make_org(s)
        pid = make_project(s, org=org).id
        draft = make_project(s, org=org, status=ProjectStatus.DRAFT).id
    answer = client.get(f"/projects/{pid}/poster.png")
    assert answer.status_code == 200 and answer.headers["content-type"] == "image/png"
    assert answer.headers["cache-control"].startswith("public")
    assert _decode(answer.content) == [f"{settings.base_url}/projects/{pid}"]
    assert client.get(f"/projects/{draft}/poster.png").status_code == 404


def test_share_metadata_on_the_project_page(client: TestClient, db: Database,
                                            settings: Settings) -> None:
    with db.transaction() as s:
        project = make_project(s, org=make_org(s), title="乡村学校冬季温暖包")
        pid, summary = project.id, project.summary
    page = client.get(f"/projects/{pid}").text
    url = f"{settings.base_url}/projects/{pid}"
    for tag in ('<meta property="og:title" content="乡村学校冬季温暖包">',
                f'<meta property="og:description" content="{summary}">',
                f'<meta property="og:image" content="{url}/poster.png">',
                f'<meta property="og:url" content="{url}">',
                f'<meta name="description" content="{summary}">',
                '<meta itemprop="name" content="乡村学校冬季温暖包">',
                f'<meta itemprop="image" content="{url}/poster.png">'):
        assert tag in page, tag
    assert "<title>乡村学校冬季温暖包 · " in page
    assert f'href="/projects/{pid}/poster.png"' in page


# --- the thank-you page ----------------------------------------------------------------------


def _paid_order(s: Session, project: Project, *, campaign_id: int | None = None,
                amount_fen: int = 20_00, anonymous: bool = False) -> str:
    intent = PaymentIntent(
        id=public_id("pi"), provider="wechatpay", amount_fen=amount_fen,
        status=IntentStatus.SUCCEEDED, idempotency_scope="test",
        idempotency_key=public_id("k"), request_hash="0" * 64, succeeded_at=utcnow(),
        merchant_id="1900000109", organization_id=project.recipient_org_id,
        project_id=project.id, campaign_id=campaign_id, channel="wechat_h5",
        donor_name="林小雨", anonymous=anonymous, message="一点心意")
    s.add(intent)
    s.flush()
    return intent.id


def _partly_matched(db: Database) -> tuple[str, int]:
    """A guest's giving-day gift of ¥20 matched ¥5 by 绿叶科技 (the pool ran out)."""
    with db.transaction() as s:
        project = make_project(s, org=make_org(s), title="山区孩子过冬棉衣")
        campaign = make_campaign(s, projects=[project])
        pool = make_pool(s, campaign=campaign, budget_fen=5_00, sponsor_name="绿叶科技")
        order_id = _paid_order(s, project, campaign_id=campaign.id)
        make_campaign_gift(s, campaign=campaign, project=project, order_id=order_id,
                           amount_fen=20_00, match_status="matched", matched_fen=5_00,
                           reason="pool_exhausted", pool=pool)
        return order_id, project.id


def _key(settings: Settings, order_id: str) -> str:
    return gift_flows.order_key(settings.secret_key, order_id)


def test_the_thank_you_page_names_the_sponsor_the_match_and_why_not_the_rest(
        client: TestClient, db: Database, settings: Settings) -> None:
    order_id, pid = _partly_matched(db)
    key = _key(settings, order_id)
    page = client.get(f"/gifts/orders/{order_id}?k={key}")
    assert page.status_code == 200
    text = page.text
    match = re.search(r'<section class="notice match-result".*?</section>', text, re.S)
    assert match and 'data-match-status="matched"' in match.group(0)
    assert 'data-partly="true"' in match.group(0)
    assert zh("%(sponsor)s matched your gift with %(amount)s.") % {
        "sponsor": "绿叶科技", "amount": "¥5.00"} in match.group(0)
    assert zh("The rest was not matched: %(why)s") % {
        "why": zh("The sponsor's matching money has all been given out.")} in match.group(0)
    # The explanation, for a guest too (the key of the link), headed as what it is.
    assert f'href="/campaigns/gifts/{order_id}?k={key}"' in match.group(0)
    # The receipt, the plain words and the folded technical details.
    assert f'id="receipt-link" href="/transparency/receipts/gift:{order_id}"' in text
    assert "这笔捐款已写入公开账本，任何人都无法篡改。" in text
    assert re.search(r'<details class="technical" id="trust-details">\s*<summary>', text)
    # Invite friends: the project's link (not this page's), the poster with the key.
    assert f'value="{settings.base_url}/projects/{pid}"' in text
    assert f'src="/gifts/orders/{order_id}/poster.png?k={key}"' in text
    assert f'<meta property="og:url" content="{settings.base_url}/projects/{pid}">' in text


def test_the_partial_match_explanation_is_headed_right(
        client: TestClient, db: Database, settings: Settings) -> None:
    order_id, _ = _partly_matched(db)
    page = client.get(f"/campaigns/gifts/{order_id}?k={_key(settings, order_id)}")
    assert page.status_code == 200
    heading = re.search(r'<h2 id="why-heading">(.*?)</h2>', page.text)
    assert heading and heading.group(1) == "为什么我的捐赠只获得了部分配捐？"
    assert "为什么我的捐赠没有获得配捐" not in page.text
    assert "绿叶科技" in page.text and "¥5.00" in page.text
    # Without the key a guest is sent to sign in; a wrong key too.
    for query in ("", "?k=" + "0" * 32):
        answer = client.get(f"/campaigns/gifts/{order_id}{query}", follow_redirects=False)
        assert answer.status_code == 303 and answer.headers["location"].startswith("/login")


def test_a_gift_not_matched_keeps_its_heading(client: TestClient, db: Database,
                                             settings: Settings) -> None:
    with db.transaction() as s:
        project = make_project(s, org=make_org(s))
        campaign = make_campaign(s, projects=[project])
        order_id = _paid_order(s, project, campaign_id=campaign.id)
        make_campaign_gift(s, campaign=campaign, project=project, order_id=order_id,
                           amount_fen=20_00, reason="donor_daily_cap",
                           reason_params={"cap_fen": 99_900})
    page = client.get(f"/campaigns/gifts/{order_id}?k={_key(settings, order_id)}").text
    assert '<h2 id="why-heading">为什么我的捐赠没有获得配捐？</h2>' in page
    thanks = client.get(f"/gifts/orders/{order_id}?k={_key(settings, order_id)}").text
    assert 'data-match-status="none"' in thanks and "¥999" in thanks


def test_the_gift_poster_shows_for_its_donor_only(client: TestClient, db: Database,
                                                  settings: Settings) -> None:
    with db.transaction() as s:
        project = make_project(s, org=make_org(s))
        order_id = _paid_order(s, project, anonymous=True)
        unpaid = _paid_order(s, project)
        s.get_one(PaymentIntent, unpaid).status = IntentStatus.REQUIRES_PAYMENT
        pid = project.id
    key = _key(settings, order_id)
    answer = client.get(f"/gifts/orders/{order_id}/poster.png?k={key}")
    assert answer.status_code == 200 and answer.headers["cache-control"].startswith("private")
    assert _decode(answer.content) == [f"{settings.base_url}/projects/{pid}"]
    assert client.get(f"/gifts/orders/{order_id}/poster.png").status_code == 404
    assert client.get(f"/gifts/orders/{order_id}/poster.png?k={'1' * 32}").status_code == 404
    not_yet = client.get(f"/gifts/orders/{unpaid}/poster.png?k={_key(settings, unpaid)}")
    assert not_yet.status_code == 404
    assert zh("This gift is not paid, so it has no poster.") in not_yet.text
    assert client.get(f"/gifts/orders/{'x' * 60}/poster.png").status_code == 404


def test_the_order_page_of_an_ordinary_gift_has_the_trust_words(
        client: TestClient, db: Database, settings: Settings) -> None:
    from shanju.donations.models import Donation, DonationStatus

    with db.transaction() as s:
        project = make_project(s, org=make_org(s))
        order_id = _paid_order(s, project)
        s.add(Donation(public_id=public_id("d"), project_id=project.id,
                       recipient_org_id=project.recipient_org_id, donor_name="林小雨",
                       amount_fen=20_00, status=DonationStatus.PAID, payment_intent_id=order_id,
                       paid_at=utcnow()))
    page = client.get(f"/gifts/orders/{order_id}?k={_key(settings, order_id)}").text
    assert "match-result" not in page
    assert "这笔捐款已写入公开账本，任何人都无法篡改。" in page
    assert 'id="receipt-link" href="/transparency/receipts/donation:d_' in page
    assert 'id="invite"' in page and "林**" in page

