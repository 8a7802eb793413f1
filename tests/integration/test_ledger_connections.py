"""The ledger's own asyncpg pool (engine/ledger/connections.py): bounded by the engine's
``pool_size``, closed with the engine, never handing on a connection in a transaction or one the
server dropped."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from datetime import timedelta

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import URL

from engine.domain.types import AccountId, ClientOrderId, VenueName
from engine.exceptions import DatabaseUnavailable
from engine.ledger import connections as connections_module
from engine.ledger.connections import ledger_connections
from engine.ledger.controls import CONTROLS_LOCK_KEY
from engine.ledger.db import asyncpg_connect_kwargs, is_connection_error, make_engine
from engine.ledger.ledger import Ledger
from tests.helpers import eventually
from tests.integration.test_ledger import HOLDER, Clock, reservation

ACCOUNT = AccountId("acct-1")
VENUE = VenueName("binance")


async def _is_true(coro: Awaitable[object]) -> bool:
    return bool(await coro)


async def _backends(database_url: URL) -> int:
    """The engine's connections to this test's database (``application_name`` tradectl)."""
    conn = await asyncpg.connect(**asyncpg_connect_kwargs(database_url))  # type: ignore[arg-type]
    try:
        return int(
            await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = $1 AND application_name = 'tradectl'",
                database_url.database,
            )
        )
    finally:
        await conn.close()


async def _none_left(database_url: URL) -> bool:
    return await _backends(database_url) == 0


async def test_the_ledger_and_core_readers_together_stay_within_the_engines_pool_size(
    database_url: URL,
) -> None:
    engine = make_engine(database_url, pool_size=4)
    try:
        ledger = Ledger(engine, account=ACCOUNT, venue=VENUE)
        found = await asyncio.gather(
            *(ledger.orders.get(ClientOrderId(f"nope-{i}")) for i in range(40))
        )
        assert found == [None] * 40
        assert await _backends(database_url) == 2  # the ledger's share: 4 - 2 for SQLAlchemy

        async def core_read() -> int:
            async with engine.connect() as conn:
                await conn.execute(text("SELECT pg_sleep(0.05)"))
                return await _backends(database_url)

        during = await asyncio.gather(*(core_read() for _ in range(6)))
        assert max(during) == 4
    finally:
        await engine.dispose()


async def test_disposing_the_engine_closes_the_ledgers_connections_and_it_reconnects_on_use(
    database_url: URL,
) -> None:
    engine = make_engine(database_url)
    try:
        ledger = Ledger(engine, account=ACCOUNT, venue=VENUE)
        assert await ledger.orders.get(ClientOrderId("nope")) is None
        assert await _backends(database_url) == 1
        await engine.dispose()
        await eventually(
            lambda: _none_left(database_url), message="disposed connections stayed open"
        )
        # as SQLAlchemy's own pool: the engine is usable again after dispose
        assert await ledger.orders.get(ClientOrderId("nope")) is None
    finally:
        await engine.dispose()
    await eventually(lambda: _none_left(database_url), message="connections left open")


async def test_a_connection_still_in_a_transaction_is_closed_not_handed_on(
    database_url: URL,
) -> None:
    engine = make_engine(database_url, pool_size=2)  # one ledger connection
    try:
        connections = ledger_connections(engine)
        async with connections.connection() as db:
            first = await db.fetchval("SELECT pg_backend_pid()")
        async with connections.connection() as db:
            # released without a reset round trip, and reused
            assert await db.fetchval("SELECT pg_backend_pid()") == first
            await db.execute("BEGIN")  # as a commit cancelled half way would leave it
        async with connections.connection() as db:
            assert not db.is_in_transaction()
            assert await db.fetchval("SELECT pg_backend_pid()") != first
    finally:
        await engine.dispose()


async def test_a_connection_that_failed_with_a_connection_error_is_dropped_for_a_new_one(
    database_url: URL,
) -> None:
    engine = make_engine(database_url, pool_size=2)  # one ledger connection
    try:
        connections = ledger_connections(engine)
        killer = await asyncpg.connect(**asyncpg_connect_kwargs(database_url))  # type: ignore[arg-type]
        pid = 0

        async def killed_mid_statement() -> None:
            nonlocal pid
            async with connections.connection() as db:
                pid = await db.fetchval("SELECT pg_backend_pid()")
                sleeping = asyncio.create_task(db.execute("SELECT pg_sleep(30)"))
                await eventually(
                    lambda: _is_true(
                        killer.fetchval(
                            "SELECT state = 'active' FROM pg_stat_activity WHERE pid = $1", pid
                        )
                    ),
                    message="the statement never started",
                )
                assert await killer.fetchval("SELECT pg_terminate_backend($1)", pid)
                await sleeping

        try:
            with pytest.raises(
                (asyncpg.AdminShutdownError, asyncpg.ConnectionDoesNotExistError)
            ) as info:
                await killed_mid_statement()
        finally:
            await killer.close()
        assert is_connection_error(info.value)
        ledger = Ledger(engine, account=ACCOUNT, venue=VENUE)
        assert await ledger.orders.get(ClientOrderId("nope")) is None
        async with connections.connection() as db:
            assert await db.fetchval("SELECT pg_backend_pid()") != pid
    finally:
        await engine.dispose()


async def test_a_reservation_the_client_gives_up_on_is_rolled_back_by_the_server(
    database_url: URL, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The one-statement reservation commits on its own. A client that gives up on it (its
    ``command_timeout``) closes the connection, but a backend waiting for a lock notices only
    later and would commit what the engine dropped as never reserved: the server's
    ``statement_timeout``, shorter, ends it first, rolled back."""
    monkeypatch.setitem(connections_module.CONNECT_ARGS, "command_timeout", 1)
    engine = make_engine(database_url, pool_size=2)  # one ledger connection
    blocker = await asyncpg.connect(**asyncpg_connect_kwargs(database_url))  # type: ignore[arg-type]
    try:
        ledger = Ledger(engine, account=ACCOUNT, venue=VENUE, clock=Clock())
        epoch = await ledger.leases.acquire(HOLDER, timedelta(seconds=30))
        assert epoch is not None
        tx = blocker.transaction()
        await tx.start()
        # an operator's control being set holds the lock (or anything slow: an I/O stall)
        await blocker.execute("SELECT pg_advisory_xact_lock($1)", CONTROLS_LOCK_KEY)
        async with ledger_connections(engine).connection() as db:
            pid = await db.fetchval("SELECT pg_backend_pid()")
        with pytest.raises(DatabaseUnavailable, match="statement timeout"):
            await ledger.orders.reserve([reservation(1)], holder=HOLDER, epoch=epoch)
        async with ledger_connections(engine).connection() as db:
            # a cancelled statement leaves the connection sound: kept, not closed
            assert await db.fetchval("SELECT pg_backend_pid()") == pid
        await tx.commit()  # the lock is free: a backend still waiting would reserve now

        async def nobody_waits() -> bool:
            return not await blocker.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 "
                "AND pid <> pg_backend_pid() AND query LIKE '%reservation_gate(%' "
                "AND state <> 'idle'",
                database_url.database,
            )

        await eventually(nobody_waits, message="the reservation statement never ended")
        assert await blocker.fetchval("SELECT count(*) FROM orders") == 0
        assert await blocker.fetchval("SELECT count(*) FROM decisions") == 0
    finally:
        await blocker.close()
        await engine.dispose()


