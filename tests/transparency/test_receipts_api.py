"""Donor receipts over HTTP: every leaf of a ref with proofs against a signed checkpoint, the
opening of the donor commitment for the donor only, readable 404s; and the pages that find and
show them. Runs on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from shanju.accounts import service as accounts
from shanju.accounts.models import User
from shanju.app import create_app
from shanju.core.config import Settings, get_settings
from shanju.core.db import Database
from shanju.ledger import service as ledger
from shanju.transparency import checkpoints, leaves, merkle
from shanju.transparency.leaves import LogDetail, Transfer
from shanju.transparency.models import Checkpoint, LogLeaf
from tests.factories import make_org, make_project, make_user

SECRET = get_settings().secret_key  # what the log derives donor salts from


@dataclass
class Gifts:
    donor_id: int
    other_id: int
    project_id: int
    donation_ref: str
    gift_ref: str


@pytest.fixture
def receipt_settings(settings: Settings, tmp_path: Path) -> Settings:
    """The test settings with a signing key of the test's own."""
    return settings.model_copy(update={"transparency_key_file": tmp_path / "tlog.key"})


@pytest.fixture
def web(receipt_settings: Settings, db: Database) -> Iterator[TestClient]:
    """A client of an app that signs checkpoints with the test's key."""
    with TestClient(create_app(receipt_settings, database=db), base_url="http://testserver") as c:
        yield c


@pytest.fixture
def gifts(db: Database) -> Gifts:
    """A donation (one leaf) and a giving-day gift (gift and match leaves in one entry), both
    committing to the donor, plus someone else's movement in between."""
    with db.transaction() as s:
        donor = make_user(s)
        other = make_user(s)
        org = make_org(s)
        project = make_project(s, org=org)
        fund = ledger.project_fund(project.id)
        public = {"project": project.id, "organization": org.id}
        ledger.post(s, ledger.transfer(
            "donation.paid", source=ledger.donor_clearing("sandbox"), destination=fund,
            amount_fen=12_300, detail=LogDetail(ref="donation:d_receipt1",
                                                donor=f"user:{donor.id}", public=public)))
        ledger.post(s, ledger.transfer(
            "donation.paid", source=ledger.donor_clearing("sandbox"), destination=fund,
            amount_fen=500, detail=LogDetail(ref="donation:d_other", donor=f"user:{other.id}",
                                             public=public)))
        clearing, pool = ledger.donor_clearing("sandbox"), ledger.match_pool(9)
        ledger.post(s, ledger.transfer("pool.commit", source=ledger.sponsor(1),
                                       destination=pool, amount_fen=10_000))
        ledger.post(s, ledger.EntrySpec(
            kind="campaign.batch",
            legs=(ledger.Leg(clearing, -2_000), ledger.Leg(pool, -1_000), ledger.Leg(fund, 3_000)),
            details=(
                LogDetail(ref="gift:o_receipt", donor=f"user:{donor.id}", public=public,
                          transfer=Transfer(clearing, fund, 2_000), kind="campaign.gift"),
                LogDetail(ref="gift:o_receipt", public=public,
                          transfer=Transfer(pool, fund, 1_000), kind="campaign.match"),
            ),
        ))
        return Gifts(donor.id, other.id, project.id, "donation:d_receipt1", "gift:o_receipt")


def sign_in(client: TestClient, db: Database, user_id: int) -> None:
    with db.transaction() as s:
        token = accounts.do_start_session(session=s, user=s.get_one(User, user_id))
    client.cookies.set("sj_session", token)


