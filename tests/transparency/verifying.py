"""Building real logs for the ``shanju verify`` tests: money posted through the ledger service,
checkpoints signed with a real key, mirrors and receipts written straight from the database.

Nothing here computes what the verifier computes: the expected project totals are written out
by hand from the movements posted (:data:`EXPECTED`), not derived from the leaves.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select, update

from shanju.core.config import get_settings
from shanju.core.db import Database
from shanju.ledger import service as ledger
from shanju.ledger.models import AccountKind
from shanju.transparency import checkpoints, leaves
from shanju.transparency import service as log_service
from shanju.transparency.leaves import LogDetail
from shanju.transparency.models import LogLeaf
from shanju.transparency.verify import MIRROR_FILES
from tests.factories import make_org, make_project, make_user

ORIGIN = "verify.test/transparency"
SEED = bytes(range(32))
OTHER_SEED = bytes(range(1, 33))


def signer(seed: bytes = SEED, name: str = ORIGIN) -> checkpoints.Signer:
    """The test log's signer (a fixed Ed25519 key)."""
    return checkpoints.Signer.from_seed(name, seed)


@dataclass
class Money:
    """What :func:`post_money` created: the projects' ids and the donor's identity."""

    org_id: int
    project_a: int
    project_b: int
    donor: str  # "user:<id>", the identity committed to in the donation leaves
    pool: int = 1

    def expected(self) -> dict[str, dict[str, int]]:
        """Each project's totals, worked out by hand from the movements below."""
        return {
            str(self.project_a): {"received_fen": 10_000 + 2_500 + 100, "matched_fen": 3_000 - 500,
                                  "refunded_fen": 2_500, "disbursed_fen": 4_000,
                                  "balance_fen": 12_600 + 2_500 - 2_500 - 4_000},
            str(self.project_b): {"received_fen": 7_000 + 200, "matched_fen": 1_000,
                                  "refunded_fen": 1_000 - 1_000, "disbursed_fen": 0,
                                  "balance_fen": 7_200 + 1_000},
        }

    def totals_json(self) -> dict[str, Any]:
        """The disclosure endpoint's JSON for these projects."""
        return {"projects": [{"project_id": int(p), **t} for p, t in self.expected().items()]}


def post_money(db: Database) -> Money:
    """Donations, a pool, matches, an unmatch, refunds (done and failed), a disbursement and a
    many-legged entry — each a separate committed transaction, as the site would post them."""
    with db.transaction() as session:
        org = make_org(session)
        a = make_project(session, org=org)
        b = make_project(session, org=org)
        donor = make_user(session)
        money = Money(org_id=org.id, project_a=a.id, project_b=b.id, donor=f"user:{donor.id}")
    pa, pb = ledger.project_fund(money.project_a), ledger.project_fund(money.project_b)
    clearing = ledger.donor_clearing("sandbox")
    pool, hold = ledger.match_pool(1), ledger.match_hold(1)

    def donation(public_id: str, project: str, project_id: int, amount: int) -> ledger.EntrySpec:
        return ledger.transfer(
            "donation.paid", source=clearing, destination=project, amount_fen=amount,
            detail=LogDetail(ref=f"donation:{public_id}", donor=money.donor,
                             public={"project": project_id, "organization": money.org_id}))

    steps: list[list[ledger.EntrySpec]] = [
        [donation("d1", pa, money.project_a, 10_000)],
        [donation("d2", pa, money.project_a, 2_500), donation("d3", pb, money.project_b, 7_000)],
        [ledger.transfer("pool.committed", source=ledger.sponsor(1), destination=pool,
                         amount_fen=50_000, detail=LogDetail(ref="pool:1",
                                                             public={"campaign": 1}))],
        [ledger.transfer("campaign.match", source=pool, destination=pa, amount_fen=3_000),
         ledger.transfer("campaign.match", source=pool, destination=hold, amount_fen=1_000)],
        [ledger.transfer("campaign.release", source=hold, destination=pb, amount_fen=1_000)],
        [ledger.transfer("campaign.unmatch", source=pa, destination=pool, amount_fen=500)],
        [ledger.transfer("refund.requested", source=pa, destination=ledger.REFUNDS,
                         amount_fen=2_500, detail=LogDetail(ref="refund:1")),
         ledger.transfer("refund.done", source=ledger.REFUNDS, destination=clearing,
                         amount_fen=2_500, detail=LogDetail(ref="refund:1"))],
        [ledger.transfer("refund.requested", source=pb, destination=ledger.REFUNDS,
                         amount_fen=1_000, detail=LogDetail(ref="refund:2")),
         ledger.transfer("refund.failed", source=ledger.REFUNDS, destination=pb,
                         amount_fen=1_000, detail=LogDetail(ref="refund:2"))],
        [ledger.transfer("fund_usage.disbursed", source=pa,
                         destination=ledger.organization(money.org_id), amount_fen=4_000,
                         detail=LogDetail(ref="usage:1", public={
                             "project": money.project_a, "purpose": "过冬物资",
                             "attachments": ["ab" * 32]}))],
        [ledger.EntrySpec(kind="donation.paid", legs=(
            ledger.Leg(clearing, -300), ledger.Leg(pa, 100), ledger.Leg(pb, 200)))],
    ]
    for specs in steps:
        with db.transaction() as session:
            ledger.post_many(session, specs)
    return money


