"""Transactions the database aborts as deadlock victims are retried whole; others are not."""

from __future__ import annotations

import asyncpg
import pytest

from engine.exceptions import LedgerError
from engine.ledger.statements import retry_transient


async def test_a_deadlock_victim_is_retried_until_it_commits() -> None:
    calls: list[int] = []

    @retry_transient
    async def write(value: int) -> int:
        calls.append(value)
        if len(calls) < 3:
            raise asyncpg.DeadlockDetectedError("deadlock detected")
        return value

    assert await write(7) == 7
    assert calls == [7, 7, 7]


async def test_a_transaction_aborted_every_time_fails_with_a_clear_error() -> None:
    @retry_transient
    async def write() -> None:
        raise asyncpg.SerializationError("could not serialize access")

    with pytest.raises(LedgerError, match="aborted by the database 5 times"):
        await write()


async def test_other_errors_are_not_retried() -> None:
    calls = 0

    @retry_transient
    async def write() -> None:
        nonlocal calls
        calls += 1
        raise asyncpg.UniqueViolationError("duplicate key")

    with pytest.raises(asyncpg.UniqueViolationError):
        await write()
    assert calls == 1
