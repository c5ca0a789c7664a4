"""The app starts on both databases and answers pages and API errors in the right shape."""

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
