"""Addresses of disclosure pages, downloads and transparency receipts (one place)."""

from __future__ import annotations

from shanju.disclosure.schemas import ExportLinks


def receipt_url(ref: str) -> str:
    """The transparency receipt page of a reference."""
    return f"/transparency/receipts/{ref}"


def project_exports(project_id: int) -> ExportLinks:
    """Download links of a project's open data."""
    base = f"/api/v1/disclosure/projects/{project_id}/export?format="
    return {"csv": base + "csv", "json": base + "json", "xlsx": base + "xlsx"}


def annual_exports(org_id: int, year: int) -> ExportLinks:
    """Download links of an organization's year."""
    base = f"/api/v1/disclosure/organizations/{org_id}/annual/{year}/export?format="
    return {"csv": base + "csv", "json": base + "json", "xlsx": base + "xlsx"}
