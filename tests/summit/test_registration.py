"""Summit registration (service): delegations, seats, public audience, capacity, e-tickets,
the organizers' decisions and check-in — on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from shanju.accounts import service as accounts
from shanju.accounts.models import Notification, Role, User
from shanju.core.audit import AuditEntry
from shanju.core.clock import utcnow
from shanju.core.db import Database
from shanju.core.errors import DomainError
from shanju.core.security import token_hash
from shanju.summit import registration as reg
from shanju.summit.models import (
    RegistrationKind,
    RegistrationStatus,
    Summit,
    SummitRegistration,
    SummitStatus,
)
from tests.factories import make_user
from tests.summit.reg_helpers import make_reviewer, make_staff, make_summit


def code_of(fn: Callable[[], Any]) -> str:
    with pytest.raises(DomainError) as info:
        fn()
    return info.value.code


def summit_of(s: Session, summit_id: int) -> Summit:
    found = s.get(Summit, summit_id)
    assert found is not None
    return found


def user_of(s: Session, user_id: int) -> User:
    found = s.get(User, user_id)
    assert found is not None
    return found


def test_a_verified_organization_is_approved_at_once_and_its_registrant_seated(
        db: Database) -> None:
    with db.transaction() as s:
        summit = make_summit(s)
        staff = make_staff(s, verified=True)
        result = reg.do_register_delegation(session=s, summit=summit, actor=staff, seats=3)
        assert result.delegation.status == RegistrationStatus.APPROVED
        seat = result.registration
        assert seat is not None and seat.status == RegistrationStatus.APPROVED
        assert seat.kind == RegistrationKind.DELEGATE
        assert seat.organization_id == staff.organization_id
        summit_id, staff_id, reg_id = summit.id, staff.id, seat.id
    with db.transaction() as s:
        seat = s.get(SummitRegistration, reg_id)
        assert seat is not None
        token = reg.ticket_token(seat)
        # Only the hash is stored; the token is derived again, the same, after a reload.
        assert seat.ticket_hash == token_hash(token)
        assert token not in (seat.ticket_hash or "")
        assert len(token) == 43 and "=" not in token
        again = reg.do_register_delegation(session=s, summit=summit_of(s, summit_id),
                                           actor=user_of(s, staff_id), seats=2)
        assert again.delegation.seats == 3  # idempotent: the first registration stands
        assert again.registration is not None and again.registration.id == reg_id


def test_ticket_tokens_depend_on_the_secret_and_the_registration(db: Database) -> None:
    with db.transaction() as s:
        summit = make_summit(s)
        a = reg.do_register_audience(session=s, summit=summit, actor=make_user(s))
        b = reg.do_register_audience(session=s, summit=summit, actor=make_user(s))
        assert reg.ticket_token(a) != reg.ticket_token(b)
        assert reg.ticket_token(a, secret="other") != reg.ticket_token(a)


def test_an_unverified_organization_applies_and_the_organizer_approves(db: Database) -> None:
    with db.transaction() as s:
        summit = make_summit(s)
        staff = make_staff(s, verified=False, org_name="云南山花公益协会")
        colleague = make_staff(s, org=_org(s, staff))
        organizer = make_reviewer(s)
        result = reg.do_register_delegation(session=s, summit=summit, actor=staff, seats=2,
                                            note="我们服务山区儿童")
        assert result.delegation.status == RegistrationStatus.PENDING
        assert result.registration is not None
        assert result.registration.status == RegistrationStatus.PENDING
        assert result.registration.ticket_hash is None
        assert code_of(lambda: reg.do_take_seat(session=s, summit=summit, actor=colleague)) \
            == "delegation_pending"
        assert code_of(lambda: reg.do_decide_delegation(
            session=s, summit=summit, delegation=result.delegation, actor=colleague,
            approve=True)) == "organizer_only"
        reg.do_decide_delegation(session=s, summit=summit, delegation=result.delegation,
                                 actor=organizer, approve=True, note="欢迎")
        assert result.delegation.status == RegistrationStatus.APPROVED
        assert result.delegation.decided_by_id == organizer.id
        assert result.registration.status == RegistrationStatus.APPROVED
        assert result.registration.ticket_hash == token_hash(
            reg.ticket_token(result.registration))
        assert code_of(lambda: reg.do_decide_delegation(
            session=s, summit=summit, delegation=result.delegation, actor=organizer,
            approve=False, note="x")) == "already_decided"
        notes = s.scalars(select(Notification).where(Notification.user_id == staff.id)).all()
        assert [n.kind for n in notes] == ["summit.delegation.approved"]
        assert notes[0].link == f"/summits/{summit.slug}/ticket"
        actions = s.scalars(select(AuditEntry.action).where(
            AuditEntry.object_type == "summit_delegation")).all()
        assert "summit.delegation.approved" in actions
        seat = reg.do_take_seat(session=s, summit=summit, actor=colleague)
        assert seat.status == RegistrationStatus.APPROVED
        assert code_of(lambda: reg.do_take_seat(
            session=s, summit=summit, actor=make_staff(s, org=_org(s, staff)))) \
            == "delegation_full"


def _org(s: Session, staff: User) -> Any:
    from shanju.organizations.models import Organization

    return s.get(Organization, staff.organization_id)


def test_a_rejection_needs_a_note_rejects_the_waiting_seat_and_allows_a_new_application(
        db: Database) -> None:
    with db.transaction() as s:
        summit = make_summit(s)
        staff = make_staff(s, verified=False)
        organizer = make_reviewer(s)
        result = reg.do_register_delegation(session=s, summit=summit, actor=staff, seats=1)
        assert code_of(lambda: reg.do_decide_delegation(
            session=s, summit=summit, delegation=result.delegation, actor=organizer,
            approve=False)) == "note_required"
        reg.do_decide_delegation(session=s, summit=summit, delegation=result.delegation,
                                 actor=organizer, approve=False, note="材料不全")
        assert result.delegation.status == RegistrationStatus.REJECTED
        assert result.delegation.decision_note == "材料不全"
        assert result.registration is not None
        assert result.registration.status == RegistrationStatus.REJECTED
        note = s.scalars(select(Notification).where(Notification.user_id == staff.id)).one()
        assert note.kind == "summit.delegation.rejected"
        assert note.params["note"] == "材料不全"
        shown = accounts.render_notifications([note], locale="zh_CN")[0]
        assert summit.title in shown.title and "未获通过" in shown.title
        assert shown.body == "组委会说明:材料不全"
        assert code_of(lambda: reg.do_take_seat(session=s, summit=summit, actor=staff)) \
            == "delegation_rejected"
        again = reg.do_register_delegation(session=s, summit=summit, actor=staff, seats=1)
        assert again.delegation.id == result.delegation.id
        assert again.delegation.status == RegistrationStatus.PENDING
        assert again.registration is not None and again.registration.id == result.registration.id
        assert again.registration.status == RegistrationStatus.PENDING


def test_input_and_role_errors(db: Database) -> None:
    with db.transaction() as s:
        summit = make_summit(s, delegation_size=3)
        staff = make_staff(s)
        donor = make_user(s)
        assert code_of(lambda: reg.do_register_delegation(
            session=s, summit=summit, actor=staff, seats=4)) == "invalid_seats"
        assert code_of(lambda: reg.do_register_delegation(
            session=s, summit=summit, actor=staff, seats=0)) == "invalid_seats"
        assert code_of(lambda: reg.do_register_delegation(
            session=s, summit=summit, actor=donor, seats=1)) == "not_org_staff"
        assert code_of(lambda: reg.do_take_seat(session=s, summit=summit, actor=donor)) \
            == "not_org_staff"
        assert code_of(lambda: reg.do_take_seat(session=s, summit=summit, actor=staff)) \
            == "no_delegation"
        assert code_of(lambda: reg.do_cancel(session=s, summit=summit, actor=donor)) \
            == "not_registered"


def test_registration_is_closed_on_a_draft_and_after_the_deadline(db: Database) -> None:
    with db.transaction() as s:
        draft = make_summit(s, status=SummitStatus.DRAFT)
        past = make_summit(s, closes_at=utcnow() - dt.timedelta(minutes=1))
        later = make_summit(s, closes_at=utcnow() + dt.timedelta(days=1))
        donor = make_user(s)
        assert code_of(lambda: reg.get_summit(session=s, slug=draft.slug, viewer=donor)) \
            == "summit_not_found"
        assert reg.get_summit(session=s, slug=draft.slug, viewer=make_reviewer(s)) is draft
        for summit in (draft, past):
            assert code_of(lambda summit=summit: reg.do_register_audience(
                session=s, summit=summit, actor=donor)) == "registration_closed"
            assert code_of(lambda summit=summit: reg.do_register_delegation(
                session=s, summit=summit, actor=make_staff(s), seats=1)) == "registration_closed"
        assert reg.do_register_audience(session=s, summit=later, actor=donor).status \
            == RegistrationStatus.APPROVED


def test_audience_capacity_idempotence_and_cancel(db: Database) -> None:
    with db.transaction() as s:
        summit = make_summit(s, capacity=2)
        a, b, c = make_user(s), make_user(s), make_user(s)
        first = reg.do_register_audience(session=s, summit=summit, actor=a)
        assert reg.do_register_audience(session=s, summit=summit, actor=a).id == first.id
        reg.do_register_audience(session=s, summit=summit, actor=b)
        assert code_of(lambda: reg.do_register_audience(session=s, summit=summit, actor=c)) \
            == "capacity_full"
        # A delegation still registers when the summit is full, but nobody is seated.
        staff = make_staff(s)
        result = reg.do_register_delegation(session=s, summit=summit, actor=staff, seats=2)
        assert result.delegation.status == RegistrationStatus.APPROVED
        assert result.registration is None
        assert code_of(lambda: reg.do_take_seat(session=s, summit=summit, actor=staff)) \
            == "capacity_full"
        cancelled = reg.do_cancel(session=s, summit=summit, actor=a)
        assert cancelled.status == RegistrationStatus.CANCELLED
        assert cancelled.ticket_hash is None
        assert reg.do_cancel(session=s, summit=summit, actor=a).status \
            == RegistrationStatus.CANCELLED  # twice: harmless
        seat = reg.do_take_seat(session=s, summit=summit, actor=staff)
        assert seat.status == RegistrationStatus.APPROVED
        assert reg.approved_count(s, summit.id) == 2
        assert code_of(lambda: reg.do_register_audience(session=s, summit=summit, actor=a)) \
            == "capacity_full"
        counts = reg.counts(session=s, summit=summit)
        assert (counts.approved, counts.delegates, counts.audience, counts.capacity) \
            == (2, 1, 1, 2)


def test_a_cancelled_registration_is_reused_with_a_new_ticket(db: Database) -> None:
    with db.transaction() as s:
        summit = make_summit(s)
        donor = make_user(s)
        first = reg.do_register_audience(session=s, summit=summit, actor=donor)
        old_hash = first.ticket_hash
        reg.do_cancel(session=s, summit=summit, actor=donor)
        again = reg.do_register_audience(session=s, summit=summit, actor=donor)
        assert again.id == first.id
        assert again.status == RegistrationStatus.APPROVED
        assert again.ticket_hash == old_hash  # same row, same derived token
        assert s.scalar(select(func.count()).select_from(SummitRegistration)) == 1


def test_check_in(db: Database) -> None:
    with db.transaction() as s:
        summit = make_summit(s)
        other = make_summit(s)
        donor = make_user(s, display_name="李四")
        organizer = make_reviewer(s)
        ticket = reg.do_register_audience(session=s, summit=summit, actor=donor)
        elsewhere = reg.do_register_audience(session=s, summit=other, actor=make_user(s))
        token = reg.ticket_token(ticket)
        assert code_of(lambda: reg.do_check_in(session=s, summit=summit, actor=donor,
                                               token=token)) == "organizer_only"
        done = reg.do_check_in(session=s, summit=summit, actor=organizer, token=token)
        assert not done.already and done.user.display_name == "李四"
        assert ticket.checked_in_at is not None
        assert reg.do_check_in(session=s, summit=summit, actor=organizer, token=token).already
        assert code_of(lambda: reg.do_check_in(
            session=s, summit=summit, actor=organizer,
            token=reg.ticket_token(elsewhere))) == "ticket_not_found"
        assert code_of(lambda: reg.do_check_in(session=s, summit=summit, actor=organizer,
                                               token="   ")) == "token_required"
        reg.do_cancel(session=s, summit=summit, actor=donor)
        assert code_of(lambda: reg.do_check_in(session=s, summit=summit, actor=organizer,
                                               token=token)) == "ticket_not_found"


def test_audience_staff_move_into_their_delegation_keeping_their_place(db: Database) -> None:
    with db.transaction() as s:
        summit = make_summit(s, capacity=2)
        staff = make_staff(s)
        colleague = make_staff(s, org=_org(s, staff))
        audience = reg.do_register_audience(session=s, summit=summit, actor=staff)
        reg.do_register_audience(session=s, summit=summit, actor=colleague)  # summit full
        result = reg.do_register_delegation(session=s, summit=summit, actor=staff, seats=2)
        assert result.registration is not None and result.registration.id == audience.id
        assert audience.kind == RegistrationKind.DELEGATE
        assert audience.delegation_id == result.delegation.id
        seat = reg.do_take_seat(session=s, summit=summit, actor=colleague)
        assert seat.kind == RegistrationKind.DELEGATE and seat.ticket_hash is not None
        assert reg.approved_count(s, summit.id) == 2
        assert reg.seats_taken(s, result.delegation.id) == 2


def test_host_organization_staff_organize(db: Database) -> None:
    with db.transaction() as s:
        host_staff = make_staff(s)
        summit = make_summit(s, host=_org(s, host_staff))
        applicant = make_staff(s, verified=False)
        result = reg.do_register_delegation(session=s, summit=summit, actor=applicant, seats=1)
        reg.do_decide_delegation(session=s, summit=summit, delegation=result.delegation,
                                 actor=host_staff, approve=True)
        assert result.delegation.status == RegistrationStatus.APPROVED


# --- concurrency -----------------------------------------------------------------------------


def race(db: Database, n: int, action: Callable[[Session, int], None]) -> list[str]:
    """Run ``action(session, i)`` for i in 0..n-1 in n threads, each in its own write
    transaction, released together; return each one's outcome ("ok" or the error code)."""
    outcomes: list[str] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(n)
    lock = threading.Lock()

    def run(i: int) -> None:
        try:
            barrier.wait()
            try:
                with db.transaction() as s:
                    action(s, i)
                outcome = "ok"
            except DomainError as exc:
                outcome = exc.code
            with lock:
                outcomes.append(outcome)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    return outcomes


