"""Ed25519 API keys: signatures verify with the public key; bad keys fail with a clear error."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.rsa import generate_private_key
from pydantic import SecretStr

from engine.exceptions import ConfigError
from engine.venues.binance.signing import make_signer

PAYLOAD = (
    "symbol=BTCUSDT&side=SELL&type=LIMIT&timeInForce=GTC&quantity=1&price=0.2"
    "&timestamp=1668481559918"
)


def _pem(key: object, path: Path) -> Path:
    path.write_bytes(
        key.private_bytes(  # type: ignore[attr-defined]
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path


def test_an_ed25519_signature_verifies_with_the_public_key(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    signer = make_signer(
        "ed25519", api_secret=SecretStr("unused"), private_key_path=_pem(key, tmp_path / "k.pem")
    )
    signature = signer.sign(PAYLOAD)
    # raises InvalidSignature when wrong
    key.public_key().verify(base64.b64decode(signature), PAYLOAD.encode())
    assert "PRIVATE" not in repr(signer)


def test_a_key_that_is_not_ed25519_is_refused_by_name(tmp_path: Path) -> None:
    rsa = generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(ConfigError, match="not Ed25519"):
        make_signer(
            "ed25519", api_secret=SecretStr("s"), private_key_path=_pem(rsa, tmp_path / "r")
        )


def test_an_unreadable_key_file_is_a_config_error_without_key_material(tmp_path: Path) -> None:
    path = tmp_path / "garbage.pem"
    path.write_text("-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")
    with pytest.raises(ConfigError, match="not a readable") as err:
        make_signer("ed25519", api_secret=SecretStr("s"), private_key_path=path)
    assert "not a key" not in str(err.value)
