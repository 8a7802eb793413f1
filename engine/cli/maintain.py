"""Keeping the ledger small: ``tradectl prune``."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer

from engine.cli._app import AllAccountsOpt, app, console, fail, run_async, settings
from engine.database import open_database
from engine.domain.types import utc_now


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
) -> None:
    """Remove old holds and delivered alerts of the account (TRADECTL_ACCOUNT). Orders, order
    events, fills and every other decision are never touched."""
    cut = parse_before(before)
    config = settings()

    async def go() -> None:
        from engine.ledger.retention import prune as prune_rows

        async with open_database(config) as db:
            account = None if all_accounts else config.account
            done = await prune_rows(db.engine, account=account, before=cut, dry_run=dry_run)
        verb = "would remove" if dry_run else "removed"
        where = "every account" if account is None else f"account {account!r}"
        summary = ", ".join(f"{p.rows} {p.what}" for p in done)
        console.print(f"{verb} {summary} older than {cut.isoformat()} ({where})")

    run_async(go)
