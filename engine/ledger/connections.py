"""The ledger's connections: plain asyncpg connections, pooled per engine without SQLAlchemy.

SQLAlchemy's ``AsyncEngine.connect()`` costs a greenlet hop on checkout and on check-in (0.08 ms
and 0.13 ms of a 1.3 ms reservation, measured). The ledger's parts run asyncpg anyway
(engine/ledger/statements.py), so they take asyncpg connections from a pool of their own
(:class:`~engine.ledger.connection_pool.ConnectionPool`, which says why not asyncpg's) instead; the
SQLAlchemy engine stays for migrations, ``status`` and the few Core readers (the portfolio, the
P&L reports, retention, backtests), with a pool of its own.

**Bound.** Connections per process do not grow: :func:`engine.ledger.db.make_engine`'s
``pool_size`` is the engine's total and is split, :data:`CORE_POOL_SIZE` for SQLAlchemy's pool
and the rest (at least one) for this one; both open connections lazily and never overflow.
The operator listener's one ``LISTEN`` connection stays outside both, as before.

**Attached to the engine.** The pool belongs to the ``AsyncEngine`` the parts were built with
(:func:`ledger_connections`), so ``Ledger(engine, …)`` works with any engine. It is created on
first use, on the loop that uses it (a pool used from another loop is dropped and made again),
and closed by ``await engine.dispose()`` (SQLAlchemy's ``engine_disposed`` event, run inside
the greenlet ``AsyncEngine.dispose`` spawns); like SQLAlchemy's pool, it is made again if the
engine is used after that. ``Database`` disposes its engine on exit. Dispose before the loop
ends: connections of a loop already closed can no longer be closed (Python warns of their
sockets), though the engine still works on the next loop (SQLAlchemy's pool did not).

**No session state, no reset round trip.** asyncpg's ``Pool.release()`` runs
``Connection.reset()`` (``RESET ALL``, ``UNLISTEN *``, ``pg_advisory_unlock_all()``…: a round
trip per check-in); this pool does not. The
ledger sets no session state: its advisory locks are transaction-level
(``pg_advisory_xact_lock``), it never ``LISTEN``s on these connections (the operator listener
has its own), and the only settings it makes are made once at connect and meant to last
(:data:`_SETTINGS`; ``RESET ALL`` would undo them). So ``reset`` has nothing to do; what it
covered is enforced on check-in instead: a connection still in a transaction (cancelled
mid-commit, say) is closed, never handed on, and so is one that failed with a connection
error, so the next checkout connects anew once the database is back, and one whose block ended
with anything but the server's error for a statement: a statement interrupted by a cancelled
task or the client's timeout, which asyncpg is still cancelling on the server, is closed
gracefully, so that the cancel reaches the server before the socket closes (a statement
waiting for a lock on a terminated connection would go on, and a one-statement write would
commit once it got the lock).

**As SQLAlchemy's connections were.** The same connect arguments (the dialect's, from the URL:
host, port, socket directory, query options), ``command_timeout`` and ``application_name``
(:data:`CONNECT_ARGS`), the same JSON codecs SQLAlchemy's asyncpg dialect installs (``json`` /
``jsonb`` decoded on read), a checkout that gives up after :data:`ACQUIRE_TIMEOUT_S` (the
ledger's callers see :class:`~engine.exceptions.DatabaseUnavailable`), no connection replaced
after a number of queries (a reconnect and re-prepare on the hot path), and idle ones closed
after :data:`IDLE_S`, as ``pool_recycle`` did (checked on checkout and check-in).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import weakref
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.util import await_only

from engine.ledger.connection_pool import ConnectionPool
from engine.ledger.db import is_connection_error

#: what every connection of the engine passes to asyncpg.connect (SQLAlchemy's and the ledger's):
#: the ledger's transactions are short, a stuck statement must not hold the account
CONNECT_ARGS: dict[str, Any] = {
    "command_timeout": 30,
    "server_settings": {"application_name": "tradectl"},
}
#: the share of ``command_timeout`` after which the server cancels a ledger statement itself
#: (``statement_timeout``), so that it ends, rolled back, before the client gives up on it
STATEMENT_TIMEOUT_SHARE = 0.8
#: SQLAlchemy's share of ``make_engine``'s ``pool_size``: the Core readers take one connection
#: each for a short read (the portfolio one per account at a time, status one per interval)
CORE_POOL_SIZE = 2


def split_pool(pool_size: int) -> tuple[int, int]:
    """``make_engine``'s ``pool_size`` as (SQLAlchemy's connections, the ledger's): each at
    least one, :data:`CORE_POOL_SIZE` for SQLAlchemy when there are enough."""
    core = max(1, min(CORE_POOL_SIZE, pool_size - 1))
    return core, max(1, pool_size - core)


#: the ledger's pool when the engine did not come from ``make_engine`` (an engine of a test)
DEFAULT_SIZE = 6
#: how long a checkout waits for a free connection (SQLAlchemy's ``pool_timeout``)
ACQUIRE_TIMEOUT_S = 30.0
#: an idle connection is closed after this (``make_engine``'s ``pool_recycle`` before)
IDLE_S = 1800.0
#: how long disposing waits for checked-out connections before closing them under their users
CLOSE_TIMEOUT_S = 5.0


def _json_decoder(value: bytes) -> Any:
    return json.loads(value.decode())


def _jsonb_encoder(value: str) -> bytes:
    return b"\x01" + value.encode()  # jsonb's binary format: a version byte, then the text


def _jsonb_decoder(value: bytes) -> Any:
    return json.loads(value[1:].decode())


# The settings every ledger connection keeps for its life, made once at connect (``SET``, not
# startup parameters, which a session pooler such as PgBouncer refuses):
#
# * ``statement_timeout`` shorter than the client's ``command_timeout`` (or the server's own, if
#   that is shorter). A client that gives up closes the connection, and the server notices only
#   at its next read: a reservation waiting for a lock would go on and commit after the engine
#   dropped its batch as "never reserved" (the one-statement reservation commits on its own).
#   Cancelled by the server first, it is rolled back, and the client hears so.
# * READ COMMITTED, whatever the server's or the role's default: the reservation's gate reads
#   the controls committed while it waited for their lock (engine/ledger/control_gate.py),
#   which REPEATABLE READ would hide.
# * The time zone UTC: the hot statements read instants from JSON text
#   (engine/ledger/statements.py), where one without an offset would take the session's; text
#   the ledger's statements make of an instant (an alert row's JSON, say) is in UTC too.
# * ``random_page_cost`` at most 1.1 × ``seq_page_cost`` (the server's, if lower), for every
#   statement on these connections (the CLI's reports read through them too). The hot
#   statements find their orders and fills by the ids of a batch (``= ANY(ARRAY(SELECT … FROM
#   json_to_recordset))``, which the planner guesses at ten), and against the default 4, meant
#   for disks that seek, scanning all of a ledger's orders looked cheaper than ten index probes
#   until it had thousands of rows: an ACK then scanned orders twice and fills once, 1.25 ms a
#   statement on a 1,500-order ledger and growing with it, against 0.5 ms with 1.1 (measured).
#   The ledger's recent rows, the ones these statements touch, are in memory; on a slow disk a
#   report over a cold history may now prefer an index it did not before.
_SETTINGS = """
    SELECT set_config('statement_timeout', (CASE
               WHEN $1::bigint = 0 THEN setting::bigint
               WHEN setting::bigint = 0 THEN $1::bigint
               ELSE least(setting::bigint, $1::bigint) END)::text, false),
           set_config('default_transaction_isolation', 'read committed', false),
           set_config('TimeZone', 'UTC', false),
           set_config('random_page_cost', least(current_setting('random_page_cost')::float8,
                      1.1 * current_setting('seq_page_cost')::float8)::text, false)
    FROM pg_settings WHERE name = 'statement_timeout'
