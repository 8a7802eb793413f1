"""``tradectl prune``: old holds and delivered alerts go; orders, fills, events and every other
decision stay."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine
from typer.testing import CliRunner

from engine.cli import app
from engine.ledger.embedded import embedded_postgres, embedded_running
from tests.helpers import tradectl

ACCOUNT = "acct-prune"

_DECISION = """
INSERT INTO decisions (decision_id, strategy_id, account, symbol, intent, reason, md_ts,
                       decided_at, interval_key, sequence, verdicts, outcome, last_repeat_at)
VALUES (:id, 's', :account, 'BTCUSDT', :intent, 'r', :at, :at, :id, 0, '[]', :outcome,
        :last)
"""


@pytest.fixture
def cli_env(database_url: URL, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url.render_as_string(hide_password=False))
    monkeypatch.setenv("TRADECTL_ACCOUNT", ACCOUNT)


async def seed(engine: AsyncEngine) -> None:
    rows = [
        ("old-hold", ACCOUNT, "hold", "2026-01-01T00:00Z", "hold", None),
        # its last identical hold is newer than the cut: the row still speaks for it
        ("old-hold-repeated", ACCOUNT, "hold", "2026-01-01T00:00Z", "hold", "2026-03-01T00:00Z"),
        ("new-hold", ACCOUNT, "hold", "2026-03-01T00:00Z", "hold", None),
        ("old-denial", ACCOUNT, "buy", "2026-01-01T00:00Z", "denied", None),
        ("other-account-hold", "acct-other", "hold", "2026-01-01T00:00Z", "hold", None),
    ]
    async with engine.begin() as conn:
        for id_, account, intent, at, outcome, last in rows:
            await conn.execute(
                text(_DECISION),
                {"id": id_, "account": account, "intent": intent, "outcome": outcome,
                 "at": _ts(at), "last": None if last is None else _ts(last)},
            )  # fmt: skip


def _ts(value: str) -> datetime:
    return datetime.fromisoformat(value)


async def decision_ids(engine: AsyncEngine) -> set[str]:
    async with engine.connect() as conn:
        return set((await conn.execute(text("SELECT decision_id FROM decisions"))).scalars())


async def invoke(*args: str) -> tuple[int, str]:
    result = await asyncio.to_thread(CliRunner().invoke, app, list(args))
    return result.exit_code, result.output


async def test_prune_removes_old_holds_of_the_account_only(
    cli_env: None, db_engine: AsyncEngine
) -> None:
    await seed(db_engine)
    code, out = await invoke("prune", "--before", "2026-02-01", "--dry-run")
    assert code == 0, out
    assert "would remove 1 holds" in out
    assert len(await decision_ids(db_engine)) == 5

    code, out = await invoke("prune", "--before", "2026-02-01", "--reason", "housekeeping")
    assert code == 0, out
    assert "removed 1 holds, 0 delivered alerts older than 2026-02-01T00:00:00+00:00" in out
    assert "(account 'acct-prune')" in out
    assert await decision_ids(db_engine) == {
        "old-hold-repeated", "new-hold", "old-denial", "other-account-hold",
    }  # fmt: skip


async def test_prune_removes_delivered_alerts_when_the_ledger_has_an_outbox(
    cli_env: None, db_engine: AsyncEngine
) -> None:
    async with db_engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO alerts (account, level, kind, scope, message, details, created_at,"
                " next_attempt_at, delivered_at) VALUES"
                f" ('{ACCOUNT}', 'LOW', 'test', 'account', 'm', '{{}}', '2026-01-01Z',"
                " '2026-01-01Z', '2026-01-01Z'),"  # delivered: goes
                f" ('{ACCOUNT}', 'LOW', 'test', 'account', 'm', '{{}}', '2026-01-01Z',"
                " '2026-01-01Z', NULL),"  # not delivered yet: stays
                " ('acct-other', 'LOW', 'test', 'account', 'm', '{}', '2026-01-01Z',"
                " '2026-01-01Z', '2026-01-01Z')"  # another account's: stays
            )
        )
    code, out = await invoke("prune", "--before", "2026-02-01", "--reason", "housekeeping")
    assert code == 0, out
    assert "1 delivered alerts" in out
    async with db_engine.connect() as conn:
        left = (await conn.execute(text("SELECT count(*) FROM alerts"))).scalar()
    assert left == 2


async def test_prune_of_every_account_removes_engines_gone_before_the_cut(
    cli_env: None, db_engine: AsyncEngine
) -> None:
    async with db_engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO engines (holder, started_at, heartbeat_at, expires_at, max_accounts)"
                " VALUES ('gone', '2026-01-01Z', '2026-01-01Z', '2026-01-01Z', 4),"
                " ('recent', '2026-03-01Z', '2026-03-01Z', '2026-03-01Z', 4)"
            )
        )
    # one account's prune leaves engine rows alone: they belong to no account
    code, out = await invoke("prune", "--before", "2026-02-01", "--reason", "housekeeping")
    assert code == 0, out
    code, out = await invoke(
        "prune", "--before", "2026-02-01", "--all-accounts", "--reason", "housekeeping"
    )
    assert code == 0, out
    assert "1 departed engines" in out
    async with db_engine.connect() as conn:
        left = (await conn.execute(text("SELECT holder FROM engines"))).scalars().all()
    assert left == ["recent"]


@pytest.mark.parametrize(
    ("before", "message"),
    [("yesterday", "is not a date"), ("2999-01-01", "is in the future")],
)
async def test_prune_refuses_a_bad_date_in_one_line(
    cli_env: None, before: str, message: str
) -> None:
    code, out = await invoke("prune", "--before", before, "--reason", "housekeeping")
    assert code == 2
    assert message in out


async def test_prune_deletes_as_the_owner_on_the_embedded_ledger(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # the engine role (which the commands connect as) may not delete decisions: prune must not
    # rely on it
    path = Path(tempfile.mkdtemp(prefix="tctl-prune-", dir="/tmp"))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    env = {"TRADECTL_DATA_DIR": str(path)}
    try:
        done = await tradectl(env, "prune", "--before", "2026-01-01", "--reason", "housekeeping")
        assert done.returncode == 0, done.stderr
        assert "removed 0 holds" in done.stdout
    finally:
        if embedded_running(path / "pg"):
            with embedded_postgres(path / "pg"):
                pass
        shutil.rmtree(path, ignore_errors=True)


async def test_prune_requires_a_reason_and_records_it_in_the_journal(
    cli_env: None, db_engine: AsyncEngine
) -> None:
    await seed(db_engine)
    code, out = await invoke("prune", "--before", "2026-02-01")
    assert code == 2
    assert "--reason" in out
    assert len(await decision_ids(db_engine)) == 5

    code, out = await invoke(
        "prune", "--before", "2026-02-01", "--reason", "quarterly cleanup", "--by", "ops-ann"
    )
    assert code == 0, out
    async with db_engine.connect() as conn:
        rows = (
            await conn.execute(
                text("SELECT account, actor, action, scope, reason, outcome FROM operator_actions")
            )
        ).all()
    assert [tuple(r) for r in rows] == [
        (
            ACCOUNT,
            "ops-ann",
            "prune",
            "account",
            "quarterly cleanup",
            "removed 1 holds, 0 delivered alerts",
        )
    ]
