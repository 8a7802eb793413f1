"""``tradectl sql``: psql on the ledger with or without an engine, piped or at a terminal."""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import URL

from engine.ledger.embedded import embedded_postgres, embedded_running
from tests.helpers import ROOT, tradectl

WIDE = "x" * 150


def readme_sql() -> list[str]:
    """Every statement of the README's ```sql blocks."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    statements: list[str] = []
    for block in re.findall(r"```sql\n(.*?)```", text, flags=re.DOTALL):
        code = "\n".join(line for line in block.splitlines() if not line.startswith("--"))
        statements += [s.strip() for s in code.split(";") if s.strip()]
    return statements


@pytest.fixture
def data_dir(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A data dir of its own (short: the server's socket lives in it), no DATABASE_URL."""
    path = Path(tempfile.mkdtemp(prefix="tctl-sql-", dir="/tmp"))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("TRADECTL_DATA_DIR", str(path))
    yield path
    if embedded_running(path / "pg"):
        with embedded_postgres(path / "pg"):
            pass  # the last user's exit stops it
    shutil.rmtree(path, ignore_errors=True)


def sh(command: str, stdin: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sh", "-c", command], input=stdin, capture_output=True, text=True, timeout=60, check=False
    )


async def test_sql_print_piped_to_sh_works_with_no_engine_running_and_does_not_wrap(
    data_dir: Path,
) -> None:
    printed = await tradectl({}, "sql", "--print")
    assert printed.returncode == 0, printed.stderr
    [command] = printed.stdout.splitlines()  # one line, however long
    assert "PGPASSWORD" not in command
    assert "tradectl sql --stop" in printed.stderr

    done = await asyncio.to_thread(sh, command, f"SELECT '{WIDE}' AS wide, 1 AS n;")
    assert done.returncode == 0, done.stderr
    assert any(line.strip().startswith(WIDE) for line in done.stdout.splitlines())

    stopped = await tradectl({}, "sql", "--stop")
    assert "stopped the embedded Postgres" in stopped.stdout
    assert not embedded_running(data_dir / "pg")


async def test_sql_next_to_a_running_engine_shares_its_server_and_leaves_it_running(
    data_dir: Path,
) -> None:
    pg = data_dir / "pg"
    # this test process holds the server as a running engine does
    with embedded_postgres(pg):
        done = await tradectl({}, "sql", "-c", "SELECT count(*) AS n FROM orders")
        assert done.returncode == 0, done.stderr
        assert "(1 row)" in done.stdout
        assert embedded_running(pg)
        busy = await tradectl({}, "sql", "--stop")
        assert "still used by a tradectl process" in busy.stdout
        assert embedded_running(pg)
    assert not embedded_running(pg)


async def test_sql_started_server_is_stopped_again_after_the_command(data_dir: Path) -> None:
    done = await tradectl({}, "sql", "-c", "SELECT 1")
    assert done.returncode == 0, done.stderr
    assert not embedded_running(data_dir / "pg")


async def test_a_failing_statement_fails_the_command(database_url: URL) -> None:
    env = {"DATABASE_URL": database_url.render_as_string(hide_password=False)}
    done = await tradectl(env, "sql", "-c", "SELECT * FROM no_such_table")
    assert done.returncode != 0
    assert "no_such_table" in done.stderr


@pytest.mark.parametrize("statement", readme_sql())
async def test_every_readme_sql_example_runs_through_tradectl_sql(
    database_url: URL, statement: str
) -> None:
    env = {"DATABASE_URL": database_url.render_as_string(hide_password=False)}
    done = await tradectl(env, "sql", "-c", statement)
    assert done.returncode == 0, f"{statement}\n{done.stderr}"
    assert "row" in done.stdout  # psql's "(N rows)" footer: the statement ran and returned


def test_the_readme_has_sql_examples() -> None:
    assert len(readme_sql()) >= 4
