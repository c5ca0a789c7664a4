"""Reading the platform's RSA key files, for every provider's gateway (one loader, one place
for the formats a key file may take).

Keys live in files named by the providers' ``SHANJU_*_KEY_FILE`` variables, never in the
database. A file holds PEM (PKCS#8 or PKCS#1 private keys, SubjectPublicKeyInfo public keys);
``bare_base64=True`` also accepts the bare base64 (DER, no PEM armour) that Alipay's key tool
writes and its open platform shows. What a key must be beyond RSA (its size, the file's mode)
and how a problem is worded for the operator is each gateway's own business.
"""

from __future__ import annotations

import base64
import binascii
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa


def _key_bytes(path: Path, *, bare_base64: bool) -> tuple[bool, bytes]:
    """(is PEM, bytes) of a key file. PEM only: the file must be ASCII text
    (``UnicodeDecodeError`` otherwise)."""
    data = path.read_bytes()
    if not bare_base64:
        data.decode("ascii")
        return True, data
    data = data.strip()
    if data.startswith(b"-----BEGIN"):
        return True, data
    try:
        return False, base64.b64decode(b"".join(data.split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("neither PEM nor base64") from exc


def load_private_key(path: Path, *, bare_base64: bool = False) -> rsa.RSAPrivateKey:
    """The unencrypted RSA private key in ``path``.

    Raises ``OSError`` if the file cannot be read, ``ValueError`` if it holds no unencrypted
    RSA private key (a ``UnicodeDecodeError`` when PEM was required and it is not text).
    """
    pem, data = _key_bytes(path, bare_base64=bare_base64)
    try:
        key = (serialization.load_pem_private_key(data, password=None) if pem
               else serialization.load_der_private_key(data, password=None))
    except TypeError as exc:  # encrypted: it would need a password
        raise ValueError("an encrypted key") from exc
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("not an RSA key")
    return key


def load_public_key(path: Path, *, bare_base64: bool = False) -> rsa.RSAPublicKey:
    """The RSA public key in ``path``; raises as :func:`load_private_key` does."""
    pem, data = _key_bytes(path, bare_base64=bare_base64)
    key = (serialization.load_pem_public_key(data) if pem
           else serialization.load_der_public_key(data))
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError("not an RSA key")
    return key


def private_pem(key: rsa.RSAPrivateKey) -> str:
    """``key`` as unencrypted PKCS#8 PEM text (what the providers' SDKs take)."""
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def public_pem(key: rsa.RSAPublicKey) -> str:
    """``key`` as SubjectPublicKeyInfo PEM text."""
    return key.public_bytes(serialization.Encoding.PEM,
                            serialization.PublicFormat.SubjectPublicKeyInfo).decode()
