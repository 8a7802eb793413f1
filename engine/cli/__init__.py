"""``tradectl``: run the engine, migrate, and operate it (halt, pause, reconcile, inspect).

Every command reads the same settings as the engine (``DATABASE_URL``, ``TRADECTL_*``); without
``DATABASE_URL`` it attaches to the embedded Postgres in ``TRADECTL_DATA_DIR``, so the operations
commands work from a second terminal next to a running ``make run``.

One module per concept: ``engine`` (run, migrate, sql), ``operate`` (controls and the operations
the lease holder runs), ``inspect`` (status, controls, incidents), ``report`` (pnl, quality),
``explain`` (one decision's story), ``journal`` (the operator journal and the queued requests),
``alerts`` (list, test), ``maintain`` (prune), ``strategies`` (strategies, new-strategy),
``tools`` (simulator), ``backtest``, ``compare`` (paper against a backtest); ``_app`` holds the
typer app and the one error path, ``targets`` the input checks.
"""

from __future__ import annotations

import sys

# Importing a module registers its commands on ``app``; the order is the order of `--help`.
from engine.cli import accounts as _accounts
from engine.cli import alerts as _alerts
from engine.cli import backtest as _backtest
from engine.cli import compare as _compare
from engine.cli import engine as _engine
from engine.cli import explain as _explain
from engine.cli import inspect as _inspect
from engine.cli import journal as _journal
from engine.cli import maintain as _maintain
from engine.cli import operate as _operate
from engine.cli import report as _report
from engine.cli import strategies as _strategies
from engine.cli import tools as _tools
from engine.cli._app import EXIT_INPUT, app, one_line
from engine.exceptions import TradectlError

__all__ = ["app", "main"]
_COMMANDS = (
    _engine,
    _inspect,
    _report,
    _explain,
    _operate,
    _journal,
    _alerts,
    _accounts,
    _maintain,
    _strategies,
    _tools,
    _compare,
    _backtest,
)


def main() -> None:
    """The console script: a TradectlError is one ``error:`` line on stderr, never a traceback.

    Usage errors (an unknown option, a missing argument, ``--port abc``) stay typer's own: they
    exit 2 with its usage box.
    """
    try:
        app()
    except TradectlError as exc:  # settings errors raised before a command runs
        print(f"error: {one_line(exc)}", file=sys.stderr)
        sys.exit(EXIT_INPUT)
