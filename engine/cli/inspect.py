"""Read-only views of the ledger: status, active controls, incidents (and resolving one)."""

from __future__ import annotations

import contextlib
import math
import sys
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from engine.cli._app import (
    AllAccountsOpt,
    ByOpt,
    app,
    console,
    err,
    fail,
    incidents_app,
    ledger_for,
    run_async,
    settings,
)
from engine.cli.targets import check_id, check_operator
from engine.config import Settings
from engine.database import open_database
from engine.exceptions import ConfigError

if TYPE_CHECKING:
    from engine.limits_book import LimitsBook


@app.command()
def status(
    all_accounts: AllAccountsOpt = False,
    watch: Annotated[
        bool,
        typer.Option(
            "--watch",
            help="Keep it on screen: per strategy its state, position, P&L and last decision; "
            "orders, open orders, controls, incidents, alerts; redrawn in place at a terminal, "
            "plain blocks when piped. Ctrl-C stops.",
        ),
    ] = False,
    interval: Annotated[
        float, typer.Option("--interval", metavar="SECONDS", help="Refresh period of --watch.")
    ] = 2.0,
    count: Annotated[
        int | None,
        typer.Option("--count", metavar="N", help="Stop --watch after N refreshes."),
    ] = None,
) -> None:
    """Orders by state, P&L, exposure against each configured limit (TRADECTL_STRATEGIES_FILE),
    balances, active controls and open incidents of the engine's account (TRADECTL_ACCOUNT),
    from the ledger."""
    config = settings()
    if watch:
        if all_accounts:
            fail("--watch shows one account (TRADECTL_ACCOUNT); leave out --all-accounts")
        if not (math.isfinite(interval) and 0.1 <= interval <= 3600):
            fail(f"--interval {interval:g}: expected 0.1-3600 seconds")
        if count is not None and count < 1:
            fail(f"--count {count}: expected 1 or more")
        _watch(config, interval, count)
        return

    async def go() -> None:
        from engine.status import all_accounts_status, ledger_status
        from engine.venue_status import circuit_line

        async with open_database(config) as db:
            if all_accounts:
                console.print(await all_accounts_status(db.engine))
            else:
                limits, problem = _limits(config)
                console.print(await ledger_status(db.engine, config.account, limits))
                if problem:
                    console.print(f"exposure against limits not shown: {problem}")
                console.print(await circuit_line(config))
            console.print(f"inspect with SQL: {db.psql}")

    run_async(go)


def _limits(config: Settings) -> tuple[LimitsBook | None, str | None]:
    from engine.limits_book import LimitsBook
    from engine.strategy_config import load_trading_config

    try:
        trading = load_trading_config(config.strategies_file)
    except ConfigError as exc:
        return None, str(exc)
    return LimitsBook.from_specs(trading.strategies, account=trading.account_limits), None


@app.command()
def controls(all_accounts: AllAccountsOpt = False) -> None:
    """List the active controls covering the engine's account (its own and the global ones)."""
    config = settings()

    async def go() -> None:
        async with open_database(config) as db:
            ledger = ledger_for(db, config)
            table = Table("id", "account", "scope", "target", "kind", "reason", "set_by", "set_at")
            for c in await ledger.controls.active(all_accounts=all_accounts):
                table.add_row(
                    str(c.id), c.account or "(all)", c.scope.value, c.target, c.kind.value,
                    c.reason, c.set_by, c.set_at.isoformat(timespec="seconds"),
                )  # fmt: skip
            console.print(table)

    run_async(go)


@incidents_app.callback()
def incidents(
    ctx: typer.Context,
    all_: Annotated[bool, typer.Option("--all", help="Include resolved incidents.")] = False,
    all_accounts: AllAccountsOpt = False,
) -> None:
    """List the account's open incidents (``--all`` for resolved ones too, ``--all-accounts``
    for every account's)."""
    if ctx.invoked_subcommand is not None:
        return
    config = settings()

    async def go() -> None:
        async with open_database(config) as db:
            table = Table(
                "id", "opened_at", "account", "severity", "kind", "scope", "message", "resolved_at"
            )
            ledger = ledger_for(db, config)
            for i in await ledger.incidents.read(open_only=not all_, all_accounts=all_accounts):
                table.add_row(
                    str(i.id), i.opened_at.isoformat(timespec="seconds"), i.account, i.severity,
                    i.kind, i.scope, i.message,
                    i.resolved_at.isoformat(timespec="seconds") if i.resolved_at else "",
                )  # fmt: skip
            console.print(table)

    run_async(go)


@incidents_app.command("resolve")
def incidents_resolve(
    incident_id: Annotated[int, typer.Argument(help="The incident's id.")],
    reason: Annotated[
        str | None,
        typer.Option(
            "--reason",
            "--note",
            help="What was checked and done (required): the resolution note, also recorded "
            "in the operator journal.",
        ),
    ] = None,
    by: ByOpt = None,
) -> None:
    """Close an incident of the engine's account (TRADECTL_ACCOUNT) with a note."""
    operator = check_operator(reason, by)
    check_id(incident_id)
    config = settings()

    async def go() -> None:
        async with open_database(config) as db:
            ledger = ledger_for(db, config)
            if await ledger.incidents.resolve(incident_id, operator.reason, operator=operator):
                console.print(f"incident {incident_id} resolved")
            else:
                err.print(f"incident {incident_id} is not open in account {config.account!r}")
                raise typer.Exit(1)

    run_async(go)


def _watch(config: Settings, interval: float, count: int | None) -> None:
    from engine.status_snapshot import gather_status
    from engine.status_view import show_status

    strategies = _configured_strategies(config)

    async def go() -> None:
        async with open_database(config) as db:
            await show_status(
                lambda: gather_status(db.engine, config.account, strategies=strategies),
                interval_s=interval,
                live=sys.stdout.isatty(),
                out=sys.stdout,
                count=count,
            )

    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is how --watch ends
        run_async(go)


def _configured_strategies(config: Settings) -> dict[str, tuple[str, ...]]:
    """The account's strategies from TRADECTL_STRATEGIES_FILE (id → symbols); none if it cannot
    be read (strategies that decided in the account are listed anyway)."""
    from engine.exceptions import ConfigError
    from engine.strategy_config import load_strategy_config

    try:
        specs = load_strategy_config(config.strategies_file)
    except ConfigError:
        return {}
    return {
        spec.strategy_id: tuple(spec.symbols)
        for spec in specs
        if spec.account in (None, config.account)
    }
