"""The operator journal: every operator action says why, and lands in ``operator_actions``
with who, when, the scope and the outcome; ``tradectl journal`` and ``tradectl requests``."""

from __future__ import annotations

import asyncio
import getpass
import json
from collections.abc import Iterator

import asyncpg
import pytest
from click.testing import Result
from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine
from typer.testing import CliRunner

from engine.cli import app
from engine.cli._app import console
from engine.domain.types import AccountId, ControlKind, ControlScope, VenueName
from engine.ledger.db import asyncpg_connect_kwargs
from engine.ledger.ledger import Ledger
from engine.ledger.records import Operator
from tests.helpers import ROOT, tradectl

ACCOUNT = "acct-j"


@pytest.fixture
def cli_env(database_url: URL, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    env = {
        "DATABASE_URL": database_url.render_as_string(hide_password=False),
        "TRADECTL_ACCOUNT": ACCOUNT,
        "TRADECTL_VENUE": "paper",
        "TRADECTL_STRATEGIES_FILE": str(ROOT / "strategies" / "example.toml"),
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


@pytest.fixture(autouse=True)
def wide_console() -> Iterator[None]:
    """The tables at a width where no cell wraps (a test terminal is 80 columns)."""
    saved = console._width
    console.width = 250
    yield
    console._width = saved


async def invoke(*args: str) -> Result:
    # The CLI runs its own event loop; keep it off the test's loop thread.
    return await asyncio.to_thread(CliRunner().invoke, app, list(args))


async def rows(engine: AsyncEngine, sql: str) -> list[tuple[object, ...]]:
    async with engine.connect() as conn:
        return [tuple(r) for r in await conn.execute(text(sql))]


async def test_each_control_command_is_journaled_with_who_scope_reason_and_outcome(
    cli_env: dict[str, str], db_engine: AsyncEngine
) -> None:
    steps = [
        ("halt", "--reason", "exchange incident", "--by", "alice"),
        ("halt", "--reason", "again", "--by", "alice"),
        ("pause", "--strategy", "sma-btc", "--reason", "checking fills", "--by", "bob"),
        ("reduce-only", "--symbol", "BTCUSDT", "--reason", "reduce risk", "--by", "bob"),
        ("reduce-only", "--symbol", "BTCUSDT", "--off", "--reason", "done", "--by", "bob"),
        ("resume", "--strategy", "sma-btc", "--reason", "fills match", "--by", "bob"),
        ("unhalt", "--reason", "venue is back", "--by", "alice"),
        ("unhalt", "--reason", "twice", "--by", "alice"),
        ("halt", "--global", "--reason", "all stop", "--by", "carol"),
    ]
    for argv in steps:
        result = await invoke(*argv)
        assert result.exit_code == 0, result.output

    journal = await rows(
        db_engine,
        "SELECT account, actor, action, scope, strategy, symbol, reason, outcome "
        "FROM operator_actions ORDER BY id",
    )
    halt_id = journal[0][7].split()[-1].rstrip(")")  # type: ignore[union-attr]
    assert [row[:7] for row in journal] == [
        (ACCOUNT, "alice", "halt", "account", None, None, "exchange incident"),
        (ACCOUNT, "alice", "halt", "account", None, None, "again"),
        (ACCOUNT, "bob", "pause", "strategy", "sma-btc", None, "checking fills"),
        (ACCOUNT, "bob", "reduce_only", "symbol", None, "BTCUSDT", "reduce risk"),
        (ACCOUNT, "bob", "reduce_only_off", "symbol", None, "BTCUSDT", "done"),
        (ACCOUNT, "bob", "resume", "strategy", "sma-btc", None, "fills match"),
        (ACCOUNT, "alice", "unhalt", "account", None, None, "venue is back"),
        (ACCOUNT, "alice", "unhalt", "account", None, None, "twice"),
        (ACCOUNT, "carol", "halt", "global", None, None, "all stop"),
    ]
    outcomes = [row[7] for row in journal]
    assert outcomes[0] == f"set (control {halt_id})"
    assert outcomes[1].startswith(f"already active (control {halt_id}, set by cli:alice")
    assert outcomes[6] == f"cleared (control {halt_id})"
    assert outcomes[7] == "no active halt"

    shown = await invoke("journal")
    assert shown.exit_code == 0, shown.output
    for word in ("alice", "bob", "carol", "exchange incident", "reduce_only_off", "no active"):
        assert word in shown.output


async def test_the_os_user_is_the_actor_without_by(
    cli_env: dict[str, str], db_engine: AsyncEngine
) -> None:
    proc = await tradectl(cli_env, "halt", "--reason", "from a second terminal")
    assert proc.returncode == 0, proc.stderr
    assert await rows(db_engine, "SELECT actor FROM operator_actions") == [(getpass.getuser(),)]
    assert await rows(db_engine, "SELECT set_by FROM controls") == [(f"cli:{getpass.getuser()}",)]


async def test_a_refused_command_changes_nothing_and_journals_nothing(
    cli_env: dict[str, str], db_engine: AsyncEngine
) -> None:
    proc = await tradectl(cli_env, "halt")
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: --reason is required")
    assert await rows(db_engine, "SELECT count(*) FROM controls") == [(0,)]
    assert await rows(db_engine, "SELECT count(*) FROM operator_actions") == [(0,)]


async def test_the_journal_row_commits_with_the_control_or_not_at_all(
    db_engine: AsyncEngine,
) -> None:
    ledger = Ledger(db_engine, account=AccountId(ACCOUNT), venue=VenueName("paper"))
    # A blank reason passes no CLI check, but the table refuses it: the halt must go too.
    with pytest.raises(asyncpg.CheckViolationError, match="ck_operator_actions_reason"):
        await ledger.controls.set(
            ControlScope.ACCOUNT,
            ACCOUNT,
            ControlKind.HALT,
            reason=" ",
            set_by="test",
            operator=Operator(actor="test", reason=" "),
        )
    assert await rows(db_engine, "SELECT count(*) FROM controls") == [(0,)]


async def test_the_journal_refuses_to_be_rewritten(
    cli_env: dict[str, str], db_engine: AsyncEngine, database_url: URL
) -> None:
    assert (await invoke("halt", "--reason", "x")).exit_code == 0
    conn = await asyncpg.connect(**asyncpg_connect_kwargs(database_url))  # type: ignore[arg-type]
    try:
        for sql in (
            "UPDATE operator_actions SET reason = 'nothing happened'",
            "DELETE FROM operator_actions",
            "TRUNCATE operator_actions",
        ):
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
                await conn.execute(sql)
    finally:
        await conn.close()
    assert await rows(db_engine, "SELECT reason FROM operator_actions") == [("x",)]


async def test_incident_resolve_is_journaled_and_its_note_is_the_reason(
    cli_env: dict[str, str], db_engine: AsyncEngine
) -> None:
    ledger = Ledger(db_engine, account=AccountId(ACCOUNT), venue=VenueName("paper"))
    incident = await ledger.incidents.open(
        kind="balance_drift", scope=f"account:{ACCOUNT}", severity="warning",
        message="USDT drifted", details={}, dedupe_key="drift:USDT",
    )  # fmt: skip
    result = await invoke(
        "incidents", "resolve", str(incident.id), "--reason", "deposit", "--by", "dana"
    )
    assert result.exit_code == 0, result.output
    again = await invoke("incidents", "resolve", str(incident.id), "--note", "again")
    assert again.exit_code == 1
    assert await rows(db_engine, "SELECT resolution_note FROM incidents") == [("deposit",)]
    assert await rows(
        db_engine, "SELECT actor, action, reason, outcome FROM operator_actions ORDER BY id"
    ) == [
        ("dana", "incident_resolve", "deposit", f"resolved incident {incident.id}"),
        (
            getpass.getuser(),
            "incident_resolve",
            "again",
            f"incident {incident.id} was not open in this account",
        ),
    ]


async def test_a_queued_request_is_journaled_listed_and_can_be_dropped(
    cli_env: dict[str, str], db_engine: AsyncEngine
) -> None:
    # No engine runs (and the paper venue lives inside `tradectl run`): the request waits.
    proc = await tradectl(
        cli_env, "reconcile", "--accept-balances", "--reason", "deposit checked", "--by", "eve"
    )
    assert proc.returncode == 2
    [(request_id,)] = await rows(db_engine, "SELECT id FROM operator_requests")

    listed = await invoke("requests")
    assert listed.exit_code == 0, listed.output
    assert "deposit checked" in listed.output
    assert "pending" in listed.output

    dropped = await invoke("requests", "drop", str(request_id), "--reason", "not needed")
    assert dropped.exit_code == 0, dropped.output
    assert f"dropped request {request_id} (reconcile)" in dropped.output
    assert await rows(
        db_engine, "SELECT handled_at IS NOT NULL, result->>'dropped' FROM operator_requests"
    ) == [(True, "true")]
    again = await invoke("requests", "drop", str(request_id), "--reason", "twice")
    assert again.exit_code == 1
    assert "no longer pending" in again.output
    assert (await invoke("requests", "drop", "999", "--reason", "typo")).exit_code == 1

    pending = await invoke("requests")
    assert "deposit checked" not in pending.output
    assert "deposit checked" in (await invoke("requests", "--all")).output

    journal = await invoke("journal", "--json")
    assert journal.exit_code == 0, journal.output
    entries = [json.loads(line) for line in journal.output.splitlines()]
    assert [(e["action"], e["actor"], e["request_id"]) for e in entries] == [
        ("accept_balances", "eve", request_id),
        ("request_drop", getpass.getuser(), request_id),
        ("request_drop", getpass.getuser(), request_id),
        ("request_drop", getpass.getuser(), None),
    ]
    assert entries[0]["outcome"] == f"queued as request {request_id}"
    assert entries[0]["details"]["params"] == {"accept_balances": True}
    # the request's fate is shown next to the action that queued it
    assert entries[0]["request"] == f"dropped by cli:{getpass.getuser()}: not needed"
    assert entries[3]["outcome"] == "no request 999 in this account"


async def test_cancel_all_of_a_strategy_is_journaled_with_its_scope(
    cli_env: dict[str, str], db_engine: AsyncEngine
) -> None:
    proc = await tradectl(cli_env, "cancel-all", "--strategy", "sma-btc", "--reason", "bad fills")
    assert proc.returncode == 2  # queued for the next `tradectl run`
    assert await rows(
        db_engine, "SELECT action, scope, strategy, reason FROM operator_actions"
    ) == [("cancel_all", "strategy", "sma-btc", "bad fills")]


async def test_the_journal_is_per_account_and_since_filters_by_time(
    cli_env: dict[str, str], db_engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert (await invoke("halt", "--reason", "mine")).exit_code == 0
    monkeypatch.setenv("TRADECTL_ACCOUNT", "acct-other")
    assert (await invoke("halt", "--reason", "theirs")).exit_code == 0
    async with db_engine.begin() as conn:
        # an old entry, as if written a week ago (the table refuses UPDATE: insert it so)
        await conn.execute(
            text(
                "INSERT INTO operator_actions (account, acted_at, actor, action, scope, reason, "
                "outcome, details) VALUES ('acct-other', now() - interval '7 days', 'old', "
                "'pause', 'account', 'last week', 'set', '{}')"
            )
        )

    other = (await invoke("journal")).output
    assert "theirs" in other
    assert "last week" in other
    assert "mine" not in other
    recent = (await invoke("journal", "--since", "1d")).output
    assert "theirs" in recent
    assert "last week" not in recent
    assert "last week" in (await invoke("journal", "--since", "2000-01-01")).output
    everyone = (await invoke("journal", "--all-accounts", "--since", "2h")).output
    assert "mine" in everyone
    assert "theirs" in everyone
