"""Transparency API shapes. Hashes, keys and leaf bytes are standard base64 (with padding)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class CheckpointRead(BaseModel):
    """The latest signed tree head."""

    size: int = Field(description="Number of leaves in the tree.")
    root: str = Field(description="Base64 RFC 9162 root hash of the tree of `size` leaves.")
    timestamp: int = Field(description="When it was signed: Unix time in milliseconds.")
    checkpoint: str = Field(description="The C2SP signed-note checkpoint text, as signed.")
    public_key: str = Field(description="Base64 of the raw 32-byte Ed25519 public key.")
    verifier_key: str = Field(description="The signed-note verifier key <name>+<hash>+<key>.")
    origin: str = Field(description="The log's origin (first line of the checkpoint).")


class PublicKeyRead(BaseModel):
    """The key that signs checkpoints."""

    verifier_key: str = Field(description="The signed-note verifier key <name>+<hash>+<key>.")
    public_key: str = Field(description="Base64 of the raw 32-byte Ed25519 public key.")
    origin: str
    algorithm: Literal["Ed25519"] = "Ed25519"


class EntryRead(BaseModel):
    """One leaf: its index and the exact bytes that were hashed (base64)."""

    index: int
    data: str


class EntriesRead(BaseModel):
    """Leaves ``start`` (inclusive) to ``end`` (exclusive), at most 1,000."""

    entries: list[EntryRead]


class InclusionProofRead(BaseModel):
    """The audit path of leaf ``index`` in the tree of ``size`` leaves (RFC 9162 §2.1.3)."""

    index: int
    size: int
    proof: list[str] = Field(description="Base64 node hashes, from the leaf upwards.")


class ConsistencyProofRead(BaseModel):
    """The consistency proof between the trees of ``first`` and ``second`` leaves."""

    first: int
    second: int
    proof: list[str] = Field(description="Base64 node hashes (RFC 9162 §2.1.4).")
