"""Run the engine, migrate its ledger, print the psql command."""

from __future__ import annotations

import os

import structlog
import typer

from engine.cli._app import (
    EXIT_INPUT,
    app,
    console,
    fail,
    one_line,
    run_async,
    settings,
)
from engine.config import LogFormat, load_settings
from engine.database import open_database
from engine.exceptions import TradectlError
from engine.observability import configure_logging, json_output


@app.command()
def run() -> None:
    """Run the engine (embedded Postgres + built-in simulator + example strategies by default)."""
    from engine.runtime import main as runtime_main

    try:
        # as configured: the run itself decides which ledger account the demo exchange trades as
        runtime_main(load_settings())
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


@app.command()
def sql() -> None:
    """Print the psql command that opens the ledger."""
    config = settings()

    async def go() -> None:
        async with open_database(config) as db:
            console.print(db.psql)

    run_async(go)
