"""Every GET route, pages and API, answers a client's paging and id values with a 4xx, never a
5xx (item 10 of issue 11: ``/organizations?page=10**29`` overflowed the database integer).

The walk finds the routes from the app itself, so a route added later is walked too. Each gets
huge, negative, zero and non-numeric values in every paging parameter (declared or read from
the query by hand) and in each of its integer path parameters, as an anonymous visitor and as
each kind of signed-in user.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, get_args

from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient

from shanju.accounts import service as accounts
from shanju.accounts.models import Role, User
from shanju.core.db import Database
from tests.factories import make_campaign, make_org, make_project, make_user
from tests.summit.reg_helpers import make_session, make_summit

# What a client may type: 10**29, past a 64-bit integer, negative, not a number, and a
# character str.isdigit() takes for a digit but int() refuses.
BAD_VALUES = (str(10**29), str(2**63), "-1", "abc", "²")
ONE_BY_ONE = (str(10**29), "-1")
# Paging parameters a handler may read from the query itself, besides those it declares.
PAGING = ("page", "offset", "limit", "per_page", "start", "end", "index", "size", "first",
          "second", "year", "day", "organization_id", "campaign_id", "project_id")
# Routes that do not answer once and end (an event stream), walked elsewhere.
SKIPPED = frozenset({"/campaigns/{slug}/live"})


@dataclass(frozen=True)
class Route:
    path: str
    path_params: dict[str, type]
    query_params: tuple[str, ...]


def _params(dependant: Any) -> Iterator[tuple[str, str, Any]]:
    for p in dependant.path_params:
        yield "path", p.name, p.field_info.annotation
    for p in dependant.query_params:
        yield "query", p.name, p.field_info.annotation
    for sub in dependant.dependencies:
        yield from _params(sub)


def get_routes(app: FastAPI) -> list[Route]:
    """Every GET route of the app with its path and query parameters."""
    found = []
    for context in iter_route_contexts(app.routes):
        dependant = getattr(context.original_route, "dependant", None)
        if not context.methods or "GET" not in context.methods or dependant is None:
            continue
        if context.path in SKIPPED:
            continue
        params = list(_params(dependant))
        found.append(Route(
            path=str(context.path),
            path_params={n: a for kind, n, a in params if kind == "path"},
            query_params=tuple(n for kind, n, _ in params if kind == "query"),
        ))
    return found


def _bounded(annotation: Any, metadata: list[Any]) -> bool:
    """Whether an integer parameter has an upper bound (or is not an integer at all)."""
    args = get_args(annotation)
    if annotation is not int and int not in args:
        return True
    if args and annotation is not int:  # Optional[Annotated[int, ...]]: the bound is inside
        metadata = [*metadata, *(m for a in args for m in getattr(a, "__metadata__", ()))]
    return any(getattr(m, "le", None) is not None or getattr(m, "lt", None) is not None
               for m in metadata)


def test_every_integer_parameter_of_every_route_is_bounded(app: FastAPI) -> None:
    """Every integer in a path or query, of every route and method, has an upper bound, so a
    client's number never reaches the database unchecked."""
    unbounded = []
    for context in iter_route_contexts(app.routes):
        dependant = getattr(context.original_route, "dependant", None)
        if dependant is None:
            continue
        for kind, name, field in _fields(dependant):
            if not _bounded(field.field_info.annotation, field.field_info.metadata):
                unbounded.append(f"{sorted(context.methods or [])} {context.path} {kind} {name}")
    assert not unbounded, "\n".join(unbounded)


def _fields(dependant: Any) -> Iterator[tuple[str, str, Any]]:
    for p in dependant.path_params:
        yield "path", p.name, p
    for p in dependant.query_params:
        yield "query", p.name, p
    for sub in dependant.dependencies:
        yield from _fields(sub)


