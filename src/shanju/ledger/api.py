"""Ledger API: public balances and journal entries, and the reviewers' consistency check."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from shanju.core.db import MAX_OFFSET
from shanju.core.deps import DbSession, Reviewer
from shanju.ledger import service as ledger
from shanju.ledger.models import AccountKind
from shanju.ledger.schemas import (
    AccountPage,
    AccountRead,
    CheckRead,
    EntryPage,
    EntryRead,
    PostingRead,
)

router = APIRouter(tags=["ledger"])
Limit = Annotated[int, Query(ge=1, le=200)]
Offset = Annotated[int, Query(ge=0, le=MAX_OFFSET)]


@router.get("/ledger/accounts", response_model=AccountPage, summary="Ledger accounts")
def accounts(session: DbSession, kind: AccountKind | None = None, limit: Limit = 50,
             offset: Offset = 0) -> AccountPage:
    """Every account with its balance; e.g. ``kind=project`` for all project funds."""
    rows, total = ledger.list_accounts(session=session, kind=kind, limit=limit, offset=offset)
    return AccountPage(
        items=[AccountRead(code=a.code, kind=a.kind, balance_fen=a.balance_fen) for a in rows],
        total=total,
    )


@router.get("/ledger/entries", response_model=EntryPage, summary="Journal entries")
def entries(session: DbSession, account: str | None = None, limit: Limit = 50,
            offset: Offset = 0) -> EntryPage:
    """Journal entries, newest first, optionally only those touching one account."""
    rows, total = ledger.list_entries(session=session, account=account, limit=limit,
                                      offset=offset)
    return EntryPage(
        items=[
            EntryRead(id=e.id, kind=e.kind, memo=e.memo, created_at=e.created_at,
                      postings=[PostingRead(account=c, amount_fen=a) for c, a in legs])
            for e, legs in rows
        ],
        total=total,
    )


@router.get("/ledger/check", response_model=CheckRead, summary="Recompute and compare")
def check(session: DbSession, _reviewer: Reviewer) -> CheckRead:
    """Recompute every balance from postings and every entry's sum (reviewers only)."""
    report = ledger.check(session)
    return CheckRead(ok=report.ok, **report.__dict__)
