"""Outage handling without a database: what counts as a lost connection, the health state,
guarded tasks, the recovery loop and the throttled log."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest
from sqlalchemy import exc as sa_exc

from engine.exceptions import DatabaseUnavailable, LeaseLost
from engine.ledger.db import is_connection_error
from engine.outage import LedgerHealth, OutageRecovery, ThrottledLog, guarded, is_outage
from tests.helpers import eventually


@pytest.mark.parametrize(
    "exc",
    [
        asyncpg.InterfaceError("cannot call Connection.fetch(): connection is closed"),
        asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
        ConnectionRefusedError(111, "Connection refused"),
        FileNotFoundError(2, "No such file or directory"),
        asyncpg.AdminShutdownError("terminating connection due to administrator command"),
        asyncpg.CannotConnectNowError("the database system is starting up"),
    ],
)
def test_lost_connections_are_recognised(exc: BaseException) -> None:
    assert is_connection_error(exc)
    wrapped = sa_exc.DBAPIError("SELECT 1", None, exc)  # type: ignore[arg-type]
    assert is_connection_error(wrapped)


def test_other_errors_are_not_outages() -> None:
    assert not is_connection_error(asyncpg.InterfaceError("another operation is in progress"))
    assert not is_connection_error(asyncpg.UniqueViolationError("duplicate key"))
    assert not is_outage(ValueError("a bug"))
    assert is_outage(ExceptionGroup("g", [DatabaseUnavailable("gone")]))
    assert not is_outage(ExceptionGroup("g", [DatabaseUnavailable("gone"), ValueError("bug")]))


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Recorder:
    def __init__(self) -> None:
        self.lines: list[tuple[str, dict[str, Any]]] = []

    def warning(self, event: str, **fields: Any) -> None:
        self.lines.append((event, fields))


def test_throttled_log_writes_once_per_window_and_counts_the_rest() -> None:
    clock, out = Clock(), Recorder()
    throttled = ThrottledLog(out, every_s=10, monotonic=clock)
    assert throttled.warning("k", "down")
    for _ in range(50):
        clock.now += 0.1
        assert not throttled.warning("k", "down")
    clock.now = 10.5
    assert throttled.warning("k", "down")
    assert out.lines == [("down", {}), ("down", {"repeated": 50})]


async def test_health_goes_down_once_and_up_only_when_restored() -> None:
    health = LedgerHealth()
    assert not health.available  # not before startup
    health.started()
    assert health.available
    health.unavailable(DatabaseUnavailable("gone"), where="a")
    health.unavailable(DatabaseUnavailable("gone"), where="b")
    assert not health.available
    assert health.outages == 1
    assert health.failures == 2
    health.restored()
    assert health.available
    assert health.down_for_s is None


async def test_a_guarded_task_is_restarted_after_an_outage_but_not_after_a_bug() -> None:
    health = LedgerHealth()
    health.started()
    runs = 0

    async def flaky() -> None:
        nonlocal runs
        runs += 1
        if runs < 3:
            raise DatabaseUnavailable("gone")

    await guarded("t", flaky, health, retry_min_s=0.001, retry_max_s=0.001)
    assert runs == 3
    assert not health.available

    async def buggy() -> None:
        raise ValueError("a bug")

    with pytest.raises(ValueError, match="a bug"):
        await guarded("t", buggy, health, retry_min_s=0.001)


async def test_recovery_marks_the_ledger_available_only_after_a_clean_catch_up() -> None:
    health = LedgerHealth()
    health.started()
    attempts = 0

    async def catch_up() -> None:
        nonlocal attempts
        attempts += 1
        if attempts < 3:
            raise DatabaseUnavailable("still gone")

    recovery = OutageRecovery(health, catch_up, retry_min_s=0.001, retry_max_s=0.001)
    task = asyncio.create_task(recovery.run())
    try:
        health.unavailable(DatabaseUnavailable("gone"), where="test")
        await eventually(lambda: health.available, timeout=5)
        assert attempts == 3
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_recovery_steps_down_when_the_lease_was_taken_over() -> None:
    health = LedgerHealth()
    health.started()

    async def catch_up() -> None:
        raise LeaseLost("taken over")

    recovery = OutageRecovery(health, catch_up, retry_min_s=0.001)
    health.unavailable(DatabaseUnavailable("gone"), where="test")
    with pytest.raises(LeaseLost):
        await recovery.run()
    assert not health.available
