"""Goals that mean something: what a project's goal lets donors do, and how long is left.

A project's *goal state* comes from what it has raised (the gifts read model) and what its
organization chose for when the goal is reached (:class:`~shanju.projects.models.GoalPolicy`):

==========  =====================================  =============================================
state       when                                   donors
==========  =====================================  =============================================
open        raised < the goal                      give as always
reached     goal reached, policy ``continue``      told before they pay, and confirm (已筹满)
stretch     goal reached, policy ``stretch``,      told the original goal is reached and their
            raised < the stretch goal              gift goes toward the stretch goal; confirm
closed      goal reached, policy ``stop``; or the  no more gifts (已筹满)
            stretch goal reached too
==========  =====================================  =============================================

The check happens when an order is opened (:func:`check_goal_allows_gift`; a giving day's
order: :func:`check_goal` on the process's order facts, ``campaigns.orders``), without a lock:
orders opened before the goal was reached are still credited when they are paid — money a
donor has paid is never refused — so a stopped project may end a little above its goal. See
``docs/projects.md`` ("Goals") and ADR 0035.
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass

from sqlalchemy.orm import Session

from shanju.core.clock import CHINA_TZ, TimeLeft, time_left, utcnow
from shanju.core.errors import Conflict, InvalidInput
from shanju.core.i18n import N_
from shanju.core.money import check_amount_fen, format_fen, parse_yuan
from shanju.gifts import service as gifts
from shanju.projects.models import GoalPolicy, Project, ProjectStatus

S = ProjectStatus
# The states in which an organization may still change what happens at its goal.
POLICY_EDITABLE = frozenset({S.DRAFT, S.SUBMITTED, S.APPROVED, S.REJECTED, S.FUNDRAISING,
                             S.PAUSED})


class GoalState(enum.StrEnum):
    """Where a project stands against its goal (see the module's table)."""

    OPEN = "open"
    REACHED = "reached"
    STRETCH = "stretch"
    CLOSED = "closed"


@dataclass(frozen=True)
class Goal:
    """A project's goal as donors see it: the original, the one in force, what was raised."""

    policy: GoalPolicy
    original_fen: int
    target_fen: int  # the goal in force: the stretch goal once the original is reached
    raised_fen: int
    state: GoalState

    @property
    def reached(self) -> bool:
        """Whether the original goal is reached (已筹满)."""
        return self.raised_fen >= self.original_fen

    @property
    def accepting(self) -> bool:
        """Whether the goal still lets gifts in (the lifecycle and filing are checked apart)."""
        return self.state is not GoalState.CLOSED

    @property
    def needs_confirmation(self) -> bool:
        """Whether a donor must confirm, before paying, that they give past the goal."""
        return self.state in (GoalState.REACHED, GoalState.STRETCH)

    @property
    def percent(self) -> int:
        """Progress toward the goal in force, 0–100 (for the bar)."""
        return min(100, self.raised_fen * 100 // self.target_fen) if self.target_fen else 0

    @property
    def percent_of_original(self) -> int:
        """Raised as a share of the original goal, uncapped (1775 for 1,775 %)."""
        return self.raised_fen * 100 // self.original_fen if self.original_fen else 0


def goal_of(project: Project, raised_fen: int) -> Goal:
    """Return the project's goal state for ``raised_fen``."""
    original = project.goal_fen
    stretch = project.stretch_goal_fen
    policy = project.goal_policy
    if raised_fen < original:
        return Goal(policy, original, original, raised_fen, GoalState.OPEN)
    if policy is GoalPolicy.CONTINUE:
        return Goal(policy, original, original, raised_fen, GoalState.REACHED)
    if policy is GoalPolicy.STRETCH and stretch is not None:
        state = GoalState.STRETCH if raised_fen < stretch else GoalState.CLOSED
        return Goal(policy, original, stretch, raised_fen, state)
    return Goal(policy, original, original, raised_fen, GoalState.CLOSED)


def goal_for(*, session: Session, project: Project) -> Goal:
    """Return the project's goal state, reading what it has raised."""
    totals = gifts.project_totals(session=session, project_ids=[project.id])
    return goal_of(project, totals[project.id].raised_fen)


_PAST_GOAL = N_("This project has already reached its goal of %(goal)s (%(raised)s raised). "
                "Confirm that you still want to give.")
_PAST_STRETCH = N_("This project has already reached its goal of %(goal)s (%(raised)s "
                   "raised); your gift goes toward its stretch goal of %(target)s. Confirm "
                   "that you still want to give.")


def _details(goal: Goal) -> dict[str, object]:
    return {"goal_state": goal.state.value, "goal_fen": goal.original_fen,
            "target_fen": goal.target_fen, "raised_fen": goal.raised_fen,
            "goal_policy": goal.policy.value}


def check_goal_allows_gift(*, session: Session, project: Project,
                           confirm_past_goal: bool) -> Goal:
    """Refuse a gift the goal does not let in: Conflict ``project_goal_reached`` when the
    project takes no more gifts; Conflict ``past_goal_unconfirmed`` (field
    ``confirm_past_goal``) when it is past its goal and the donor has not confirmed."""
    return check_goal(goal_for(session=session, project=project),
                      confirm_past_goal=confirm_past_goal)


def check_goal(goal: Goal, *, confirm_past_goal: bool) -> Goal:
    """:func:`check_goal_allows_gift` for a goal already read (``goal_of``)."""
    params = {"goal": format_fen(goal.original_fen, cents=False),
              "raised": format_fen(goal.raised_fen, cents=False),
              "target": format_fen(goal.target_fen, cents=False)}
    if goal.state is GoalState.CLOSED:
        raise Conflict(
            "This project has reached its goal (%(raised)s raised of %(goal)s) and takes no "
            "more gifts. Thank you to everyone who gave.",
            code="project_goal_reached", params=params, details=_details(goal))
    if goal.needs_confirmation and not confirm_past_goal:
        message = _PAST_STRETCH if goal.state is GoalState.STRETCH else _PAST_GOAL
        raise Conflict(message, code="past_goal_unconfirmed", field="confirm_past_goal",
                       params=params, details=_details(goal))
    return goal


# --- the organization's choice -----------------------------------------------------------------


def check_goal_policy(*, project: Project, policy: str, stretch_goal: str | int | None,
                      raised_fen: int) -> tuple[GoalPolicy, int | None]:
    """Validate a goal setting; return the policy and the stretch goal in fen (or None).

    ``stretch_goal`` is yuan text from a form or integer fen from the API; it is needed for
    ``stretch`` only, and must be above both the original goal and what is raised already.
    """
    if project.status not in POLICY_EDITABLE:
        raise Conflict("Fundraising for this project is over; its goal setting can no longer "
                       "change.", code="goal_policy_locked")
    try:
        chosen = GoalPolicy(policy)
    except ValueError:
        raise InvalidInput("Choose what happens when the goal is reached.",
                           code="goal_policy_invalid", field="goal_policy") from None
    if chosen is not GoalPolicy.STRETCH:
        return chosen, None
    if stretch_goal is None or stretch_goal == "":
        raise InvalidInput("Enter the stretch goal.", code="stretch_goal_required",
                           field="stretch_goal")
    fen = (parse_yuan(stretch_goal, field="stretch_goal") if isinstance(stretch_goal, str)
           else check_amount_fen(stretch_goal, field="stretch_goal"))
    if fen <= project.goal_fen:
        raise InvalidInput("The stretch goal must be higher than the goal (%(goal)s).",
                           code="stretch_goal_too_low", field="stretch_goal",
                           params={"goal": format_fen(project.goal_fen, cents=False)})
    if fen <= raised_fen:
        raise InvalidInput("The stretch goal must be higher than what has been raised "
                           "(%(raised)s).", code="stretch_goal_too_low", field="stretch_goal",
                           params={"raised": format_fen(raised_fen, cents=False)})
    return chosen, fen


# --- how long is left ----------------------------------------------------------------------------


def fundraising_ends_at(project: Project) -> dt.datetime | None:
    """When the project's fundraising period ends: the end of ``ends_on``, China time."""
    if project.ends_on is None:
        return None
    next_day = project.ends_on + dt.timedelta(days=1)
    return dt.datetime(next_day.year, next_day.month, next_day.day, tzinfo=CHINA_TZ)


def project_time_left(project: Project, now: dt.datetime | None = None) -> TimeLeft | None:
    """How long the project still raises funds (None without an end date)."""
    ends = fundraising_ends_at(project)
    return time_left(ends, now or utcnow()) if ends is not None else None
