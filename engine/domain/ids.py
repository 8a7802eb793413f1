"""Deterministic identifiers derived from the decision key.

A client order id must be the same after a restart for the same decision (that is what makes the
reservation idempotent) and must never depend on the clock at retry time. Binance and Kalshi both
accept up to 36 characters of ``[A-Za-z0-9_-]``; the prefix marks our orders so the reconciler can
tell them from manual ones.
"""

from __future__ import annotations

import hashlib
import re

from engine.domain.intents import DecisionKey
from engine.domain.types import ClientOrderId, DecisionId

MAX_CLIENT_ORDER_ID_LEN = 36
MAX_PREFIX_LEN = 12
_ALLOWED = re.compile(r"^[A-Za-z0-9_-]+$")
_PREFIX = re.compile(r"^[A-Za-z0-9]{1,12}$")
_VALID_PREFIXES: set[str] = set()


def validate_prefix(prefix: str) -> str:
    if prefix in _VALID_PREFIXES:  # every order checks its prefix: a set lookup, not a regex
        return prefix
    if not _PREFIX.match(prefix):
        raise ValueError(
            f"client order id prefix must be 1-{MAX_PREFIX_LEN} letters or digits, got {prefix!r}"
        )
    if len(_VALID_PREFIXES) < 1024:  # prefixes come from configs: a bound anyway
        _VALID_PREFIXES.add(prefix)
    return prefix


def _digest(key: DecisionKey, purpose: bytes) -> str:
    return hashlib.blake2b(key.canonical().encode(), digest_size=16, person=purpose).hexdigest()


def client_order_id(prefix: str, key: DecisionKey) -> ClientOrderId:
    """``<prefix>-<hash>``: at most 36 characters of ``[A-Za-z0-9_-]``."""
    validate_prefix(prefix)
    room = MAX_CLIENT_ORDER_ID_LEN - len(prefix) - 1
    coid = f"{prefix}-{_digest(key, b'tradectl-coid')[:room]}"
    assert len(coid) <= MAX_CLIENT_ORDER_ID_LEN
    assert _ALLOWED.match(coid)
    return ClientOrderId(coid)


def decision_id(key: DecisionKey) -> DecisionId:
    """Stable id of the decision row, so a replayed decision is recorded once."""
    return DecisionId(_digest(key, b"tradectl-dec"))


def is_ours(prefix: str, coid: str) -> bool:
    return coid.startswith(f"{prefix}-")
