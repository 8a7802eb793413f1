"""What an operator may type wrong: every bad input is one ``error:`` line and exit code 2.

Each case runs ``tradectl`` as a second process would, with a DATABASE_URL that carries a
password, and checks that the password never reaches stdout or stderr.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.helpers import ROOT, tradectl

SECRET = "s3cret-pw"
EXAMPLE = str(ROOT / "strategies" / "example.toml")
KALSHI_SIM = ["simulator", "--protocol", "kalshi"]
STRATEGIES = "TRADECTL_STRATEGIES_FILE"
BACKTEST = ["backtest", "--strategy", "sma_cross", "--data"]
OHLCV = str(ROOT / "tests" / "resources" / "ohlcv" / "btcusdt_1d.csv")
SMA = ["--param", "fast=3", "--param", "slow=5"]
#: every operator action says why; cases about something else give one
WHY = ["--reason", "testing input checks"]


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A loopback port something already listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


@pytest.fixture
def files(tmp_path: Path) -> dict[str, str]:
    binary = tmp_path / "binary.bin"
    binary.write_bytes(bytes(range(256)) * 8)
    binary_toml = tmp_path / "binary.toml"
    binary_toml.write_bytes(binary.read_bytes())
    latin = tmp_path / "latin1.toml"
    latin.write_bytes('name = "caf\xe9"\n'.encode("latin-1"))
    shape = tmp_path / "shape.toml"
    shape.write_text("symbols = 5\n", encoding="utf-8")
    return {
        "bin": str(binary),
        "bin_toml": str(binary_toml),
        "latin": str(latin),
        "shape": str(shape),
        "dir": str(tmp_path),
    }


# (id, argv, environment): "{…}" is filled in from the fixtures above; "{url}" is a reachable
# database whose URL carries the password; "{role_url}" names a role the server does not know,
# "{nodb_url}" a database it does not have.
CASES: list[tuple[str, list[str], dict[str, str]]] = [
    ("url-port-out-of-range", ["status"], {"DATABASE_URL": f"postgresql://u:{SECRET}@localhost:99999/db"}),
    ("url-port-zero", ["migrate"], {"DATABASE_URL": f"postgresql://u:{SECRET}@localhost:0/db"}),
    ("url-port-not-a-number", ["status"], {"DATABASE_URL": f"postgresql://u:{SECRET}@localhost:abc/db"}),
    ("url-not-a-url", ["status"], {"DATABASE_URL": f"not a url {SECRET}"}),
    ("url-wrong-scheme", ["status"], {"DATABASE_URL": f"mysql://u:{SECRET}@localhost/db"}),
    ("url-unreachable", ["status"], {"DATABASE_URL": f"postgresql://u:{SECRET}@127.0.0.1:1/db"}),
    ("url-unreachable-migrate", ["migrate"], {"DATABASE_URL": f"postgresql://u:{SECRET}@127.0.0.1:1/db"}),
    ("url-unknown-role", ["status"], {"DATABASE_URL": "{role_url}"}),
    ("url-unknown-role-migrate", ["migrate"], {"DATABASE_URL": "{role_url}"}),
    ("url-unknown-database", ["status"], {"DATABASE_URL": "{nodb_url}"}),
    ("metrics-port-in-use", ["run"], {"TRADECTL_METRICS_PORT": "{busy_port}"}),
    ("metrics-port-out-of-range", ["run"], {"TRADECTL_METRICS_PORT": "70000"}),
    ("strategies-binary", ["run"], {"TRADECTL_STRATEGIES_FILE": "{bin}"}),
    ("strategies-latin1", ["run"], {"TRADECTL_STRATEGIES_FILE": "{latin}"}),
    ("strategies-directory", ["run"], {"TRADECTL_STRATEGIES_FILE": "{dir}"}),
    ("strategies-binary-pause", ["pause", "--strategy", "sma-btc", *WHY], {STRATEGIES: "{bin}"}),
    ("incident-id-beyond-bigint", ["incidents", "resolve", str(10**20 - 1), "--note", "x"], {}),
    ("incident-id-zero", ["incidents", "resolve", "0", "--note", "x"], {}),
    ("incident-id-negative", ["incidents", "resolve", "--note", "x", "--", "-1"], {}),
    ("incident-note-empty", ["incidents", "resolve", "1", "--note", " "], {}),
    ("backtest-binary", [*BACKTEST, "{bin}"], {}),
    ("backtest-directory", [*BACKTEST, "{dir}"], {}),
    ("backtest-missing", [*BACKTEST, "{dir}/nope.csv"], {}),
    ("backtest-bad-param", [*BACKTEST, "{bin}", "--param", "x"], {}),
    ("backtest-param-huge", [*BACKTEST, OHLCV, *SMA, "--param", "qty=1e999"], {}),
    ("backtest-symbol-empty", [*BACKTEST, OHLCV, *SMA, "--param", "qty=1", "--symbol", ""], {}),
    ("backtest-account-empty", [*BACKTEST, OHLCV, "--persist", "--account", " "], {}),
    ("simulator-config-binary", ["simulator", "--config", "{bin_toml}"], {}),
    ("simulator-config-latin1", ["simulator", "--config", "{latin}"], {}),
    ("simulator-config-shape", ["simulator", "--config", "{shape}"], {}),
    ("simulator-faults-binary", ["simulator", "--faults", "{bin_toml}"], {}),
    ("simulator-restore-binary", ["simulator", "--restore", "{bin}"], {}),
    ("simulator-port-out-of-range", ["simulator", "--port", "70000"], {}),
    ("simulator-port-in-use", ["simulator", "--port", "{busy_port}"], {}),
    ("simulator-protocol-unknown", ["simulator", "--protocol", "kraken"], {}),
    ("simulator-kalshi-faults-binary", [*KALSHI_SIM, "--faults", "{bin_toml}"], {}),
    ("simulator-kalshi-restore", [*KALSHI_SIM, "--restore", "{bin}"], {}),
    ("simulator-kalshi-read-lag-negative", [*KALSHI_SIM, "--read-lag", "-1"], {}),
    ("strategy-empty", ["pause", "--strategy", "", *WHY], {}),
    ("symbol-whitespace", ["pause", "--symbol", "   ", *WHY], {}),
    ("unhalt-strategy-empty", ["unhalt", "--strategy", "", *WHY], {}),
    ("cancel-all-strategy-empty", ["cancel-all", "--strategy", "", *WHY], {}),
    ("strategy-unknown", ["pause", "--strategy", "nonexistent", *WHY], {}),
    ("symbol-unknown", ["reduce-only", "--symbol", "DOGEUSDT", *WHY], {}),
    ("strategy-too-long", ["pause", "--force", "--strategy", "s" * 65, *WHY], {}),
    ("strategy-control-chars", ["halt", "--force", "--strategy", "a\nb", *WHY], {}),
    ("reason-too-long", ["halt", "--reason", "r" * 501], {}),
    ("timeout-negative", ["reconcile", "--timeout", "-1", *WHY], {}),
    ("strategy-and-symbol", ["pause", "--strategy", "sma-btc", "--symbol", "BTCUSDT", *WHY], {}),
    ("global-with-strategy", ["halt", "--global", "--strategy", "sma-btc", *WHY], {}),
    ("timeout-not-finite", ["reconcile", "--timeout", "nan", *WHY], {}),
    ("settings-invalid", ["status"], {"TRADECTL_LEASE_TTL_S": "0", "TRADECTL_ACCOUNT": ""}),
    ("reason-missing-halt", ["halt"], {}),
    ("reason-missing-unhalt", ["unhalt"], {}),
    ("reason-missing-pause", ["pause", "--strategy", "sma-btc"], {}),
    ("reason-missing-resume", ["resume", "--strategy", "sma-btc"], {}),
    ("reason-missing-reduce-only", ["reduce-only", "--symbol", "BTCUSDT"], {}),
    ("reason-missing-reduce-only-off", ["reduce-only", "--symbol", "BTCUSDT", "--off"], {}),
    ("reason-missing-reconcile", ["reconcile"], {}),
    ("reason-missing-accept-balances", ["reconcile", "--accept-balances"], {}),
    ("reason-missing-cancel-all", ["cancel-all"], {}),
    ("reason-missing-incident", ["incidents", "resolve", "1"], {}),
    ("reason-missing-request-drop", ["requests", "drop", "1"], {}),
    ("reason-blank", ["halt", "--reason", "  "], {}),
    ("by-blank", ["halt", "--reason", "x", "--by", " "], {}),
    ("request-id-zero", ["requests", "drop", "0", *WHY], {}),
    ("journal-since-bad", ["journal", "--since", "yesterday"], {}),
]  # fmt: skip


# what some messages must say (the rest: any one error line will do)
EXPECT = {
    "url-port-out-of-range": "port 99999",
    "url-unknown-role": "refused the connection",
    "url-unknown-role-migrate": "refused the connection",
    "url-unknown-database": "refused the connection",
    "url-unreachable-migrate": "is unavailable",
    "metrics-port-in-use": "TRADECTL_METRICS_PORT",
    "strategies-binary": "not UTF-8",
    "strategies-binary-pause": "--force",
    "incident-id-beyond-bigint": "out of range",
    "simulator-config-shape": "not a simulator config",
    "strategy-unknown": "--force",
    **{case: "--reason is required" for case, *_ in CASES if case.startswith("reason-missing")},
    "reason-blank": "--reason is empty",
    "journal-since-bad": "--since 'yesterday'",
}


@pytest.mark.parametrize(("case", "argv", "env"), CASES, ids=[c[0] for c in CASES])
async def test_bad_input_is_one_error_line_and_exit_2(
    case: str,
    argv: list[str],
    env: dict[str, str],
    pg_server_url: URL,
    busy_port: int,
    files: dict[str, str],
) -> None:
    values = {
        **files,
        "busy_port": str(busy_port),
        # the test server may listen on a Unix socket only: derive from its URL
        "role_url": _render(pg_server_url.set(username="nobody_here", password=SECRET)),
        "nodb_url": _render(pg_server_url.set(password=SECRET, database="no_such_db")),
    }
    full_env = {
        "DATABASE_URL": _render(pg_server_url.set(password=SECRET)),
        "TRADECTL_ACCOUNT": "acct-input",
        "TRADECTL_VENUE": "paper",
        "TRADECTL_STRATEGIES_FILE": EXAMPLE,
        **{k: v.format(**values) for k, v in env.items()},
    }
    proc = await tradectl(full_env, *(arg.format(**values) for arg in argv))

    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: "), proc.stderr
    assert EXPECT.get(case, "") in lines[0]
    assert "Traceback" not in proc.stdout + proc.stderr
    assert SECRET not in proc.stdout + proc.stderr


def _render(url: URL) -> str:
    return url.render_as_string(hide_password=False)


@pytest.fixture
def cli_env(database_url: URL) -> dict[str, str]:
    return {
        "DATABASE_URL": database_url.render_as_string(hide_password=False),
        "TRADECTL_ACCOUNT": "acct-input",
        "TRADECTL_STRATEGIES_FILE": EXAMPLE,
    }


async def active(engine: AsyncEngine) -> list[tuple[str, str, str]]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT scope, target, kind FROM controls WHERE active ORDER BY id")
        )
        return [(r.scope, r.target, r.kind) for r in rows]


async def test_unhalt_with_a_blank_strategy_leaves_the_account_halt(
    cli_env: dict[str, str], db_engine: AsyncEngine
) -> None:
    assert (await tradectl(cli_env, "halt", "--reason", "incident")).returncode == 0
    for blank in ("", " "):
        proc = await tradectl(cli_env, "unhalt", "--strategy", blank, *WHY)
        assert proc.returncode == 2, proc.stdout
        assert "--strategy is empty" in proc.stderr
    assert await active(db_engine) == [("account", "acct-input", "halt")]


async def test_an_unknown_strategy_is_refused_unless_forced(
    cli_env: dict[str, str], db_engine: AsyncEngine
) -> None:
    proc = await tradectl(cli_env, "pause", "--strategy", "sma-bct", "--reason", "typo")
    assert proc.returncode == 2
    assert "'sma-bct' is not in" in proc.stderr
    assert "sma-btc" in proc.stderr  # the known ones are listed
    assert "--force" in proc.stderr
    assert await active(db_engine) == []

    proc = await tradectl(cli_env, "pause", "--strategy", "retired-strat", "--force", *WHY)
    assert proc.returncode == 0, proc.stderr
    assert await active(db_engine) == [("strategy", "retired-strat", "pause")]
    proc = await tradectl(cli_env, "resume", "--strategy", "retired-strat", *WHY)
    assert proc.returncode == 2  # lifting one needs --force too
    proc = await tradectl(cli_env, "resume", "--strategy", "retired-strat", "--force", *WHY)
    assert proc.returncode == 0, proc.stderr
    assert await active(db_engine) == []


async def test_known_symbols_are_the_strategies_symbols(
    cli_env: dict[str, str], db_engine: AsyncEngine
) -> None:
    proc = await tradectl(cli_env, "reduce-only", "--symbol", "ETHUSDT", *WHY)
    assert proc.returncode == 2
    assert "BTCUSDT" in proc.stderr
    proc = await tradectl(cli_env, "reduce-only", "--symbol", "BTCUSDT", *WHY)
    assert proc.returncode == 0, proc.stderr
    assert await active(db_engine) == [("symbol", "BTCUSDT", "reduce_only")]
