"""The ledger's pool of asyncpg connections: a checkout is a list pop, a check-in a list append.

asyncpg's own ``Pool`` spent 45 µs of CPU on a checkout and its check-in together (a timeout
context and a ``call_later`` timer per check-in, a queue of holders, a proxy per checkout),
measured on the path from a decision to the wire, where the reservation takes one: a tenth of
that path's Python. It also needed its private ``_con``/``_holder`` to skip a task per
check-in. This pool uses asyncpg's public ``Connection`` only, and does no more than the ledger
asks of a pool (engine/ledger/connections.py):

* at most ``max_size`` connections, opened on demand, the most recently used handed out first
  (the rest stay idle and are closed after ``idle_s``, checked at each check-in and checkout, as
  SQLAlchemy's ``pool_recycle`` checks at checkout);
* a checkout that finds every connection in use waits its turn (first come, first served: a
  connection given back goes to the longest waiter, so no caller starves behind faster ones)
  and gives up after ``acquire_timeout_s`` with :class:`TimeoutError`;
* a connection given back broken (the caller says so) or still in a transaction is closed,
  never handed on, and gracefully (a statement asyncpg is cancelling gets its cancel request to
  the server first); once it is closed its place is free for a new connection;
* :meth:`close` closes the idle connections, waits for the ones in use to come back and for
  the ones being opened, and closes them; :meth:`terminate` closes everything at once.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections.abc import Awaitable, Callable

import asyncpg

#: what a waiter is handed: a connection, or ``None`` for "a place is free: open one"
_Handed = asyncpg.Connection | None


class PoolClosed(asyncpg.InterfaceError):
    """A checkout from a pool that was closed (the engine was disposed under it)."""


class ConnectionPool:
    def __init__(
        self,
        connect: Callable[[], Awaitable[asyncpg.Connection]],
        *,
        max_size: int,
        idle_s: float,
        acquire_timeout_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_size < 1:
            raise ValueError("a pool needs room for one connection")
        self._connect = connect
        self.max_size = max_size
        self._idle_s = idle_s
        self._acquire_timeout_s = acquire_timeout_s
        self._clock = clock
        #: idle connections with the time each was given back, the most recent last
        self._idle: list[tuple[asyncpg.Connection, float]] = []
        self._used: set[asyncpg.Connection] = set()
        #: connections that exist, are being opened or are being closed: never above max_size
        self._places = 0
        self._opening = 0
        self._waiters: collections.deque[asyncio.Future[_Handed]] = collections.deque()
        self._closing = False
        #: set whenever a connection comes back, an open ends or a close ends (for close())
        self._changed: asyncio.Event | None = None
        self._closers: set[asyncio.Task[None]] = set()

    @property
    def size(self) -> int:
        """Connections open, being opened or being closed."""
        return self._places

    async def acquire(self) -> asyncpg.Connection:
        self._refuse_if_closing()
        self._expire_oldest()
        # (idle connections and waiters never coexist: a connection given back goes to a
        # waiter first)
        while self._idle:
            conn, _ = self._idle.pop()
            if conn.is_closed():  # the server dropped it while it was idle
                self._lose_place()
                continue
            self._used.add(conn)
            return conn
        # Waiting or connecting: the only suspensions, so the only place for the timeout.
        async with asyncio.timeout(self._acquire_timeout_s):
            if self._places < self.max_size and not self._waiters:
                self._places += 1
                return await self._open()
            while True:
                handed = await self._wait()
                if handed is None:
                    return await self._open()
                if not handed.is_closed():
                    return handed
                # dropped by the server between its check-in and now: open another in its
                # place, which is ours (unless terminate() took everything meanwhile)
                if handed not in self._used:
                    raise PoolClosed("the ledger's connection pool is closed")
                self._used.discard(handed)
                return await self._open()

    def release(self, conn: asyncpg.Connection, *, broken: bool = False) -> None:
        """Give ``conn`` back: to the longest waiter, else to the idle list. Closed instead when
        ``broken`` or still in a transaction, gracefully: a statement asyncpg is cancelling gets
        its cancel request to the server before the socket closes (terminated, a statement
        waiting for a lock would go on and commit once it got it)."""
        if conn not in self._used:
            return  # given back already (terminate() may have closed it under its user)
        if conn.is_closed():
            self._used.discard(conn)
            self._lose_place()
        elif broken or conn.is_in_transaction() or self._closing:
            self._used.discard(conn)
            self._close_later(conn)
        else:
            waiter = self._next_waiter()
            if waiter is not None:
                waiter.set_result(conn)  # still in use: handed on
            else:
                self._used.discard(conn)
                self._idle.append((conn, self._clock()))
                self._expire_oldest()
        self._notify()

    async def close(self) -> None:
        """Close the idle connections now and the others as they come back; return once every
        connection, including those being opened, is closed (the caller bounds the wait and
        may :meth:`terminate` after it)."""
        self._closing = True
        self._fail_waiters()
        while self._idle:
            conn, _ = self._idle.pop()
            self._close_later(conn)
        while self._used or self._opening or self._closers:
            self._changed = asyncio.Event()
            await self._changed.wait()

    def terminate(self) -> None:
        """Close every connection at once, in use or not (their users' statements fail as a
        lost connection)."""
        self._closing = True
        self._fail_waiters()
        gone = [c for c, _ in self._idle] + list(self._used)
        for conn in gone:
            with contextlib.suppress(Exception):
                conn.terminate()
        self._idle.clear()
        self._used.clear()
        self._places -= len(gone)  # (connections being opened or closed count themselves out)
        for task in self._closers:
            task.cancel()

    # -- internals -------------------------------------------------------------------------

    async def _open(self) -> asyncpg.Connection:
        """Open a connection in a place already counted in ``_places``."""
        if self._closing:
            self._lose_place()
            raise PoolClosed("the ledger's connection pool is closed")
        self._opening += 1
        try:
            conn = await self._connect()
        except BaseException:
            self._lose_place()
            raise
        finally:
            self._opening -= 1
            self._notify()
        if self._closing:
            self._close_later(conn)
            raise PoolClosed("the ledger's connection pool is closed")
        self._used.add(conn)
        return conn

    async def _wait(self) -> _Handed:
        self._refuse_if_closing()
        waiter: asyncio.Future[_Handed] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            return await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                # handed something, then cancelled (or timed out) before it could run
                handed = waiter.result()
                if handed is None:
                    self._lose_place()
                else:
                    self.release(handed)
            else:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
            raise

    def _next_waiter(self) -> asyncio.Future[_Handed] | None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                return waiter
        return None

    def _lose_place(self) -> None:
        """A connection is gone (or was never opened): its place goes to a waiter, who opens
        one in it."""
        self._places -= 1
        if self._closing:
            return
        waiter = self._next_waiter()
        if waiter is not None:
            self._places += 1
            waiter.set_result(None)

    def _expire_oldest(self) -> None:
        if self._idle and self._clock() - self._idle[0][1] >= self._idle_s:
            conn, _ = self._idle.pop(0)
            self._close_later(conn)

    def _close_later(self, conn: asyncpg.Connection) -> None:
        """Close ``conn`` gracefully in the background; its place is free once it is closed."""
        task = asyncio.get_running_loop().create_task(_close_quietly(conn))
        self._closers.add(task)
        task.add_done_callback(self._closed)

    def _closed(self, task: asyncio.Task[None]) -> None:
        self._closers.discard(task)
        self._lose_place()
        self._notify()

    def _notify(self) -> None:
        if self._changed is not None:
            self._changed.set()

    def _refuse_if_closing(self) -> None:
        if self._closing:
            raise PoolClosed("the ledger's connection pool is closed")

    def _fail_waiters(self) -> None:
        while (waiter := self._next_waiter()) is not None:
            waiter.set_exception(PoolClosed("the ledger's connection pool is closed"))


async def _close_quietly(conn: asyncpg.Connection) -> None:
    # Connection.close() first waits for a cancel in progress (the server ends the statement),
    # then says goodbye; a connection that cannot (the server gone, 5 s passed) is aborted
    with contextlib.suppress(Exception):
        await conn.close(timeout=5)
