"""``tradectl accounts``: the accounts an engine pool trades (list, add, load, enable, disable).

Written as the owner (``TRADECTL_MIGRATE_DATABASE_URL``, else ``DATABASE_URL``; the embedded
Postgres's owner without either): the engine role only reads them. Every change is journalled
with its ``--reason``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import asyncpg
import typer
from rich.table import Table

from engine.accounts import ENVIRONMENTS, AccountConfig, check_account, load_accounts_file
from engine.cli._app import ByOpt, ReasonOpt, app, console, fail, run_async, settings
from engine.cli.targets import check_operator
from engine.config import VenueKind
from engine.database import open_database
from engine.exceptions import ConfigError, TradectlError
from engine.ledger.accounts import Accounts
from engine.ledger.records import Operator

accounts_app = typer.Typer(
    help="The accounts an engine pool trades: list, add, load, enable, disable.",
    invoke_without_command=True,
)
app.add_typer(accounts_app, name="accounts")

AccountArg = Annotated[str, typer.Argument(help="The account id.")]


def _pairs(flag: str, values: list[str] | None, *, as_json: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in values or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            fail(f"{flag} {item!r}: expected NAME=VALUE")
        parsed: Any = value
        if as_json:
            try:
                parsed = json.loads(value)
            except ValueError:
                parsed = value  # a plain string ("binance_rest_url=http://...")
        out[key.strip()] = parsed
    return out


async def _write(action: str, fn: Any) -> Any:
    config = settings()
    async with open_database(config, owner=True) as db:
        try:
            return await fn(Accounts(db.engine))
        except TradectlError as exc:
            if isinstance(exc.__cause__, asyncpg.InsufficientPrivilegeError) or (
                "permission denied" in str(exc)
            ):
                raise ConfigError(
                    f"{action} was refused: accounts are written by the owner role "
                    f"({config.owner_role}); set TRADECTL_MIGRATE_DATABASE_URL to its URL"
                ) from None
            raise
        except asyncpg.InsufficientPrivilegeError:
            raise ConfigError(
                f"{action} was refused: accounts are written by the owner role "
                f"({config.owner_role}); set TRADECTL_MIGRATE_DATABASE_URL to its URL"
            ) from None


@accounts_app.callback()
def accounts(ctx: typer.Context) -> None:
    """Every account with its venue, environment, credential references, state and owner."""
    if ctx.invoked_subcommand is None:
        _list()


def _list() -> None:
    config = settings()

    async def go() -> None:
        async with open_database(config) as db:
            book = Accounts(db.engine)
            rows = await book.all()
            held = await book.held()
        table = Table(
            "account", "venue", "environment", "enabled", "credentials", "strategies",
            "overrides", "owner", "updated",
        )  # fmt: skip
        for a in rows:
            overrides = {**a.settings, **({"limits": dict(a.limits)} if a.limits else {})}
            table.add_row(
                a.account, a.venue.value, a.environment, "yes" if a.enabled else "no",
                ", ".join(f"{k}={v}" for k, v in a.credentials.items()),
                str(a.strategies_file or "(engine default)"),
                json.dumps(overrides) if overrides else "",
                held.get(a.account, ""),
                a.updated_at.isoformat(timespec="seconds") if a.updated_at else "",
            )  # fmt: skip
        console.print(table)
        if not rows:
            console.print("no accounts: add one with `tradectl accounts add`")

    run_async(go)


@accounts_app.command("list")
def list_accounts() -> None:
    """Every account (the same as ``tradectl accounts``)."""
    _list()


@accounts_app.command("add")
def add(
    account: AccountArg,
    venue: Annotated[
        VenueKind, typer.Option("--venue", help="paper, simulator, binance, kalshi, ...")
    ],
    reason: ReasonOpt = None,
    environment: Annotated[
        str | None,
        typer.Option(help="testnet/production (binance), demo/production (kalshi)."),
    ] = None,
    credential: Annotated[
        list[str] | None,
        typer.Option(
            "--credential",
            help="NAME=env:VARIABLE or NAME=file:/path (e.g. binance_api_key=env:ACCT1_KEY); "
            "a reference, never the secret.",
        ),
    ] = None,
    strategies_file: Annotated[
        Path | None, typer.Option(help="Default: the engine's TRADECTL_STRATEGIES_FILE.")
    ] = None,
    setting: Annotated[
        list[str] | None,
        typer.Option("--setting", help="A TRADECTL_* setting for this account: name=value."),
    ] = None,
    limit: Annotated[
        list[str] | None,
        typer.Option("--limit", help="An [account.limits] override: name=value."),
    ] = None,
    disabled: Annotated[bool, typer.Option("--disabled", help="Add it disabled.")] = False,
    by: ByOpt = None,
) -> None:
    """Add an account (enabled unless ``--disabled``): a pool engine picks it up."""
    operator = check_operator(reason, by)
    try:
        config = check_account(
            AccountConfig(
                account=account,
                venue=venue,
                environment=environment or ENVIRONMENTS[venue][0],
                credentials=_pairs("--credential", credential, as_json=False),
                strategies_file=strategies_file,
                settings=_pairs("--setting", setting, as_json=True),
                limits=_pairs("--limit", limit, as_json=True),
                enabled=not disabled,
            )
        )
    except ConfigError as exc:
        fail(exc)

    async def go() -> None:
        await _write("adding the account", lambda book: book.add(config, operator))

    run_async(go)
    console.print(f"account {account} added{'' if config.enabled else ' (disabled)'}")


@accounts_app.command("load")
def load(
    file: Annotated[Path, typer.Argument(help="TOML with [accounts.<id>] tables.")],
    reason: ReasonOpt = None,
    by: ByOpt = None,
) -> None:
    """Add every account of a TOML file that is not there yet (existing ones are left as
    they are)."""
    operator = check_operator(reason, by)
    try:
        configs = load_accounts_file(file)
    except ConfigError as exc:
        fail(exc)

    async def go() -> list[str]:
        async def each(book: Accounts) -> list[str]:
            known = {a.account for a in await book.all()}
            added = []
            for config in configs:
                if config.account not in known:
                    await book.add(config, operator)
                    added.append(config.account)
            return added

        result: list[str] = await _write("loading the accounts", each)
        return result

    added = run_async(go)
    skipped = len(configs) - len(added)
    console.print(
        f"added {len(added)} account(s){': ' + ', '.join(added) if added else ''}"
        + (f"; {skipped} existed already" if skipped else "")
    )


def _set_enabled(account: str, enabled: bool, operator: Operator) -> None:
    async def go() -> str:
        outcome: str = await _write(
            "enabling the account" if enabled else "disabling the account",
            lambda book: book.set_enabled(account, enabled, operator),
        )
        return outcome

    console.print(f"account {account}: {run_async(go)}")


@accounts_app.command("enable")
def enable(account: AccountArg, reason: ReasonOpt = None, by: ByOpt = None) -> None:
    """Let the pool trade the account again."""
    _set_enabled(account, True, check_operator(reason, by))


@accounts_app.command("disable")
def disable(account: AccountArg, reason: ReasonOpt = None, by: ByOpt = None) -> None:
    """Stop trading the account: its engine stops it gracefully (strategies first, in-flight
    orders finished, the lease released) within a pool tick; no engine takes it."""
    _set_enabled(account, False, check_operator(reason, by))
