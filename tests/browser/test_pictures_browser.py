"""A project's page on a phone (390 px): its cover loads at a width chosen from srcset, fills
the column at 16:9 without overflowing, and the gallery and the beneficiary's story show."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from shanju.core import files
from shanju.demo import covers
from shanju.projects import service
from tests.browser.conftest import PHONE, LiveServer
from tests.browser.helpers import check_fits_phone
from tests.factories import make_org, make_project
from tests.projects.helpers import image_bytes, staff_of

pytestmark = pytest.mark.browser


def test_the_project_page_shows_its_cover_gallery_and_story_on_a_phone(
    page: Page,
    live_server: LiveServer,
    screenshot: Callable[[str], Path],
    js_errors: list[str],
) -> None:
    upload_dir = live_server.settings.upload_dir
    school = covers.prepared("education", 0).largest.data  # a drawn 1280 × 720 picture
    with live_server.database.transaction() as session:
        org = make_org(session, name="云南春晖基金会")
        project = make_project(session, org=org, title="怒江山区儿童助学计划")
        staff = staff_of(session, org)
        cover_id = service.do_set_cover(
            session=session, actor=staff, project=project, upload_dir=upload_dir,
            upload=files.Upload("school.webp", school), alt_text="山坡上的乡村小学和国旗").id
        service.do_add_gallery_photos(
            session=session, actor=staff, project=project, upload_dir=upload_dir,
            photos=[files.Upload("g.png", image_bytes(size=(900, 600), colour=(30, 120, 200)))])
        project.story = "小雨（化名）今年十岁，每周走两个多小时山路到学校。"
        project_id = project.id

    page.goto(live_server(f"/projects/{project_id}"))
    hero = page.locator("img.hero-cover")
    expect(hero).to_have_attribute("alt", "山坡上的乡村小学和国旗")
    expect(hero).to_have_attribute("width", "1280")
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=hero.element_handle())
    loaded = hero.evaluate("img => ({src: img.currentSrc, ratio: window.devicePixelRatio})")
    box = hero.bounding_box()
    assert box is not None
    assert PHONE["width"] - 40 <= box["width"] <= PHONE["width"]
    # The browser took the narrowest width that is sharp at this screen's pixel ratio (by
    # `sizes`, the column's width): not always the largest.
    needed = box["width"] * loaded["ratio"]
    chosen = next((w for w in (320, 640, 1280) if w >= needed - 1), 1280)
    assert loaded["src"].endswith(f"/files/{cover_id}?w={chosen}"), (loaded, needed)
    assert abs(box["height"] - box["width"] * 9 / 16) < 2  # 16:9, reserved before it loads

    story = page.locator("#story")
    expect(story).to_contain_text("小雨（化名）")
    expect(story.locator("h2")).to_have_text("受助人的故事")
    photo = page.locator("#gallery img")
    photo.scroll_into_view_if_needed()
    page.wait_for_function("img => img.complete && img.naturalWidth > 0",
                           arg=photo.element_handle())
    expect(photo).to_have_attribute("loading", "lazy")
    check_fits_phone(page, js_errors)
    screenshot("project-cover-phone")
