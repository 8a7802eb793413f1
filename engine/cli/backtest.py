"""``tradectl backtest``: replay history through a strategy, with the fill model as flags."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from engine.cli._app import app, fail, guard, run_async, settings
from engine.cli.targets import check_target
from engine.database import open_database

if TYPE_CHECKING:
    from engine.backtest import BacktestReport, BacktestSettings

_MODEL = "Fill model"
_OUT = "Output"


@app.command()
def backtest(
    data: Annotated[Path, typer.Option(help="OHLCV CSV: Date,Open,High,Low,Close,Volume.")],
    strategy: Annotated[str, typer.Option(help="Strategy kind, e.g. sma_cross.")],
    param: Annotated[list[str] | None, typer.Option("--param", help="k=v, repeatable.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of latency, slippage and partial fills.")] = 0,
    symbol: Annotated[str, typer.Option(help="Symbol the data is for.")] = "BTCUSDT",
    fill: Annotated[
        str | None,
        typer.Option(
            help="When orders reach the market: 'close' of the signal bar or next 'open' "
            "[default: close].",
            rich_help_panel=_MODEL,
        ),
    ] = None,
    fees: Annotated[
        str | None,
        typer.Option(help="Fee rate, e.g. 0.001 or 0.1% [default: 0.001].", rich_help_panel=_MODEL),
    ] = None,
    fee_asset: Annotated[
        str | None,
        typer.Option(
            help="Fees in the asset 'received' or always in the 'quote' asset "
            "[default: received; quote on prediction markets].",
            rich_help_panel=_MODEL,
        ),
    ] = None,
    spread: Annotated[
        str | None,
        typer.Option(help="Full spread in basis points [default: 2].", rich_help_panel=_MODEL),
    ] = None,
    latency: Annotated[
        str | None,
        typer.Option(
            help="Mean latency in ms (exponential; 0: none) [default: 50].", rich_help_panel=_MODEL
        ),
    ] = None,
    participation: Annotated[
        str | None,
        typer.Option(
            help="Share of each bar's volume an order may take, or 'off' [default: off].",
            rich_help_panel=_MODEL,
        ),
    ] = None,
    tick_size: Annotated[
        str | None,
        typer.Option(
            help="Price tick [default: the instrument's, else the data's precision].",
            rich_help_panel=_MODEL,
        ),
    ] = None,
    lot_step: Annotated[
        str | None,
        typer.Option(
            help="Quantity step [default: the instrument's, else the volumes' precision].",
            rich_help_panel=_MODEL,
        ),
    ] = None,
    capital: Annotated[
        str | None,
        typer.Option(
            help="Quote-asset cash at the start [default: 100000].", rich_help_panel=_MODEL
        ),
    ] = None,
    json_out: Annotated[
        bool,
        typer.Option("--json", help="Print the report as one JSON document.", rich_help_panel=_OUT),
    ] = False,
    trades: Annotated[
        Path | None,
        typer.Option(help="Write the round trips to this CSV file.", rich_help_panel=_OUT),
    ] = None,
    plot: Annotated[
        Path | None,
        typer.Option(
            help="Write the equity curve and drawdown to this self-contained HTML file.",
            rich_help_panel=_OUT,
        ),
    ] = None,
    persist: Annotated[
        bool,
        typer.Option(
            "--persist",
            help="Record the run in the ledger (decisions, orders, events, fills) through the "
            "live execution path, to inspect it with SQL.",
        ),
    ] = False,
    account: Annotated[
        str | None,
        typer.Option(help="Ledger account for --persist [default: backtest-<kind>-<seed>-<time>]."),
    ] = None,
) -> None:
    """Replay history through a strategy on the paper venue and print a report.

    The ideal fill model, whose results equal backtesting.py's trade_on_close=True:
    --fill close --fees 0 --spread 0 --latency 0 --participation off."""
    from engine.backtest import (
        BacktestSettings,
        ledger_hint,
        run_backtest,
        run_backtest_persisted,
    )
    from engine.backtest.settings import parse_overrides
    from engine.domain.types import Symbol

    # an empty symbol got as far as a strategy's decision key and failed there, mid-replay
    symbol = check_target("--symbol", symbol) or ""
    params = parse_params(param)
    account = check_target("--account", account)
    if account is not None and not persist:
        fail("--account names the ledger account of --persist")
    flags = {
        "fill": fill,
        "fees": fees,
        "fee_asset": fee_asset,
        "spread_bps": spread,
        "latency_ms": latency,
        "participation": participation,
        "tick_size": tick_size,
        "lot_step": lot_step,
        "capital": capital,
    }
    with guard():
        bt_settings = with_overrides(
            BacktestSettings.for_symbol(Symbol(symbol)), parse_overrides(flags, "backtest flags")
        )
    outputs = Outputs(json=json_out, trades=trades, plot=plot)
    if not persist:
        with guard():
            report = run_backtest(data, strategy, params, seed, settings=bt_settings)
        outputs.emit(report)
        return

    from engine.observability import configure_logging

    # The execution path narrates each order at INFO; the report is what matters here, and
    # stdout must carry nothing else.
    configure_logging(json=False, level="WARNING")

    async def go() -> tuple[BacktestReport, str]:
        async with open_database(settings()) as db:
            persisted = await run_backtest_persisted(
                data,
                strategy,
                params,
                seed,
                engine=db.engine,
                account=account,
                settings=bt_settings,
            )
            assert persisted.account is not None
            hint = f'inspect it: {db.psql} -c "{ledger_hint(persisted.account)}"'
            if db.embedded:
                hint += (
                    "\n(the embedded Postgres runs while a tradectl process uses it: query it "
                    "while `tradectl run` is up, or set DATABASE_URL)"
                )
            return persisted, hint

    persisted, hint = run_async(go)
    outputs.emit(persisted)
    if not json_out:
        typer.echo(hint)


def parse_params(items: list[str] | None) -> dict[str, str]:
    params: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            fail(f"--param takes k=v, got {item!r}")
        params[key.strip()] = value.strip()
    return params


def with_overrides(base: BacktestSettings, overrides: dict[str, object]) -> BacktestSettings:
    """``base`` with the given fields replaced, checked."""
    result = dataclasses.replace(base, **overrides)  # type: ignore[arg-type]
    result.check()
    return result


@dataclasses.dataclass(frozen=True, slots=True)
class Outputs:
    """Where a report goes: text or JSON on stdout, and the optional trade and plot files."""

    json: bool = False
    trades: Path | None = None
    plot: Path | None = None

    def emit(self, report: BacktestReport) -> None:
        import json

        from engine.backtest import render_report
        from engine.backtest.output import report_json, write_trades_csv
        from engine.backtest.plot import write_plot

        with guard():
            written = []
            if self.trades is not None:
                rows = write_trades_csv(report, self.trades)
                written.append(f"trades: {rows} rows in {self.trades}")
            if self.plot is not None:
                write_plot(report, self.plot)
                written.append(f"plot: {self.plot}")
        if self.json:
            typer.echo(json.dumps(report_json(report)))
            return
        # Plain output: rich would re-wrap long lines and colour the numbers.
        typer.echo(render_report(report))
        for line in written:
            typer.echo(line)
