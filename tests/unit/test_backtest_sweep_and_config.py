"""``--sweep`` grids, several symbols (one file each) and a strategies TOML as input."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest
from typer.testing import CliRunner

from engine.backtest import BacktestError, BacktestSettings, run_backtest
from engine.backtest.sweep import parse_sweep, run_sweep
from engine.cli import app

OHLCV = Path(__file__).resolve().parents[1] / "resources" / "ohlcv"
BTC_DATA = OHLCV / "btcusdt_1d.csv"
PRES_DATA = OHLCV / "pres_yes_1d.csv"
IDEAL = ["--fees", "0", "--spread", "0", "--latency", "0"]

CONFIG = """
[backtest]
fees = "0"
spread_bps = 0
latency_ms = 0
capital = 50000

[[strategy]]
id = "sma-btc"
kind = "sma_cross"
symbols = ["BTCUSDT"]
bar_interval = "1d"
[strategy.params]
fast = 5
slow = 20
qty = "2"
[strategy.limits]
max_position = "1"

[[strategy]]
id = "fv-pres"
kind = "fair_value"
symbols = ["PRES-YES"]
[strategy.params]
fair = "0.55"
edge = "0.03"
qty = "20"
max_inventory = "200"
"""


def test_sweep_specs_expand_to_inclusive_ranges_and_lists() -> None:
    assert parse_sweep(["fast=5:20:5 slow=20,40"]) == {
        "fast": ["5", "10", "15", "20"],
        "slow": ["20", "40"],
    }
    with pytest.raises(BacktestError, match="step > 0"):
        parse_sweep(["fast=5:20:0"])
    with pytest.raises(BacktestError, match="names 'fast' twice"):
        parse_sweep(["fast=1,2", "fast=3"])


def test_a_sweep_ranks_every_valid_point_like_single_runs() -> None:
    settings = BacktestSettings(spread_bps=Decimal(0), latency_ms=Decimal(0))
    grid = {"fast": ["5", "10"], "slow": ["10", "20"]}
    result = run_sweep(BTC_DATA, "sma_cross", {"qty": "1"}, grid, 0, settings=settings, jobs=2)
    assert result.skipped == 1  # fast=10 slow=10: the strategy refuses it
    assert "slow: must be greater than fast" in result.skipped_samples[0]
    assert len(result.rows) == 3
    returns = [r.return_pct for r in result.rows]
    assert returns == sorted(returns, reverse=True)
    best = result.rows[0]
    alone = run_backtest(BTC_DATA, "sma_cross", best.params, 0, settings=settings)
    assert alone.pnl == best.pnl


def test_cli_sweep_takes_the_specs_after_one_flag() -> None:
    args = ["backtest", "--data", str(BTC_DATA), "--strategy", "sma_cross", *IDEAL,
            "--sweep", "fast=5:10:5", "slow=20,30", "--json", "--jobs", "1"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert [r["rank"] for r in doc["rows"]] == [1, 2, 3, 4]
    assert {(r["params"]["fast"], r["params"]["slow"]) for r in doc["rows"]} == {
        ("5", "20"), ("5", "30"), ("10", "20"), ("10", "30"),
    }  # fmt: skip


def test_one_file_per_symbol_runs_each_and_adds_them_up() -> None:
    args = ["backtest", "--strategy", "sma_cross", "--param", "qty=1", *IDEAL,
            "--data", f"BTCUSDT={BTC_DATA}", "--data", f"ETHUSDT={BTC_DATA}"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "sma_cross on BTCUSDT" in result.output
    assert "sma_cross on ETHUSDT" in result.output
    assert "total:" in result.output


def test_config_runs_its_strategies_with_params_limits_and_fill_model(tmp_path: Path) -> None:
    config = tmp_path / "strategies.toml"
    config.write_text(CONFIG)
    args = ["backtest", "--config", str(config), "--json",
            "--data", f"BTCUSDT={BTC_DATA}", "--data", f"PRES-YES={PRES_DATA}"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    runs = {r["symbol"]: r for r in json.loads(result.output)["runs"]}
    btc, pres = runs["BTCUSDT"], runs["PRES-YES"]
    assert btc["params"] == {"fast": "5", "slow": "20", "qty": "2"}
    assert btc["model"]["capital"] == "50000"
    assert btc["model"]["spread_bps"] == "0"
    assert Decimal(btc["fees"]) == 0
    # the TOML's max_position of 1 holds the 2-unit orders to 1
    assert all(Decimal(t["quantity"]) <= 1 for t in btc["trades"])
    assert btc["trades"]
    assert pres["model"]["fee_asset"] == "quote"


def test_config_strategy_without_its_data_is_a_one_line_error(tmp_path: Path) -> None:
    config = tmp_path / "strategies.toml"
    config.write_text(CONFIG)
    result = CliRunner().invoke(
        app, ["backtest", "--config", str(config), "--data", f"BTCUSDT={BTC_DATA}"]
    )
    assert result.exit_code == 2
    assert "give its bars as --data PRES-YES=FILE" in result.output
