"""Signed checkpoints: the log's tree heads, signed with Ed25519 as C2SP signed notes.

A checkpoint (C2SP ``tlog-checkpoint``) is the text body::

    <origin>\\n<tree size>\\n<base64 root hash>\\ntimestamp <unix milliseconds>\\n

wrapped in a C2SP ``signed-note``: the body, an empty line, then one line per signature::

    — <key name> <base64(4-byte key hash ‖ 64-byte Ed25519 signature)>\\n

The signature covers the body's UTF-8 bytes (ending with its last newline). The key hash is
the first 4 bytes of SHA-256(key name ‖ 0x0A ‖ 0x01 ‖ 32-byte public key) — 0x01 is the
Ed25519 algorithm byte — and the *verifier key* published for auditors is
``<name>+<8 hex digits of the key hash>+<base64(0x01 ‖ public key)>``, the format
``golang.org/x/mod/sumdb/note`` and the other transparency tools read. The key name is the
log's origin.

:func:`parse_note` and :func:`verify_note` are pure (no database, no settings): the offline
verifier and receipts use them. :func:`latest`, :func:`sign_now` and :func:`ensure_covering`
read and write ``transparency_checkpoints`` in the caller's transaction (they flush, never
commit). :class:`Checkpointer` signs every few seconds while the application runs.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import os
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, cast
from urllib.parse import urlsplit

import structlog
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from sqlalchemy import Table, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from shanju.core.clock import utcnow
from shanju.transparency.log import HEAD_ID
from shanju.transparency.merkle import EMPTY_ROOT
from shanju.transparency.models import Checkpoint, LogHead

if TYPE_CHECKING:
    from shanju.core.config import Settings
    from shanju.core.db import Database
    from shanju.core.leader import Leadership

log = structlog.get_logger(__name__)

ALG_ED25519 = 0x01  # the signed-note algorithm byte of Ed25519 keys
SIG_PREFIX = "\u2014 "  # an em dash and a space start every signature line
MAX_SIGNATURES = 100  # C2SP signed-note: verifiers may refuse notes with more
REUSE_SECONDS = 1.0  # sign_now() returns the latest checkpoint of the same size this young
HASH_SIZE = 32

_HEAD = cast(Table, LogHead.__table__)
_NAME_BAD = re.compile(r"[\s+]")
_B64 = re.compile(r"^[A-Za-z0-9+/]*={0,2}$")


class CheckpointError(ValueError):
    """A note, checkpoint, verifier key or key file is malformed, or a signature is wrong."""


# --- keys --------------------------------------------------------------------------------


def check_name(name: str) -> str:
    """Return ``name`` if it is a valid key name (non-empty, no spaces, no '+')."""
    if not name or _NAME_BAD.search(name) or any(ord(c) < 0x20 for c in name):
        raise CheckpointError(f"invalid key name {name!r}: it must be non-empty, with no "
                              "spaces and no '+'")
    return name


def key_hash(name: str, public_key: bytes) -> bytes:
    """The 4-byte key hash: SHA-256(name ‖ 0x0A ‖ 0x01 ‖ public key)[:4]."""
    return hashlib.sha256(name.encode() + b"\n" + bytes([ALG_ED25519]) + public_key).digest()[:4]


def verifier_key(name: str, public_key: bytes) -> str:
    """The verifier key string ``<name>+<hex key hash>+<base64(0x01 ‖ public key)>``."""
    check_name(name)
    encoded = base64.b64encode(bytes([ALG_ED25519]) + public_key).decode()
    return f"{name}+{key_hash(name, public_key).hex()}+{encoded}"


@dataclass(frozen=True)
class VerifierKey:
    """A parsed verifier key: the name, key hash and raw 32-byte Ed25519 public key."""

    name: str
    key_hash: bytes
    public_key: bytes

    @property
    def key_id(self) -> str:
        """``<name>+<hex key hash>``: how the checkpoints table records the key."""
        return f"{self.name}+{self.key_hash.hex()}"


def parse_verifier_key(text: str) -> VerifierKey:
    """Parse ``<name>+<hash>+<base64 key>`` and check that the hash matches the key."""
    parts = text.strip().split("+", 2)
    if len(parts) != 3:
        raise CheckpointError("a verifier key reads <name>+<hash>+<base64 key>")
    name, hash_hex, encoded = parts
    check_name(name)
    if not re.fullmatch(r"[0-9a-f]{8}", hash_hex):
        raise CheckpointError("the verifier key's hash must be 8 lowercase hex digits")
    raw = _b64decode(encoded, what="verifier key")
    if len(raw) != 1 + 32 or raw[0] != ALG_ED25519:
        raise CheckpointError("the verifier key is not an Ed25519 key (0x01 + 32 bytes)")
    public_key = raw[1:]
    if key_hash(name, public_key).hex() != hash_hex:
        raise CheckpointError("the verifier key's hash does not match its name and key")
    return VerifierKey(name=name, key_hash=bytes.fromhex(hash_hex), public_key=public_key)


class Signer:
    """Signs checkpoint bodies as C2SP signed notes with one Ed25519 key under one name."""

    def __init__(self, name: str, private_key: Ed25519PrivateKey) -> None:
        self.name = check_name(name)
        self._private_key = private_key
        self.public_key: bytes = private_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        self.key_hash = key_hash(name, self.public_key)
        self.key_id = verifier_key(name, self.public_key)  # the verifier key string

    @classmethod
    def from_seed(cls, name: str, seed: bytes) -> Signer:
        """A signer for the Ed25519 key with this 32-byte seed (the RFC 8032 private key)."""
        return cls(name, Ed25519PrivateKey.from_private_bytes(seed))

    @property
    def key_name_hash(self) -> str:
        """``<name>+<hex key hash>`` (stored with each checkpoint)."""
        return f"{self.name}+{self.key_hash.hex()}"

    def signature_line(self, body: str) -> str:
        """The note's signature line for ``body`` (with its newline)."""
        sig = self._private_key.sign(body.encode())
        return f"{SIG_PREFIX}{self.name} {base64.b64encode(self.key_hash + sig).decode()}\n"

    def sign(self, body: str) -> str:
        """Return the full signed note: ``body``, an empty line, this key's signature line."""
        _check_text(body)
        return body + "\n" + self.signature_line(body)


