"""Orders the core refuses after the shell's own checks; the shell words the refusal."""

from __future__ import annotations

from decimal import Decimal
from enum import Enum


class RefusalKind(Enum):
    DUPLICATE = "DUPLICATE"
    INSUFFICIENT_BALANCE = "INSUFFICIENT_BALANCE"


class Refused(Exception):
    def __init__(
        self,
        kind: RefusalKind,
        *,
        asset: str | None = None,
        needed: Decimal | None = None,
        free: Decimal | None = None,
    ) -> None:
        super().__init__(kind.value)
        self.kind = kind
        self.asset = asset
        self.needed = needed
        self.free = free
