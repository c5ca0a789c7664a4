"""The project search and the directory through the API (JSON, errors with stable codes) and
the pages (no JavaScript needed: links and GET forms; a readable error for a bad link)."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from shanju.core.db import Database
from shanju.projects.models import ProjectStatus
from tests.factories import make_campaign, make_org, make_project


@pytest.fixture
def ids(db: Database) -> dict[str, int]:
    with db.transaction() as s:
        yn = make_org(s, name="云南青山公益基金会", province="云南")
        school = make_project(s, org=yn, title="乡村学校冬季温暖包")
        school.category = "education"
        school.description = "大凉山的孩子们需要棉衣和助学金。"
        pets = make_project(s, org=make_org(s, name="城市动物保护协会"), title="流浪动物救助")
        pets.category = "animals"
        done = make_project(s, org=yn, status=ProjectStatus.COMPLETED, title="已完成的助学项目")
        done.category = "education"
        make_org(s, qualified=False, name="峰会报名儿童协会", province="广东")
        day = make_campaign(s, projects=[school])
        return {"yn": yn.id, "school": school.id, "pets": pets.id, "done": done.id,
                "day": day.id}


def _ids(page: dict[str, object]) -> list[int]:
    return [item["id"] for item in page["items"]]  # type: ignore[attr-defined, index]


def test_the_api_searches_filters_and_sorts(client: TestClient, ids: dict[str, int]) -> None:
    found = client.get("/api/v1/projects", params={"q": "助学"}).json()
    assert set(_ids(found)) == {ids["school"], ids["done"]} and found["total"] == 2
    assert _ids(client.get("/api/v1/projects", params={"q": "助学", "field": "education",
                                                       "status": "fundraising"}).json()) == [
        ids["school"]]
    # category is field's former name.
    assert set(_ids(client.get("/api/v1/projects", params={"category": "education"}).json())) \
        == {ids["school"], ids["done"]}
    assert _ids(client.get("/api/v1/projects", params={"campaign_id": ids["day"]}).json()) == [
        ids["school"]]
    assert _ids(client.get("/api/v1/projects",
                           params={"organization_id": ids["yn"], "sort": "newest",
                                   "status": ["fundraising", "completed"], "limit": 1}).json()
                ) == [ids["done"]]
    page = client.get("/api/v1/projects", params={"q": "温暖包", "sort": "nearly_there"}).json()
    assert _ids(page) == [ids["school"]]
    assert page["items"][0]["organization"]["name"] == "云南青山公益基金会"


@pytest.mark.parametrize(("params", "code", "field"), [
    ({"sort": "hottest"}, "invalid_sort", "sort"),
    ({"field": "sports"}, "invalid_field", "field"),
    ({"field": "education", "category": "animals"}, "invalid_field", "field"),
    ({"province": "火星"}, "invalid_province", "province"),
    ({"status": "draft"}, "invalid_status", "status"),
    ({"campaign_id": "999999"}, "invalid_campaign", "campaign_id"),
    ({"organization_id": "999999"}, "invalid_organization", "organization_id"),
    ({"q": "字" * 51}, "query_too_long", "q"),
    ({"q": "a b c d e f"}, "too_many_terms", "q"),
    ({"campaign_id": "abc"}, "validation_error", "campaign_id"),
    ({"limit": "0"}, "validation_error", "limit"),
])
def test_the_api_answers_bad_parameters_with_a_json_error(
    client: TestClient, ids: dict[str, int], params: dict[str, str], code: str, field: str,
) -> None:
    response = client.get("/api/v1/projects", params=params)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == code and error["field"] == field and error["message"]


def test_the_directory_api(client: TestClient, ids: dict[str, int]) -> None:
    every = client.get("/api/v1/organizations").json()
    assert every["total"] == 3 and every["counts"] == {"fundraising": 2, "other": 1}
    other = client.get("/api/v1/organizations", params={"kind": "other"}).json()
    assert [o["name"] for o in other["items"]] == ["峰会报名儿童协会"]
    assert other["items"][0]["raises_funds"] is False
    assert other["items"][0]["listed_projects"] == 0
    found = client.get("/api/v1/organizations",
                       params={"q": "青山", "kind": "fundraising"}).json()
    assert [o["id"] for o in found["items"]] == [ids["yn"]]
    assert found["items"][0]["listed_projects"] == 2 and found["items"][0]["raises_funds"]
    assert found["items"][0]["publicly_qualified"] is True
    for params, code in (({"kind": "summit"}, "invalid_kind"),
                         ({"field": "sports"}, "invalid_field"),
                         ({"province": "火星"}, "invalid_province"),
                         ({"q": "字" * 51}, "query_too_long")):
        bad = client.get("/api/v1/organizations", params=params)
        assert bad.status_code == 422 and bad.json()["error"]["code"] == code, params


def _cards(html: str) -> list[int]:
    return [int(m) for m in re.findall(r'data-project-id="(\d+)"', html)]


def test_the_project_page_searches_and_keeps_the_choices_in_its_links(
    client: TestClient, ids: dict[str, int],
) -> None:
    page = client.get("/projects", params={"q": "助学", "sort": "most_donors"})
    assert page.status_code == 200
    html = page.text
    assert set(_cards(html)) == {ids["school"], ids["done"]}
    assert 'value="助学"' in html and "找到的项目：2" in html
    # The field chips keep the search and the sort; choosing one starts at page 1.
    chip = re.search(r'<a href="([^"]+)" data-field="education"', html)
    assert chip and "q=%E5%8A%A9%E5%AD%A6" in chip.group(1) and "sort=most_donors" in chip.group(1)
    assert "page=" not in chip.group(1)
    assert '<option value="most_donors" selected>捐赠人次最多</option>' in html
    # The organizations whose name holds the words are named too.
    orgs = client.get("/projects", params={"q": "青山"}).text
    assert f'href="/organizations/{ids["yn"]}"' in orgs
    # Filters as a visitor without JavaScript sends them: every select, even the empty ones.
    form = client.get("/projects", params={"q": "", "province": "云南", "status": "completed",
                                           "campaign_id": "", "sort": "recommended"})
    assert form.status_code == 200 and _cards(form.text) == [ids["done"]]
    assert "移除：云南" in form.text
    day = client.get("/projects", params={"campaign_id": str(ids["day"])}).text
    assert _cards(day) == [ids["school"]]
    assert client.get("/projects", params={"field": "animals"}).text.count(
        "data-project-id=") == 1


def test_the_project_page_explains_a_bad_link(client: TestClient, ids: dict[str, int]) -> None:
    page = client.get("/projects", params={"sort": "hottest"})
    assert page.status_code == 422
    assert 'data-error-code="invalid_sort"' in page.text
    assert "排序方式只能是" in page.text and _cards(page.text) == []
    english = client.get("/projects", params={"province": "Mars", "lang": "en"})
    assert english.status_code == 422 and "Choose a province from the list." in english.text
    huge = client.get("/projects", params={"organization_id": str(10**29)})
    assert huge.status_code == 422 and 'data-error-code="invalid_organization"' in huge.text


def test_the_directory_page_has_two_parts_with_search_and_filters(
    client: TestClient, ids: dict[str, int],
) -> None:
    html = client.get("/organizations").text
    assert "云南青山公益基金会" in html and "峰会报名儿童协会" not in html
    assert re.search(r'data-kind="fundraising" class="active" aria-current="page">募捐组织 '
                     r'<span class="count">2</span>', html)
    assert re.search(r'data-kind="other">其他登记组织 <span class="count">1</span>', html)
    assert f'href="/projects?organization_id={ids["yn"]}"' in html
    other = client.get("/organizations", params={"kind": "other", "q": "儿童"}).text
    assert "峰会报名儿童协会" in other and "云南青山公益基金会" not in other
    assert 'id="field"' not in other  # no field filter where no organization has projects
    by_field = client.get("/organizations", params={"field": "animals"}).text
    assert "城市动物保护协会" in by_field and "云南青山公益基金会" not in by_field
    bad = client.get("/organizations", params={"kind": "all"})
    assert bad.status_code == 422 and 'data-error-code="invalid_kind"' in bad.text
