"""The key-file loader both gateways use (payments/keys.py): formats accepted and refused."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from shanju.payments import keys
from shanju.payments.emulators.keys import generate_key_pair


def _write(tmp_path: Path, name: str, data: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(data, str):
        path.write_text(data)
    else:
        path.write_bytes(data)
    return path


def test_pem_keys_load_and_come_back_as_the_same_pem(tmp_path: Path) -> None:
    pair = generate_key_pair()
    private = keys.load_private_key(_write(tmp_path, "a.key.pem", pair.private_pem))
    public = keys.load_public_key(_write(tmp_path, "a.pub.pem", pair.public_pem))
    assert keys.private_pem(private) == pair.private_pem
    assert keys.public_pem(public) == pair.public_pem
    assert private.public_key().public_numbers() == public.public_numbers()


def test_bare_base64_is_a_key_only_where_asked(tmp_path: Path) -> None:
    pair = generate_key_pair()
    bare_private = _write(tmp_path, "app.txt",
                          "".join(pair.private_pem.strip().splitlines()[1:-1]))
    bare_public = _write(tmp_path, "alipay.txt",
                         "\n".join(pair.public_pem.strip().splitlines()[1:-1]) + "\n")
    private = keys.load_private_key(bare_private, bare_base64=True)
    public = keys.load_public_key(bare_public, bare_base64=True)
    assert private.public_key().public_numbers() == public.public_numbers()
    with pytest.raises(ValueError):
        keys.load_private_key(bare_private)
    with pytest.raises(ValueError):
        keys.load_public_key(bare_public)


def test_what_is_not_an_unencrypted_rsa_key_is_refused(tmp_path: Path) -> None:
    pair = generate_key_pair()
    with pytest.raises(ValueError):  # a public key where a private one is asked
        keys.load_private_key(_write(tmp_path, "pub.pem", pair.public_pem))
    encrypted = serialization.load_pem_private_key(pair.private_pem.encode(), None).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"))
    with pytest.raises(ValueError):
        keys.load_private_key(_write(tmp_path, "enc.pem", encrypted), bare_base64=True)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    ec_pem = ec_key.private_bytes(serialization.Encoding.PEM,
                                  serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption())
    with pytest.raises(ValueError, match="not an RSA key"):
        keys.load_private_key(_write(tmp_path, "ec.pem", ec_pem))
    with pytest.raises(ValueError, match="neither PEM nor base64"):
        keys.load_public_key(_write(tmp_path, "junk.txt", "not a key!"), bare_base64=True)
    with pytest.raises(UnicodeDecodeError):  # PEM only: not even text
        keys.load_public_key(_write(tmp_path, "bin.pem", b"\xff\xfe"))
    with pytest.raises(OSError):
        keys.load_public_key(tmp_path / "missing.pem")
