"""The rule (ADR 0027): a reader that needs gifts of both kinds reads the ``gifts`` view.

Nothing outside ``shanju.gifts`` combines ordinary donations (``Donation``, ``donations``) and
giving-day gifts (``CampaignGift``, ``campaign_gifts``) by hand: no ``union``/``union_all`` of
the two, and no new module that reads both tables without saying here why it is not reading
gifts. The check reads the source (names and SQL strings), as a reviewer would.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import shanju

SRC = Path(shanju.__file__).resolve().parent
EXEMPT = (SRC / "gifts", SRC / "migrations")  # the read model itself; the schema's history

# Modules that read both tables for something that is not a gift, and why. A new entry needs
# a reason a reviewer accepts; an entry that no longer reads both fails the test (stale).
READS_BOTH_FOR_OTHER_REASONS = {
    "disclosure/service.py": "money movements that are not gifts arriving: refunds of donations "
                             "(refunds joined to donations) and sponsors' matches (the match "
                             "columns of campaign_gifts); gifts arriving are read from the view",
    "accounts/flows.py": "deleting an account (PIPL) de-identifies the person's rows in both "
                         "tables (messages, payer hashes): it writes, it does not read gifts",
}

_SQL = {"ordinary": re.compile(r"\b(FROM|JOIN)\s+\"?donations\b"),
        "giving_day": re.compile(r"\b(FROM|JOIN)\s+\"?campaign_gifts\b")}
_SET_OPERATIONS = {"union", "union_all"}


@dataclass(frozen=True)
class Reads:
    ordinary: bool
    giving_day: bool
    combines: bool  # a set operation (SQLAlchemy's union/union_all or SQL's UNION)


def reads_of(source: str) -> Reads:
    """What a module's source reads of the two gift tables, and whether it unions."""
    names: set[str] = set()
    strings: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Name):
            names.add(node.id)
        elif isinstance(node, ast.Attribute):
            names.add(node.attr)
        elif isinstance(node, ast.alias):
            names.add(node.asname or node.name.rsplit(".", 1)[-1])
            names.add(node.name.rsplit(".", 1)[-1])
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            strings.append(node.value)
    text = "\n".join(strings)
    return Reads(
        ordinary="Donation" in names or bool(_SQL["ordinary"].search(text)),
        giving_day="CampaignGift" in names or bool(_SQL["giving_day"].search(text)),
        combines=bool(names & _SET_OPERATIONS) or bool(re.search(r"\bUNION\b", text)),
    )


def _modules() -> dict[str, Reads]:
    found = {}
    for path in sorted(SRC.rglob("*.py")):
        if any(path.is_relative_to(exempt) for exempt in EXEMPT):
            continue
        found[path.relative_to(SRC).as_posix()] = reads_of(path.read_text(encoding="utf-8"))
    return found


def test_no_module_unions_donations_and_giving_day_gifts_by_hand() -> None:
    offenders = [name for name, r in _modules().items()
                 if r.ordinary and r.giving_day and r.combines]
    assert offenders == [], (
        f"{offenders} combine donations and giving-day gifts by hand: read the gifts view "
        "(shanju.gifts.service) instead, or add what you need to it (ADR 0027)")


def test_modules_reading_both_tables_say_why() -> None:
    both = {name for name, r in _modules().items() if r.ordinary and r.giving_day}
    unexplained = sorted(both - set(READS_BOTH_FOR_OTHER_REASONS))
    stale = sorted(set(READS_BOTH_FOR_OTHER_REASONS) - both)
    assert unexplained == [], (
        f"{unexplained} read both donations and giving-day gifts: a reader of gifts reads the "
        "gifts view (shanju.gifts); anything else goes in READS_BOTH_FOR_OTHER_REASONS with why")
    assert stale == [], f"{stale} no longer read both tables: remove them from the list"


def test_the_check_sees_a_hand_made_union() -> None:
    # What donations/service.py did before the view (and what the check must refuse).
    by_hand = '''
from sqlalchemy import select, union_all
from shanju.campaigns.models import CampaignGift
from shanju.donations.models import Donation

def kept():
    return union_all(select(Donation.project_id), select(CampaignGift.project_id))
'''
    assert reads_of(by_hand) == Reads(ordinary=True, giving_day=True, combines=True)
    raw = 'SQL = "SELECT id FROM donations UNION ALL SELECT id FROM campaign_gifts"'
    assert reads_of(raw) == Reads(ordinary=True, giving_day=True, combines=True)
    # Reading the view is not combining anything by hand.
    through_view = '''
from sqlalchemy import func, select
from shanju.gifts.models import Gift

def kept():
    return select(Gift.project_id, func.sum(Gift.amount_fen)).group_by(Gift.project_id)
'''
    assert reads_of(through_view) == Reads(ordinary=False, giving_day=False, combines=False)
