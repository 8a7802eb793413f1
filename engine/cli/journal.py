"""The operator journal (``tradectl journal``) and the queue of operator requests
(``tradectl requests``, ``tradectl requests drop``)."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.table import Table

from engine.cli._app import (
    AllAccountsOpt,
    ByOpt,
    ReasonOpt,
    app,
    console,
    ledger_for,
    run_async,
    settings,
)
from engine.cli.targets import check_id, check_operator, check_since
from engine.database import open_database
from engine.domain.types import utc_now
from engine.ledger.records import OperatorAction, OperatorRequest

requests_app = typer.Typer(
    help="List the queued operator requests, or drop one.", invoke_without_command=True
)
app.add_typer(requests_app, name="requests")

JsonOpt = Annotated[bool, typer.Option("--json", help="One JSON object per line, for machines.")]


def _when(value: Any) -> str:
    return "" if value is None else value.isoformat(timespec="seconds")


def result_text(result: dict[str, Any] | None, handled_at: Any) -> str:
    """A queued request's state in words: pending, dropped, or what the engine answered."""
    if handled_at is None:
        return "pending"
    result = result or {}
    if result.get("dropped"):
        return f"dropped by {result.get('by')}: {result.get('reason')}"
    rest = ", ".join(f"{k}={v}" for k, v in result.items() if k != "ok")
    return ("ok" if result.get("ok") else "failed") + (f": {rest}" if rest else "")


def _action_json(a: OperatorAction) -> dict[str, Any]:
    return {
        "id": a.id,
        "account": a.account,
        "acted_at": _when(a.acted_at),
        "actor": a.actor,
        "action": a.action,
        "scope": a.scope.value,
        "strategy": a.strategy,
        "symbol": a.symbol,
        "reason": a.reason,
        "outcome": a.outcome,
        "details": a.details,
        "request_id": a.request_id,
        "request": None
        if a.request_id is None
        else result_text(a.request_result, a.request_handled_at),
    }


@app.command()
def journal(
    since: Annotated[
        str | None,
        typer.Option("--since", help="Only since then: an age (30m, 12h, 7d) or an ISO time."),
    ] = None,
    all_accounts: AllAccountsOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """The operator journal: who halted, paused, cancelled, reconciled or resolved what, when,
    why, and what came of it (oldest first)."""
    start = check_since(since, utc_now())
    config = settings()

    async def go() -> None:
        async with open_database(config) as db:
            ledger = ledger_for(db, config)
            actions = await ledger.journal.read(since=start, all_accounts=all_accounts)
        if as_json:
            for a in actions:
                print(json.dumps(_action_json(a)))
            return
        table = Table("at", "account", "by", "action", "scope", "reason", "outcome", "request")
        for a in actions:
            table.add_row(
                _when(a.acted_at), a.account, a.actor, a.action, a.target, a.reason, a.outcome,
                "" if a.request_id is None
                else f"{a.request_id}: {result_text(a.request_result, a.request_handled_at)}",
            )  # fmt: skip
        console.print(table)
        if not actions:
            console.print(f"no operator actions in account {config.account!r}" + (
                f" since {_when(start)}" if start else ""))  # fmt: skip

    run_async(go)


def _request_json(r: OperatorRequest) -> dict[str, Any]:
    return {
        "id": r.id,
        "account": r.account,
        "kind": r.kind.value,
        "requested_by": r.requested_by,
        "requested_at": _when(r.requested_at),
        "reason": r.reason,
        "params": r.params,
        "handled_at": _when(r.handled_at) or None,
        "handled_by": r.handled_by,
        "result": r.result,
    }


@requests_app.callback()
def requests(
    ctx: typer.Context,
    all_: Annotated[bool, typer.Option("--all", help="Include handled requests.")] = False,
    all_accounts: AllAccountsOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """The operator requests (reconcile, cancel-all) still waiting for the engine that holds
    the account's lease (``--all``: handled ones too)."""
    if ctx.invoked_subcommand is not None:
        return
    config = settings()

    async def go() -> None:
        async with open_database(config) as db:
            ledger = ledger_for(db, config)
            queued = await ledger.operations.read(pending_only=not all_, all_accounts=all_accounts)
        if as_json:
            for r in queued:
                print(json.dumps(_request_json(r)))
            return
        table = Table("id", "requested_at", "account", "kind", "by", "reason", "params", "state")
        for r in queued:
            state = result_text(r.result, r.handled_at)
            if r.handled_at is None and r.handled_by is not None:
                state = f"claimed by {r.handled_by}"
            table.add_row(
                str(r.id), _when(r.requested_at), r.account, r.kind.value, r.requested_by,
                r.reason, json.dumps(r.params), state,
            )  # fmt: skip
        console.print(table)

    run_async(go)


@requests_app.command("drop")
def requests_drop(
    request_id: Annotated[int, typer.Argument(help="The request's id (`tradectl requests`).")],
    reason: ReasonOpt = None,
    by: ByOpt = None,
) -> None:
    """Drop a queued request of the engine's account so no engine runs it."""
    operator = check_operator(reason, by)
    check_id(request_id, "request")
    config = settings()

    async def go() -> None:
        async with open_database(config) as db:
            ledger = ledger_for(db, config)
            dropped, outcome = await ledger.operations.drop(
                request_id, operator=operator, dropped_by=f"cli:{operator.actor}"
            )
        console.print(outcome)
        if not dropped:
            raise typer.Exit(1)

    run_async(go)