async def _ledger_settings(database_url: URL) -> tuple[str, str, str, str]:
    engine = make_engine(database_url)
    try:
        async with ledger_connections(engine).connection() as db:
            row = await db.fetchrow(
                "SELECT current_setting('transaction_isolation'), "
                "current_setting('statement_timeout'), current_setting('TimeZone'), "
                "current_setting('random_page_cost')"
            )
            assert row is not None
            return row[0], row[1], row[2], row[3]
    finally:
        await engine.dispose()


async def test_the_ledgers_connections_read_committed_where_the_database_defaults_otherwise(
    database_url: URL,
) -> None:
    """The reservation must see controls committed while it waited for their lock, which
    needs READ COMMITTED whatever the server's or the role's default; its statement timeout
    is below the client's, and a stricter one of the server's is kept, as is a lower
    random_page_cost."""
    assert await _ledger_settings(database_url) == ("read committed", "24s", "UTC", "1.1")
    admin = await asyncpg.connect(**asyncpg_connect_kwargs(database_url))  # type: ignore[arg-type]
    database = f'"{database_url.database}"'
    try:
        await admin.execute(
            f"ALTER DATABASE {database} SET default_transaction_isolation = 'repeatable read'"
        )
        await admin.execute(f"ALTER DATABASE {database} SET statement_timeout = '5s'")
        await admin.execute(f"ALTER DATABASE {database} SET TimeZone = 'Asia/Kolkata'")
        await admin.execute(f"ALTER DATABASE {database} SET random_page_cost = 1.0")
        assert await _ledger_settings(database_url) == ("read committed", "5s", "UTC", "1")
    finally:
        await admin.execute(f"ALTER DATABASE {database} RESET ALL")
        await admin.close()


async def test_an_unreachable_database_fails_the_checkout_as_database_unavailable() -> None:
    engine = make_engine("postgresql://tradectl:s3cret-pw@127.0.0.1:1/ledger")
    try:
        ledger = Ledger(engine, account=ACCOUNT, venue=VENUE)
        for _ in range(2):  # the failed checkout left the pool usable, failing the same way
            with pytest.raises(DatabaseUnavailable) as info:
                await ledger.orders.get(ClientOrderId("x"))
            assert "s3cret-pw" not in str(info.value)
    finally:
        await engine.dispose()


