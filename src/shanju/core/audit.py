"""The audit log: every state change is recorded in the same transaction as the change.

Action names are globally unique and dotted: ``<domain>.<object>.<verb>``, e.g.
``donations.donation.refunded``. They are rendered to text for people in one place,
:func:`describe`.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, Session, mapped_column

from shanju.core.clock import utcnow
from shanju.core.db import Base


class AuditEntry(Base):
    """One recorded change: who did what to which object, with old and new values."""

    __tablename__ = "audit_entries"
    __table_args__ = (Index("ix_audit_entries_object", "object_type", "object_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    action: Mapped[str] = mapped_column(String(80), index=True)
    object_type: Mapped[str] = mapped_column(String(40))
    object_id: Mapped[str] = mapped_column(String(40))
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


def record(
    session: Session,
    *,
    actor_id: int | None,
    action: str,
    object_type: str,
    object_id: int | str,
    data: dict[str, Any] | None = None,
) -> AuditEntry:
    """Add an audit entry to the current transaction (flushes nothing by itself)."""
    if action.count(".") != 2:
        raise ValueError(f"audit action must be <domain>.<object>.<verb>: {action!r}")
    entry = AuditEntry(
        actor_id=actor_id,
        action=action,
        object_type=object_type,
        object_id=str(object_id),
        data=data or {},
    )
    session.add(entry)
    return entry


def changes(obj: Any, **new_values: Any) -> dict[str, Any]:
    """Set attributes on ``obj`` and return ``{"old": {...}, "new": {...}}`` of what changed."""
    old: dict[str, Any] = {}
    new: dict[str, Any] = {}
    for name, value in new_values.items():
        before = getattr(obj, name)
        if before != value:
            old[name] = _jsonable(before)
            new[name] = _jsonable(value)
            setattr(obj, name, value)
    return {"old": old, "new": new}


def _jsonable(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if hasattr(value, "value"):  # enums
        return value.value
    return value


def describe(entry: AuditEntry) -> str:
    """Render an audit entry as one line of text for people."""
    verb = entry.action.rsplit(".", 1)[-1].replace("_", " ")
    who = f"user #{entry.actor_id}" if entry.actor_id else "system"
    text = f"{who} {verb} {entry.object_type} #{entry.object_id}"
    new = entry.data.get("new") if isinstance(entry.data, dict) else None
    if new:
        text += " (" + ", ".join(f"{k} → {v}" for k, v in sorted(new.items())) + ")"
    return text
