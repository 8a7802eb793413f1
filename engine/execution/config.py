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
    #: how long after it was signed a request may still be accepted by the venue (Binance:
    #: ``recvWindow``; a request delayed in a queue or a buffer lands that late): an order the
    #: venue cannot find is resent only once its last send can no longer arrive, or the late
    #: original and the resend would both be orders
    late_accept: timedelta = timedelta(0)
    resolve_interval_s: float = 1.0
    max_batch: int = 64
    #: orders on their way to the venue at once (submit + ACK write)
    max_in_flight: int = 32
