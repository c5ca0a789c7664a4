"""The mail outbox: queued in the sender's transaction, delivered after it, retried on failure."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from shanju.core import mail
from shanju.core.db import Database


class BrokenMailer:
    def send(self, message: mail.Message) -> None:
        raise ConnectionError("smtp.example.org refused")


def _rows(db: Database) -> list[mail.OutboxMessage]:
    with db.transaction(write=False) as session:
        rows = list(session.scalars(select(mail.OutboxMessage).order_by(mail.OutboxMessage.id)))
        session.expunge_all()
        return rows


def test_a_message_is_kept_only_if_its_transaction_commits(db: Database) -> None:
    with pytest.raises(RuntimeError), db.transaction() as session:
        mail.queue(session, to="a@example.org", subject="s", body="b", kind="test.rolled_back")
        raise RuntimeError("the change failed")
    with db.transaction() as session:
        mail.queue(session, to="a@example.org", subject="主题", body="正文", kind="test.kept")
    assert [r.kind for r in _rows(db)] == ["test.kept"]


def test_delivery_marks_sent_and_a_failure_waits_for_the_next_one(db: Database) -> None:
    with db.transaction() as session:
        mail.queue(session, to="a@example.org", subject="一", body="1", kind="test.one")
        mail.queue(session, to="b@example.org", subject="二", body="2", kind="test.two")
    assert mail.deliver_pending(db, BrokenMailer()) == 0
    failed = _rows(db)
    assert [(r.sent_at, r.attempts) for r in failed] == [(None, 1), (None, 1)]
    assert failed[0].last_error == "ConnectionError: smtp.example.org refused"
    mailer = mail.LogMailer()
    assert mail.deliver_pending(db, mailer) == 2
    assert [(m.to, m.subject) for m in mailer.sent] == [("a@example.org", "一"),
                                                        ("b@example.org", "二")]
    assert all(r.sent_at is not None and r.last_error is None for r in _rows(db))
    assert mail.deliver_pending(db, mailer) == 0  # sent once


def test_delivery_after_commit(db: Database) -> None:
    mailer = mail.LogMailer()
    with db.transaction() as session:
        mail.queue(session, to="a@example.org", subject="s", body="b", kind="test.after")
        mail.deliver_after_commit(session, database=db, mailer=mailer)
        assert list(mailer.sent) == []  # not before the commit
    assert [m.kind for m in mailer.sent] == ["test.after"]
