"""The epoch fence on every write of an account's execution path, not only reservations.

A process that lost the account's lease (another engine took it over after the TTL, or was
handed it) must not change anything the new owner reconciles from: no order transition, no
venue answer or fill, no claimed operator request, no control. So each such write carries the
holder and epoch it believes it holds, and checks them *in the same statement* (or, for the
few multi-statement writes, the same transaction): the ``fence`` CTE below.

Why ``FOR KEY SHARE`` on the lease row: the fenced writes of the owner do not contend with one
another nor with its reservations (which lock it so too) and renewals (which update
``heartbeat_at``: a no-key update), while a takeover, which locks the row ``FOR UPDATE``
before it raises the epoch (:data:`engine.ledger.leases.SQL_ACQUIRE_LEASE`), waits until every
fenced write in flight has committed. A fenced write therefore either commits before the new
epoch exists, or sees the new epoch (Postgres re-checks a locked row's newest version) and
writes nothing.

A ledger nobody fenced (``Fence.epoch is None``: the CLI's own writes, tests, tools) writes
unfenced; the engine fences its ledger as soon as it holds the lease.
"""

from __future__ import annotations

from collections.abc import Callable

import asyncpg

from engine.exceptions import LeaseLost
from engine.ledger.statements import Statement

#: The CTEs a fenced statement starts with (``WITH {FENCE_CTES}, ...``); its writes are
#: conditioned on ``(SELECT ok FROM fence)``. Parameters: :account, :fence_holder, :fence_epoch.
FENCE_CTES = """
    fence_lease AS (
        SELECT 1 FROM leases
        WHERE account = :account AND holder = CAST(:fence_holder AS text)
          AND epoch = CAST(:fence_epoch AS bigint)
        FOR KEY SHARE
    ),
    fence AS (
        SELECT (CAST(:fence_epoch AS bigint) IS NULL OR EXISTS (SELECT 1 FROM fence_lease)) AS ok
    )"""

#: The check alone, first statement of a fenced transaction: its lock lasts until the commit.
SQL_FENCE_CHECK = Statement(f"WITH {FENCE_CTES} SELECT ok FROM fence")


class Fence:
    """The holder and epoch one account's writes are fenced on (shared by a ledger's parts).

    ``on_refused`` is told when a write was refused: the lease keeper marks the lease lost,
    which stops the account's execution (engine/controls.py)."""

    def __init__(self, account: str) -> None:
        self.account = account
        self.holder: str | None = None
        self.epoch: int | None = None
        self.on_refused: Callable[[LeaseLost], None] | None = None

    def hold(self, holder: str, epoch: int) -> None:
        self.holder, self.epoch = holder, epoch

    @property
    def params(self) -> dict[str, object]:
        return {"fence_holder": self.holder, "fence_epoch": self.epoch}

    def refused(self, what: str) -> LeaseLost:
        """The error a refused write raises (after telling ``on_refused``)."""
        exc = LeaseLost(
            f"account {self.account}: {what} refused: {self.holder} no longer holds lease "
            f"epoch {self.epoch} (another process took the account over); nothing of it was "
            "written, and this process stops trading the account"
        )
        if self.on_refused is not None:
            self.on_refused(exc)
        return exc

    async def check(self, db: asyncpg.Connection, what: str) -> None:
        """Fence a transaction: call first thing inside it (the lock holds until commit)."""
        if self.epoch is None:
            return
        ok = (await SQL_FENCE_CHECK.run(db, {"account": self.account, **self.params})).scalar()
        if not ok:
            raise self.refused(what)