def post_other_money(db: Database, rounds: int = 3) -> None:
    """Different movements (for a forked history signed by the same key)."""
    for n in range(rounds):
        with db.transaction() as session:
            ledger.post(session, ledger.transfer(
                "donation.paid", source=ledger.donor_clearing("sandbox"),
                destination=ledger.project_fund(999), amount_fen=777 + n))


def sign(db: Database, key: checkpoints.Signer | None = None) -> str:
    """Sign the current head (stored like the site does); return the note."""
    with db.transaction() as session:
        return checkpoints.sign_now(session, key or signer()).note


def checkpoint_json(note: str, key: checkpoints.Signer | None = None) -> dict[str, Any]:
    """The checkpoint endpoint's JSON for a note."""
    parsed = checkpoints.parse_note(note)
    return {"size": parsed.size, "root": base64.b64encode(parsed.root).decode(),
            "timestamp": parsed.timestamp_ms, "checkpoint": note,
            "public_key": (key or signer()).key_id}


def write_mirror(db: Database, directory: Path, *, note: str | None = None,
                 totals: dict[str, Any] | None = None) -> Path:
    """Write the layout ``shanju verify download`` writes, straight from the database."""
    directory.mkdir(parents=True, exist_ok=True)
    key = signer()
    note = note or sign(db)
    size = checkpoints.parse_note(note).size
    (directory / MIRROR_FILES["checkpoint"]).write_text(json.dumps(checkpoint_json(note)))
    (directory / MIRROR_FILES["note"]).write_text(note)
    (directory / MIRROR_FILES["public_key"]).write_text(json.dumps({
        "verifier_key": key.key_id, "origin": key.name, "algorithm": "Ed25519",
        "public_key": base64.b64encode(key.public_key).decode()}))
    lines = []
    with db.transaction(write=False) as session:
        for start in range(0, size, log_service.MAX_ENTRIES):
            for leaf in log_service.entries(session, start, min(size, start + 1_000)):
                lines.append(json.dumps({"index": leaf.index,
                                         "data": base64.b64encode(leaf.data).decode()}))
        accounts, total = ledger.list_accounts(session=session, kind=AccountKind.PROJECT_FUND,
                                               limit=1_000)
        items = [{"code": a.code, "kind": a.kind.value, "balance_fen": a.balance_fen}
                 for a in accounts]
    (directory / MIRROR_FILES["entries"]).write_text("".join(line + "\n" for line in lines))
    (directory / MIRROR_FILES["accounts"]).write_text(json.dumps({"items": items,
                                                                  "total": total}))
    if totals is not None:
        (directory / MIRROR_FILES["totals"]).write_text(json.dumps(totals))
    (directory / MIRROR_FILES["manifest"]).write_text(json.dumps({
        "format": "shanju-mirror/v1", "size": size, "figures_at_size": size}))
    return directory


def receipt(db: Database, ref: str, *, note: str, identity: str | None = None
            ) -> dict[str, Any]:
    """The receipt JSON (``shanju-receipt/v1``) for ``ref``, built from the database."""
    parsed = checkpoints.parse_note(note)
    with db.transaction(write=False) as session:
        found = [leaf for leaf in log_service.leaves_by_ref(session, ref)
                 if leaf.index < parsed.size]
        items = [{
            "index": leaf.index,
            "data": base64.b64encode(leaf.data).decode(),
            "leaf_hash": base64.b64encode(leaf.leaf_hash).decode(),
            "proof": [base64.b64encode(h).decode() for h in
                      log_service.inclusion_proof(session, leaf.index, parsed.size)],
        } for leaf in found]
    donor = None
    if identity is not None:  # only the donor's own receipt opens the commitment
        donor = {"identity": identity,
                 "salt": leaves.donor_salt(get_settings().secret_key, ref).hex()}
    return {"format": "shanju-receipt/v1", "origin": parsed.origin, "ref": ref,
            "leaves": items, "tree_size": parsed.size,
            "root": base64.b64encode(parsed.root).decode(), "checkpoint": note,
            "verifier_key": signer().key_id, "opening": donor}


def tamper_leaf(db: Database, index: int, **changes: object) -> None:
    """Change a stored leaf's bytes (canonically re-encoded), as a dishonest operator would."""
    with db.transaction() as session:
        data = session.scalar(select(LogLeaf.data).where(LogLeaf.idx == index))
        assert data is not None
        fields = dict(leaves.decode(bytes(data)), **changes)
        session.execute(update(LogLeaf).where(LogLeaf.idx == index)
                        .values(data=leaves.encode(fields)))
