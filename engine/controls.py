"""Single writer per account: the lease with epoch fencing.

The lease row is what the reserve transaction fences on: a process that lost it (another
engine took over after it expired) can no longer reserve, whatever it believes.
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from datetime import timedelta

import structlog

from engine.exceptions import DatabaseUnavailable, LeaseLost
from engine.ledger.store import Ledger

log = structlog.get_logger("tradectl.controls")


def make_holder() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class LeaseKeeper:
    def __init__(self, ledger: Ledger, *, ttl: timedelta, holder: str | None = None) -> None:
        self.ledger = ledger
        self.ttl = ttl
        self._holder = holder or make_holder()
        self._epoch: int | None = None
        self._lost = False

    @property
    def holder(self) -> str:
        return self._holder

    @property
    def epoch(self) -> int:
        if self._epoch is None:
            raise LeaseLost("the lease has not been acquired")
        return self._epoch

    @property
    def lost(self) -> bool:
        return self._lost

    async def acquire(self) -> int:
        """Take the lease, waiting as a standby while another live engine holds it."""
        announced = False
        while True:
            epoch = await self.ledger.acquire_lease(self._holder, self.ttl)
            if epoch is not None:
                self._epoch = epoch
                self._lost = False
                log.info("lease acquired", holder=self._holder, epoch=epoch)
                return epoch
            if not announced:
                log.warning(
                    "standby: another engine holds this account's lease; "
                    "taking over when it expires",
                    ttl_s=self.ttl.total_seconds(),
                )
                announced = True
            await asyncio.sleep(self.ttl.total_seconds() / 3)

    async def keep(self) -> None:
        """Renew every ttl/3 until cancelled; return (lost) when renewal is refused."""
        while True:
            await asyncio.sleep(self.ttl.total_seconds() / 3)
            try:
                await self.ledger.renew_lease(self._holder, self.epoch, self.ttl)
            except LeaseLost as exc:
                self._lost = True
                log.error("lease lost: stopping new orders on this account", error=str(exc))
                return
            except DatabaseUnavailable as exc:
                # Keep trying: if the database stays away past the TTL, the reserve fence
                # refuses this process anyway, so nothing unsafe can follow from waiting.
                log.warning("could not renew the lease; retrying", error=str(exc))

    async def release(self) -> None:
        if self._epoch is not None and not self._lost:
            await self.ledger.release_lease(self._holder, self._epoch)
