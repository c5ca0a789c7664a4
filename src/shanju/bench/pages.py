"""``shanju bench pages``: the main pages and API reads on the demo data set (30
organizations, 100 projects, 20,000 donations), through the ASGI app in-process: the
application's own time, without network or browser."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import select

from shanju.bench.common import Progress, machine, percentiles
from shanju.core.config import Settings
from shanju.core.db import Database
from shanju.organizations.models import Organization, OrgStatus
from shanju.projects.models import Project, ProjectStatus

PAGES = ("/", "/projects", "/projects?q=乡村儿童", "/projects/{project}", "/organizations",
         "/organizations?q=公益", "/organizations/{org}", "/api/v1/projects",
         "/api/v1/projects/{project}", "/api/v1/ledger/entries")


def bench_pages(database: Database, *, requests: int, progress: Progress | None = None
                ) -> dict[str, Any]:
    """Time the main pages on a seeded database, ``requests`` times each, in-process."""
    from fastapi.testclient import TestClient

    from shanju.app import create_app

    with database.transaction(write=False) as session:
        project = session.scalar(select(Project.id).where(
            Project.status == ProjectStatus.FUNDRAISING).order_by(Project.id))
        org = session.scalar(select(Organization.id).where(
            Organization.status == OrgStatus.APPROVED).order_by(Organization.id))
    settings = Settings(environment="test", database_url=database.url)
    results: dict[str, Any] = {}
    with TestClient(create_app(settings, database=database)) as client:
        for template in PAGES:
            path = template.format(project=project, org=org)
            client.get(path)  # warm caches (templates, translations)
            samples = []
            for _ in range(requests):
                t0 = time.perf_counter()
                response = client.get(path)
                samples.append(time.perf_counter() - t0)
                if response.status_code != 200:
                    raise RuntimeError(f"{path} answered {response.status_code}")
                if progress:
                    progress(1)
            results[template] = percentiles(samples)
    return {"benchmark": "pages", "database": database.engine.dialect.name,
            "requests_per_page": requests, "pages": results, "machine": machine()}