def b64(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


def check_receipt(body: dict[str, Any], ref: str) -> list[dict[str, Any]]:
    """Verify a receipt the way an auditor would; return its decoded leaves."""
    assert body["format"] == "shanju-receipt/v1"
    assert body["ref"] == ref
    note = checkpoints.verify_note(body["checkpoint"], body["verifier_key"])
    assert note.size == body["tree_size"]
    assert note.root == b64(body["root"])
    assert note.origin == body["origin"]
    decoded = []
    for item in body["leaves"]:
        data = b64(item["data"])
        assert merkle.leaf_hash(data) == b64(item["leaf_hash"])
        proof = [b64(h) for h in item["proof"]]
        assert merkle.verify_inclusion(item["index"], note.size, merkle.leaf_hash(data), proof,
                                       note.root)
        fields = leaves.decode(data)
        assert fields["ref"] == ref
        decoded.append(fields)
    return decoded


def test_anyone_gets_the_receipt_without_the_opening(web: TestClient, gifts: Gifts,
                                                     db: Database) -> None:
    with db.transaction(write=False) as s:
        assert checkpoints.latest(s) is None
    response = web.get(f"/api/v1/transparency/receipts/{gifts.donation_ref}")
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    (leaf,) = check_receipt(body, gifts.donation_ref)
    assert leaf["amount"] == 12_300 and leaf["project"] == gifts.project_id
    assert body["opening"] is None
    assert body["leaves"][0]["index"] == 0
    # The checkpoint was signed for this receipt and covers the whole log at the time.
    with db.transaction(write=False) as s:
        latest = checkpoints.latest(s)
        assert latest is not None and latest.size == body["tree_size"] == 5
    # A second receipt is proved against the same checkpoint: no new signature needed.
    again = web.get(f"/api/v1/transparency/receipts/{gifts.gift_ref}").json()
    assert again["checkpoint"] == body["checkpoint"]
    with db.transaction(write=False) as s:
        assert s.query(Checkpoint).count() == 1


def test_the_donor_gets_the_opening_and_it_opens_every_commitment(
        web: TestClient, gifts: Gifts, db: Database) -> None:
    sign_in(web, db, gifts.donor_id)
    body = web.get(f"/api/v1/transparency/receipts/{gifts.gift_ref}").json()
    gift, match = check_receipt(body, gifts.gift_ref)
    assert (gift["kind"], gift["amount"], match["kind"], match["amount"]) == (
        "campaign.gift", 2_000, "campaign.match", 1_000)
    assert "donor" not in match
    opening = body["opening"]
    assert opening == {"identity": f"user:{gifts.donor_id}",
                       "salt": leaves.donor_salt(SECRET, gifts.gift_ref).hex()}
    assert leaves.donor_commitment(bytes.fromhex(opening["salt"]),
                                   opening["identity"]) == gift["donor"]
    # Someone else's receipt, seen by this donor: no opening.
    assert web.get("/api/v1/transparency/receipts/donation:d_other").json()["opening"] is None


def test_another_signed_in_user_gets_no_opening(web: TestClient, gifts: Gifts,
                                                db: Database) -> None:
    sign_in(web, db, gifts.other_id)
    body = web.get(f"/api/v1/transparency/receipts/{gifts.donation_ref}").json()
    check_receipt(body, gifts.donation_ref)
    assert body["opening"] is None


@pytest.mark.parametrize("ref", ["donation:d_nothing", "gift:nope", "no-colon", "x:a b"])
def test_an_unknown_ref_is_a_json_404(web: TestClient, gifts: Gifts, ref: str) -> None:
    del gifts
    response = web.get(f"/api/v1/transparency/receipts/{ref}")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "receipt_not_found"


def test_a_tampered_leaf_no_longer_verifies(web: TestClient, gifts: Gifts, db: Database) -> None:
    with db.transaction() as s:
        row = s.query(LogLeaf).filter_by(ref=gifts.donation_ref).one()
        row.data = row.data.replace(b'"amount":12300', b'"amount":99900')
    item = web.get(f"/api/v1/transparency/receipts/{gifts.donation_ref}").json()["leaves"][0]
    assert merkle.leaf_hash(b64(item["data"])) != b64(item["leaf_hash"])


# --- pages -----------------------------------------------------------------------------------


def test_remember_finds_a_receipt_by_id_ref_or_leaf_hash(web: TestClient, gifts: Gifts,
                                                         db: Database) -> None:
    with db.transaction(write=False) as s:
        leaf_hash = bytes(s.query(LogLeaf).filter_by(ref=gifts.donation_ref).one().leaf_hash)
    target = f"/transparency/receipts/{gifts.donation_ref}"
    for code in ("d_receipt1", gifts.donation_ref, leaf_hash.hex(),
                 base64.b64encode(leaf_hash).decode(), f"  {gifts.donation_ref} "):
        response = web.get("/remember", params={"code": code}, follow_redirects=False)
        assert response.status_code == 303, (code, response.text[:300])
        assert response.headers["location"] == target
    assert web.get("/remember", params={"code": "o_receipt"},
                   follow_redirects=False).headers["location"] == (
        f"/transparency/receipts/{gifts.gift_ref}")


@pytest.mark.parametrize(("code", "status", "error"), [
    ("d_missing", 404, "receipt_not_found"),
    ("00" * 32, 404, "leaf_not_found"),
    ("你好 世界", 422, "invalid_receipt_code"),
])
def test_remember_says_why_a_code_finds_nothing(web: TestClient, gifts: Gifts, code: str,
                                                status: int, error: str) -> None:
    del gifts
    response = web.get("/remember", params={"code": code})
    assert response.status_code == status
    assert f'data-code="{error}"' in response.text
    assert 'id="lookup"' in response.text  # the form is still there to try again


def test_remember_lists_the_donors_own_gifts_with_receipts(web: TestClient, gifts: Gifts,
                                                           db: Database) -> None:
    anonymous = web.get("/remember")
    assert anonymous.status_code == 200
    assert "你的名字,我们记得" in anonymous.text
    assert 'id="my-receipts"' not in anonymous.text
    with db.transaction() as s:
        token = accounts.do_create_api_token(session=s, user=s.get_one(User, gifts.donor_id),
                                             name="test")[1]
    auth = {"Authorization": f"Bearer {token}"}
    given = [web.post("/api/v1/donations", json={"project_id": gifts.project_id,
                                                  "amount_fen": fen},
                      headers={**auth, "Idempotency-Key": f"k{fen}"}).json()
             for fen in (4_200, 600)]
    paid = web.post(f"/api/v1/payments/sandbox/{given[0]['payment']['intent_id']}/complete",
                    json={"outcome": "succeeded"}, headers=auth)
    assert paid.status_code == 200, paid.text
    sign_in(web, db, gifts.donor_id)
    page = web.get("/remember")
    assert page.status_code == 200
    ref = f"donation:{given[0]['id']}"
    assert f'data-ref="{ref}"' in page.text
    assert f'href="/transparency/receipts/{ref}"' in page.text
    assert "¥42.00" in page.text
    assert given[1]["id"] not in page.text  # not paid: no receipt to show


def test_the_receipt_page_shows_the_leaf_checkpoint_and_proof(web: TestClient, gifts: Gifts
                                                              ) -> None:
    page = web.get(f"/transparency/receipts/{gifts.gift_ref}")
    assert page.status_code == 200, page.text[:500]
    assert 'data-verify-status="running"' in page.text
    assert page.text.count('class="receipt-leaf"') == 2
    assert "¥20.00" in page.text and "¥10.00" in page.text
    assert 'id="checkpoint-size">5<' in page.text
    assert re.search(r'id="download-receipt" href="/api/v1/transparency/receipts/gift:o_receipt"',
                     page.text)


def test_the_receipt_page_says_what_was_checked_in_plain_words_first(
        web: TestClient, gifts: Gifts) -> None:
    text = web.get(f"/transparency/receipts/{gifts.gift_ref}").text
    plain = text.index('id="plain"')
    technical = text.index('<details class="card technical" id="technical">')
    assert plain < technical
    assert "这笔捐款已写入公开账本，任何人都无法篡改。" in text[plain:technical]
    # The technical words (leaf hash, inclusion, the key, the checkpoint) are folded away.
    folded = text[technical:text.index("</details>\n", text.index('id="checkpoint"'))]
    for element in ('id="verify"', 'id="verify-steps"', 'id="verifier-key"',
                    'id="checkpoint-root"'):
        assert element in folded, element
    for word in ("叶子哈希", "包含证明", "承诺"):
        assert word not in text[plain:technical], word


def test_an_unknown_receipt_page_is_a_readable_404(web: TestClient, gifts: Gifts) -> None:
    del gifts
    page = web.get("/transparency/receipts/donation:d_nothing")
    assert page.status_code == 404
    assert 'data-code="receipt_not_found"' in page.text


def test_a_checkpoint_by_an_earlier_key_is_not_used(web: TestClient, gifts: Gifts, db: Database,
                                                    receipt_settings: Settings) -> None:
    old = checkpoints.Signer.from_seed(checkpoints.origin(receipt_settings), bytes(32))
    with db.transaction() as s:
        checkpoints.sign_now(s, old)
    body = web.get(f"/api/v1/transparency/receipts/{gifts.donation_ref}").json()
    assert body["verifier_key"] != old.key_id
    check_receipt(body, gifts.donation_ref)  # signed by the current key, which it names
    with db.transaction(write=False) as s:
        assert s.query(Checkpoint).count() == 2


def test_a_giving_day_gift_from_the_engine_has_its_gift_and_match_on_the_receipt(
        web: TestClient, db: Database) -> None:
    from shanju.campaigns.engine import apply_batch
    from tests.factories import make_campaign, make_paid_gift, make_pool

    with db.transaction() as s:
        donor = make_user(s)
        project = make_project(s, org=make_org(s))
        campaign = make_campaign(s, projects=[project])
        make_pool(s, campaign=campaign, budget_fen=1_000_000)
        (result,) = apply_batch(s, [make_paid_gift(campaign_id=campaign.id,
                                                   project_id=project.id, donor_id=donor.id,
                                                   amount_fen=5_000)])
        donor_id, order_id = donor.id, result.order_id
    ref = f"gift:{order_id}"
    sign_in(web, db, donor_id)
    body = web.get(f"/api/v1/transparency/receipts/{ref}").json()
    fields = check_receipt(body, ref)
    kinds = sorted(str(f["kind"]) for f in fields)
    assert "campaign.gift" in kinds
    gift = next(f for f in fields if f["kind"] == "campaign.gift")
    assert gift["amount"] == 5_000
    assert body["opening"] is not None
    assert leaves.donor_commitment(bytes.fromhex(body["opening"]["salt"]),
                                   body["opening"]["identity"]) == gift["donor"]
    page = web.get(f"/transparency/receipts/{ref}")
    assert page.status_code == 200 and "¥50.00" in page.text