async def test_a_checkout_cancelled_mid_statement_in_a_transaction_leaves_the_pool_usable(
    database_url: URL,
) -> None:
    engine = make_engine(database_url, pool_size=2)  # one ledger connection
    try:
        connections = ledger_connections(engine)
        started = asyncio.Event()

        async def stuck() -> None:
            async with connections.connection() as db, db.transaction():
                started.set()
                await db.execute("SELECT pg_sleep(30)")

        task = asyncio.create_task(stuck())
        await started.wait()
        await eventually(lambda: _sleeping(database_url), message="the statement never started")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        ledger = Ledger(engine, account=ACCOUNT, venue=VENUE)
        # the one connection came back (rolled back, or closed and made again), not stuck
        async with asyncio.timeout(10):
            assert await ledger.orders.get(ClientOrderId("nope")) is None
        async with connections.connection() as db:
            assert not db.is_in_transaction()
        # and the server's statement was cancelled, not left sleeping on a closed socket
        await eventually(
            lambda: _not(_sleeping(database_url)), message="the statement ran on on the server"
        )
    finally:
        await engine.dispose()


async def _not(check: Awaitable[bool]) -> bool:
    return not await check


@pytest.mark.parametrize("interrupted_by", ["cancel", "timeout"])
async def test_a_one_statement_write_interrupted_while_waiting_for_a_lock_never_commits(
    database_url: URL, interrupted_by: str
) -> None:
    """As a reservation waiting for the controls lock when its task is cancelled (a stop) or
    its caller stops waiting: asyncpg cancels the statement on the server, and the pool must
    let that cancel reach it. A connection simply terminated leaves the backend waiting, and
    once the lock is free it commits what the engine gave up on."""
    engine = make_engine(database_url, pool_size=2)  # one ledger connection
    admin = await asyncpg.connect(**asyncpg_connect_kwargs(database_url))  # type: ignore[arg-type]
    blocker = await asyncpg.connect(**asyncpg_connect_kwargs(database_url))  # type: ignore[arg-type]
    try:
        await admin.execute("CREATE TABLE probe (x int)")
        tx = blocker.transaction()
        await tx.start()
        await blocker.execute("SELECT pg_advisory_xact_lock(4242)")
        connections = ledger_connections(engine)
        pid = 0

        async def write() -> None:
            nonlocal pid
            async with connections.connection() as db:
                pid = await db.fetchval("SELECT pg_backend_pid()")
                sql = "INSERT INTO probe SELECT 1 FROM (SELECT pg_advisory_xact_lock(4242)) l"
                await db.execute(sql, timeout=0.5 if interrupted_by == "timeout" else None)

        async def waiting_for_the_lock() -> bool:
            return bool(
                pid
                and await admin.fetchval(
                    "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = $1", pid
                )
            )

        task = asyncio.create_task(write())
        await eventually(waiting_for_the_lock, message="the write never waited for the lock")
        if interrupted_by == "cancel":
            task.cancel()
        with pytest.raises((asyncio.CancelledError, TimeoutError)):
            await task

        async def backend_gone() -> bool:
            return not await admin.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = $1", pid
            )

        await eventually(backend_gone, message="the interrupted statement's backend lived on")
        await tx.commit()  # the lock is free: a backend still waiting would insert now
        assert await admin.fetchval("SELECT count(*) FROM probe") == 0
    finally:
        await blocker.close()
        await admin.close()
        await engine.dispose()


async def _sleeping(database_url: URL) -> bool:
    conn = await asyncpg.connect(**asyncpg_connect_kwargs(database_url))  # type: ignore[arg-type]
    try:
        return bool(
            await conn.fetchval(
                "SELECT count(*) > 0 FROM pg_stat_activity "
                "WHERE datname = $1 AND query LIKE 'SELECT pg_sleep%' AND state = 'active'",
                database_url.database,
            )
        )
    finally:
        await conn.close()


async def test_a_checkout_waiting_when_the_engine_is_disposed_fails_as_database_unavailable(
    database_url: URL,
) -> None:
    engine = make_engine(database_url, pool_size=2)  # one ledger connection
    try:
        connections = ledger_connections(engine)
        ledger = Ledger(engine, account=ACCOUNT, venue=VENUE)
        async with connections.connection():
            waiting = asyncio.create_task(ledger.orders.get(ClientOrderId("nope")))
            await asyncio.sleep(0)  # (a turn of the loop: the read is queued for the connection)
            disposing = asyncio.create_task(engine.dispose())
            with pytest.raises(DatabaseUnavailable):
                await waiting
            assert not disposing.done()  # still waiting for the connection held here
        await disposing
        await eventually(lambda: _none_left(database_url), message="connections left open")
    finally:
        await engine.dispose()
