"""Settings of one account's execution coroutine."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from engine.domain.types import AccountId


@dataclass(frozen=True, slots=True, kw_only=True)
class ExecutionConfig:
    account: AccountId
    order_id_prefix: str
    consistency_window: timedelta = timedelta(seconds=3)
    resolve_interval_s: float = 1.0
    max_batch: int = 64
    #: orders on their way to the venue at once (submit + ACK write)
    max_in_flight: int = 32
