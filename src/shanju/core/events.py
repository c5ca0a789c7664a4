"""Run side effects only after the surrounding transaction commits.

Services call :func:`on_commit`; the callbacks run after a successful commit and are dropped on
rollback, so nobody is told about a change that did not happen.
"""

from __future__ import annotations

from collections.abc import Callable

import structlog
from sqlalchemy import event
from sqlalchemy.orm import Session

log = structlog.get_logger(__name__)
_KEY = "shanju_on_commit"


def on_commit(session: Session, callback: Callable[[], None]) -> None:
    """Call ``callback`` once the session's current transaction has committed."""
    session.info.setdefault(_KEY, []).append(callback)


@event.listens_for(Session, "after_commit")
def _run_after_commit(session: Session) -> None:
    callbacks = session.info.pop(_KEY, [])
    for callback in callbacks:
        try:
            callback()
        except Exception:  # a failed side effect must not undo a committed change
            log.exception("on_commit callback failed", callback=repr(callback))


@event.listens_for(Session, "after_rollback")
def _drop_on_rollback(session: Session) -> None:
    session.info.pop(_KEY, None)
