"""Database URLs, engines and migrations (alembic) for the ledger."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
from collections.abc import Iterator
from pathlib import Path

import asyncpg
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from engine.exceptions import ConfigError, DatabaseUnavailable, SchemaNotAtHead
from engine.ledger.connection_pool import PoolClosed


def _project_root() -> Path:
    """Where ``alembic.ini`` and ``migrations/`` live.

    A source checkout (``pip install -e``) has them next to ``engine/``; an installed copy
    (the container image) runs from a directory that has them: ``TRADECTL_HOME`` or the
    working directory.
    """
    candidates = [Path(__file__).resolve().parents[2]]
    if os.environ.get("TRADECTL_HOME"):
        candidates.insert(0, Path(os.environ["TRADECTL_HOME"]))
    candidates.append(Path.cwd())
    for candidate in candidates:
        if (candidate / "alembic.ini").is_file() and (candidate / "migrations").is_dir():
            return candidate
    return candidates[0]


ROOT = _project_root()


def normalize_url(url: str) -> URL:
    """Accept ``postgres://``, ``postgresql://`` or ``postgresql+asyncpg://``; use asyncpg."""
    try:
        parsed = make_url(url)
    except Exception as exc:
        raise ConfigError(
            "DATABASE_URL is not a valid URL; expected postgresql://user:pass@host:5432/db"
        ) from exc
    if parsed.drivername in ("postgres", "postgresql", "postgresql+asyncpg"):
        # asyncpg takes the port modulo 65536 (":99999" connects to 34463): refuse it here.
        if parsed.port is not None and not 1 <= parsed.port <= 65535:
            raise ConfigError(
                f"DATABASE_URL has port {parsed.port}; expected 1-65535 (postgresql://…:5432/db)"
            )
        return parsed.set(drivername="postgresql+asyncpg")
    raise ConfigError(f"DATABASE_URL must be a postgresql:// URL, got scheme {parsed.drivername!r}")


def redacted(url: str | URL) -> str:
    """The URL with its password hidden: the only form that may reach a log line."""
    parsed = url if isinstance(url, URL) else normalize_url(url)
    return parsed.render_as_string(hide_password=True)


def libpq_url(url: str | URL) -> str:
    """A ``postgresql://`` URL for psql and raw asyncpg (password included: never log it)."""
    parsed = url if isinstance(url, URL) else normalize_url(url)
    # libpq spells a Unix socket directory as ?host=/path, which SQLAlchemy keeps in .query
    return parsed.set(drivername="postgresql").render_as_string(hide_password=False)


def asyncpg_connect_kwargs(url: str | URL) -> dict[str, object]:
    """Arguments for ``asyncpg.connect`` that match the SQLAlchemy URL (sockets included)."""
    parsed = url if isinstance(url, URL) else normalize_url(url)
    kwargs: dict[str, object] = {
        "user": parsed.username,
        "password": parsed.password,
        "database": parsed.database,
    }
    host = parsed.host or parsed.query.get("host")
    if isinstance(host, tuple):
        host = host[0]
    kwargs["host"] = host
    if parsed.port:
        kwargs["port"] = parsed.port
    return {k: v for k, v in kwargs.items() if v is not None}


def make_engine(url: str | URL, *, pool_size: int = 8) -> AsyncEngine:
    """The engine, with at most ``pool_size`` connections (at least two): the ledger's asyncpg
    pool takes all but :data:`~engine.ledger.connections.CORE_POOL_SIZE` of them, SQLAlchemy's
    pool (migrations' checks, status, the Core readers) the rest (engine/ledger/connections.py).
    """
    # connections.py classifies its failures with this module's is_connection_error
    from engine.ledger.connections import CONNECT_ARGS, ledger_connections, split_pool

    parsed = url if isinstance(url, URL) else normalize_url(url)
    core, ledger = split_pool(pool_size)
    engine = create_async_engine(
        parsed,
        pool_size=core,
        # No overflow: an overflow connection is closed after each use, and every new connection
        # prepares each statement and introspects its types again, which under a burst of reads
        # cost more than waiting for a pooled connection.
        max_overflow=0,
        # No pool_pre_ping: with asyncpg it costs BEGIN/SELECT/ROLLBACK (three round trips) on
        # every checkout. A connection that died with the server fails its next statement as
        # DatabaseUnavailable (the pool then drops every connection), and the caller retries, as
        # it must for any outage.
        pool_recycle=1800,
        connect_args=CONNECT_ARGS,
    )
    ledger_connections(engine, max_size=ledger)
    return engine


def alembic_config(url: str | URL) -> object:
    from alembic.config import Config

    parsed = url if isinstance(url, URL) else normalize_url(url)
    cfg = Config(str(ROOT / "alembic.ini"))
    cfg.set_main_option("script_location", str(ROOT / "migrations"))
    # ConfigParser interpolates '%': escape it so passwords with % survive.
    cfg.set_main_option(
        "sqlalchemy.url", parsed.render_as_string(hide_password=False).replace("%", "%%")
    )
    # The caller owns logging; migrations/env.py only configures it for the bare alembic CLI.
    cfg.attributes["configure_logger"] = False
    return cfg


def _run_alembic(url: str | URL, verb: str, target: str) -> None:
    from alembic import command

    cfg = alembic_config(url)
    getattr(command, verb)(cfg, target)


