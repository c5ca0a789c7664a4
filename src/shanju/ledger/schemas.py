"""Ledger API shapes (public: no personal data is ever in the ledger)."""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel

from shanju.ledger.models import AccountKind


class AccountRead(BaseModel):
    """An account and its balance (money it holds, in fen)."""

    code: str
    kind: AccountKind
    balance_fen: int


class AccountPage(BaseModel):
    """A page of accounts."""

    items: list[AccountRead]
    total: int


class PostingRead(BaseModel):
    """Money entering (+) or leaving (−) one account."""

    account: str
    amount_fen: int


class EntryRead(BaseModel):
    """A balanced journal entry."""

    id: int
    kind: str
    memo: str
    created_at: dt.datetime
    postings: list[PostingRead]


class EntryPage(BaseModel):
    """A page of journal entries, newest first."""

    items: list[EntryRead]
    total: int


class CheckRead(BaseModel):
    """The result of recomputing every balance from postings."""

    ok: bool
    accounts: int
    entries: int
    postings: int
    unbalanced_entries: list[int]
    mismatched_accounts: list[tuple[str, int, int]]
    total_fen: int
