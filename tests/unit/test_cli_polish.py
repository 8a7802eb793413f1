"""CLI polish: --version, the settings in `run --help`, no raw type tags, reconcile's summary."""

from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

from engine.cli import app
from engine.cli.summaries import render_result
from engine.config import Settings
from engine.reconcile import ReconcileReport

COMMANDS = [
    [], ["run"], ["migrate"], ["sql"], ["status"], ["controls"], ["prune"], ["halt"], ["unhalt"],
    ["pause"], ["resume"], ["reduce-only"], ["reconcile"], ["cancel-all"], ["simulator"],
    ["backtest"], ["incidents"], ["incidents", "resolve"], ["explain"], ["journal"],
    ["requests"], ["requests", "drop"],
]  # fmt: skip


def help_of(args: list[str]) -> str:
    result = CliRunner().invoke(app, [*args, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    return result.output


def test_version_prints_the_package_version() -> None:
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    assert re.fullmatch(r"tradectl \d+\.\d+\.\d+\S*\n", result.output)


def test_run_help_lists_every_setting_it_reads() -> None:
    text = help_of(["run"])
    for name in Settings.model_fields:
        env = "DATABASE_URL" if name == "database_url" else f"TRADECTL_{name.upper()}"
        assert env in text, env
    assert "TRADECTL_ACCOUNT" in text
    assert "paper" in text  # its default


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "tradectl")
def test_help_shows_no_raw_type_tags(command: list[str]) -> None:
    text = help_of(command)
    assert not re.search(r"<(str|int|float|bool|path|list\[[a-z]+\])>", text), text


def test_reconcile_summary_says_what_was_done_in_sentences() -> None:
    report = ReconcileReport(orders_looked_up=3, fills_added=1, incidents=[7])
    report.balances_checked = True
    report.balance_drifts = [{"asset": "USDT", "venue": "100", "expected": "90"}]
    text = render_result("reconcile", {"ok": True, **report.as_json()})
    assert "3 orders looked up on the venue, 1 missing fill added" in text
    assert "USDT: venue 100, expected 90" in text
    assert "1 incident opened or updated: 7" in text
    assert "{" not in text  # no dict or JSON dump


def test_a_failed_operation_is_one_line_with_its_error() -> None:
    text = render_result("reconcile", {"ok": False, "error": "VenueError: timeout"})
    assert text == "reconcile failed: VenueError: timeout"
