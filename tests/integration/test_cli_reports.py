"""`tradectl pnl`, `tradectl quality` and `tradectl status` print the views' figures for people:
plain numbers, quantities to the instrument's step, exposure as a share of each limit."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine

from engine.ledger.ledger import Ledger
from tests.helpers import tradectl
from tests.integration.test_pnl_views import ACCOUNT, VENUE, Clock, record_sequence

STRATEGIES = """
[[strategy]]
id = "momo"
kind = "sma_cross"
symbols = ["BTCUSDT"]
bar_interval = "1m"

[strategy.params]
fast = 3
slow = 8
qty = "0.001"

[strategy.limits]
max_position = "0.01"
max_position_notional = "1000"

[[strategy]]
id = "fv"
kind = "fair_value"
symbols = ["RAIN-26DEC01"]

[strategy.params]
fair = "0.55"
edge = "0.02"
qty = "10"
max_inventory = "100"

[strategy.limits]
max_position = "100"

[account.limits]
max_account_exposure = "10000"
max_daily_loss = "1000"
max_symbol_position = {BTCUSDT = "0.001"}
max_category_gross = {weather = "1000"}

[instruments.categories]
"RAIN-26DEC01" = "weather"
"""


@pytest.fixture
async def env(database_url: URL, db_engine: AsyncEngine, tmp_path: Path) -> dict[str, str]:
    clock = Clock()
    await record_sequence(Ledger(db_engine, account=ACCOUNT, venue=VENUE, clock=clock), clock)
    strategies = tmp_path / "strategies.toml"
    strategies.write_text(STRATEGIES, encoding="utf-8")
    return {
        "DATABASE_URL": database_url.render_as_string(hide_password=False),
        "TRADECTL_ACCOUNT": ACCOUNT,
        "TRADECTL_STRATEGIES_FILE": str(strategies),
        "COLUMNS": "200",  # rich's table width: nothing folded
    }


def _row(out: str, first: str) -> list[str]:
    """The cells of the table row starting with ``first``."""
    for line in out.splitlines():
        cells = [c.strip() for c in line.split("│")][1:-1]
        if cells and cells[0] == first:
            return cells
    raise AssertionError(f"no row {first!r} in:\n{out}")


async def test_pnl_prints_each_position_with_plain_numbers_and_totals_per_quote_asset(
    env: dict[str, str],
) -> None:
    proc = await tradectl(env, "pnl")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    momo = _row(out, "momo")
    # position 0.0005 (net of the BTC fee), average cost 28000, at the last fill price
    assert momo[:4] == ["momo", "BTCUSDT", "0.0005", "28000"]
    assert momo[8] == "28000 last_fill"
    assert "+0.5 BNB" in out
    assert "total USDT: realized" in out
    assert "total USD: realized" in out
    assert "E+" not in out
    assert "E-" not in out
    assert all(not (cell.endswith("0") and "." in cell) for cell in momo[2:8]), momo


async def test_pnl_since_reports_what_was_realized_after_it(env: dict[str, str]) -> None:
    proc = await tradectl(env, "pnl", "--since", "2026-11-30T09:00:35")
    assert proc.returncode == 0, proc.stderr
    assert "realized and fees since 2026-11-30T09:00:35+00:00" in proc.stdout
    momo = _row(proc.stdout, "momo")
    assert momo[7] == "0.01"  # the one fill since (the BNB fee came before)


async def test_pnl_refuses_a_since_it_cannot_read_in_one_line(env: dict[str, str]) -> None:
    proc = await tradectl(env, "pnl", "--since", "yesterday-ish")
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: --since 'yesterday-ish' is neither an age")
    assert len(proc.stderr.strip().splitlines()) == 1


async def test_quality_prints_fill_rate_slippage_latency_and_shortfall_per_strategy(
    env: dict[str, str],
) -> None:
    proc = await tradectl(env, "quality", "--strategy", "momo")
    assert proc.returncode == 0, proc.stderr
    row = _row(proc.stdout, "momo")
    # 5 orders, all filled; acks 20 ms and first fills 50 ms after the decision
    assert row[:4] == ["momo", "5", "5", "100%"]
    assert row[6:10] == ["20ms", "20ms", "50ms", "50ms"]
    assert not any(line.startswith("│ fv ") for line in proc.stdout.splitlines())


async def test_status_shows_pnl_from_the_view_and_exposure_against_each_limit(
    env: dict[str, str],
) -> None:
    proc = await tradectl(env, "status")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "pnl momo BTCUSDT: 0.0005 @ avg 28000 | realized" in out
    assert "| mark last_fill 28000 |" in out
    # 0.0005 of max_position 0.01; 0.0005 * 28000 = 14 of 1000
    assert "exposure momo BTCUSDT: position 0.0005" in out
    assert "max_position_qty 5% of 0.01" in out
    assert "max_position_notional 1.4% of 1000" in out
    assert "exposure fv RAIN-26DEC01: position 77" in out
    assert "max_position_qty 77% of 100" in out
    # BTC 14 + 77 contracts at their last fill, 0.61: 60.97 of 10000
    assert "limit account: max_account_exposure 0.6% of 10000 (60.97)" in out
    # the account's own limits per symbol and per category, every strategy together
    assert "limit account BTCUSDT: max_symbol_position 50% of 0.001 (0.0005)" in out
    assert "limit account category weather: max_category_gross 4.7% of 1000 (46.97)" in out
    # (today's loss depends on the day the test runs: the fills are dated 2026-11-30)
    assert "limit account: daily_loss " in out
    assert "% of 1000 (" in out
    assert "cash flow" not in out
