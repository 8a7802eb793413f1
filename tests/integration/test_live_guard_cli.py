"""`tradectl run` on a production venue prints what it is about to do and stops without the
explicit confirmation, before it opens the database or the venue."""

from __future__ import annotations

from tests.helpers import tradectl

PRODUCTION = {
    "TRADECTL_VENUE": "binance",
    "TRADECTL_BINANCE_REST_URL": "https://api.binance.com",
    "TRADECTL_ACCOUNT": "main",
    "TRADECTL_STAGE": "small_live",
    "TRADECTL_LOG_FORMAT": "console",
    # never reached: the guard stops the run first
    "DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none",
}


async def test_run_on_production_without_confirmation_prints_the_plan_and_exits() -> None:
    done = await tradectl(PRODUCTION, "run")
    assert done.returncode == 2
    assert "about to trade REAL MONEY: account main on Binance at https://api.binance.com" in (
        done.stdout
    )
    assert "stage small_live, capital fraction 0.1 of every order" in done.stdout
    assert "TRADECTL_CONFIRM_LIVE=yes or `tradectl run --i-understand`" in done.stderr


async def test_run_help_names_the_confirmation_and_the_stage_settings() -> None:
    done = await tradectl({}, "run", "--help")
    assert "--i-understand" in done.stdout
    assert "TRADECTL_STAGE" in done.stdout
    assert "TRADECTL_PAPER_FEED" in done.stdout
