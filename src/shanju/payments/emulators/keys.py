"""Locally generated RSA keys for the emulators (never a real provider's or merchant's key)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa


@dataclass(frozen=True, slots=True)
class KeyPair:
    """An RSA key pair as PEM text: PKCS#8 private key, SubjectPublicKeyInfo public key."""

    private_pem: str
    public_pem: str


def generate_key_pair(bits: int = 2048) -> KeyPair:
    """A fresh RSA key pair (2048 bits: what WeChat Pay and Alipay use)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo,
    ).decode()
    return KeyPair(private_pem, public_pem)


def key_pair_in(directory: Path, name: str) -> KeyPair:
    """The key pair ``name`` kept in ``directory`` (``name.key.pem``, ``name.pub.pem``)."""
    private_path = directory / f"{name}.key.pem"
    public_path = directory / f"{name}.pub.pem"
    if private_path.exists() and public_path.exists():
        return KeyPair(private_path.read_text(), public_path.read_text())
    directory.mkdir(parents=True, exist_ok=True)
    pair = generate_key_pair()
    private_path.write_text(pair.private_pem)
    private_path.chmod(0o600)
    public_path.write_text(pair.public_pem)
    return pair
