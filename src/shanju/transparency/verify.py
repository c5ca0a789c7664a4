"""The independent auditor's checks behind ``shanju verify``.

Nothing here reads Shanju's database: an auditor runs these checks against someone else's
server (over HTTP, with ``urllib``) or against files downloaded from it (a *mirror* directory,
see :func:`download`). Each check is an RFC 9162 / C2SP computation done here, from the bytes
served — the server's word is never taken for a hash, a root or a total.

- :func:`verify_receipt`: a donor's receipt (``shanju-receipt/v1``): the checkpoint's
  signature, its size and root, each leaf's hash and inclusion proof, the donor opening.
- :func:`verify_consistency`: two signed checkpoints are versions of one append-only history.
- :func:`audit_log`: rebuild the whole tree from the entries, compare it with the signed
  checkpoint, check every leaf, recompute each project's totals from the leaves alone and
  compare them with what the site publishes.
- :class:`Follower`: poll a running instance; alarm on any inconsistency.

Every check lands in a :class:`Report` (name, ok, detail); the command line prints it and
exits 0 when every check passed, 1 when one failed. Network and format problems (the server
cannot be reached, a file is not JSON) raise :class:`FetchError` (exit 2): they say nothing
about the log either way.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from shanju import __version__
from shanju.transparency import leaves
from shanju.transparency.checkpoints import (
    CheckpointError,
    ParsedCheckpoint,
    parse_note,
    verify_note,
)
from shanju.transparency.merkle import (
    Frontier,
    MemoryTree,
    ProofError,
    check_consistency,
    leaf_hash,
    root_from_inclusion,
)

API = "/api/v1"
PAGE = 1_000  # entries per request: the API's maximum
LEDGER_PAGE = 200  # ledger accounts per request: the API's maximum
RECEIPT_FORMAT = "shanju-receipt/v1"
MIRROR_FORMAT = "shanju-mirror/v1"
STATE_FORMAT = "shanju-follow/v1"
# Account kinds a leaf's ``from``/``to`` may name (``<kind>`` or ``<kind>:<id>``).
ACCOUNT_KINDS = frozenset({
    "donor_clearing", "project", "organization", "refunds", "platform", "sponsor", "pool",
    "match_hold",
})
TOTAL_FIELDS = ("received_fen", "matched_fen", "refunded_fen", "disbursed_fen", "balance_fen")
MAX_LISTED = 20  # problems listed one by one before "… and N more"
BEYOND_LOG = "range_beyond_log"  # the entries endpoint's error code past the log's end

Progress = Callable[[int, int], None]  # (done, total)


class FetchError(Exception):
    """The input could not be obtained or read (network, HTTP, JSON): exit status 2."""

    def __init__(self, message: str, *, status: int | None = None,
                 code: str | None = None) -> None:
        super().__init__(message)
        self.status = status  # the HTTP status, when the server answered
        self.code = code  # the API's error code, when it gave one


class NotAvailable(FetchError):
    """The server answered 404: it does not offer this (e.g. no disclosure endpoint)."""


# --- reports -------------------------------------------------------------------------------


@dataclass
class Check:
    """One verification step and its outcome."""

    name: str
    ok: bool
    detail: str = ""


@dataclass
class Report:
    """The outcome of a command: its checks, warnings, what it found, machine-readable data."""

    command: str
    checks: list[Check] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)

    def check(self, name: str, ok: bool, detail: str = "") -> bool:
        """Record a check; return its outcome."""
        self.checks.append(Check(name, bool(ok), detail))
        return bool(ok)

    def warn(self, message: str) -> None:
        """Record something the auditor should know that does not fail the verification."""
        self.warnings.append(message)

    def note(self, message: str) -> None:
        """Record what was found (e.g. what a leaf says)."""
        self.notes.append(message)

    @property
    def ok(self) -> bool:
        """True when at least one check ran and every check passed."""
        return bool(self.checks) and all(c.ok for c in self.checks)

    def failures(self) -> list[Check]:
        """The checks that failed."""
        return [c for c in self.checks if not c.ok]

    def lines(self) -> list[str]:
        """The human summary."""
        out = [f"shanju verify {self.command}"]
        out += [f"  {line}" for line in self.notes]
        for c in self.checks:
            mark = "ok  " if c.ok else "FAIL"
            out.append(f"  [{mark}] {c.name}" + (f": {c.detail}" if c.detail else ""))
        out += [f"  warning: {w}" for w in self.warnings]
        if self.ok:
            out.append(f"VERIFIED: all {len(self.checks)} checks passed")
        else:
            failed = self.failures()
            out.append(f"FAILED: {len(failed)} of {len(self.checks)} checks failed"
                       if self.checks else "FAILED: nothing could be checked")
        return out

    def to_dict(self) -> dict[str, Any]:
        """The machine report."""
        return {
            "command": self.command,
            "ok": self.ok,
            "checks": [{"name": c.name, "ok": c.ok, "detail": c.detail} for c in self.checks],
            "warnings": self.warnings,
            "notes": self.notes,
            **self.data,
        }


# --- small helpers -------------------------------------------------------------------------


def b64decode(text: object, what: str) -> bytes:
    """Strict base64 decoding; ``ValueError`` naming ``what`` when it is not base64."""
    if not isinstance(text, str):
        raise ValueError(f"{what} is not a base64 string")
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"{what} is not valid base64") from None
    if base64.b64encode(raw).decode() != text:  # canonical only (see checkpoints._b64decode)
        raise ValueError(f"{what} is not canonical base64")
    return raw


def b64encode(data: bytes) -> str:
    """Standard base64 text."""
    return base64.b64encode(data).decode()


def b64_hash(text: object, what: str) -> bytes:
    """A base64 SHA-256 hash (32 bytes)."""
    value = b64decode(text, what)
    if len(value) != 32:
        raise ValueError(f"{what} is not a 32-byte hash")
    return value


def short(h: bytes) -> str:
    """A hash shortened for humans (base64, first 12 characters)."""
    return b64encode(h)[:12] + "…"


def format_yuan(fen: int) -> str:
    """``123456`` fen as ``¥1,234.56`` (minus sign in front of negative amounts)."""
    sign = "-" if fen < 0 else ""
    fen = abs(fen)
    return f"{sign}¥{fen // 100:,}.{fen % 100:02d}"


def format_ms(ms: int | None) -> str:
    """Unix milliseconds as UTC ISO time ("no timestamp" for None)."""
    if ms is None:
        return "no timestamp"
    moment = dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def key_name(verifier_key: str) -> str:
    """The name part of a C2SP verifier key ``<name>+<hash>+<key>``."""
    return verifier_key.split("+", 1)[0]


def read_key(value: str) -> str:
    """A verifier key given on the command line: the key itself, or a file holding it.

    The file may be the key alone or the JSON of the ``public-key`` endpoint.
    """
    path = Path(value)
    if "+" in value and not path.exists():
        return value.strip()
    try:
        text = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise FetchError(f"--key is neither a verifier key nor a readable file: {exc}") from None
    if text.startswith("{"):
        try:
            found = json.loads(text).get("verifier_key")
        except (ValueError, AttributeError):
            found = None
        if not isinstance(found, str):
            raise FetchError(f"{value}: no \"verifier_key\" in this JSON file")
        return found.strip()
    return text


def is_url(value: str) -> bool:
    """True for an ``http://`` or ``https://`` address."""
    return value.startswith(("http://", "https://"))


