"""``accounts`` (configuration the owner writes, engines read) and ``engines`` (the pool's
heartbeats): the SQL of engine/accounts.py and engine/pool.py.

Not per account like the other ledger parts: a pool reads every account's row and every
engine's heartbeat, and the leases of all of them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine

from engine.accounts import AccountConfig
from engine.config import VenueKind
from engine.domain.types import AccountId, ControlScope, VenueName, utc_now
from engine.exceptions import ConfigError
from engine.ledger.journal import record_action
from engine.ledger.part import LedgerPart
from engine.ledger.records import Operator
from engine.ledger.statements import Statement, dumps, from_json

SQL_ACCOUNTS = Statement(
    """
    SELECT account, venue, environment, credentials, strategies_file, settings, limits,
           enabled, created_at, updated_at
    FROM accounts ORDER BY account
    """
)
SQL_ADD_ACCOUNT = Statement(
    """
    INSERT INTO accounts (account, venue, environment, credentials, strategies_file, settings,
                          limits, enabled, created_at, updated_at)
    VALUES (:account, :venue, :environment, CAST(:credentials AS jsonb), :strategies_file,
            CAST(:settings AS jsonb), CAST(:limits AS jsonb), :enabled, :now, :now)
    ON CONFLICT (account) DO NOTHING
    RETURNING account
    """
)
SQL_SET_ENABLED = Statement(
    """
    UPDATE accounts SET enabled = :enabled, updated_at = :now
    WHERE account = :account AND enabled <> :enabled
    RETURNING account
    """
)
SQL_ACCOUNT_EXISTS = Statement("SELECT enabled FROM accounts WHERE account = :account")
SQL_HEARTBEAT = Statement(
    """
    INSERT INTO engines AS e (holder, started_at, heartbeat_at, expires_at, max_accounts)
    VALUES (:holder, :now, :now, :expires_at, :max_accounts)
    ON CONFLICT (holder) DO UPDATE
        SET heartbeat_at = EXCLUDED.heartbeat_at, expires_at = EXCLUDED.expires_at,
            max_accounts = EXCLUDED.max_accounts
    """
)
SQL_LIVE_ENGINES = Statement(
    "SELECT holder, max_accounts FROM engines WHERE expires_at > :now ORDER BY holder"
)
SQL_GONE = Statement(
    """
    UPDATE engines SET expires_at = :now WHERE holder = :holder AND expires_at > :now
    """
)
# Who holds which account now (an expired lease is free to take)
SQL_LEASES = Statement(
    "SELECT account, holder, epoch, expires_at FROM leases WHERE expires_at > :now"
)


def _config(m: asyncpg.Record) -> AccountConfig:
    strategies = m["strategies_file"]
    return AccountConfig(
        account=m["account"],
        venue=VenueKind(m["venue"]),
        environment=m["environment"],
        credentials=from_json(m["credentials"]) or {},
        strategies_file=None if strategies is None else Path(strategies),
        settings=from_json(m["settings"]) or {},
        limits=from_json(m["limits"]) or {},
        enabled=m["enabled"],
        created_at=m["created_at"],
        updated_at=m["updated_at"],
    )


class Accounts(LedgerPart):
    """Every account's configuration row, and the pool's view of engines and leases."""

    def __init__(self, engine: AsyncEngine, *, clock: Callable[[], datetime] = utc_now) -> None:
        # no one account: the rows of all of them (the journal rows name theirs)
        super().__init__(engine, account=AccountId("*"), venue=VenueName("*"), clock=clock)

    async def all(self) -> list[AccountConfig]:
        async with self._connection() as db:
            return [_config(m) for m in await SQL_ACCOUNTS.run(db)]

    async def add(self, config: AccountConfig, operator: Operator) -> None:
        """Insert the row and its journal entry together; ConfigError if the account exists."""
        now = self._clock()
        async with self._tx() as db:
            added = await SQL_ADD_ACCOUNT.run(
                db,
                {
                    "account": config.account,
                    "venue": config.venue.value,
                    "environment": config.environment,
                    "credentials": dumps(dict(config.credentials)),
                    "strategies_file": (
                        None if config.strategies_file is None else str(config.strategies_file)
                    ),
                    "settings": dumps(dict(config.settings)),
                    "limits": dumps(dict(config.limits)),
                    "enabled": config.enabled,
                    "now": now,
                },
            )
            if not added:
                raise ConfigError(f"account {config.account!r} exists already")
            await record_action(
                db,
                account=config.account,
                now=now,
                operator=operator,
                action="account_add",
                scope=ControlScope.ACCOUNT,
                target=config.account,
                outcome="added" + ("" if config.enabled else " (disabled)"),
                details={
                    "venue": config.venue.value,
                    "environment": config.environment,
                    "credentials": dict(config.credentials),
                },
            )

    async def set_enabled(self, account: str, enabled: bool, operator: Operator) -> str:
        """Enable or disable; the outcome in words (also journalled)."""
        now = self._clock()
        async with self._tx() as db:
            exists = await SQL_ACCOUNT_EXISTS.run(db, {"account": account})
            if not exists:
                raise ConfigError(f"no account {account!r} (`tradectl accounts list`)")
            changed = await SQL_SET_ENABLED.run(
                db, {"account": account, "enabled": enabled, "now": now}
            )
            word = "enabled" if enabled else "disabled"
            outcome = word if changed else f"was {word} already"
            await record_action(
                db,
                account=account,
                now=now,
                operator=operator,
                action="account_enable" if enabled else "account_disable",
                scope=ControlScope.ACCOUNT,
                target=account,
                outcome=outcome,
            )
        return outcome

    # -- the pool ---------------------------------------------------------------------------

    async def heartbeat(self, holder: str, ttl: timedelta, max_accounts: int) -> None:
        now = self._clock()
        async with self._connection() as db:
            await SQL_HEARTBEAT.run(
                db,
                {
                    "holder": holder,
                    "now": now,
                    "expires_at": now + ttl,
                    "max_accounts": max_accounts,
                },
            )

    async def leave(self, holder: str) -> None:
        async with self._connection() as db:
            await SQL_GONE.run(db, {"holder": holder, "now": self._clock()})

    async def live_engines(self) -> list[tuple[str, int]]:
        async with self._connection() as db:
            rows = await SQL_LIVE_ENGINES.run(db, {"now": self._clock()})
        return [(r["holder"], r["max_accounts"]) for r in rows]

    async def held(self) -> dict[str, str]:
        """Account → holder of every unexpired lease."""
        async with self._connection() as db:
            rows = await SQL_LEASES.run(db, {"now": self._clock()})
        return {r["account"]: r["holder"] for r in rows}


def enabled_of(configs: Sequence[AccountConfig]) -> list[AccountConfig]:
    return [c for c in configs if c.enabled]
