"""Issue 14's journeys on a phone (390 px), through WeChat Pay's emulator and the production
gateway (the shop of ``test_gift_checkout``):

- give to a project past its goal after the warning (已筹满, the notice, the box to tick);
- share the poster from the thank-you page (its QR code opens the project);
- a giving-day gift partly matched shows the sponsor, the amount and the right explanation.
"""

from __future__ import annotations

import io
import re

import pytest
import zxingcpp
from PIL import Image
from playwright.sync_api import Page, expect
from sqlalchemy.orm import Session

from shanju.projects.models import Project
from tests.browser import test_gift_checkout as checkout
from tests.browser.conftest import horizontal_overflow
from tests.browser.helpers import zh
from tests.browser.test_gift_checkout import Shop
from tests.factories import make_campaign, make_pool
from tests.projects.helpers import paid_donation

pytestmark = [pytest.mark.browser,
              pytest.mark.parametrize("db", ["sqlite"], indirect=True)]

# The shop (the platform, WeChat Pay's and Alipay's emulators) and the phone of its journeys.
shop = checkout.shop
phone = checkout.phone
THANKED = re.compile(r"/gifts/orders/pi_[A-Za-z0-9]+\?k=[0-9a-f]{32}$")


def _give(page: Page, amount: str, name: str) -> None:
    form = page.locator("#donate")
    form.locator("label", has_text=re.compile(rf"^¥{amount}$")).click()
    form.locator("#donor_name").fill(name)
    form.locator("label.pay-method", has_text="微信支付").click()


def _pay(page: Page, at: Shop) -> None:
    expect(page).to_have_url(re.compile("^" + re.escape(at.wechat_base)))
    page.get_by_role("button", name="确认支付").click()
    expect(page).to_have_url(THANKED)
    expect(page.locator("#order-status")).to_have_attribute("data-status", "paid")


def test_give_to_a_project_past_its_goal_after_the_warning(shop: Shop, phone: Page) -> None:
    def past_goal(s: Session) -> None:
        project = s.get_one(Project, shop.platform.project_id)
        project.goal_fen = 100_00
        paid_donation(s, project, amount_fen=150_00)

    shop.platform.read(past_goal)
    phone.goto(f"{shop.platform.url}/projects/{shop.platform.project_id}")
    # 已筹满, not 募捐中; the percent of the goal; the notice before paying.
    expect(phone.locator(".title-meta .badge")).to_have_text(zh("Goal reached"))
    expect(phone.locator("#goal-reached")).to_contain_text("150%")
    notice = phone.locator("#past-goal")
    expect(notice).to_be_visible()
    expect(notice).to_contain_text("¥100")
    expect(notice).to_contain_text("¥150")
    _give(phone, "20", "小林")
    assert horizontal_overflow(phone) == 0
    # Without ticking the box the form does not go: the browser asks for it.
    before = phone.url
    phone.locator("#donate button[type=submit]").click()
    expect(notice.locator("input[name=confirm_past_goal]")).to_have_js_property("validity.valid",
                                                                               False)
    assert phone.url == before
    notice.get_by_label(zh("I know the goal is reached and still want to give")).check()
    phone.locator("#donate button[type=submit]").click()
    _pay(phone, shop)
    expect(phone.locator("#order-status")).to_contain_text("¥20.00")
    order_id = phone.url.split("/gifts/orders/")[1].split("?")[0]
    assert shop.platform.credits(order_id) == 1


def test_share_the_poster(shop: Shop, phone: Page) -> None:
    url = f"{shop.platform.url}/projects/{shop.platform.project_id}"
    phone.goto(url)
    _give(phone, "50", "小雨")
    phone.locator("#donate button[type=submit]").click()
    _pay(phone, shop)
    invite = phone.locator("#invite")
    expect(invite.locator("#share-link")).to_have_value(url)  # the project, not this page
    invite.locator("#poster summary").click()
    poster = invite.locator("#poster-image")
    expect(poster).to_be_visible()
    expect(poster).to_have_js_property("complete", True)
    expect(poster).to_have_js_property("naturalWidth", 750)
    assert horizontal_overflow(phone) == 0
    # The poster's QR code opens the project.
    src = poster.get_attribute("src")
    assert src and "?k=" in src
    png = phone.request.get(f"{shop.platform.url}{src}")
    assert png.ok and png.headers["content-type"] == "image/png"
    with Image.open(io.BytesIO(png.body())) as image:
        assert image.size == (750, 1200)
        assert [r.text for r in zxingcpp.read_barcodes(image.convert("RGB"))] == [url]
    with phone.expect_download() as saved:
        invite.locator("#poster-download").click()
    assert saved.value.suggested_filename == "shanju-poster.png"


def test_a_giving_day_gift_partly_matched_shows_the_right_explanation(
        shop: Shop, phone: Page) -> None:
    def live_day(s: Session) -> None:
        project = s.get_one(Project, shop.platform.project_id)
        campaign = make_campaign(s, projects=[project])
        make_pool(s, campaign=campaign, budget_fen=5_00, sponsor_name="绿叶科技")

    shop.platform.read(live_day)
    phone.goto(f"{shop.platform.url}/projects/{shop.platform.project_id}")
    _give(phone, "20", "小周")
    phone.locator("#donate button[type=submit]").click()
    _pay(phone, shop)
    match = phone.locator("#order-status .match-result")
    expect(match).to_have_attribute("data-match-status", "matched")
    expect(match).to_have_attribute("data-partly", "true")
    expect(match.locator("#match-line")).to_have_text(
        zh("%(sponsor)s matched your gift with %(amount)s.") % {"sponsor": "绿叶科技",
                                                                "amount": "¥5.00"})
    expect(match.locator("#match-rest")).to_contain_text(
        zh("The sponsor's matching money has all been given out."))
    expect(phone.locator("#trust")).to_contain_text("这笔捐款已写入公开账本，任何人都无法篡改。")
    assert horizontal_overflow(phone) == 0
    match.locator("#match-detail").click()
    heading = phone.locator("#why-heading")
    expect(heading).to_have_text("为什么我的捐赠只获得了部分配捐？")
    expect(phone.locator("#matched-amount")).to_contain_text("绿叶科技")
    expect(phone.locator("main")).not_to_contain_text("为什么我的捐赠没有获得配捐")
    assert horizontal_overflow(phone) == 0
