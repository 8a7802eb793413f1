"""Request signing and the clock offset to the venue.

Binance signs the exact bytes it receives: the percent-encoded query string concatenated with the
percent-encoded request body. We therefore encode once (:func:`encode_params`), sign that string and
send that same string, so what was signed can never drift from what went on the wire.

The WebSocket API signs its ``params`` object differently: every parameter but ``signature``,
sorted by name, as ``key=value`` joined by ``&`` (:func:`ws_signature_payload`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import importlib
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

from pydantic import SecretStr

from engine.exceptions import ConfigError

#: RFC 3986 unreserved characters are the only ones left as they are; ``quote`` already keeps
#: letters, digits and ``_.-~``, so nothing else is declared safe.
_SAFE = ""


def sign_hmac(secret: str, payload: str) -> str:
    """HMAC-SHA256 of ``payload`` keyed with ``secret``, as lowercase hex (what Binance expects)."""
    return hmac.new(secret.encode("utf-8"), payload.encode("utf-8"), hashlib.sha256).hexdigest()


def percent_encode(value: str) -> str:
    """UTF-8 percent-encoding of everything but RFC 3986 unreserved characters."""
    return quote(value, safe=_SAFE, encoding="utf-8")


def encode_params(params: Iterable[tuple[str, str]]) -> str:
    """``k=v&k=v`` with names and values percent-encoded, in the order given."""
    return "&".join(f"{percent_encode(k)}={percent_encode(v)}" for k, v in params)


def ws_signature_payload(params: Mapping[str, str]) -> str:
    """The string a WebSocket API request signs: all params but ``signature``, sorted by name."""
    return encode_params(sorted((k, v) for k, v in params.items() if k != "signature"))


class Signer(Protocol):
    """Turns a payload into the ``signature`` parameter's value."""

    def sign(self, payload: str) -> str: ...


class HmacSigner:
    """HMAC-SHA256 with the account's secret key."""

    __slots__ = ("_secret",)

    def __init__(self, secret: SecretStr) -> None:
        if not secret.get_secret_value():
            raise ConfigError("binance api_secret is empty: set the HMAC secret key of the API key")
        self._secret = secret

    def sign(self, payload: str) -> str:
        return sign_hmac(self._secret.get_secret_value(), payload)

    def __repr__(self) -> str:
        return "HmacSigner(secret=**********)"


class Ed25519Signer:
    """Ed25519 with a PKCS#8 PEM private key; the signature is base64 (case-sensitive)."""

    __slots__ = ("_key",)

    def __init__(self, private_key_path: Path, password: SecretStr | None = None) -> None:
        try:
            serialization: Any = importlib.import_module(
                "cryptography.hazmat.primitives.serialization"
            )
            ed25519: Any = importlib.import_module(
                "cryptography.hazmat.primitives.asymmetric.ed25519"
            )
        except ImportError as exc:
            raise ConfigError(
                "binance key_type='ed25519' needs the 'cryptography' package, which is not "
                "installed; add it to the project dependencies or use key_type='hmac'"
            ) from exc
        try:
            pem = private_key_path.read_bytes()
        except OSError as exc:
            raise ConfigError(
                f"binance private_key_path {str(private_key_path)!r} cannot be read: {exc.strerror}"
            ) from None
        try:
            key = serialization.load_pem_private_key(
                pem, password=password.get_secret_value().encode() if password else None
            )
        except (ValueError, TypeError):
            # The library's message may quote key material; keep ours generic.
            raise ConfigError(
                f"binance private_key_path {str(private_key_path)!r} is not a readable "
                "PKCS#8 PEM private key (wrong format or password)"
            ) from None
        if not isinstance(key, ed25519.Ed25519PrivateKey):
            raise ConfigError(
                f"binance private_key_path {str(private_key_path)!r} holds a key that is not "
                "Ed25519"
            )
        self._key = key

    def sign(self, payload: str) -> str:
        raw: bytes = self._key.sign(payload.encode("utf-8"))
        return base64.b64encode(raw).decode("ascii")

    def __repr__(self) -> str:
        return "Ed25519Signer(key=**********)"


def make_signer(key_type: str, *, api_secret: SecretStr, private_key_path: Path | None) -> Signer:
    """The signer for a configured key type; a :class:`ConfigError` names what is missing."""
    if key_type == "hmac":
        return HmacSigner(api_secret)
    if key_type == "ed25519":
        if private_key_path is None:
            raise ConfigError("binance key_type='ed25519' requires private_key_path")
        return Ed25519Signer(private_key_path)
    raise ConfigError(f"binance key_type must be 'hmac' or 'ed25519', got {key_type!r}")


class ServerClock:
    """Our estimate of the venue's clock: local wall clock plus a measured offset.

    The offset is measured from a server-time round trip, taking the midpoint of the local send
    and receive times as the moment the server read its clock.
    """

    __slots__ = ("_offset_ms", "_synced", "_wall")

    def __init__(self, wall: Callable[[], float] = time.time) -> None:
        self._wall = wall
        self._offset_ms = 0
        self._synced = False

    @property
    def offset_ms(self) -> int:
        return self._offset_ms

    @property
    def synced(self) -> bool:
        return self._synced

    def local_ms(self) -> int:
        return int(self._wall() * 1000)

    def now_ms(self) -> int:
        """The venue's current time in milliseconds, as far as we know it."""
        return self.local_ms() + self._offset_ms

    def update(self, server_ms: int, sent_local_ms: int, received_local_ms: int) -> None:
        midpoint = (sent_local_ms + received_local_ms) // 2
        self._offset_ms = server_ms - midpoint
        self._synced = True
