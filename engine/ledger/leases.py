"""The account's lease: one writer per account, fenced by its epoch."""

from __future__ import annotations

from datetime import timedelta

from engine.exceptions import LeaseLost
from engine.ledger.part import LedgerPart
from engine.ledger.records import LeaseInfo
from engine.ledger.statements import Statement

# The row is locked FOR UPDATE before the epoch is raised: that waits for every fenced write of
# the old holder in flight (they hold it FOR KEY SHARE, which the upsert's own no-key update
# lock would not wait for), so none of them commits under the old epoch after the takeover.
# Only a lease that may be taken is locked so: a standby's refused attempt never holds up the
# owner's writes.
SQL_ACQUIRE_LEASE = Statement(
    """
    WITH held AS (
        SELECT 1 FROM leases
        WHERE account = :account AND (expires_at <= :now OR holder = :holder)
        FOR UPDATE
    )
    INSERT INTO leases AS l (account, holder, epoch, heartbeat_at, expires_at)
    SELECT :account, :holder, 1, :now, :expires_at FROM (SELECT count(*) FROM held) AS h
    ON CONFLICT (account) DO UPDATE
        SET holder = EXCLUDED.holder, epoch = l.epoch + 1,
            heartbeat_at = EXCLUDED.heartbeat_at, expires_at = EXCLUDED.expires_at
        WHERE l.expires_at <= EXCLUDED.heartbeat_at OR l.holder = EXCLUDED.holder
    RETURNING epoch
    """
)
SQL_RENEW_LEASE = Statement(
    """
    UPDATE leases SET heartbeat_at = :now, expires_at = :expires_at
    WHERE account = :account AND holder = :holder AND epoch = :epoch
    RETURNING epoch
    """
)
SQL_RELEASE_LEASE = Statement(
    """
    UPDATE leases SET expires_at = :now
    WHERE account = :account AND holder = :holder AND epoch = :epoch AND expires_at > :now
    """
)
# A standby's cheap question (no lock): may it try to take the lease now?
SQL_LEASE_FREE = Statement(
    """
    SELECT NOT EXISTS (
        SELECT 1 FROM leases WHERE account = :account AND expires_at > :now AND holder <> :holder
    )
    """
)
SQL_LEASE = Statement(
    "SELECT holder, epoch, heartbeat_at, expires_at FROM leases WHERE account = :account"
)


def lease_lost(account: str, holder: str, epoch: int) -> LeaseLost:
    return LeaseLost(
        f"account {account}: {holder} no longer holds lease epoch {epoch} (it expired "
        "or another process took it over); stop trading this account and restart to "
        "re-acquire the lease"
    )


class Leases(LedgerPart):
    """``ledger.leases``: take, keep and give back the account's lease."""

    async def acquire(self, holder: str, ttl: timedelta) -> int | None:
        """Take the account's lease: the new epoch, or ``None`` while another holder's lease is
        unexpired. Taking over (an expired lease, or one's own again) increments the epoch."""
        now = self._clock()
        async with self._connection() as db:
            epoch = (
                await SQL_ACQUIRE_LEASE.run(
                    db,
                    {
                        "account": self.account,
                        "holder": holder,
                        "now": now,
                        "expires_at": now + ttl,
                    },
                )
            ).scalar()
        return None if epoch is None else int(epoch)

    async def renew(self, holder: str, epoch: int, ttl: timedelta) -> None:
        """Extend the lease; :class:`LeaseLost` when another process has taken it over."""
        now = self._clock()
        async with self._connection() as db:
            renewed = (
                await SQL_RENEW_LEASE.run(
                    db,
                    {
                        "account": self.account,
                        "holder": holder,
                        "epoch": epoch,
                        "now": now,
                        "expires_at": now + ttl,
                    },
                )
            ).first()
        if renewed is None:
            raise lease_lost(self.account, holder, epoch)

    async def release(self, holder: str, epoch: int) -> None:
        """Let another process take over at once (the next epoch is still incremented)."""
        now = self._clock()
        async with self._connection() as db:
            await SQL_RELEASE_LEASE.run(
                db,
                {"account": self.account, "holder": holder, "epoch": epoch, "now": now},
            )

    async def free_for(self, holder: str) -> bool:
        """Whether ``holder`` could take the lease now (none, expired, released, or its own)."""
        async with self._connection() as db:
            return bool(
                (
                    await SQL_LEASE_FREE.run(
                        db, {"account": self.account, "holder": holder, "now": self._clock()}
                    )
                ).scalar()
            )

    async def info(self) -> LeaseInfo | None:
        async with self._connection() as db:
            row = (await SQL_LEASE.run(db, {"account": self.account})).first()
        if row is None:
            return None
        return LeaseInfo(
            holder=row["holder"],
            epoch=row["epoch"],
            heartbeat_at=row["heartbeat_at"],
            expires_at=row["expires_at"],
        )
