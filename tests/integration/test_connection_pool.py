"""The ledger's connection pool (engine/ledger/connection_pool.py) on real connections: bounded,
first come first served, nothing broken handed on, idle connections closed, a close that waits."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest
from sqlalchemy.engine import URL

from engine.ledger.connection_pool import ConnectionPool, PoolClosed
from engine.ledger.db import asyncpg_connect_kwargs
from tests.helpers import eventually


class Opener:
    """Opens real connections to the test's database and remembers them."""

    def __init__(self, url: URL) -> None:
        self.url = url
        self.opened: list[asyncpg.Connection] = []
        self.fail_next = False
        #: when set, each connect waits for it (a slow server)
        self.gate: asyncio.Event | None = None

    async def __call__(self) -> asyncpg.Connection:
        if self.fail_next:
            self.fail_next = False
            raise OSError("connection refused")
        if self.gate is not None:
            await self.gate.wait()
        conn: asyncpg.Connection = await asyncpg.connect(**asyncpg_connect_kwargs(self.url))  # type: ignore[arg-type]
        self.opened.append(conn)
        return conn


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def opener(database_url: URL) -> AsyncIterator[Opener]:
    opener = Opener(database_url)
    yield opener
    for conn in opener.opened:
        conn.terminate()


def _pool(opener: Opener, max_size: int = 2, **kwargs: object) -> ConnectionPool:
    options: dict[str, object] = {"idle_s": 60.0, "acquire_timeout_s": 5.0, **kwargs}
    return ConnectionPool(opener, max_size=max_size, **options)  # type: ignore[arg-type]


async def _queued(pool: ConnectionPool) -> asyncio.Task[asyncpg.Connection]:
    """A checkout started and run up to its first wait (one turn of the loop, not a wait for
    time): queued behind the ones started before it."""
    task = asyncio.create_task(pool.acquire())
    await asyncio.sleep(0)
    return task


async def _pid(conn: asyncpg.Connection) -> int:
    return int(await conn.fetchval("SELECT pg_backend_pid()"))


async def test_a_connection_given_back_is_handed_out_again_not_opened_anew(
    opener: Opener,
) -> None:
    pool = _pool(opener)
    first = await pool.acquire()
    pid = await _pid(first)
    pool.release(first)
    again = await pool.acquire()
    assert again is first
    assert await _pid(again) == pid
    assert len(opener.opened) == 1
    assert pool.size == 1
    pool.release(again)
    await pool.close()


async def test_checkouts_beyond_max_size_wait_and_are_served_first_come_first_served(
    opener: Opener,
) -> None:
    pool = _pool(opener, max_size=1)
    held = await pool.acquire()
    served: list[str] = []

    async def user(name: str) -> None:
        conn = await pool.acquire()
        served.append(name)
        await conn.fetchval("SELECT 1")
        pool.release(conn)

    first = asyncio.create_task(user("first"))
    await asyncio.sleep(0)  # (a turn of the loop, to queue it first; not a wait for time)
    second = asyncio.create_task(user("second"))
    await asyncio.sleep(0)
    assert served == []
    assert pool.size == 1
    pool.release(held)
    # a caller arriving now finds the connection already promised to the first waiter
    late = asyncio.create_task(user("late"))
    await asyncio.gather(first, second, late)
    assert served == ["first", "second", "late"]
    assert len(opener.opened) == 1
    await pool.close()


async def test_a_checkout_that_waits_too_long_times_out_and_the_pool_still_works(
    opener: Opener,
) -> None:
    pool = _pool(opener, max_size=1, acquire_timeout_s=0.05)
    held = await pool.acquire()
    with pytest.raises(TimeoutError):
        await pool.acquire()
    pool.release(held)
    conn = await pool.acquire()
    assert conn is held
    pool.release(conn)
    await pool.close()


async def test_a_broken_connection_is_closed_and_its_place_goes_to_a_waiter(
    opener: Opener,
) -> None:
    pool = _pool(opener, max_size=1)
    broken = await pool.acquire()
    waiting = await _queued(pool)
    pool.release(broken, broken=True)
    fresh = await waiting
    assert fresh is not broken
    assert broken.is_closed()
    assert await _pid(fresh) > 0
    assert pool.size == 1
    pool.release(fresh)
    await pool.close()


async def test_a_connection_left_in_a_transaction_is_never_handed_on(opener: Opener) -> None:
    pool = _pool(opener, max_size=1)
    conn = await pool.acquire()
    await conn.execute("BEGIN")
    pool.release(conn)
    await eventually(lambda: _closed(conn), message="the connection stayed open")
    fresh = await pool.acquire()
    assert fresh is not conn
    assert not fresh.is_in_transaction()
    pool.release(fresh)
    await pool.close()