def test_racing_for_the_last_places_approves_exactly_capacity(db: Database) -> None:
    with db.transaction() as s:
        summit = make_summit(s, capacity=4)
        reg.do_register_audience(session=s, summit=summit, actor=make_user(s))  # 3 left
        users = [make_user(s).id for _ in range(8)]
        summit_id = summit.id

    def register(s: Session, i: int) -> None:
        reg.do_register_audience(session=s, summit=summit_of(s, summit_id),
                                 actor=user_of(s, users[i]))

    outcomes = race(db, 8, register)
    assert sorted(outcomes) == ["capacity_full"] * 5 + ["ok"] * 3
    with db.transaction(write=False) as s:
        assert reg.approved_count(s, summit_id) == 4


def test_racing_for_the_last_seats_of_a_delegation(db: Database) -> None:
    with db.transaction() as s:
        summit = make_summit(s, delegation_size=3)
        first = make_staff(s)
        reg.do_register_delegation(session=s, summit=summit, actor=first, seats=3)  # 2 left
        org = _org(s, first)
        staff = [make_staff(s, org=org).id for _ in range(6)]
        summit_id = summit.id

    def take(s: Session, i: int) -> None:
        reg.do_take_seat(session=s, summit=summit_of(s, summit_id), actor=user_of(s, staff[i]))

    outcomes = race(db, 6, take)
    assert sorted(outcomes) == ["delegation_full"] * 4 + ["ok"] * 2
    with db.transaction(write=False) as s:
        assert reg.approved_count(s, summit_id) == 3


def test_the_same_person_registering_twice_at_once_gets_one_registration(
        db: Database) -> None:
    with db.transaction() as s:
        summit = make_summit(s, capacity=10)
        donor_id = make_user(s).id
        summit_id = summit.id

    def register(s: Session, i: int) -> None:
        del i
        reg.do_register_audience(session=s, summit=summit_of(s, summit_id),
                                 actor=user_of(s, donor_id))

    assert race(db, 4, register) == ["ok"] * 4
    with db.transaction(write=False) as s:
        assert s.scalar(select(func.count()).select_from(SummitRegistration)) == 1


def test_only_staff_roles_matter_for_delegations(db: Database) -> None:
    with db.transaction() as s:
        summit = make_summit(s)
        enterprise = make_user(s, role=Role.ENTERPRISE_STAFF)
        assert code_of(lambda: reg.do_register_delegation(
            session=s, summit=summit, actor=enterprise, seats=1)) == "not_org_staff"
