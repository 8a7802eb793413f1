"""``tradectl backtest`` outputs: the text report's figures, ``--json``, ``--trades`` and
``--plot``."""

from __future__ import annotations

import csv
import json
import re
import xml.etree.ElementTree as ET
from decimal import Decimal
from pathlib import Path

from typer.testing import CliRunner

from engine.cli import app

FIXTURE = Path(__file__).resolve().parents[1] / "resources" / "ohlcv" / "btcusdt_1d.csv"
IDEAL = ["--fill", "close", "--fees", "0", "--spread", "0", "--latency", "0"]
RUN = ["backtest", "--data", str(FIXTURE), "--strategy", "sma_cross", "--param", "qty=2"]


def test_text_report_shows_the_performance_figures() -> None:
    result = CliRunner().invoke(app, RUN)
    assert result.exit_code == 0, result.output
    for label in (
        "return", "buy & hold", "CAGR", "volatility", "Sharpe", "Sortino", "Calmar",
        "exposure", "max drawdown", "round trips", "win rate", "best", "worst",
        "profit factor", "expectancy", "trade duration", "fill model", "gaps",
    ):  # fmt: skip
        assert label in result.output, label
    assert "participation=off" in result.output


def test_json_trades_and_plot_agree(tmp_path: Path) -> None:
    trades, plot = tmp_path / "trades.csv", tmp_path / "equity.html"
    args = [*RUN, *IDEAL, "--json", "--trades", str(trades), "--plot", str(plot)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["performance"]["trades"] == len(doc["trades"]) > 3
    assert len(doc["equity_curve"]) == doc["bars"] == 500
    assert doc["model"]["participation"] == "off"
    with trades.open() as handle:
        rows = list(csv.DictReader(handle))
    closed = [r for r in rows if r["exit_time"]]
    assert len(closed) == len(doc["trades"])
    assert [r["pnl"] for r in closed] == [t["pnl"] for t in doc["trades"]]
    total = sum(Decimal(r["pnl"]) for r in rows)
    assert total == Decimal(doc["pnl"])  # no fees, flat or open: the trips are the whole P&L
    page = plot.read_text()
    assert "<script" not in page
    assert "http" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    svg = re.search(r"<svg.*</svg>", page, re.S)
    assert svg is not None
    root = ET.fromstring(svg.group(0))
    shapes = {el.tag.rsplit("}", 1)[-1] for el in root.iter()}
    assert {"polyline", "polygon"} <= shapes


def test_an_unwritable_output_is_a_one_line_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, [*RUN, "--trades", str(tmp_path / "no" / "t.csv")])
    assert result.exit_code == 2
    assert "--trades" in result.output
    assert "cannot write" in result.output