async def upgrade_head(url: str | URL) -> None:
    """``alembic upgrade head``. Runs in a thread: alembic's env drives its own event loop."""
    parsed = url if isinstance(url, URL) else normalize_url(url)
    try:
        await asyncio.to_thread(_run_alembic, parsed, "upgrade", "head")
    except Exception as exc:
        # alembic connects on its own: the first connection of `tradectl migrate` fails here,
        # with the driver's exception (whose text may carry the URL's password).
        mapped = translate_error(exc, parsed)
        if mapped is exc:
            raise
        raise mapped from None


async def downgrade(url: str | URL, target: str = "base") -> None:
    await asyncio.to_thread(_run_alembic, url, "downgrade", target)


@functools.cache
def head_revision() -> str | None:
    """The newest revision in ``migrations/versions`` (read once per process)."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory(str(ROOT / "migrations")).get_current_head()


def _current_revision(conn: Connection) -> str | None:
    from alembic.migration import MigrationContext

    return MigrationContext.configure(conn).get_current_revision()


async def schema_revision_status(engine: AsyncEngine) -> tuple[str | None, str | None]:
    """``(current, head)``: the database's alembic revision (``None`` when never migrated) and
    the newest one this code ships."""
    try:
        async with engine.connect() as conn:
            current = await conn.run_sync(_current_revision)
    except Exception as exc:
        raise translate_error(exc, engine.url) from exc
    return current, head_revision()


async def ensure_at_head(engine: AsyncEngine) -> None:
    """Refuse to run on a schema older (or newer) than this code: raise SchemaNotAtHead."""
    current, head = await schema_revision_status(engine)
    if current != head:
        found = "no ledger schema" if current is None else f"schema revision {current}"
        raise SchemaNotAtHead(
            f"the database at {redacted(engine.url)} has {found}, this tradectl needs {head}: "
            "run `tradectl migrate` (alembic upgrade head) first"
        )


# Errors that mean "the database went away / cannot be reached", as opposed to a bug in a
# statement or a constraint doing its job.
_CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.ConnectionDoesNotExistError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    # statement_timeout (engine/ledger/connections.py) or an operator's pg_cancel_backend: the
    # database did not answer in time; the statement was rolled back, nothing of it is written
    asyncpg.QueryCanceledError,
    # a checkout from the ledger's pool while the engine was disposed under it
    PoolClosed,
)


def _is_lost(exc: BaseException | None) -> bool:
    if isinstance(exc, _CONNECTION_ERRORS):
        return True
    # asyncpg raises a bare InterfaceError ("cannot call Connection.fetch(): connection is
    # closed") on a pooled connection whose server went away while it sat idle. Other
    # InterfaceErrors are misuse (an operation already in progress, say): bugs, not outages.
    return isinstance(exc, asyncpg.InterfaceError) and "connection is closed" in str(exc)


def is_connection_error(exc: BaseException) -> bool:
    if isinstance(exc, sa_exc.DBAPIError):
        if exc.connection_invalidated:
            return True
        orig = exc.orig
        return _is_lost(orig) or _is_lost(getattr(orig, "__cause__", None))
    if isinstance(exc, sa_exc.TimeoutError):  # pool exhausted
        return True
    return _is_lost(exc)


# The server answered and refused this URL's credentials or database: retrying cannot help, the
# URL (or the server's pg_hba.conf) must change.
_REFUSALS: tuple[type[BaseException], ...] = (
    asyncpg.InvalidAuthorizationSpecificationError,  # wrong password, unknown role, pg_hba
    asyncpg.InvalidCatalogNameError,  # no such database
)


def _refusal(exc: BaseException) -> BaseException | None:
    if isinstance(exc, _REFUSALS):
        return exc
    if isinstance(exc, sa_exc.DBAPIError):
        orig = exc.orig
        for candidate in (orig, getattr(orig, "__cause__", None)):
            if isinstance(candidate, _REFUSALS):
                return candidate
    return None


def _detail(exc: BaseException | None, url: URL) -> str:
    detail = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
    if url.password:
        detail = detail.replace(str(url.password), "***")
    return detail


def translate_error(exc: BaseException, url: URL) -> BaseException:
    """A connection-level failure becomes :class:`DatabaseUnavailable`, refused credentials or
    database a :class:`ConfigError` (password scrubbed from both); anything else is returned
    unchanged for the caller to re-raise."""
    refused = _refusal(exc)
    if refused is not None:
        return ConfigError(
            f"the ledger database at {redacted(url)} refused the connection "
            f"({_detail(refused, url)}); check DATABASE_URL's user, password and database"
        )
    if not is_connection_error(exc):
        return exc
    orig = exc.orig if isinstance(exc, sa_exc.DBAPIError) else exc
    detail = _detail(orig, url)
    return DatabaseUnavailable(
        f"the ledger database at {redacted(url)} is unavailable ({detail}); check that Postgres "
        "is running and reachable and that DATABASE_URL is right, then retry"
    )


@contextlib.contextmanager
def database_errors(url: URL) -> Iterator[None]:
    """For reads that use SQLAlchemy directly (portfolio, status): a lost connection leaves as
    :class:`DatabaseUnavailable`, like every ledger call, so one ``except`` covers an outage."""
    try:
        yield
    except DatabaseUnavailable:
        raise
    except Exception as exc:
        mapped = translate_error(exc, url)
        if mapped is exc:
            raise
        raise mapped from exc
