"""The app starts on both databases and answers pages and API errors in the right shape."""

import re

from fastapi.testclient import TestClient


def test_home_page_renders_in_chinese_by_default(client: TestClient) -> None:
    response = client.get("/")
    assert response.status_code == 200
    assert 'lang="zh-CN"' in response.text


def test_unknown_api_path_is_a_json_error(client: TestClient) -> None:
    response = client.get("/api/v1/no-such-thing")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_openapi_document_is_served(client: TestClient) -> None:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    assert response.json()["info"]["title"].startswith("Shanju")


def test_ids_and_offsets_beyond_the_database_range_are_a_4xx(client: TestClient) -> None:
    for path in ("/api/v1/organizations/2147483648", "/api/v1/projects/99999999999999999999",
                 "/api/v1/ledger/accounts?offset=99999999999", "/projects/2147483648"):
        response = client.get(path)
        assert 400 <= response.status_code < 500, (path, response.status_code)


def test_nul_characters_never_reach_the_database_as_a_500(client: TestClient) -> None:
    # The list's filters are checked against their lists before any query (a NUL is no field
    # of work and no search text).
    for params, code in (({"category": "\x00"}, "invalid_field"), ({"q": "a\x00b"},
                                                                   "invalid_query")):
        response = client.get("/api/v1/projects", params=params)
        assert response.status_code == 422, params
        assert response.json()["error"]["code"] == code


def test_api_docs_use_only_local_assets(client: TestClient) -> None:
    response = client.get("/api/docs")
    assert response.status_code == 200
    html = response.text
    assert "SwaggerUIBundle" in html and "/openapi.json" in html
    urls = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert "/static/vendor/swagger-ui/swagger-ui-bundle.js" in urls
    assert "/static/vendor/swagger-ui/swagger-ui.css" in urls
    # Nothing is fetched from another host (a CDN may be unreachable where Shanju runs).
    assert not re.search(r"(?:https?:)?//", " ".join(urls)), urls
    assert "cdn." not in html
    for url in urls:
        if url.startswith("/static/"):
            assert client.get(url).status_code == 200, url
