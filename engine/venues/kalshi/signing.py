"""Kalshi request signing: RSA-PSS (SHA-256, MGF1-SHA-256, salt = digest length) over
``timestamp_ms + METHOD + path``, the path from the root (``/trade-api/v2/...``) without the query.

The private key is loaded once, from a PEM value or a PEM file; it never appears in a ``repr``,
a log line or an exception message.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from pydantic import SecretStr

from engine.exceptions import ConfigError

KEY_HEADER = "KALSHI-ACCESS-KEY"
TIMESTAMP_HEADER = "KALSHI-ACCESS-TIMESTAMP"
SIGNATURE_HEADER = "KALSHI-ACCESS-SIGNATURE"
#: the WebSocket handshake signs this path
WS_PATH = "/trade-api/ws/v2"

_PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.DIGEST_LENGTH)


def signature_payload(timestamp_ms: int, method: str, path: str) -> bytes:
    """What is signed: the path loses its query string, the method is upper case."""
    return f"{timestamp_ms}{method.upper()}{path.split('?', 1)[0]}".encode()


def load_private_key(pem: SecretStr | None = None, path: Path | None = None) -> rsa.RSAPrivateKey:
    """The RSA key from a PEM value or file; a clear :class:`ConfigError` otherwise (never the
    key's text)."""
    if pem is not None and pem.get_secret_value().strip():
        data = pem.get_secret_value().encode()
        source = "the kalshi private key value"
    elif path is not None:
        try:
            data = path.expanduser().read_bytes()
        except OSError as exc:
            raise ConfigError(f"kalshi private key file {path}: {exc.strerror}") from None
        source = f"kalshi private key file {path}"
    else:
        raise ConfigError("kalshi needs a private key: a PEM value or a PEM file path")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        raise ConfigError(f"{source} is not an unencrypted PEM private key") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ConfigError(f"{source} is not an RSA key")
    return key


class KalshiSigner:
    """Signs requests of one API key id. ``clock`` gives epoch milliseconds (tests inject it)."""

    def __init__(
        self,
        key_id: str,
        private_key: rsa.RSAPrivateKey,
        *,
        clock: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
    ) -> None:
        if not key_id:
            raise ConfigError("kalshi key id is empty")
        self.key_id = key_id
        self._key = private_key
        self._clock = clock

    def __repr__(self) -> str:
        return f"KalshiSigner(key_id={self.key_id!r})"

    def sign(self, timestamp_ms: int, method: str, path: str) -> str:
        raw = self._key.sign(signature_payload(timestamp_ms, method, path), _PSS, hashes.SHA256())
        return base64.b64encode(raw).decode("ascii")

    def headers(self, method: str, path: str) -> dict[str, str]:
        """The three auth headers for one request, stamped now."""
        ts = self._clock()
        return {
            KEY_HEADER: self.key_id,
            TIMESTAMP_HEADER: str(ts),
            SIGNATURE_HEADER: self.sign(ts, method, path),
        }


def verify(public_key: rsa.RSAPublicKey, signature_b64: str, payload: bytes) -> bool:
    """Whether ``signature_b64`` is a valid PSS signature of ``payload`` (the simulator's side)."""
    try:
        raw = base64.b64decode(signature_b64, validate=True)
        public_key.verify(raw, payload, _PSS, hashes.SHA256())
    except (InvalidSignature, ValueError):
        return False
    return True


def generate_key_pair() -> tuple[rsa.RSAPrivateKey, str]:
    """A fresh 2048-bit key and its PEM text (the simulator's test key pair)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")
    return key, pem