def describe_leaf(fields: Mapping[str, Any]) -> str:
    """One line saying what a leaf records."""
    amount = fields.get("amount")
    money = format_yuan(amount) if type(amount) is int else repr(amount)
    text = (f"{fields.get('kind')}: {money} from {fields.get('from')} to {fields.get('to')}"
            f" at {fields.get('time')} (journal entry {fields.get('entry')})")
    extra = [f"{k}={fields[k]}" for k in ("project", "organization", "campaign", "pool",
                                          "purpose") if k in fields]
    if "attachments" in fields and isinstance(fields["attachments"], list):
        extra.append(f"{len(fields['attachments'])} attachment hash(es)")
    if "donor" in fields:
        extra.append("donor commitment " + str(fields["donor"])[:12] + "…")
    return text + (" [" + ", ".join(extra) + "]" if extra else "")


def check_leaf(data: bytes) -> tuple[dict[str, Any] | None, list[str], list[str]]:
    """Parse a leaf; return (fields or None, problems that fail it, oddities worth a warning).

    A leaf must be a canonical version-1 object (the exact bytes :mod:`leaves` writes: sorted
    keys, no spaces), move a positive integer amount between two different accounts.
    """
    problems: list[str] = []
    oddities: list[str] = []
    try:
        fields = leaves.decode(data)
    except (ValueError, UnicodeDecodeError) as exc:
        return None, [f"not a leaf ({exc.__class__.__name__}: {exc})"], []
    amount = fields.get("amount")
    if type(amount) is not int or amount <= 0:
        problems.append(f"amount {amount!r} is not a positive integer number of fen")
    source, destination = fields.get("from"), fields.get("to")
    for label, code in (("from", source), ("to", destination)):
        if not isinstance(code, str) or not code:
            problems.append(f"{label!r} is not an account code")
        elif code.split(":", 1)[0] not in ACCOUNT_KINDS:
            oddities.append(f"{label!r} names an unknown kind of account: {code}")
    if isinstance(source, str) and source == destination:
        problems.append("moves money from an account to itself")
    if not isinstance(fields.get("kind"), str):
        problems.append("has no kind")
    if type(fields.get("entry")) is not int:
        problems.append("has no journal entry number")
    if not isinstance(fields.get("time"), str):
        problems.append("has no time")
    try:
        canonical = leaves.encode(fields) == data
    except ValueError:
        canonical = False
    if not canonical:
        problems.append("is not in canonical form (sorted keys, no spaces, UTF-8)")
    return fields, problems, oddities


def load_checkpoint_text(text: str) -> tuple[str, dict[str, Any]]:
    """A signed note given as itself or as JSON holding it (``checkpoint`` field)."""
    stripped = text.lstrip()
    if stripped.startswith("{"):
        try:
            value = json.loads(stripped)
        except ValueError as exc:
            raise FetchError(f"not valid JSON: {exc}") from None
        note = value.get("checkpoint") if isinstance(value, dict) else None
        if not isinstance(note, str):
            raise FetchError("this JSON has no \"checkpoint\" (signed note) field")
        return note, value
    return text, {}


def _check_note(report: Report, label: str, note: str, key: str | None
                ) -> ParsedCheckpoint | None:
    """Verify a signed note; record the check; return it parsed (even when unsigned)."""
    if key is None:
        report.check(f"{label}: signature", False, "no verifier key to check it with")
        try:
            return parse_note(note)
        except CheckpointError:
            return None
    try:
        parsed = verify_note(note, key)
    except CheckpointError as exc:
        report.check(f"{label}: signature", False,
                     f"does not verify with key {key_name(key)!r}: {exc}")
        try:
            return parse_note(note)
        except CheckpointError:
            return None
    report.check(f"{label}: signature", True,
                 f"Ed25519 signature by {key_name(key)!r} on {parsed.origin!r}, size "
                 f"{parsed.size}, root {short(parsed.root)}, {format_ms(parsed.timestamp_ms)}")
    return parsed


def _choose_key(report: Report, given: str | None, fallback: str | None, where: str
                ) -> str | None:
    if given:
        return given
    if fallback:
        report.warn(
            f"no --key given: checked with the verifier key that {where} supplies itself. "
            "Whoever can change it can change that key too — obtain the key independently "
            "(the operator's published key, another auditor) and pass --key."
        )
        return fallback
    return None


# --- HTTP ----------------------------------------------------------------------------------


def site_root(url: str) -> str:
    """The site's base URL from any URL on it (``…/api/v1/…`` and trailing ``/`` removed)."""
    if not is_url(url):
        raise FetchError(f"not an http(s) URL: {url}")
    parts = urllib.parse.urlsplit(url)
    path = parts.path
    cut = path.find("/api/")
    if cut >= 0:
        path = path[:cut]
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, path.rstrip("/"), "", ""))