def load_signer(settings: Settings) -> Signer:
    """The platform's signer: the key in ``settings.transparency_key_file`` (created, mode
    0600, on first use) under the name ``origin(settings)``.

    The file holds the private key as unencrypted PKCS#8 PEM (``openssl pkey -in FILE``
    reads it). Raises :class:`CheckpointError` if it exists but cannot be read or is not an
    Ed25519 private key.
    """
    path = Path(settings.transparency_key_file)
    if not path.exists():
        _create_key_file(path)
    try:
        data = path.read_bytes()
        mode = path.stat().st_mode
    except OSError as exc:
        raise CheckpointError(f"cannot read the transparency key file {path}: {exc}") from exc
    if mode & 0o077:
        log.warning("transparency.key_file_readable_by_others", path=str(path),
                    mode=oct(mode & 0o777))
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise CheckpointError(
            f"the transparency key file {path} is not a readable unencrypted PEM private key"
        ) from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise CheckpointError(f"the transparency key file {path} does not hold an Ed25519 key")
    return Signer(origin(settings), key)


def _create_key_file(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    try:
        # O_EXCL: two processes starting at once never overwrite each other's new key.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    except OSError as exc:
        raise CheckpointError(f"cannot create the transparency key file {path}: {exc}") from exc
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    log.info("transparency.key_created", path=str(path))


def origin(settings: Settings) -> str:
    """The log's origin (and key name): the setting, else ``<host[:port]>/transparency``."""
    if settings.transparency_origin:
        return check_name(settings.transparency_origin)
    netloc = urlsplit(settings.base_url).netloc or "localhost"
    return check_name(netloc.rsplit("@", 1)[-1] + "/transparency")


# --- notes ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class NoteSignature:
    """One signature line of a note."""

    name: str
    key_hash: bytes
    signature: bytes  # the signature proper (without the 4-byte key hash)


@dataclass(frozen=True)
class ParsedCheckpoint:
    """A checkpoint note taken apart (signatures not checked by :func:`parse_note`)."""

    origin: str
    size: int
    root: bytes
    timestamp_ms: int | None  # from the ``timestamp <ms>`` extension line, if present
    body: str  # the signed text, ending with a newline
    signatures: tuple[NoteSignature, ...]
    extensions: tuple[str, ...] = ()  # every extension line (after the root)


def _check_text(body: str) -> None:
    if not body.endswith("\n"):
        raise CheckpointError("a note's text must end with a newline")
    if any(ord(c) < 0x20 and c != "\n" for c in body):
        raise CheckpointError("a note's text may not hold control characters")


def _b64decode(text: str, *, what: str) -> bytes:
    if not _B64.match(text) or len(text) % 4:
        raise CheckpointError(f"the {what} is not valid base64")
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise CheckpointError(f"the {what} is not valid base64") from exc
    # Canonical only: the last character's unused bits must be zero, or two different texts
    # (e.g. of a signature) would decode to the same bytes and both verify.
    if base64.b64encode(raw).decode() != text:
        raise CheckpointError(f"the {what} is not canonical base64")
    return raw


def parse_note(text: str) -> ParsedCheckpoint:
    """Split a signed checkpoint note into its fields and signature lines.

    Checks the form only (C2SP signed-note and tlog-checkpoint); :func:`verify_note` also
    checks a signature.
    """
    if not isinstance(text, str):
        raise CheckpointError("a note is text")
    sep = text.rfind("\n\n")
    if sep < 0:
        raise CheckpointError("a signed note has its text, an empty line, then signatures")
    body, sig_block = text[: sep + 1], text[sep + 2 :]
    _check_text(body)
    signatures = _parse_signatures(sig_block)
    lines = body[:-1].split("\n")
    if len(lines) < 3:
        raise CheckpointError("a checkpoint has an origin, a tree size and a root hash")
    origin_line, size_line, root_line, *extensions = lines
    if not origin_line:
        raise CheckpointError("the checkpoint's origin line is empty")
    if not re.fullmatch(r"0|[1-9][0-9]{0,19}", size_line) or int(size_line) >= 2**64:
        raise CheckpointError("the checkpoint's tree size is not a decimal number")
    root = _b64decode(root_line, what="root hash")
    if len(root) != HASH_SIZE:
        raise CheckpointError("the checkpoint's root hash is not 32 bytes")
    timestamp_ms: int | None = None
    for ext in extensions:
        if not ext:
            raise CheckpointError("a checkpoint's extension line is empty")
        match = re.fullmatch(r"timestamp (0|[1-9][0-9]{0,18})", ext)
        if match and timestamp_ms is None:
            timestamp_ms = int(match.group(1))
    return ParsedCheckpoint(
        origin=origin_line, size=int(size_line), root=root, timestamp_ms=timestamp_ms,
        body=body, signatures=signatures, extensions=tuple(extensions),
    )


def open_note(text: str, verifier: str | VerifierKey) -> tuple[str, NoteSignature]:
    """Check ``text``'s signature by ``verifier`` (any signed note, not only checkpoints)
    and return the signed text and that signature. Signatures by other keys are ignored."""
    key = verifier if isinstance(verifier, VerifierKey) else parse_verifier_key(verifier)
    sep = text.rfind("\n\n") if isinstance(text, str) else -1
    if sep < 0:
        raise CheckpointError("a signed note has its text, an empty line, then signatures")
    body = text[: sep + 1]
    _check_text(body)
    found = _parse_signatures(text[sep + 2 :])
    public = Ed25519PublicKey.from_public_bytes(key.public_key)
    mine = [s for s in found if s.name == key.name and s.key_hash == key.key_hash]
    if not mine:
        raise CheckpointError(f"the note is not signed by {key.key_id}")
    for sig in mine:
        try:
            public.verify(sig.signature, body.encode())
        except InvalidSignature:
            continue
        return body, sig
    raise CheckpointError(f"the note's signature by {key.key_id} is not valid")


def _parse_signatures(block: str) -> tuple[NoteSignature, ...]:
    if not block.endswith("\n"):
        raise CheckpointError("a note's signature lines end with a newline")
    signatures: list[NoteSignature] = []
    for line in block[:-1].split("\n"):
        if not line.startswith(SIG_PREFIX):
            raise CheckpointError("a signature line starts with an em dash and a space")
        parts = line[len(SIG_PREFIX):].split(" ")
        if len(parts) != 2 or not parts[0] or not parts[1]:
            raise CheckpointError("a signature line reads '— <name> <base64 signature>'")
        name, encoded = parts
        check_name(name)
        raw = _b64decode(encoded, what="signature")
        if len(raw) < 5:
            raise CheckpointError("a signature holds a 4-byte key hash and the signature")
        signatures.append(NoteSignature(name=name, key_hash=raw[:4], signature=raw[4:]))
    if not signatures:
        raise CheckpointError("the note has no signature")
    if len(signatures) > MAX_SIGNATURES:
        raise CheckpointError("the note has too many signatures")
    return tuple(signatures)


def verify_note(text: str, verifier_key: str) -> ParsedCheckpoint:
    """Parse a checkpoint note and check its signature by ``verifier_key``.

    The checkpoint's origin must be the key's name (one key signs one log here). Raises
    :class:`CheckpointError` on any malformed part, a missing or wrong signature.
    """
    parsed = parse_note(text)
    key = parse_verifier_key(verifier_key)
    open_note(text, key)
    if parsed.origin != key.name:
        raise CheckpointError(
            f"the checkpoint's origin {parsed.origin!r} is not the key's name {key.name!r}"
        )
    return parsed


def checkpoint_body(origin_name: str, size: int, root: bytes, timestamp_ms: int) -> str:
    """The checkpoint text that is signed."""
    return (f"{origin_name}\n{size}\n{base64.b64encode(root).decode()}\n"
            f"timestamp {timestamp_ms}\n")


# --- stored checkpoints --------------------------------------------------------------------


def latest(session: Session) -> Checkpoint | None:
    """The most recently signed checkpoint, if any."""
    return session.scalars(select(Checkpoint).order_by(Checkpoint.id.desc()).limit(1)).first()


def _now_ms() -> int:
    return int(utcnow().timestamp() * 1000)


def _age_seconds(checkpoint: Checkpoint) -> float:
    return (_now_ms() - int(checkpoint.timestamp_ms)) / 1000


def sign_now(session: Session, signer: Signer) -> Checkpoint:
    """Sign the current tree head (in the caller's write transaction) and store it.

    Locks the head row (``FOR UPDATE`` on PostgreSQL; SQLite's writer lock does the same),
    so the signed size and root are the committed head's and two signers do not race.
    Returns the latest checkpoint instead if it has the same size, the same key and is
    younger than :data:`REUSE_SECONDS`. Timestamps never go backwards.
    """
    row = session.execute(
        select(_HEAD.c.size, _HEAD.c.root).where(_HEAD.c.id == HEAD_ID).with_for_update()
    ).first()
    size, root = (int(row[0]), bytes(row[1])) if row is not None else (0, EMPTY_ROOT)
    previous = latest(session)
    now = _now_ms()
    if (previous is not None and int(previous.size) == size
            and previous.key_id == signer.key_name_hash
            and 0 <= now - int(previous.timestamp_ms) < REUSE_SECONDS * 1000):
        return previous
    if previous is not None:
        now = max(now, int(previous.timestamp_ms))
    note = signer.sign(checkpoint_body(signer.name, size, root, now))
    checkpoint = Checkpoint(size=size, root=root, timestamp_ms=now, note=note,
                            key_id=signer.key_name_hash, created_at=utcnow())
    session.add(checkpoint)
    session.flush()
    log.info("transparency.checkpoint_signed", size=size, id=checkpoint.id)
    return checkpoint


def ensure_covering(session: Session, signer: Signer, size: int) -> Checkpoint:
    """A checkpoint of at least ``size`` leaves: the latest if it covers ``size`` (and is by
    this signer's key), else a new one (:func:`sign_now`, write transaction)."""
    previous = latest(session)
    if (previous is not None and int(previous.size) >= size
            and previous.key_id == signer.key_name_hash):
        return previous
    return sign_now(session, signer)


def head_size(session: Session) -> int:
    """The log's current size (0 before the first leaf)."""
    value = session.scalar(select(_HEAD.c.size).where(_HEAD.c.id == HEAD_ID))
    return int(value or 0)


def needs_signing(session: Session, signer: Signer, *, min_age: float = 0.0) -> bool:
    """Whether the log has grown since the latest checkpoint (or none exists, or it was
    signed by another key) and that checkpoint is at least ``min_age`` seconds old."""
    previous = latest(session)
    if previous is None or previous.key_id != signer.key_name_hash:
        return True
    return head_size(session) > int(previous.size) and _age_seconds(previous) >= min_age


# --- signing while the application runs ------------------------------------------------------


def refresh(database: Database, signer: Signer, *, min_age: float = REUSE_SECONDS) -> Checkpoint:
    """The checkpoint to serve: the latest, or a new one if the log has grown since it was
    signed ``min_age`` seconds ago or more (or none exists, or another key signed it).

    A transaction boundary (like a request): reads in a read transaction and signs, only when
    needed, in a short write transaction of its own. If the database's write lock cannot be
    had in time the latest checkpoint is served all the same (when there is one).
    """
    with database.transaction(write=False) as session:
        current = latest(session)
        needed = needs_signing(session, signer, min_age=min_age)
        if current is not None:
            session.expunge(current)  # keep its loaded values past the rollback
    if not needed and current is not None:
        return current
    try:
        with database.transaction(write=True) as session:
            return sign_now(session, signer)
    except TimeoutError:
        if current is None or current.key_id != signer.key_name_hash:
            raise
        log.warning("transparency.checkpoint_not_refreshed", size=current.size)
        return current


def covering(database: Database, signer: Signer, size: int) -> Checkpoint:
    """A transaction boundary's :func:`ensure_covering`: the latest checkpoint if it covers
    ``size`` leaves (read transaction only), else a new one signed in a write transaction.
    For read-only handlers (a receipt must be proved against a checkpoint that holds it)."""
    with database.transaction(write=False) as session:
        current = latest(session)
        if current is not None:
            session.expunge(current)
    if (current is not None and int(current.size) >= size
            and current.key_id == signer.key_name_hash):
        return current
    with database.transaction(write=True) as session:
        return ensure_covering(session, signer, size)


class Checkpointer:
    """A thread that signs a checkpoint every ``interval`` seconds if the log grew.

    Each round reads in a short read transaction and writes (when the log grew) in the
    normal write transaction of :meth:`Database.transaction` (``BEGIN IMMEDIATE`` on SQLite,
    behind the process's writer queue). Failures are logged and retried next round.
    """

    def __init__(self, database: Database, signer: Signer, interval: float, *,
                 leader: Leadership | None = None) -> None:
        self.database = database
        self.leader = leader
        self.signer = signer
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start signing in the background (idempotent)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="transparency-checkpointer",
                                            daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop after the current round."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        if self.leader is not None:
            self.leader.release()

    def run_once(self) -> Checkpoint | None:
        """One round: sign if the log grew since the latest checkpoint."""
        with self.database.transaction(write=False) as session:
            if not needs_signing(session, self.signer):
                return None
        with self.database.transaction(write=True) as session:
            return sign_now(session, self.signer)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            # Of several server processes, one signs (core/leader.py).
            if self.leader is not None and not self.leader.held():
                continue
            started = time.monotonic()
            try:
                self.run_once()
            except (SQLAlchemyError, TimeoutError, OSError) as exc:
                log.warning("transparency.checkpointer_failed", error=str(exc))
            except Exception:  # noqa: BLE001 - never let the thread die; retried next round
                log.exception("transparency.checkpointer_error")
            log.debug("transparency.checkpointer_round", seconds=time.monotonic() - started)


def timestamp_of(checkpoint: Checkpoint) -> dt.datetime:
    """The checkpoint's signing time as an aware UTC datetime."""
    return dt.datetime.fromtimestamp(int(checkpoint.timestamp_ms) / 1000, dt.UTC)
