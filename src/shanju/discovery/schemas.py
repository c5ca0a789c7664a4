"""Pydantic shapes of the discovery API: the organization directory's page."""

from __future__ import annotations

from pydantic import BaseModel, Field

from shanju.organizations.schemas import OrganizationRead


class DirectoryOrganization(OrganizationRead):
    """An approved organization in the directory."""

    raises_funds: bool = Field(
        description="It has a listed project (its own, or one it receives the funds of) or "
                    "a valid public-fundraising qualification today.")
    listed_projects: int = Field(
        description="Its listed projects (fundraising, ended, executing, completed), as "
                    "publisher or as the recipient of the funds.")


class DirectoryCounts(BaseModel):
    """How many organizations the search and filters find in each part of the directory."""

    fundraising: int
    other: int


class DirectoryPage(BaseModel):
    """One page of the organization directory."""

    items: list[DirectoryOrganization]
    total: int
    page: int
    per_page: int
    counts: DirectoryCounts
