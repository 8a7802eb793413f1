"""``tradectl accounts``: add, list, disable, enable, load; each change journalled with its
reason, credentials stored as references only."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.helpers import tradectl
from tests.integration.pool_helpers import scalar


async def test_accounts_are_added_listed_disabled_and_enabled_with_a_journalled_reason(
    database_url: URL, db_engine: AsyncEngine
) -> None:
    env = {"DATABASE_URL": database_url.render_as_string(hide_password=False)}
    added = await tradectl(
        env, "accounts", "add", "sub-1", "--venue", "binance",
        "--credential", "binance_api_key=env:SUB1_KEY",
        "--credential", "binance_api_secret=file:/run/secrets/sub1",
        "--setting", "lease_ttl_s=5", "--limit", "max_order_qty=0.5",
        "--reason", "new sub-account",
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    listed = await tradectl(env, "accounts", "list")
    assert listed.returncode == 0, listed.stderr
    assert "sub-1" in listed.stdout
    assert "env:SUB1_KEY" in listed.stdout
    assert "testnet" in listed.stdout

    disabled = await tradectl(env, "accounts", "disable", "sub-1", "--reason", "key rotation")
    assert disabled.returncode == 0, disabled.stderr
    assert not await scalar(db_engine, "SELECT enabled FROM accounts WHERE account = 'sub-1'")
    again = await tradectl(env, "accounts", "enable", "sub-1", "--reason", "rotated")
    assert again.returncode == 0, again.stderr
    assert await scalar(db_engine, "SELECT enabled FROM accounts WHERE account = 'sub-1'")

    journal = await scalar(
        db_engine,
        "SELECT string_agg(action || ':' || reason, ',' ORDER BY id) FROM operator_actions "
        "WHERE account = 'sub-1'",
    )
    assert (
        journal == "account_add:new sub-account,account_disable:key rotation,account_enable:rotated"
    )


async def test_a_pasted_secret_a_missing_reason_and_a_duplicate_are_refused_in_one_line(
    database_url: URL, db_engine: AsyncEngine, tmp_path: Path
) -> None:
    env = {"DATABASE_URL": database_url.render_as_string(hide_password=False)}
    pasted = await tradectl(
        env, "accounts", "add", "sub-2", "--venue", "binance",
        "--credential", "binance_api_key=Zk3secretvalue", "--reason", "x",
    )  # fmt: skip
    assert pasted.returncode == 2
    assert "never the secret itself" in pasted.stderr
    assert "Zk3secretvalue" not in pasted.stderr
    unreasoned = await tradectl(env, "accounts", "add", "sub-2", "--venue", "paper")
    assert unreasoned.returncode == 2
    assert "--reason" in unreasoned.stderr
    accounts = tmp_path / "accounts.toml"
    accounts.write_text('[accounts.p1]\nvenue = "paper"\n[accounts.p2]\nvenue = "paper"\n')
    loaded = await tradectl(env, "accounts", "load", str(accounts), "--reason", "bootstrap")
    assert loaded.returncode == 0, loaded.stderr
    assert "added 2 account(s)" in loaded.stdout
    dup = await tradectl(env, "accounts", "add", "p1", "--venue", "paper", "--reason", "again")
    assert dup.returncode == 2
    assert "exists already" in dup.stderr
    assert await scalar(db_engine, "SELECT count(*) FROM accounts") == 2
