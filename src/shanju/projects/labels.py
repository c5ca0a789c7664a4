"""What people read for a project's state (the same msgids as ``projects/_macros.html``)."""

from __future__ import annotations

from shanju.core.i18n import N_, Msg
from shanju.projects.models import ProjectStatus

S = ProjectStatus

STATUS_LABELS: dict[ProjectStatus, str] = {
    S.DRAFT: N_("Draft"),
    S.SUBMITTED: N_("Under review"),
    S.APPROVED: N_("Approved"),
    S.REJECTED: N_("Rejected"),
    S.FUNDRAISING: N_("Fundraising"),
    S.PAUSED: N_("Paused"),
    S.ENDED: N_("Fundraising ended"),
    S.EXECUTING: N_("In execution"),
    S.COMPLETED: N_("Completed"),
    S.TAKEN_DOWN: N_("Taken down"),
}
BEFORE_PAUSE = N_("its state before the pause")
# Field names inside messages such as "Enter the %(label)s."
FIELD_LABELS: dict[str, str] = {
    "title": N_("title"),
    "summary": N_("summary"),
    "description": N_("description"),
    "fundraising plan": N_("fundraising plan"),
    "text": N_("text"),
    "purpose": N_("purpose"),
    "story": N_("beneficiary's story"),
}


def status(value: ProjectStatus | None) -> Msg:
    """Return a project state as a message value (``%(status)s``).

    The API's English message names the state by its value (``taken_down``, as in
    ``details``); pages show its translated label.
    """
    if value is None:
        return Msg(BEFORE_PAUSE)
    return Msg(STATUS_LABELS.get(value, value.value), plain=value.value)


def field(label: str) -> Msg:
    """Return a field name as a message value that pages translate (``%(label)s``)."""
    return Msg(FIELD_LABELS.get(label, label))