def fill(route: Route, ids: dict[str, str], override: tuple[str, str] | None = None) -> str:
    """The route's path with real ids (or ``override``'s value in one parameter)."""
    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if override is not None and name == override[0]:
            return override[1]
        if name == "slug":
            return ids["summit_slug"] if route.path.startswith(("/summits", "/api/v1/summits")) \
                else ids["campaign_slug"]
        return ids.get(name, "1")
    return re.sub(r"\{(\w+)(?::\w+)?\}", value, route.path)


def _token_cookie(db: Database, user_id: int) -> str:
    with db.transaction() as s:
        user = s.get(User, user_id)
        assert user is not None
        return accounts.do_start_session(session=s, user=user)


def test_no_route_answers_paging_or_id_values_with_a_server_error(app: FastAPI,
                                                                  db: Database) -> None:
    with db.transaction() as s:
        org = make_org(s)
        project = make_project(s, org=org)
        campaign = make_campaign(s, projects=[project])
        summit = make_summit(s)
        summit_session = make_session(s, summit=summit)
        users = {
            "donor": make_user(s).id,
            "staff": make_user(s, role=Role.ORG_STAFF, organization_id=org.id).id,
            "reviewer": make_user(s, role=Role.REVIEWER).id,
        }
        ids = {"org_id": str(org.id), "organization_id": str(org.id),
               "project_id": str(project.id), "campaign_id": str(campaign.id),
               "campaign_slug": campaign.slug, "summit_slug": summit.slug,
               "session_id": str(summit_session.id), "year": "2026", "ref": "donation:d_x",
               "level": "0", "tile": "000"}
    routes = get_routes(app)
    assert len(routes) > 100  # the whole app, pages and API
    cookies: dict[str, str | None] = {"anonymous": None}
    cookies |= {role: _token_cookie(db, uid) for role, uid in users.items()}

    failures: list[str] = []
    with TestClient(app, raise_server_exceptions=False) as client:
        for who, cookie in cookies.items():
            client.cookies.clear()
            if cookie:
                client.cookies.set("sj_session", cookie)
            for route in routes:
                url = fill(route, ids)
                names = sorted(set(PAGING) | set(route.query_params))
                requests = [(url, dict.fromkeys(names, bad)) for bad in BAD_VALUES]
                # Each declared parameter alone too (the first refused one hides the rest),
                # and each integer path parameter: as a visitor and as the user who can
                # reach the most (the donor's and staff's own pages have no more parameters).
                if who in ("anonymous", "reviewer"):
                    requests += [(url, {name: bad}) for name in route.query_params
                                 for bad in ONE_BY_ONE]
                    requests += [(fill(route, ids, (name, bad)), {}) for bad in ONE_BY_ONE
                                 for name, kind in route.path_params.items() if kind is int]
                for target, query in requests:
                    response = client.get(target, params=query, follow_redirects=False)
                    if response.status_code >= 500:
                        failures.append(f"{who} GET {target} {query} -> {response.status_code}")
    assert not failures, "\n".join(failures[:40]) + f"\n({len(failures)} in all)"


def test_ids_typed_in_forms_are_read_as_ascii_digits_only(client: TestClient,
                                                          db: Database) -> None:
    """"²" passes ``str.isdigit()`` but not ``int()``; a 12-digit id overflows the database."""
    from tests.organizations.helpers import csrf
    from tests.projects.helpers import sign_in

    with db.transaction() as s:
        org = make_org(s)
        staff_id = make_user(s, role=Role.ORG_STAFF, organization_id=org.id).id
    for bad in ("²", "999999999999"):
        report = client.post("/complaints", data={
            "organization_id": bad, "category": "fraud", "content": "这个项目的照片是假的。",
            "csrf_token": csrf(client)})
        assert report.status_code == 422 and 'data-code="invalid_id"' in report.text
    token = sign_in(client, db, staff_id)
    for bad in ("²", "999999999999"):
        new = client.post("/console/projects/new", data={
            "csrf_token": token, "title": "乡村学校冬季温暖包", "summary": "送温暖",
            "category": "children", "province": "云南", "goal": "500",
            "fundraising_plan": "采购温暖包", "recipient_org_id": bad})
        assert new.status_code in (404, 422), (bad, new.status_code)