def http_get(url: str, *, timeout: float = 30.0) -> bytes:
    """GET ``url``; raise :class:`FetchError` (:class:`NotAvailable` for 404) on failure."""
    request = urllib.request.Request(  # noqa: S310 - the scheme is checked by the callers
        url, headers={"User-Agent": f"shanju-verify/{__version__}",
                      "Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            body: bytes = response.read()
            return body
    except urllib.error.HTTPError as exc:
        detail, code = "", None
        try:
            error = json.loads(exc.read()).get("error", {})
            code = str(error.get("code"))
            detail = f" ({code}: {error.get('message')})"
        except (ValueError, AttributeError, OSError):
            pass
        cls = NotAvailable if exc.code == 404 else FetchError
        raise cls(f"GET {url}: HTTP {exc.code}{detail}", status=exc.code, code=code) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise FetchError(f"GET {url}: cannot reach the server ({reason})") from None


def parse_json(body: bytes, where: str) -> Any:
    """JSON from bytes, or :class:`FetchError`."""
    try:
        return json.loads(body)
    except ValueError as exc:
        raise FetchError(f"{where}: not valid JSON ({exc})") from None


def load_json(source: str, *, timeout: float = 30.0) -> Any:
    """JSON from a URL, a file, or ``-`` (standard input)."""
    if is_url(source):
        return parse_json(http_get(source, timeout=timeout), source)
    try:
        text = (sys.stdin.read() if source == "-"
                else Path(source).read_text(encoding="utf-8"))
    except OSError as exc:
        raise FetchError(f"cannot read {source}: {exc.strerror or exc}") from None
    return parse_json(text.encode(), source)


def load_text(source: str, *, timeout: float = 30.0) -> str:
    """Text from a URL or a file (a checkpoint note or its JSON)."""
    if is_url(source):
        try:
            return http_get(source, timeout=timeout).decode()
        except UnicodeDecodeError:
            raise FetchError(f"{source}: not UTF-8 text") from None
    try:
        return Path(source).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise FetchError(f"cannot read {source}: {exc}") from None


class LogSource(Protocol):
    """Where an audit reads the log and the site's published figures from."""

    label: str

    def checkpoint(self) -> dict[str, Any]:
        """The checkpoint endpoint's JSON (``checkpoint`` = the signed note)."""

    def verifier_key(self) -> str | None:
        """The verifier key the source itself publishes (if any)."""

    def entries(self, start: int, end: int) -> Iterator[tuple[int, bytes]]:
        """(index, leaf bytes) from ``start`` up to ``end`` (fewer if it has fewer)."""

    def totals(self) -> dict[str, Any] | None:
        """The disclosure totals, or None when the source does not publish them."""

    def project_balances(self) -> dict[str, int] | None:
        """``{"project:7": balance_fen}`` from the ledger, or None when not available."""

    def grew_beyond(self, size: int) -> bool | None:
        """Whether the log had leaves beyond ``size`` when the figures were read (None: unknown)."""

    def consistency_proof(self, first: int, second: int) -> list[bytes] | None:
        """The server's consistency proof, or None when the source cannot give one."""


def _entries_page(value: Any, where: str) -> list[tuple[int, bytes]]:
    if not isinstance(value, dict) or not isinstance(value.get("entries"), list):
        raise FetchError(f"{where}: no \"entries\" list")
    out: list[tuple[int, bytes]] = []
    for item in value["entries"]:
        try:
            out.append((int(item["index"]), b64decode(item["data"], "an entry's data")))
        except (KeyError, TypeError, ValueError) as exc:
            raise FetchError(f"{where}: malformed entry ({exc})") from None
    return out


class Site:
    """A Shanju server, read through its public API."""

    def __init__(self, url: str, *, timeout: float = 30.0) -> None:
        self.base = site_root(url)
        self.label = self.base
        self.timeout = timeout
        self._public_key: dict[str, Any] | None = None

    def url(self, path: str, **params: object) -> str:
        """The absolute URL of an API path."""
        query = ("?" + urllib.parse.urlencode(params)) if params else ""
        return f"{self.base}{API}{path}{query}"

    def get(self, path: str, **params: object) -> Any:
        """GET an API path's JSON."""
        url = self.url(path, **params)
        return parse_json(http_get(url, timeout=self.timeout), url)

    def checkpoint(self) -> dict[str, Any]:
        """The latest signed checkpoint."""
        value = self.get("/transparency/checkpoint")
        if not isinstance(value, dict) or not isinstance(value.get("checkpoint"), str):
            raise FetchError(f"{self.url('/transparency/checkpoint')}: no signed note")
        return value

    def public_key(self) -> dict[str, Any]:
        """The public-key endpoint's JSON."""
        if self._public_key is None:
            value = self.get("/transparency/public-key")
            if not isinstance(value, dict):
                raise FetchError(f"{self.url('/transparency/public-key')}: not an object")
            self._public_key = value
        return self._public_key

    def verifier_key(self) -> str | None:
        """The verifier key the server publishes."""
        found = self.public_key().get("verifier_key")
        return found if isinstance(found, str) else None

    def entries(self, start: int, end: int) -> Iterator[tuple[int, bytes]]:
        """Entries ``[start, end)``, 1,000 per request; stops early if the server has fewer."""
        position = start
        while position < end:
            stop = min(end, position + PAGE)
            try:
                value = self.get("/transparency/entries", start=position, end=stop)
            except FetchError as exc:
                if exc.code == BEYOND_LOG:  # the server's log ends here (truncated?)
                    return
                raise
            page = _entries_page(value, self.url("/transparency/entries", start=position,
                                                 end=stop))
            if not page:
                return
            yield from page
            position = page[-1][0] + 1 if page[-1][0] >= position else stop

    def totals(self) -> dict[str, Any] | None:
        """The disclosure totals (None when the server has no such endpoint)."""
        try:
            value = self.get("/disclosure/totals")
        except NotAvailable:
            return None
        if not isinstance(value, dict) or not isinstance(value.get("projects"), list):
            raise FetchError(f"{self.url('/disclosure/totals')}: no \"projects\" list")
        return value

    def project_accounts(self) -> list[dict[str, Any]]:
        """Every project fund account with its balance (paged, 200 at a time)."""
        items: list[dict[str, Any]] = []
        offset = 0
        while True:
            page = self.get("/ledger/accounts", kind="project", limit=LEDGER_PAGE, offset=offset)
            if not isinstance(page, dict) or not isinstance(page.get("items"), list):
                raise FetchError(f"{self.url('/ledger/accounts')}: no \"items\" list")
            items += page["items"]
            offset += len(page["items"])
            if not page["items"] or offset >= int(page.get("total", 0)):
                return items

    def project_balances(self) -> dict[str, int] | None:
        """``{code: balance_fen}`` of every project fund."""
        return balances_of(self.project_accounts())

    def grew_beyond(self, size: int) -> bool | None:
        """Whether the log now has a leaf at index ``size``."""
        try:
            value = self.get("/transparency/entries", start=size, end=size + 1)
        except FetchError as exc:
            if exc.code == BEYOND_LOG:
                return False
            raise
        return bool(_entries_page(value, self.url("/transparency/entries")))

    def consistency_proof(self, first: int, second: int) -> list[bytes]:
        """The consistency proof between two sizes."""
        url = self.url("/transparency/proof/consistency", first=first, second=second)
        value = parse_json(http_get(url, timeout=self.timeout), url)
        try:
            return [b64_hash(h, "a proof hash") for h in value["proof"]]
        except (KeyError, TypeError, ValueError) as exc:
            raise FetchError(f"{url}: malformed proof ({exc})") from None

    def receipt(self, ref: str) -> Any:
        """The receipt JSON for a public reference."""
        return self.get("/transparency/receipts/" + urllib.parse.quote(ref, safe=":"))


def balances_of(items: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """``{code: balance_fen}`` from the ledger accounts endpoint's items."""
    out: dict[str, int] = {}
    for item in items:
        try:
            out[str(item["code"])] = int(item["balance_fen"])
        except (KeyError, TypeError, ValueError) as exc:
            raise FetchError(f"malformed ledger account ({exc})") from None
    return out


# --- mirror directories --------------------------------------------------------------------

MIRROR_FILES = {
    "manifest": "manifest.json",
    "checkpoint": "checkpoint.json",
    "note": "checkpoint.txt",
    "public_key": "public-key.json",
    "entries": "entries.jsonl",
    "totals": "disclosure-totals.json",
    "accounts": "ledger-projects.json",
}


class Mirror:
    """A directory written by :func:`download`, read like the site it came from."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.label = str(directory)
        if not (directory / MIRROR_FILES["checkpoint"]).is_file():
            raise FetchError(f"{directory} is not a mirror: no {MIRROR_FILES['checkpoint']}")
        self.manifest = self._json("manifest") or {}

    def _json(self, name: str) -> Any:
        path = self.dir / MIRROR_FILES[name]
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise FetchError(f"{path}: {exc}") from None

    def checkpoint(self) -> dict[str, Any]:
        """The stored checkpoint JSON."""
        value = self._json("checkpoint")
        if not isinstance(value, dict) or not isinstance(value.get("checkpoint"), str):
            raise FetchError(f"{self.dir / MIRROR_FILES['checkpoint']}: no signed note")
        return value

    def verifier_key(self) -> str | None:
        """The stored public-key endpoint's verifier key."""
        value = self._json("public_key")
        found = value.get("verifier_key") if isinstance(value, dict) else None
        return found if isinstance(found, str) else None

    def entries(self, start: int, end: int) -> Iterator[tuple[int, bytes]]:
        """Stored entries in ``[start, end)``, in file order."""
        path = self.dir / MIRROR_FILES["entries"]
        if not path.is_file():
            return
        with path.open(encoding="utf-8") as lines:
            for number, line in enumerate(lines, 1):
                if not line.strip():
                    continue
                try:
                    item = json.loads(line)
                    index = int(item["index"])
                    data = b64decode(item["data"], "data")
                except (ValueError, KeyError, TypeError) as exc:
                    raise FetchError(f"{path}:{number}: malformed entry ({exc})") from None
                if index >= end:
                    return
                if index >= start:
                    yield index, data

    def totals(self) -> dict[str, Any] | None:
        """The stored disclosure totals (None when the site had none)."""
        value = self._json("totals")
        if value is not None and (not isinstance(value, dict)
                                  or not isinstance(value.get("projects"), list)):
            raise FetchError(f"{self.dir / MIRROR_FILES['totals']}: no \"projects\" list")
        return value if isinstance(value, dict) else None

    def project_balances(self) -> dict[str, int] | None:
        """The stored project balances."""
        value = self._json("accounts")
        if value is None:
            return None
        if not isinstance(value, dict) or not isinstance(value.get("items"), list):
            raise FetchError(f"{self.dir / MIRROR_FILES['accounts']}: no \"items\" list")
        return balances_of(value["items"])

    def grew_beyond(self, size: int) -> bool | None:
        """What the download recorded about the log growing while the figures were read."""
        snapshot = self.manifest.get("figures_at_size")
        if not isinstance(snapshot, int):
            return None
        return snapshot != size

    def consistency_proof(self, first: int, second: int) -> list[bytes] | None:
        """A mirror holds no proofs."""
        del first, second
        return None


def open_source(location: str, *, timeout: float = 30.0) -> Site | Mirror:
    """A site (URL) or a mirror directory."""
    if is_url(location):
        return Site(location, timeout=timeout)
    path = Path(location)
    if not path.is_dir():
        raise FetchError(f"{location} is neither an http(s) URL nor a directory")
    return Mirror(path)


def _write_json(path: Path, value: Any) -> None:
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(json.dumps(value, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    tmp.replace(path)


def _settled_figures(site: Site, *, attempts: int, wait: float
                     ) -> tuple[dict[str, Any], dict[str, Any] | None, list[dict[str, Any]], bool]:
    """Checkpoint, totals and project accounts read while the log stood still (if possible).

    The figures are read after the checkpoint; if the log has no leaf beyond the checkpoint's
    size afterwards, it had none while they were read, so they describe exactly the signed
    tree. On a busy site this is retried a few times.
    """
    for attempt in range(attempts):
        checkpoint = site.checkpoint()
        size = _int_field(checkpoint, "size")
        totals = site.totals()
        accounts = site.project_accounts()
        grew = site.grew_beyond(size)
        if not grew:
            return checkpoint, totals, accounts, True
        if attempt + 1 < attempts:
            time.sleep(wait)
    return checkpoint, totals, accounts, False


def _int_field(value: Mapping[str, Any], name: str) -> int:
    try:
        return int(value[name])
    except (KeyError, TypeError, ValueError):
        raise FetchError(f"the checkpoint has no integer {name!r}") from None


def download(site: Site, directory: Path, *, progress: Progress | None = None,
             attempts: int = 5, wait: float = 2.0) -> dict[str, Any]:
    """Mirror the site's log and published figures into ``directory`` (see MIRROR_FILES).

    Layout: ``checkpoint.json`` (the checkpoint endpoint's JSON), ``checkpoint.txt`` (the
    signed note alone), ``public-key.json``, ``entries.jsonl`` (one ``{"index", "data"}`` per
    line, ``data`` = base64 of the leaf bytes, exactly the checkpoint's size of them),
    ``disclosure-totals.json`` (absent when the site has no such endpoint),
    ``ledger-projects.json`` (``{"items": [{code, kind, balance_fen}], "total"}``) and
    ``manifest.json`` (where and when, the size, whether the figures match that size).
    Returns the manifest. Nothing is verified here: run :func:`audit_log` on the directory.
    """
    directory.mkdir(parents=True, exist_ok=True)
    checkpoint, totals, accounts, settled = _settled_figures(site, attempts=attempts, wait=wait)
    size = _int_field(checkpoint, "size")
    public_key = site.public_key()
    _write_json(directory / MIRROR_FILES["checkpoint"], checkpoint)
    (directory / MIRROR_FILES["note"]).write_text(checkpoint["checkpoint"], encoding="utf-8")
    _write_json(directory / MIRROR_FILES["public_key"], public_key)
    totals_path = directory / MIRROR_FILES["totals"]
    if totals is not None:
        _write_json(totals_path, totals)
    elif totals_path.exists():
        totals_path.unlink()
    _write_json(directory / MIRROR_FILES["accounts"], {"items": accounts, "total": len(accounts)})
    count = 0
    entries_path = directory / MIRROR_FILES["entries"]
    tmp = entries_path.with_name(entries_path.name + ".part")
    with tmp.open("w", encoding="utf-8") as out:
        for index, data in site.entries(0, size):
            out.write(json.dumps({"index": index, "data": b64encode(data)}) + "\n")
            count += 1
            if progress is not None and (count % PAGE == 0 or count == size):
                progress(count, size)
    tmp.replace(entries_path)
    manifest = {
        "format": MIRROR_FORMAT,
        "source": site.base,
        "downloaded_at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "size": size,
        "entries": count,
        "disclosure_totals": totals is not None,
        "project_accounts": len(accounts),
        # The totals and balances describe the tree of this size (None: the log kept growing
        # while they were read, so they may include later movements).
        "figures_at_size": size if settled else None,
        "files": MIRROR_FILES,
    }
    _write_json(directory / MIRROR_FILES["manifest"], manifest)
    return manifest


# --- receipts ------------------------------------------------------------------------------


def receipt_url(url: str) -> str:
    """The receipt JSON's URL for a receipt page's URL (``/transparency/receipts/<ref>``)."""
    parts = urllib.parse.urlsplit(url)
    marker = "/transparency/receipts/"
    if "/api/" not in parts.path and marker in parts.path:
        prefix, ref = parts.path.split(marker, 1)
        base = urllib.parse.urlunsplit((parts.scheme, parts.netloc, prefix, "", ""))
        return f"{base}{API}{marker}{ref}"
    return url


def verify_receipt(receipt: Any, *, key: str | None) -> Report:
    """Check a donor's receipt; see the module doc. Pure: no network."""
    report = Report("receipt")
    if not isinstance(receipt, dict):
        report.check("format", False, "the receipt is not a JSON object")
        return report
    fmt = receipt.get("format")
    if not report.check("format", fmt == RECEIPT_FORMAT, f"{fmt!r}"
                        + ("" if fmt == RECEIPT_FORMAT else f", expected {RECEIPT_FORMAT!r}")):
        return report
    ref = receipt.get("ref")
    report.data["ref"] = ref
    note = receipt.get("checkpoint")
    if not isinstance(note, str):
        report.check("checkpoint", False, "the receipt has no signed checkpoint note")
        return report
    own_key = receipt.get("verifier_key")
    chosen = _choose_key(report, key, own_key if isinstance(own_key, str) else None,
                         "the receipt")
    if key and isinstance(own_key, str) and own_key != key:
        report.warn(f"the receipt names another key ({key_name(own_key)!r}) than --key")
    parsed = _check_note(report, "checkpoint", note, chosen)
    try:
        tree_size = int(receipt["tree_size"])
        root = b64_hash(receipt.get("root"), "root")
    except (KeyError, TypeError, ValueError) as exc:
        report.check("tree size and root", False, f"malformed: {exc}")
        return report
    if parsed is not None:
        report.check("checkpoint covers the receipt's tree",
                     parsed.size == tree_size and parsed.root == root,
                     f"note: size {parsed.size}, root {short(parsed.root)}; receipt: size "
                     f"{tree_size}, root {short(root)}")
        origin = receipt.get("origin")
        if origin is not None and origin != parsed.origin:
            report.check("origin", False,
                         f"the receipt says {origin!r}, the checkpoint {parsed.origin!r}")
    items = receipt.get("leaves")
    if not isinstance(items, list) or not items:
        report.check("leaves", False, "the receipt holds no leaf")
        return report
    donors: list[str] = []
    for n, item in enumerate(items):
        label = f"leaf {item.get('index') if isinstance(item, dict) else n}"
        try:
            index = int(item["index"])
            data = b64decode(item["data"], "data")
            proof = [b64_hash(h, "a proof hash") for h in item["proof"]]
        except (KeyError, TypeError, ValueError) as exc:
            report.check(label, False, f"malformed: {exc}")
            continue
        computed = leaf_hash(data)
        stated = item.get("leaf_hash")
        if stated is not None:
            try:
                same = b64_hash(stated, "leaf_hash") == computed
            except ValueError:
                same = False
            report.check(f"{label}: hash", same, "SHA-256(0x00 ‖ data) "
                         + ("equals" if same else "differs from") + " the stated leaf hash")
        try:
            implied = root_from_inclusion(index, tree_size, computed, proof)
            proven = implied == root
            detail = (f"{len(proof)} hashes lead to the root {short(root)}" if proven else
                      f"leads to {short(implied)}, not to the root {short(root)}")
        except ProofError as exc:
            proven, detail = False, str(exc)
        report.check(f"{label}: inclusion in the tree of {tree_size}", proven, detail)
        fields, problems, oddities = check_leaf(data)
        if fields is None or problems:
            report.check(f"{label}: content", False, "; ".join(problems))
            continue
        for oddity in oddities:
            report.warn(f"{label}: {oddity}")
        report.note(f"{label}: {describe_leaf(fields)}")
        if ref is not None and fields.get("ref") != ref:
            report.check(f"{label}: reference", False,
                         f"the leaf's ref is {fields.get('ref')!r}, the receipt's {ref!r}")
        if isinstance(fields.get("donor"), str):
            donors.append(fields["donor"])
        report.data.setdefault("leaves", []).append({"index": index, **fields})
    opening = receipt.get("opening")
    if isinstance(opening, dict):
        try:
            identity = str(opening["identity"])
            salt = bytes.fromhex(str(opening["salt"]))
        except (KeyError, ValueError) as exc:
            report.check("donor opening", False, f"malformed: {exc}")
            return report
        commitment = leaves.donor_commitment(salt, identity)
        report.check("donor opening", bool(donors) and all(d == commitment for d in donors),
                     f"SHA-256(tag ‖ salt ‖ {identity!r}) "
                     + ("matches the leaf's donor commitment" if donors and all(
                         d == commitment for d in donors) else
                        "does not match the leaf's donor commitment" if donors else
                        "— but no leaf holds a donor commitment"))
    elif donors:
        report.note("the donor commitment is not opened (only the donor's own receipt can)")
    return report


# --- consistency ---------------------------------------------------------------------------


ProofGetter = Callable[[int, int], list[bytes]]


def verify_consistency(old_note: str, new_note: str, *, key: str | None,
                       get_proof: ProofGetter | None, published_key: str | None = None,
                       published_by: str = "the server") -> Report:
    """Check that two signed checkpoints are versions of one append-only history.

    ``get_proof(first, second)`` supplies the consistency proof (from a file or the server);
    it may raise :class:`FetchError`. Two trees of one size with different roots are a fork.
    Without ``key``, the signatures are checked with ``published_key`` (and a warning).
    """
    report = Report("consistency")
    key = _choose_key(report, key, published_key, published_by)
    old = _check_note(report, "old checkpoint", old_note, key)
    new = _check_note(report, "new checkpoint", new_note, key)
    if old is None or new is None:
        report.check("format", False, "a checkpoint could not be parsed")
        return report
    report.check("same log", old.origin == new.origin,
                 f"origins {old.origin!r} and {new.origin!r}")
    if old.size > new.size:
        report.note(f"the old checkpoint is the larger ({old.size} > {new.size}): swapped")
        old, new = new, old
    if (old.size < new.size and old.timestamp_ms is not None and new.timestamp_ms is not None
            and new.timestamp_ms < old.timestamp_ms):
        # A log only grows: a tree signed later with fewer leaves means it was rolled back.
        report.check("signing times", False,
                     f"ROLLBACK: the tree of {old.size} was signed at "
                     f"{format_ms(old.timestamp_ms)}, after the tree of {new.size} "
                     f"({format_ms(new.timestamp_ms)})")
    report.data.update({"old": {"size": old.size, "root": b64encode(old.root)},
                        "new": {"size": new.size, "root": b64encode(new.root)}})
    name = f"consistency {old.size} → {new.size}"
    if old.size == new.size:
        same = old.root == new.root
        report.check(name, same, "same size, same root" if same else
                     f"FORK: two signed trees of {old.size} leaves with different roots "
                     f"({short(old.root)} and {short(new.root)})")
        return report
    if old.size == 0:
        report.check(name, True, "every log extends the empty log")
        return report
    if get_proof is None:
        raise FetchError("a consistency proof is needed: give --proof FILE or --url URL")
    proof = get_proof(old.size, new.size)
    try:
        check_consistency(old.size, new.size, old.root, new.root, proof)
    except ProofError as exc:
        report.check(name, False, f"history rewritten or forked: {exc}")
        return report
    report.check(name, True, f"the tree of {old.size} is a prefix of the tree of {new.size} "
                 f"({len(proof)} hashes)")
    return report


def load_proof(source: str) -> list[bytes]:
    """A consistency proof from a file or URL: the endpoint's JSON or base64 hashes, one a line."""
    text = load_text(source).strip()
    try:
        if text.startswith("{"):
            value = json.loads(text)
            hashes = value["proof"]
        else:
            hashes = text.split()
        return [b64_hash(h, "a proof hash") for h in hashes]
    except (ValueError, KeyError, TypeError) as exc:
        raise FetchError(f"{source}: not a consistency proof ({exc})") from None


# --- the whole log -------------------------------------------------------------------------


@dataclass
class ProjectTotals:
    """A project's money as recomputed from the log's leaves (fen)."""

    received: int = 0  # donor_clearing → project
    matched: int = 0  # (pool | match_hold) → project, less project → pool
    refunded: int = 0  # project → (refunds | donor_clearing), less refunds → project
    disbursed: int = 0  # project → organization
    other: int = 0  # any other movement in (+) or out (−)
    balance: int = 0  # every movement in, less every movement out

    def as_fields(self) -> dict[str, int]:
        """The disclosure endpoint's field names."""
        return {"received_fen": self.received, "matched_fen": self.matched,
                "refunded_fen": self.refunded, "disbursed_fen": self.disbursed,
                "balance_fen": self.balance}


def _kind(code: str) -> str:
    return code.split(":", 1)[0]


def add_to_totals(totals: dict[str, ProjectTotals], source: str, destination: str,
                  amount: int) -> None:
    """Account one transfer to the projects it touches (keys ``"7"`` for ``project:7``)."""
    if _kind(destination) == "project":
        t = totals.setdefault(destination.split(":", 1)[-1], ProjectTotals())
        t.balance += amount
        src = _kind(source)
        if src == "donor_clearing":
            t.received += amount
        elif src in ("pool", "match_hold"):
            t.matched += amount
        elif src == "refunds":
            t.refunded -= amount
        else:
            t.other += amount
    if _kind(source) == "project":
        t = totals.setdefault(source.split(":", 1)[-1], ProjectTotals())
        t.balance -= amount
        dst = _kind(destination)
        if dst == "pool":
            t.matched -= amount
        elif dst in ("refunds", "donor_clearing"):
            t.refunded += amount
        elif dst == "organization":
            t.disbursed += amount
        else:
            t.other -= amount


def _listed(report: Report, name: str, problems: Sequence[str], ok_detail: str) -> None:
    if not problems:
        report.check(name, True, ok_detail)
        return
    shown = "; ".join(problems[:MAX_LISTED])
    more = f"; … and {len(problems) - MAX_LISTED} more" if len(problems) > MAX_LISTED else ""
    report.check(name, False, f"{len(problems)} problem(s): {shown}{more}")


def locate_difference(tree: MemoryTree, size: int, root: bytes, get_proof: ProofGetter) -> int:
    """The number of leading leaves of ``tree`` that agree with the signed tree (size, root).

    Binary search with the server's consistency proofs: the first ``m`` leaves agree when a
    proof shows the tree of our first ``m`` leaves is a prefix of the signed one. A lying
    server can only make this point too early, never hide a difference.
    """
    lo, hi = 0, min(tree.size, size)  # the first lo leaves agree; beyond hi nothing to test

    def agrees(m: int) -> bool:
        if m == size:
            return tree.root(m) == root
        try:
            check_consistency(m, size, tree.root(m), root, get_proof(m, size))
        except (ProofError, FetchError):
            return False
        return True

    if hi and agrees(hi):
        return hi
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if agrees(mid):
            lo = mid
        else:
            hi = mid
    return lo


def audit_log(source: LogSource, *, key: str | None, progress: Progress | None = None,
              attempts: int = 5, wait: float = 2.0) -> Report:
    """Audit the whole log; see the module doc."""
    report = Report("log")
    report.data["source"] = source.label
    # The site's figures are read right after the checkpoint, and then whether the log grew:
    # if it did not, they describe exactly the signed tree.
    grew: bool | None = None
    totals_value: dict[str, Any] | None = None
    balances: dict[str, int] | None = None
    for attempt in range(attempts if isinstance(source, Site) else 1):
        checkpoint = source.checkpoint()
        note = checkpoint["checkpoint"]
        totals_value = source.totals()
        balances = source.project_balances()
        try:
            claimed = int(checkpoint.get("size", -1))
        except (TypeError, ValueError):
            claimed = -1
        grew = source.grew_beyond(claimed) if claimed >= 0 else None
        if not grew:
            break
        if attempt + 1 < attempts:
            time.sleep(wait)
    chosen = _choose_key(report, key, source.verifier_key(), source.label)
    parsed = _check_note(report, "checkpoint", note, chosen)
    if parsed is None:
        report.check("checkpoint format", False, "the checkpoint note cannot be parsed")
        return report
    size, root = parsed.size, parsed.root
    report.data["checkpoint"] = {"origin": parsed.origin, "size": size, "root": b64encode(root),
                                 "timestamp_ms": parsed.timestamp_ms}
    stated = (checkpoint.get("size"), checkpoint.get("root"))
    if stated != (size, b64encode(root)):
        report.check("checkpoint fields", False,
                     f"the JSON says size {stated[0]}, root {stated[1]}; the signed note "
                     f"says size {size}, root {b64encode(root)}")

    # Rebuild the tree from the entries.
    tree = MemoryTree()
    totals: dict[str, ProjectTotals] = {}
    problems: list[str] = []
    order: list[str] = []
    oddities: list[str] = []
    batch: list[bytes] = []
    expected = 0
    for index, data in source.entries(0, size):
        if index != expected:
            order.append(f"expected entry {expected}, got {index}")
            break
        expected += 1
        batch.append(data)
        if len(batch) == PAGE:
            tree.append_data(batch)
            batch = []
            if progress is not None:
                progress(tree.size, size)
        fields, leaf_problems, leaf_oddities = check_leaf(data)
        problems += [f"leaf {index} {p}" for p in leaf_problems]
        oddities += [f"leaf {index}: {o}" for o in leaf_oddities]
        if fields is not None and not leaf_problems:
            add_to_totals(totals, fields["from"], fields["to"], fields["amount"])
    tree.append_data(batch)
    if progress is not None:
        progress(tree.size, size)
    _listed(report, "entries in order", order, "indexes 0, 1, 2, … without gaps")
    report.check("entry count", tree.size == size,
                 f"{tree.size} entries served, the checkpoint signs {size}"
                 + ("" if tree.size == size else
                    " — the log is truncated" if tree.size < size else ""))
    rebuilt = tree.root()
    same_root = tree.size == size and rebuilt == root
    detail = (f"the {size} entries hash to the signed root {short(root)}" if same_root else
              f"the entries hash to {short(rebuilt)}, the checkpoint signs {short(root)}")
    if not same_root and tree.size and isinstance(source, Site):
        # Where do they part? The site's own consistency proofs say (a mirror has none).
        agree = locate_difference(tree, size, root, source.consistency_proof)
        if agree < tree.size:
            detail += f"; entry {agree} is not the entry the signed tree holds"
            report.data["first_bad_entry"] = agree
        else:
            detail += f"; the first {agree} entries agree with the signed tree"
    report.check("rebuilt root equals the signed root", same_root, detail)
    _listed(report, "every leaf is well-formed", problems,
            "canonical JSON, positive integer amounts, two different accounts")
    for oddity in oddities[:MAX_LISTED]:
        report.warn(oddity)

    # The site's figures, recomputed from the leaves alone.
    report.data["projects"] = {p: totals[p].as_fields() for p in sorted(totals, key=_natural)}
    unclassified = [p for p, t in sorted(totals.items()) if t.other]
    if unclassified:
        report.warn("movements outside received/matched/refunded/disbursed touch project(s) "
                    + ", ".join(unclassified) + " (counted in the balance only)")
    strict = grew is False or grew is None
    if grew:
        report.warn("the log grew while the site's figures were read: they may include "
                    "movements after the checkpoint, so differences are reported as warnings")
    if totals_value is None:
        report.warn("the site publishes no disclosure totals (/api/v1/disclosure/totals "
                    "missing): comparing ledger balances only")
    else:
        mismatches = compare_totals(totals, totals_value)
        if strict:
            _listed(report, "project totals equal the site's disclosure", mismatches,
                    f"{len(totals_value['projects'])} projects: received, matched, refunded, "
                    "disbursed and balance all equal")
        else:
            for m in mismatches:
                report.warn(m)
    if balances is None:
        report.warn("the site publishes no ledger balances")
    else:
        mismatches = compare_balances(totals, balances)
        if strict:
            _listed(report, "project balances equal the ledger's", mismatches,
                    f"{len(balances)} project funds")
        else:
            for m in mismatches:
                report.warn(m)
    report.note(f"log {parsed.origin!r}: {size} entries, root {b64encode(root)}, signed "
                f"{format_ms(parsed.timestamp_ms)}; {len(totals)} projects in the log")
    for project in sorted(totals, key=_natural)[:MAX_LISTED]:
        t = totals[project]
        report.note(f"project {project}: received {format_yuan(t.received)}, matched "
                    f"{format_yuan(t.matched)}, refunded {format_yuan(t.refunded)}, disbursed "
                    f"{format_yuan(t.disbursed)}, balance {format_yuan(t.balance)}")
    if len(totals) > MAX_LISTED:
        report.note(f"… and {len(totals) - MAX_LISTED} more projects (all in --json)")
    return report


def compare_totals(totals: Mapping[str, ProjectTotals], site: Mapping[str, Any]) -> list[str]:
    """Differences between recomputed totals and the disclosure endpoint's."""
    out: list[str] = []
    published: dict[str, dict[str, Any]] = {}
    for item in site["projects"]:
        if isinstance(item, dict) and "project_id" in item:
            published[str(item["project_id"])] = item
    for project in sorted(set(published) | set(totals), key=_natural):
        ours = (totals.get(project) or ProjectTotals()).as_fields()
        theirs = published.get(project)
        if theirs is None:
            if any(ours.values()):
                out.append(f"project {project}: in the log, missing from the site's totals")
            continue
        for name in TOTAL_FIELDS:
            value = theirs.get(name)
            if value != ours[name]:
                out.append(f"project {project} {name.removesuffix('_fen')}: the site says "
                           f"{_money(value)}, the log {format_yuan(ours[name])}")
    return out


def compare_balances(totals: Mapping[str, ProjectTotals], balances: Mapping[str, int]
                     ) -> list[str]:
    """Differences between recomputed balances and the ledger's project fund balances."""
    out: list[str] = []
    site = {code.split(":", 1)[-1]: b for code, b in balances.items()
            if code.startswith("project:")}
    for project in sorted(set(site) | set(totals), key=_natural):
        ours = totals[project].balance if project in totals else 0
        theirs = site.get(project, 0)
        if ours != theirs:
            out.append(f"project:{project} balance: the ledger says {format_yuan(theirs)}, "
                       f"the log {format_yuan(ours)}")
    return out


def _money(value: object) -> str:
    return format_yuan(value) if type(value) is int else repr(value)


def _natural(text: str) -> tuple[int, str]:
    return (int(text), "") if text.isdigit() else (1 << 62, text)


# --- following a live log ------------------------------------------------------------------


@dataclass
class FollowState:
    """The last checkpoint a monitor verified, and the tree's frontier at that size."""

    url: str
    verifier_key: str
    origin: str
    size: int
    root: bytes
    timestamp_ms: int | None
    note: str
    frontier: Frontier

    def to_json(self) -> dict[str, Any]:
        """The state file's content."""
        return {"format": STATE_FORMAT, "url": self.url, "verifier_key": self.verifier_key,
                "origin": self.origin, "size": self.size, "root": b64encode(self.root),
                "timestamp_ms": self.timestamp_ms, "checkpoint": self.note,
                "frontier": [b64encode(h) for h in self.frontier.hashes]}

    @classmethod
    def from_json(cls, value: Any) -> FollowState:
        """Read a state file's content (``FetchError`` when it is not one)."""
        try:
            if value["format"] != STATE_FORMAT:
                raise ValueError(f"format {value['format']!r}")
            size = int(value["size"])
            return cls(
                url=str(value["url"]), verifier_key=str(value["verifier_key"]),
                origin=str(value["origin"]), size=size, root=b64_hash(value["root"], "root"),
                timestamp_ms=None if value["timestamp_ms"] is None else int(value["timestamp_ms"]),
                note=str(value["checkpoint"]),
                frontier=Frontier.decode(size, b"".join(
                    b64_hash(h, "frontier") for h in value["frontier"])),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise FetchError(f"not a follow state file ({exc})") from None


def load_state(path: Path) -> FollowState | None:
    """The saved state (None when the file does not exist yet)."""
    if not path.exists():
        return None
    return FollowState.from_json(load_json(str(path)))


def save_state(path: Path, state: FollowState) -> None:
    """Write the state atomically."""
    _write_json(path, state.to_json())


@dataclass
class Poll:
    """One poll's outcome: ``ok``, ``alarm`` (an inconsistency) or ``error`` (unreachable)."""

    status: str
    message: str
    size: int | None = None


class Follower:
    """Polls a site's checkpoint and checks each against the last one verified."""

    def __init__(self, site: Site, *, key: str | None, state: FollowState | None) -> None:
        self.site = site
        self.key = key or (state.verifier_key if state else None)
        self.state = state
        self.pinned_now = False

    def poll(self) -> Poll:
        """Fetch and check the current checkpoint; advance the state when it verifies."""
        try:
            return self._poll()
        except FetchError as exc:
            return Poll("error", str(exc))

    def _poll(self) -> Poll:
        value = self.site.checkpoint()
        note = value["checkpoint"]
        if self.key is None:
            found = self.site.verifier_key()
            if found is None:
                raise FetchError("the site publishes no verifier key; give --key")
            self.key = found
            self.pinned_now = True
        try:
            new = verify_note(note, self.key)
        except CheckpointError as exc:
            return Poll("alarm", f"the checkpoint does not verify with the pinned key "
                                 f"{key_name(self.key)!r}: {exc}")
        old = self.state
        if old is not None and new.origin != old.origin:
            return Poll("alarm", f"the origin changed from {old.origin!r} to {new.origin!r}")
        if old is not None and new.size < old.size:
            return Poll("alarm", f"the log shrank from {old.size} to {new.size} entries: "
                                 "history was rolled back or rewritten", new.size)
        if old is not None and new.size == old.size:
            if new.root != old.root:
                return Poll("alarm", f"FORK: two signed trees of {new.size} entries with "
                                     f"different roots ({short(old.root)} and "
                                     f"{short(new.root)})", new.size)
            self._advance(new, note, old.frontier)
            return Poll("ok", f"size {new.size}, unchanged", new.size)
        start = old.size if old is not None else 0
        if old is not None and old.size > 0:
            proof = self.site.consistency_proof(old.size, new.size)
            try:
                check_consistency(old.size, new.size, old.root, new.root, proof)
            except ProofError as exc:
                return Poll("alarm", f"checkpoint {new.size} is not consistent with "
                                     f"checkpoint {old.size}: {exc}", new.size)
        frontier = (Frontier(old.frontier.size, list(old.frontier.hashes)) if old is not None
                    else Frontier())
        expected = start
        bad: list[str] = []
        for index, data in self.site.entries(start, new.size):
            if index != expected:
                return Poll("alarm", f"entry {expected} expected, the site served {index}",
                            new.size)
            _fields, problems, _odd = check_leaf(data)
            bad += [f"leaf {index} {p}" for p in problems]
            frontier.append([leaf_hash(data)])
            expected += 1
        if frontier.size != new.size:
            return Poll("alarm", f"the site serves {frontier.size} entries but signs "
                                 f"{new.size}: the log is truncated", new.size)
        if frontier.root() != new.root:
            return Poll("alarm", f"entries {start}…{new.size - 1} do not hash to the signed "
                                 f"root {short(new.root)}: an entry was changed", new.size)
        if bad:
            return Poll("alarm", "malformed leaves: " + "; ".join(bad[:MAX_LISTED]), new.size)
        self._advance(new, note, frontier)
        grown = f"+{new.size - start}" if old is not None else "first contact"
        return Poll("ok", f"size {new.size} ({grown}), root {short(new.root)}, "
                          f"entries and consistency verified", new.size)

    def _advance(self, new: ParsedCheckpoint, note: str, frontier: Frontier) -> None:
        assert self.key is not None  # noqa: S101 - set before any checkpoint verifies
        self.state = FollowState(url=self.site.base, verifier_key=self.key, origin=new.origin,
                                 size=new.size, root=new.root, timestamp_ms=new.timestamp_ms,
                                 note=note, frontier=frontier)
