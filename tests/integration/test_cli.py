"""The operator CLI against a real database, in process and as a second process."""

from __future__ import annotations

import asyncio

import pytest
from click.testing import Result
from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine
from typer.testing import CliRunner

from engine.cli import app
from tests.helpers import tradectl


@pytest.fixture
def cli_env(database_url: URL, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    env = {
        "DATABASE_URL": database_url.render_as_string(hide_password=False),
        "TRADECTL_ACCOUNT": "acct-cli",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


async def active_controls(engine: AsyncEngine) -> list[tuple[str, str, str, str]]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT scope, target, kind, reason FROM controls WHERE active ORDER BY id")
        )
        return [tuple(r) for r in rows]  # type: ignore[misc]


async def test_pause_and_resume_a_strategy_from_the_cli(
    cli_env: dict[str, str], db_engine: AsyncEngine
) -> None:
    runner = CliRunner()
    result = await _invoke(runner, ["pause", "--strategy", "sma-btc", "--reason", "checking"])
    assert result.exit_code == 0, result.output
    assert await active_controls(db_engine) == [("strategy", "sma-btc", "pause", "checking")]

    result = await _invoke(runner, ["resume", "--strategy", "sma-btc", "--reason", "checked"])
    assert result.exit_code == 0, result.output
    assert await active_controls(db_engine) == []


async def test_halt_from_a_second_process_is_persisted(
    cli_env: dict[str, str], db_engine: AsyncEngine
) -> None:
    proc = await tradectl(cli_env, "halt", "--reason", "exchange incident")
    assert proc.returncode == 0, proc.stderr
    assert await active_controls(db_engine) == [
        ("account", "acct-cli", "halt", "exchange incident")
    ]
    proc = await tradectl(cli_env, "status")
    assert proc.returncode == 0, proc.stderr
    assert "halt account:acct-cli" in proc.stdout


async def test_a_database_not_at_head_is_refused_with_the_command_to_run(
    empty_database_url: URL, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", empty_database_url.render_as_string(hide_password=False))
    result = await _invoke(CliRunner(), ["status"])
    assert result.exit_code == 2
    assert "tradectl migrate" in result.output


async def _invoke(runner: CliRunner, args: list[str]) -> Result:
    # The CLI runs its own event loop; keep it off the test's loop thread.
    return await asyncio.to_thread(runner.invoke, app, args)
