"""Property tests: whatever the order, duplication and mix of donations, callbacks, refunds and
disbursements, every journal entry balances, every payment is credited exactly once, and the
stored balances equal the ones recomputed from postings."""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from shanju.accounts.models import Role, User
from shanju.core.db import Database
from shanju.core.errors import DomainError
from shanju.donations import flows
from shanju.donations.models import Donation, DonationStatus
from shanju.gifts import service as gifts
from shanju.ledger import service as ledger
from shanju.ledger.models import JournalEntry
from shanju.payments.models import IntentStatus, PaymentIntent, Refund, RefundStatus
from shanju.payments.providers import Providers, SandboxProvider
from tests.factories import make_org, make_project, make_user

SECRET = "property-secret"

operation = st.one_of(
    st.tuples(st.just("donate"), st.integers(min_value=1, max_value=50_000)),
    st.tuples(st.just("deliver"), st.integers(min_value=0, max_value=10_000), st.booleans()),
    st.tuples(st.just("refund"), st.integers(min_value=0, max_value=10_000),
              st.integers(min_value=1, max_value=50_000) | st.none()),
    st.tuples(st.just("disburse"), st.integers(min_value=1, max_value=60_000)),
)


@dataclass
class Run:
    db: Database
    providers: Providers
    sandbox: SandboxProvider
    project_id: int
    org_id: int
    donor_id: int
    staff_id: int
    outbox: list[tuple[bytes, dict[str, str]]] = field(default_factory=list)
    donations: list[str] = field(default_factory=list)
    disbursed: int = 0
    keys: int = 0


def setup(db: Database) -> Run:
    sandbox = SandboxProvider(SECRET)
    with db.transaction() as s:
        org = make_org(s)
        project = make_project(s, org=org)
        donor = make_user(s)
        staff = make_user(s, role=Role.ORG_STAFF, organization_id=org.id)
        return Run(db=db, providers=Providers(sandbox), sandbox=sandbox, project_id=project.id,
                   org_id=org.id, donor_id=donor.id, staff_id=staff.id)


def step(run: Run, op: tuple[object, ...]) -> None:
    kind = op[0]
    try:
        with run.db.transaction() as s:
            if kind == "donate":
                amount = int(op[1])  # type: ignore[call-overload]
                donor = s.get_one(User, run.donor_id)
                run.keys += 1
                request, project = flows.check_donation_request(
                    session=s, actor=donor, project_id=run.project_id, amount_fen=amount,
                    donor_name=None, anonymous=False, message="", province=None,
                )
                donation, _ = flows.start_donation(
                    session=s, actor=donor, request=request, project=project,
                    provider=run.sandbox, idempotency_key=f"k{run.keys}",
                )
                run.donations.append(donation.public_id)
                intent = donation.payment_intent_id
                # The provider will say "failed" and/or "succeeded", in any order, and may
                # report the success twice under different event ids.
                for event in ("payment.succeeded", "payment.failed", "payment.succeeded"):
                    run.outbox.append(run.sandbox.build_callback(
                        event_type=event, intent_id=intent, amount_fen=amount))
            elif kind == "deliver" and run.outbox:
                index = int(op[1]) % len(run.outbox)  # type: ignore[call-overload]
                body, headers = run.outbox[index]
                if not op[2]:  # keep it in the outbox: it will be delivered again
                    run.outbox.pop(index)
                flows.receive_callback(session=s, providers=run.providers,
                                       provider_name="sandbox", body=body, headers=headers)
            elif kind == "refund" and run.donations:
                public = run.donations[int(op[1]) % len(run.donations)]  # type: ignore[call-overload]
                donation = flows.get_donation(session=s, public_id=public)
                staff = s.get_one(User, run.staff_id)
                refund = flows.request_refund(
                    session=s, actor=staff, donation=donation, providers=run.providers,
                    amount_fen=op[2], reason="property test",  # type: ignore[arg-type]
                )
                for event in ("refund.succeeded", "refund.failed"):
                    run.outbox.append(run.sandbox.build_callback(
                        event_type=event, intent_id=refund.intent_id,
                        amount_fen=refund.amount_fen, refund_id=refund.id))
            elif kind == "disburse":
                amount = int(op[1])  # type: ignore[call-overload]
                ledger.post(s, ledger.transfer(
                    "project.funds_used", source=ledger.project_fund(run.project_id),
                    destination=ledger.organization(run.org_id), amount_fen=amount,
                    no_overdraft_source=True,
                ))
                run.disbursed += amount
    except DomainError:
        pass  # refused operations (not refundable, insufficient funds…) change nothing


def check_invariants(run: Run) -> None:
    with run.db.transaction(write=False) as s:
        report = ledger.check(s)
        assert report.unbalanced_entries == []
        assert report.mismatched_accounts == []
        assert report.total_fen == 0

        paid_total = 0
        for public in run.donations:
            donation = s.scalar(select(Donation).where(Donation.public_id == public))
            assert donation is not None
            intent = s.get_one(PaymentIntent, donation.payment_intent_id)
            credits = s.scalar(
                select(func.count()).select_from(JournalEntry).where(
                    JournalEntry.kind == "donation.paid", JournalEntry.memo == public)
            )
            succeeded = intent.status == IntentStatus.SUCCEEDED
            assert credits == (1 if succeeded else 0)
            assert (donation.status in (DonationStatus.PAID, DonationStatus.REFUNDED)) == succeeded
            if succeeded:
                paid_total += donation.amount_fen
            assert 0 <= intent.refunded_fen <= intent.amount_fen

        reserved = s.scalar(
            select(func.coalesce(func.sum(Refund.amount_fen), 0))
            .join(PaymentIntent, PaymentIntent.id == Refund.intent_id)
            .join(Donation, Donation.payment_intent_id == PaymentIntent.id)
            .where(Donation.project_id == run.project_id,
                   Refund.status != RefundStatus.FAILED)
        )
        fund = ledger.balance(s, ledger.project_fund(run.project_id))
        assert fund == paid_total - int(reserved or 0) - run.disbursed
        assert fund >= 0
        # The derived total people see is the ledger's money, before any use of it.
        raised = gifts.project_totals(session=s, project_ids=[run.project_id])
        assert raised[run.project_id].raised_fen == fund + run.disbursed


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture,
                                 HealthCheck.too_slow])
@given(ops=st.lists(operation, min_size=1, max_size=30))
def test_any_sequence_keeps_the_ledger_exact(db: Database, ops: list[tuple[object, ...]]
                                             ) -> None:
    run = setup(db)
    for op in ops:
        step(run, op)
    check_invariants(run)
    # Deliver everything still waiting, twice, in reverse order: nothing more may change.
    for body, headers in reversed(run.outbox * 2):
        with db.transaction() as s:
            flows.receive_callback(session=s, providers=run.providers, provider_name="sandbox",
                                   body=body, headers=headers)
    check_invariants(run)
