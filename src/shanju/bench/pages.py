"""``shanju bench pages``: the main pages and API reads on the demo data set (30
organizations, 100 projects, 20,000 donations), through the ASGI app in-process: the
application's own time, without network or browser."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import select

from shanju.bench.common import Progress, machine, percentiles
from shanju.campaigns.models import Campaign
from shanju.core.config import Settings
from shanju.core.db import Database
from shanju.organizations.models import Organization, OrgStatus
from shanju.projects.models import Project, ProjectStatus

PAGES = ("/", "/projects", "/projects?q=乡村儿童", "/projects?sort=nearly_there",
         "/projects?q=助学&sort=most_donors", "/projects/{project}", "/organizations",
         "/organizations?q=公益", "/organizations/{org}", "/campaigns/{campaign}",
         "/api/v1/projects", "/api/v1/projects/{project}", "/api/v1/ledger/entries")

#: The pages a donor meets first, and what they must take on the demo data (issue 14):
#: ``within_targets`` in the report says whether each did.
TARGETED = ("/", "/projects", "/projects?q=乡村儿童", "/projects?sort=nearly_there",
            "/projects?q=助学&sort=most_donors", "/projects/{project}")
TARGET_P50_MS = 50.0
TARGET_P99_MS = 300.0


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
        campaign = session.scalar(select(Campaign.slug).order_by(Campaign.id)) or "none"
    settings = Settings(environment="test", database_url=database.url)
    results: dict[str, Any] = {}
    with TestClient(create_app(settings, database=database)) as client:
        for template in PAGES:
            if "{campaign}" in template and campaign == "none":
                if progress:
                    progress(requests)  # a database without a giving day: nothing to time
                continue
            path = template.format(project=project, org=org, campaign=campaign)
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
    within = {page: results[page]["p50_ms"] <= TARGET_P50_MS
              and results[page]["p99_ms"] <= TARGET_P99_MS for page in TARGETED}
    return {"benchmark": "pages", "database": database.engine.dialect.name,
            "requests_per_page": requests, "pages": results,
            "targets": {"p50_ms": TARGET_P50_MS, "p99_ms": TARGET_P99_MS},
            "within_targets": within, "machine": machine()}
