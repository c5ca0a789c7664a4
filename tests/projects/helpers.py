"""Test helpers of the projects domain: signing in, paid donations, small files."""

from __future__ import annotations

import datetime as dt
import io
from typing import Any

from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from shanju.accounts import service as accounts
from shanju.accounts.models import Role, User
from shanju.core.audit import AuditEntry
from shanju.core.clock import utcnow
from shanju.core.db import Database
from shanju.core.ids import public_id
from shanju.donations.models import Donation, DonationStatus
from shanju.ledger import service as ledger
from shanju.organizations.models import Organization
from shanju.payments.models import IntentStatus, PaymentIntent
from shanju.projects.models import Project
from tests.factories import make_user


def image_bytes(fmt: str = "PNG", size: tuple[int, int] = (64, 48),
                colour: tuple[int, int, int] = (200, 80, 60), **save: Any) -> bytes:
    """A real picture of ``size`` in ``fmt`` (JPEG, PNG, WEBP), saved with ``save`` options
    (e.g. ``exif=``)."""
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, fmt, **save)
    return buffer.getvalue()


PNG = image_bytes("PNG")
JPEG = image_bytes("JPEG")
PDF = b"%PDF-1.7\n" + b"\x00" * 64


def staff_of(session: Session, org: Organization, **kwargs: object) -> User:
    """A staff member of ``org``."""
    return make_user(session, role=Role.ORG_STAFF, organization_id=org.id, **kwargs)  # type: ignore[arg-type]


def reviewer(session: Session) -> User:
    """A platform reviewer."""
    return make_user(session, role=Role.REVIEWER)


def paid_donation(
    session: Session, project: Project, *, amount_fen: int = 10_000, donor: User | None = None,
    name: str = "张三丰", anonymous: bool = False, message: str = "",
) -> Donation:
    """A paid donation written as rows, credited to the project fund like a real payment."""
    intent = PaymentIntent(
        id=public_id("pi"), provider="sandbox", amount_fen=amount_fen,
        status=IntentStatus.SUCCEEDED, idempotency_scope="test",
        idempotency_key=public_id("k"), request_hash="0" * 64, succeeded_at=utcnow(),
    )
    session.add(intent)
    session.flush()
    donation = Donation(
        public_id=public_id("d"), project_id=project.id, recipient_org_id=project.recipient_org_id,
        donor_id=donor.id if donor else None, donor_name=name, anonymous=anonymous,
        message=message, amount_fen=amount_fen, status=DonationStatus.PAID,
        payment_intent_id=intent.id, paid_at=utcnow(),
    )
    session.add(donation)
    session.flush()
    ledger.post(session, ledger.transfer(
        "donation.paid", source=ledger.donor_clearing("sandbox"),
        destination=ledger.project_fund(project.id), amount_fen=amount_fen,
        dedupe_key=f"donation.paid:{donation.public_id}",
    ))
    return donation


def sign_in(client: TestClient, db: Database, user_id: int) -> str:
    """Sign ``client`` in as the user; return the CSRF token its forms must send."""
    with db.transaction() as s:
        user = s.get(User, user_id)
        assert user is not None
        token = accounts.do_start_session(session=s, user=user)
    client.cookies.set("sj_session", token)
    client.get("/healthz")
    csrf = client.cookies.get("sj_csrf")
    assert csrf
    return csrf


def api_token(db: Database, user_id: int) -> dict[str, str]:
    """Authorization headers with a fresh API token of the user."""
    with db.transaction() as s:
        user = s.get(User, user_id)
        assert user is not None
        _, plain = accounts.do_create_api_token(session=s, user=user, name="test")
    return {"Authorization": f"Bearer {plain}"}


def audit_count(session: Session, action: str) -> int:
    """How many audit entries with this action exist."""
    return int(session.scalar(
        select(func.count()).select_from(AuditEntry).where(AuditEntry.action == action)) or 0)


def days(n: int) -> dt.timedelta:
    """n days."""
    return dt.timedelta(days=n)
