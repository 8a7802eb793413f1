"""Keeping the ledger small: ``tradectl prune``."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import asyncpg
import typer
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL

from engine.cli._app import (
    AllAccountsOpt,
    ByOpt,
    ReasonOpt,
    app,
    console,
    fail,
    run_async,
    settings,
)
from engine.cli.targets import check_operator
from engine.config import Settings
from engine.database import Database, open_database
from engine.domain.types import ControlScope, utc_now
from engine.ledger.db import normalize_url
from engine.ledger.journal import record_action
from engine.ledger.retention import Pruned


def parse_before(value: str) -> datetime:
    """``YYYY-MM-DD`` (midnight UTC) or an ISO datetime (naive means UTC), not in the future."""
    try:
        when = datetime.fromisoformat(value.strip())
    except ValueError:
        fail(f"--before {value!r} is not a date; give YYYY-MM-DD or an ISO datetime (UTC)")
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    if when > utc_now():
        fail(f"--before {value} is in the future; prune removes only what is already old")
    return when


def owner_url(config: Settings, db: Database) -> URL:
    """The owner's connection: the embedded server's owner role, else
    TRADECTL_MIGRATE_DATABASE_URL, else DATABASE_URL (a single-role install)."""
    if db.embedded:
        return db.url.set(username=config.roles.owner)
    if config.migrate_database_url is not None:
        return normalize_url(config.migrate_database_url.get_secret_value())
    return db.url


@app.command()
def prune(
    before: Annotated[
        str,
        typer.Option(
            "--before",
            metavar="DATE",
            help="Remove what is older than this: YYYY-MM-DD (midnight UTC) or an ISO datetime.",
        ),
    ],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Count what would go; delete nothing.")
    ] = False,
    all_accounts: AllAccountsOpt = False,
    reason: ReasonOpt = None,
    by: ByOpt = None,
) -> None:
    """Remove old holds and delivered alerts of the account (TRADECTL_ACCOUNT); with
    --all-accounts, also departed pool engines' heartbeat rows. Orders, order events, fills and
    every other decision are never touched. Recorded in the operator journal
    with its reason (a dry run records nothing)."""
    # a dry run changes nothing, so it needs no reason and leaves no journal row
    operator = None if dry_run else check_operator(reason, by)
    cut = parse_before(before)
    config = settings()

    async def go() -> None:
        from engine.ledger.db import make_engine
        from engine.ledger.retention import prune as prune_rows

        async with open_database(config) as db:
            account = None if all_accounts else config.account
            # Deleting is the owner's: the engine role only ever appends decisions.
            owner = make_engine(owner_url(config, db))

            async def journal(conn: asyncpg.Connection, pruned: list[Pruned]) -> None:
                assert operator is not None
                await record_action(
                    conn,
                    account=config.account,
                    now=utc_now(),
                    operator=operator,
                    action="prune",
                    scope=ControlScope.GLOBAL if account is None else ControlScope.ACCOUNT,
                    target=account,
                    outcome="removed " + ", ".join(f"{p.rows} {p.what}" for p in pruned),
                    details={"before": cut.isoformat()},
                )

            try:
                done = await prune_rows(
                    owner, account=account, before=cut, dry_run=dry_run, journal=journal
                )
            except sa_exc.DBAPIError as exc:
                if "permission denied" not in str(exc.orig):
                    raise
                fail(
                    f"prune was refused to {owner.url.username} ({exc.orig}); it runs as the "
                    "owner role: set TRADECTL_MIGRATE_DATABASE_URL to its URL"
                )
            finally:
                await owner.dispose()
        verb = "would remove" if dry_run else "removed"
        where = "every account" if account is None else f"account {account!r}"
        summary = ", ".join(f"{p.rows} {p.what}" for p in done)
        console.print(f"{verb} {summary} older than {cut.isoformat()} ({where})")

    run_async(go)