async def test_a_waiter_cancelled_after_being_handed_a_connection_passes_it_on(
    opener: Opener,
) -> None:
    pool = _pool(opener, max_size=1)
    held = await pool.acquire()
    cancelled = await _queued(pool)
    next_in_line = await _queued(pool)
    pool.release(held)  # handed to `cancelled`, which has not run yet
    cancelled.cancel()
    conn = await next_in_line
    assert conn is held
    assert len(opener.opened) == 1
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    pool.release(conn)
    await pool.close()


async def test_a_waiter_handed_a_connection_that_then_drops_opens_another_in_its_place(
    opener: Opener,
) -> None:
    pool = _pool(opener, max_size=1, acquire_timeout_s=2.0)
    held = await pool.acquire()
    waiting = await _queued(pool)
    pool.release(held)  # handed to the waiter, which has not run yet
    held.terminate()  # the server's goodbye arrives in the same turn
    fresh = await waiting  # not a wait for a place nobody will free
    assert fresh is not held
    assert await _pid(fresh) > 0
    assert pool.size == 1
    pool.release(fresh)
    await pool.close()


async def test_close_waits_for_a_connection_being_opened_and_closes_it(opener: Opener) -> None:
    pool = _pool(opener, max_size=1)
    opener.gate = asyncio.Event()
    opening = await _queued(pool)
    closing = asyncio.create_task(pool.close())
    await asyncio.sleep(0)
    assert not closing.done()
    opener.gate.set()
    with pytest.raises(PoolClosed):
        await opening
    await closing
    assert len(opener.opened) == 1
    assert opener.opened[0].is_closed()
    assert pool.size == 0


async def test_a_connection_given_back_broken_is_closed_and_its_place_freed_once_closed(
    opener: Opener,
) -> None:
    pool = _pool(opener, max_size=1)
    conn = await pool.acquire()
    pool.release(conn, broken=True)
    assert pool.size == 1  # closing (gracefully, in the background): still its place
    await eventually(lambda: _closed(conn), message="the broken connection stayed open")
    await eventually(lambda: pool.size == 0, message="its place was never freed")
    await pool.close()


async def test_a_failed_connect_frees_its_place(opener: Opener) -> None:
    pool = _pool(opener, max_size=1)
    opener.fail_next = True
    with pytest.raises(OSError, match="connection refused"):
        await pool.acquire()
    assert pool.size == 0
    conn = await pool.acquire()
    assert await _pid(conn) > 0
    pool.release(conn)
    await pool.close()


async def test_an_idle_connection_is_closed_once_idle_longer_than_idle_s(opener: Opener) -> None:
    clock = Clock()
    pool = _pool(opener, max_size=2, idle_s=30.0, clock=clock)
    a, b = await pool.acquire(), await pool.acquire()
    pool.release(a)
    clock.now += 20
    pool.release(b)
    clock.now += 15  # a idle 35 s, b 15 s
    conn = await pool.acquire()
    assert conn is b
    await eventually(lambda: _closed(a), message="the expired connection stayed open")
    assert pool.size == 1
    pool.release(conn)
    await pool.close()


async def test_a_connection_the_server_dropped_while_idle_is_replaced(
    opener: Opener, database_url: URL
) -> None:
    pool = _pool(opener, max_size=1)
    conn = await pool.acquire()
    pid = await _pid(conn)
    pool.release(conn)
    admin = await asyncpg.connect(**asyncpg_connect_kwargs(database_url))  # type: ignore[arg-type]
    try:
        await admin.execute("SELECT pg_terminate_backend($1)", pid)
    finally:
        await admin.close()
    await eventually(lambda: _closed(conn), message="asyncpg never saw the connection drop")
    fresh = await pool.acquire()
    assert await _pid(fresh) != pid
    pool.release(fresh)
    await pool.close()


async def test_close_waits_for_the_connections_in_use_and_refuses_new_checkouts(
    opener: Opener,
) -> None:
    pool = _pool(opener, max_size=2)
    idle, used = await pool.acquire(), await pool.acquire()
    pool.release(idle)
    closing = asyncio.create_task(pool.close())
    await eventually(lambda: _closed(idle), message="the idle connection stayed open")
    assert not closing.done()
    assert not used.is_closed()
    with pytest.raises(PoolClosed):
        await pool.acquire()
    pool.release(used)
    await closing
    assert used.is_closed()
    assert pool.size == 0


async def test_terminate_closes_connections_in_use_and_fails_waiters(opener: Opener) -> None:
    pool = _pool(opener, max_size=1)
    used = await pool.acquire()
    waiting = await _queued(pool)
    pool.terminate()
    with pytest.raises(PoolClosed):
        await waiting
    assert used.is_closed()
    pool.release(used)  # its user gives it back later: nothing to do
    assert pool.size == 0


async def _closed(conn: asyncpg.Connection) -> bool:
    return conn.is_closed()
