"""Waking the engine that owns an account when an operator asks something of it.

Every operator write (a control set or cleared, an operation requested or dropped) sends a
``NOTIFY`` on the account's channel in its own transaction, so it is delivered at commit and
only if the write committed; a control of the global scope notifies the global channel, which
every engine listens on. The owning engine ``LISTEN``s (engine/operator_listener.py) and
refreshes at once; its poll stays as the fallback for a notification lost while it was not
listening.
"""

from __future__ import annotations

import hashlib

import asyncpg

from engine.ledger.statements import Statement

#: channels every engine listens on: controls of the global scope
GLOBAL_CHANNEL = "tradectl_operator"

SQL_NOTIFY = Statement("SELECT pg_notify(:channel, :payload)")

#: Postgres truncates identifiers past 63 bytes; pg_notify refuses longer channel names
_MAX_CHANNEL = 63


def operator_channel(account: str | None) -> str:
    """The channel of one account (``None``: the global one). Long or non-ASCII account ids
    get a digest instead, so every account has a channel name Postgres accepts."""
    if account is None:
        return GLOBAL_CHANNEL
    name = f"{GLOBAL_CHANNEL}_{account}"
    if len(name.encode()) <= _MAX_CHANNEL and account.isascii():
        return name
    return f"{GLOBAL_CHANNEL}_{hashlib.sha256(account.encode()).hexdigest()[:40]}"


async def notify_operator(db: asyncpg.Connection, account: str | None, what: str) -> None:
    """NOTIFY the account's owner (in the caller's transaction: sent at its commit)."""
    await SQL_NOTIFY.run(db, {"channel": operator_channel(account), "payload": what})
