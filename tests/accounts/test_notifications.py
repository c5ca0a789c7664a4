"""Notifications are stored as msgids with values and shown in each reader's language."""

from __future__ import annotations

from sqlalchemy import select

from shanju.accounts import service as accounts
from shanju.accounts.models import Notification
from shanju.core import i18n
from shanju.core.db import Database
from shanju.projects import labels
from shanju.projects.models import ProjectStatus
from tests.factories import make_user

NOT_REPORTABLE = (
    "Updates and disclosures can be posted once fundraising has started; this project is "
    "%(status)s."
)


def test_labels_are_translated_and_free_text_is_shown_as_typed(db: Database) -> None:
    with db.transaction() as session:
        uid = make_user(session).id
        accounts.do_notify(
            session=session, user_ids=[uid], kind="test", title=NOT_REPORTABLE,
            body="Reason: %(reason)s",
            params={"status": labels.status(ProjectStatus.PAUSED), "reason": "Paused"},
        )
    with db.transaction(write=False) as session:
        rows = list(session.scalars(select(Notification).where(Notification.user_id == uid)))
        zh = accounts.render_notifications(rows, locale="zh_CN")
        en = accounts.render_notifications(rows, locale="en")
        stored = rows[0].params
    assert stored == {"status": {"msgid": "Paused", "params": {}}, "reason": "Paused"}
    # The status is a label: translated. The reason is typed text: never translated.
    assert (zh[0].title, zh[0].body) == (
        "项目开始募捐后才能发布进展和信息公开；该项目当前状态为“已暂停”。", "原因：Paused")
    assert en[0].title.endswith("this project is Paused.") and en[0].body == "Reason: Paused"


def test_a_text_without_values_and_a_broken_translation_still_show(db: Database) -> None:
    with db.transaction() as session:
        uid = make_user(session).id
        accounts.do_notify(session=session, user_ids=[uid], kind="a", title="Not a msgid 100%")
        accounts.do_notify(session=session, user_ids=[uid], kind="b", title="Reason: %(reason)s",
                           params={"other": "x"})
    with db.transaction(write=False) as session:
        rows = list(session.scalars(select(Notification).where(Notification.user_id == uid)
                                    .order_by(Notification.id)))
        texts = [n.title for n in accounts.render_notifications(rows, locale="zh_CN")]
    assert texts == ["Not a msgid 100%", "Reason: %(reason)s"]


def test_params_round_trip_through_json() -> None:
    params = {"status": i18n.Msg("Paused"), "n": 3, "title": "乡村图书角"}
    loaded = i18n.load_params(i18n.dump_params(params))
    assert loaded == params
    assert isinstance(loaded["status"], i18n.Msg) and loaded["status"].msgid == "Paused"
    assert i18n.translate("zh_CN", "%(status)s", loaded) == "已暂停"