"""


def statement_timeout_for(command_timeout_s: float | None) -> int:
    """0 (the server's own, untouched) without a client timeout."""
    return int(command_timeout_s * STATEMENT_TIMEOUT_SHARE * 1000) if command_timeout_s else 0


async def init_connection(conn: asyncpg.Connection, statement_timeout_ms: int) -> None:
    """What every ledger connection runs once it is connected (also bench/execution.py's
    floor, so that it plans the same statements the same way)."""
    await conn.execute(_SETTINGS, statement_timeout_ms)
    # The codecs SQLAlchemy's asyncpg dialect installs on its connections (on_connect): the
    # ledger read json/jsonb through them before it had a pool of its own.
    await conn.set_type_codec(
        "json", encoder=str.encode, decoder=_json_decoder, schema="pg_catalog", format="binary"
    )
    await conn.set_type_codec(
        "jsonb",
        encoder=_jsonb_encoder,
        decoder=_jsonb_decoder,
        schema="pg_catalog",
        format="binary",
    )


def connect_kwargs(engine: Engine) -> dict[str, Any]:
    """What SQLAlchemy passes to ``asyncpg.connect`` for this engine's URL (its dialect's
    reading of host, port, socket and query options), plus :data:`CONNECT_ARGS`."""
    _, kwargs = engine.dialect.create_connect_args(engine.url)
    # SQLAlchemy's own statement cache options, not asyncpg's
    kwargs.pop("prepared_statement_cache_size", None)
    kwargs.pop("prepared_statement_name_func", None)
    return {**kwargs, **CONNECT_ARGS}


class LedgerConnections:
    """One engine's pool for the ledger (:class:`ConnectionPool`): made on first use, on the
    running loop."""

    def __init__(self, connect: dict[str, Any], max_size: int) -> None:
        self._connect = connect
        self.max_size = max_size
        self._pool: ConnectionPool | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _current(self) -> ConnectionPool:
        loop = asyncio.get_running_loop()
        pool = self._pool
        if pool is not None and self._loop is loop:
            return pool
        if pool is not None:
            # made on a loop that is gone (or another one): its connections cannot be used or
            # closed gracefully from here
            self._pool = None
            with contextlib.suppress(Exception):
                pool.terminate()
        pool = ConnectionPool(
            self._open,
            max_size=self.max_size,
            idle_s=IDLE_S,
            acquire_timeout_s=ACQUIRE_TIMEOUT_S,
        )
        self._pool, self._loop = pool, loop
        return pool

    async def _open(self) -> asyncpg.Connection:
        conn: asyncpg.Connection = await asyncpg.connect(**self._connect)
        try:
            await init_connection(conn, statement_timeout_for(self._connect.get("command_timeout")))
        except BaseException:
            conn.terminate()
            raise
        return conn

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[asyncpg.Connection]:
        """A connection outside any transaction; closed instead of handed on when it is still
        in a transaction at the end, or when anything but a server's error for a statement
        left the block (below)."""
        pool = self._current()
        db = await pool.acquire()
        broken = False
        try:
            yield db
        except BaseException as exc:
            # Kept after an error the server reported for a statement that ended there (a
            # constraint, a deadlock victim, statement_timeout's cancel): the connection is as
            # sound as before. Anything else closes it, gracefully (the pool's release): a
            # cancelled task or the client's timeout leaves asyncpg cancelling the statement on
            # the server (or a transaction half begun), an error of ours may have come half way.
            broken = not isinstance(exc, asyncpg.PostgresError) or (
                is_connection_error(exc) and not isinstance(exc, asyncpg.QueryCanceledError)
            )
            raise
        finally:
            pool.release(db, broken=broken)

    def on_dispose(self, _engine: Engine) -> None:
        """``engine_disposed``: close the pool (inside ``AsyncEngine.dispose``'s greenlet)."""
        pool, self._pool = self._pool, None
        if pool is None:
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is not self._loop:
            with contextlib.suppress(Exception):
                pool.terminate()
            return
        try:
            await_only(_close(pool))
        except sa_exc.MissingGreenlet:  # a sync Engine.dispose() on the loop's thread
            pool.terminate()


async def _close(pool: ConnectionPool) -> None:
    """Close gracefully; a connection still checked out after CLOSE_TIMEOUT_S is closed under
    its user, whose statement then fails as a lost connection."""
    try:
        async with asyncio.timeout(CLOSE_TIMEOUT_S):
            await pool.close()
    except TimeoutError:
        pool.terminate()


_BY_ENGINE: weakref.WeakKeyDictionary[Engine, LedgerConnections] = weakref.WeakKeyDictionary()


def ledger_connections(engine: AsyncEngine, *, max_size: int | None = None) -> LedgerConnections:
    """The engine's ledger pool (``max_size`` when it is made here: ``make_engine`` does)."""
    sync = engine.sync_engine
    found = _BY_ENGINE.get(sync)
    if found is None:
        found = LedgerConnections(connect_kwargs(sync), max_size or DEFAULT_SIZE)
        _BY_ENGINE[sync] = found
        event.listen(sync, "engine_disposed", found.on_dispose)
    return found
