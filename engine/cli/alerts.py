"""Alerts: list them with their delivery state, and send a test one through the outbox."""

from __future__ import annotations

import getpass
from typing import Annotated

import typer
from rich.table import Table

from engine.cli._app import AllAccountsOpt, app, console, err, ledger_for, run_async, settings
from engine.database import open_database
from engine.domain.alerts import test_alert

alerts_app = typer.Typer(
    help="List alerts and their delivery; send a test alert.", invoke_without_command=True
)
app.add_typer(alerts_app, name="alerts")

LimitOpt = Annotated[
    int, typer.Option("--limit", min=1, max=1000, help="How many of the newest alerts.")
]


@alerts_app.callback()
def alerts(ctx: typer.Context, all_accounts: AllAccountsOpt = False, limit: LimitOpt = 20) -> None:
    """The newest alerts of the engine's account (``--all-accounts`` for every account's), with
    their delivery state, and the configured channels."""
    if ctx.invoked_subcommand is not None:
        return
    config = settings()

    async def go() -> None:
        from engine.alerting import delivery_for

        async with open_database(config) as db:
            ledger = ledger_for(db, config)
            delivery = delivery_for(ledger.alerts, config)
            table = Table(
                "id", "created_at", "account", "level", "kind", "scope", "state", "attempts",
                "repeats", "last_error", "message",
            )  # fmt: skip
            for a in await ledger.alerts.recent(limit=limit, all_accounts=all_accounts):
                table.add_row(
                    str(a.id), a.created_at.isoformat(timespec="seconds"), a.account,
                    a.level.value, a.kind, a.scope, a.state, str(a.attempts),
                    str(a.suppressed) if a.suppressed else "", a.last_error or "", a.message,
                )  # fmt: skip
            console.print(table)
            undelivered = await ledger.alerts.undelivered()
            console.print(f"undelivered in account {config.account}: {undelivered}")
            if delivery.channels:
                for c in delivery.channels:
                    console.print(f"channel #{c.index}: {c.service} {c.shown}", soft_wrap=True)
            else:
                console.print("no channels: TRADECTL_ALERT_URLS is unset, alerts are logged only")

    run_async(go)


@alerts_app.command("test")
def alerts_test() -> None:
    """Write a LOW test alert to the outbox and send it now to every channel of
    TRADECTL_ALERT_URLS (exit 1 when a channel did not take it: the engine retries it)."""
    config = settings()

    async def go() -> None:
        from engine.alerting import delivery_for

        async with open_database(config) as db:
            ledger = ledger_for(db, config)
            delivery = delivery_for(ledger.alerts, config)
            alert_id = await ledger.alerts.add(
                test_alert(account=config.account, by=getpass.getuser())
            )
            sent = await delivery.deliver_one(alert_id)
            if sent is None:
                console.print(f"alert {alert_id} written; the running engine is sending it")
            elif sent.delivered_at is not None:
                where = (
                    f"{len(delivery.channels)} channel(s)"
                    if delivery.channels
                    else "the log only (TRADECTL_ALERT_URLS is unset)"
                )
                console.print(f"alert {alert_id} delivered to {where}")
            else:
                err.print(
                    f"alert {alert_id} not delivered: {sent.last_error}; it stays in the "
                    "outbox and the engine retries it (`tradectl alerts` shows its state)",
                    soft_wrap=True,
                )
                raise typer.Exit(1)

    run_async(go)
