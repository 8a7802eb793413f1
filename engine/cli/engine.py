"""Run the engine, migrate its ledger, open psql on it."""

from __future__ import annotations

import asyncio
import os
import shlex
import signal
import subprocess
from typing import Annotated, Any

import structlog
import typer
from typer.core import TyperCommand

from engine.cli._app import (
    EXIT_INPUT,
    app,
    console,
    err,
    fail,
    guard,
    one_line,
    run_async,
    settings,
)
from engine.config import LogFormat, Settings, load_settings
from engine.database import open_database
from engine.exceptions import TradectlError
from engine.ledger.embedded import embedded_postgres, embedded_running
from engine.observability import configure_logging, json_output
from engine.psql import psql_argv, psql_env


class _RunCommand(TyperCommand):
    def format_help(self, ctx: Any, formatter: Any) -> None:
        super().format_help(ctx, formatter)
        from engine.cli.settings_help import print_settings

        print_settings()


@app.command(cls=_RunCommand)
def run(
    i_understand: Annotated[
        bool,
        typer.Option(
            "--i-understand",
            help="Confirm live trading on a production venue (as TRADECTL_CONFIRM_LIVE=yes); "
            "the engine prints what it is about to do first.",
        ),
    ] = False,
) -> None:
    """Run the engine (embedded Postgres + built-in simulator + example strategies by default).

    In a terminal it shows a live view (strategies, orders, controls, incidents); piped, a
    plain status block every TRADECTL_STATUS_INTERVAL_S. Ctrl-C stops it cleanly."""
    from engine.runtime import main as runtime_main

    try:
        # as configured: the run itself decides which ledger account the demo exchange trades as
        runtime_main(load_settings(**({"confirm_live": True} if i_understand else {})))
    except TradectlError as exc:
        # In json mode every line is a JSON object, the last one too; a settings error comes
        # before logging is configured, so the format asked for is read from the environment.
        if not json_output() and os.environ.get("TRADECTL_LOG_FORMAT") != LogFormat.JSON:
            fail(exc)
        if not json_output():
            configure_logging(json=True)
        structlog.get_logger("tradectl").error("engine.failed", error=one_line(exc))
        raise typer.Exit(EXIT_INPUT) from None


@app.command()
def migrate() -> None:
    """Upgrade the ledger schema to the newest migration (alembic upgrade head)."""
    config = settings()

    async def go() -> None:
        async with open_database(config, migrate=True) as db:
            console.print(f"schema at head on {db.url.render_as_string(hide_password=True)}")

    run_async(go)


@app.command(
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    help="Open psql on the ledger, whether or not an engine runs (the embedded Postgres is "
    "started if needed and shared with a running engine). Arguments after the options go to "
    'psql: `tradectl sql -c "SELECT ..."`, or pipe SQL in. `--print` prints the command instead, '
    'one line that works pasted or piped (`sh -c "$(tradectl sql --print)"`).',
)
def sql(
    ctx: typer.Context,
    print_: Annotated[
        bool,
        typer.Option(
            "--print",
            help="Print the psql command (no password, no pager, no psqlrc) instead of running "
            "it; the embedded Postgres stays up for it.",
        ),
    ] = False,
    stop: Annotated[
        bool,
        typer.Option(
            "--stop",
            help="Stop the embedded Postgres that `--print` left running, unless a tradectl "
            "process still uses it.",
        ),
    ] = False,
) -> None:
    config = settings()
    extra = list(ctx.args)
    if stop:
        _stop_embedded(config)
        return

    # Leave the embedded server as found: up if it was (an engine's, or one `--print` left),
    # stopped again if this command started it, unless a printed command is to use it.
    keep_running = print_ or (
        config.database_url is None and embedded_running(config.data_dir / "pg")
    )

    async def go() -> int:
        async with open_database(config, keep_running=keep_running) as db:
            url = db.inspect_url
            if print_:
                typer.echo(shlex.join(psql_argv(url, extra)))
                if db.embedded:
                    err.print(
                        f"(the embedded Postgres in {config.data_dir / 'pg'} stays up for this "
                        "command: `tradectl sql --stop` stops it, and so does the next "
                        "`tradectl run` when it stops)",
                        highlight=False,
                    )
                return 0
            return await _run_psql(psql_argv(url, extra), psql_env(url))

    code = run_async(go)
    if code:
        raise typer.Exit(code)


async def _run_psql(argv: list[str], env: dict[str, str]) -> int:
    # Ctrl-C belongs to psql (it cancels the running query); this process only waits for it.
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        done = await asyncio.to_thread(subprocess.run, argv, env={**os.environ, **env}, check=False)
    finally:
        signal.signal(signal.SIGINT, previous)
    return done.returncode


def _stop_embedded(config: Settings) -> None:
    if config.database_url is not None:
        fail("DATABASE_URL is set: tradectl does not run that Postgres, so it does not stop it")
    data = config.data_dir / "pg"
    if not embedded_running(data):
        console.print(f"the embedded Postgres in {data} is not running")
        return
    with guard(), embedded_postgres(data):
        pass  # attach, then leave as the last user: that stops it
    if embedded_running(data):
        console.print(f"the embedded Postgres in {data} is still used by a tradectl process")
    else:
        console.print(f"stopped the embedded Postgres in {data}")
