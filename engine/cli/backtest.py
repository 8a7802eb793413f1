"""``tradectl backtest``: replay history through a strategy, with the fill model as flags; one
file, one file per symbol, a strategies TOML, or a grid of params (``--sweep``)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from engine.cli._app import app, fail, guard, run_async, settings
from engine.cli.targets import check_target
from engine.database import open_database

if TYPE_CHECKING:
    from engine.backtest import BacktestReport
    from engine.backtest.plan import Run

_MODEL = "Fill model"
_OUT = "Output"
_SWEEP = "Sweep"


@app.command()
def backtest(
    data: Annotated[
        list[str],
        typer.Option(
            help="OHLCV CSV (Date,Open,High,Low,Close,Volume) of --symbol, or SYMBOL=FILE; "
            "repeat it for several symbols."
        ),
    ],
    strategy: Annotated[
        str | None,
        typer.Option(
            help="Strategy kind, e.g. sma_cross (with --config: keep the entries of this id "
            "or kind)."
        ),
    ] = None,
    param: Annotated[list[str] | None, typer.Option("--param", help="k=v, repeatable.")] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            help="Strategies TOML: replay its \\[\\[strategy]] entries (params, limits) with the "
            "fill model of its \\[backtest] table."
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of latency, slippage and partial fills.")] = 0,
    symbol: Annotated[str, typer.Option(help="Symbol a plain --data FILE is for.")] = "BTCUSDT",
    fill: Annotated[
        str | None,
        typer.Option(
            help="When orders reach the market: 'close' of the signal bar or next 'open' "
            "\\[default: close].",
            rich_help_panel=_MODEL,
        ),
    ] = None,
    fees: Annotated[
        str | None,
        typer.Option(
            help="Fee rate, e.g. 0.001 or 0.1% \\[default: 0.001].", rich_help_panel=_MODEL
        ),
    ] = None,
    fee_asset: Annotated[
        str | None,
        typer.Option(
            help="Fees in the asset 'received' or always in the 'quote' asset "
            "\\[default: received on crypto pairs (...USDT), quote elsewhere].",
            rich_help_panel=_MODEL,
        ),
    ] = None,
    spread: Annotated[
        str | None,
        typer.Option(help="Full spread in basis points \\[default: 2].", rich_help_panel=_MODEL),
    ] = None,
    latency: Annotated[
        str | None,
        typer.Option(
            help="Mean latency in ms (exponential; 0: none) \\[default: 50].",
            rich_help_panel=_MODEL,
        ),
    ] = None,
    participation: Annotated[
        str | None,
        typer.Option(
            help="Share of each bar's volume an order may take, or 'off' \\[default: off].",
            rich_help_panel=_MODEL,
        ),
    ] = None,
    tick_size: Annotated[
        str | None,
        typer.Option(
            help="Price tick \\[default: the instrument's, else the data's precision].",
            rich_help_panel=_MODEL,
        ),
    ] = None,
    lot_step: Annotated[
        str | None,
        typer.Option(
            help="Quantity step \\[default: the instrument's, else the volumes' precision].",
            rich_help_panel=_MODEL,
        ),
    ] = None,
    capital: Annotated[
        str | None,
        typer.Option(
            help="Quote-asset cash at the start \\[default: 100000].", rich_help_panel=_MODEL
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
    sweep: Annotated[
        list[str] | None,
        typer.Option(
            help="Run a grid: name=start:stop:step or name=a,b,c; several after one --sweep "
            "(--sweep fast=5:20:5 slow=20:60:10) or repeated.",
            rich_help_panel=_SWEEP,
        ),
    ] = None,
    rank_by: Annotated[
        str,
        typer.Option(
            help="Rank a sweep by return_pct, sharpe, sortino, calmar, profit_factor, "
            "win_rate_pct or max_drawdown_pct (lowest first).",
            rich_help_panel=_SWEEP,
        ),
    ] = "return_pct",
    jobs: Annotated[
        int | None,
        typer.Option(help="Sweep processes \\[default: the CPUs].", rich_help_panel=_SWEEP),
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
        typer.Option(
            help="Ledger account for --persist \\[default: backtest-<kind>-<seed>-<time>]."
        ),
    ] = None,
    more_sweep: Annotated[list[str] | None, typer.Argument(hidden=True)] = None,
) -> None:
    """Replay history through a strategy on the paper venue and print a report.

    The ideal fill model, whose results equal backtesting.py's trade_on_close=True:
    --fill close --fees 0 --spread 0 --latency 0 --participation off."""
    from engine.backtest.plan import parse_data, plan_runs

    # an empty symbol got as far as a strategy's decision key and failed there, mid-replay
    symbol = check_target("--symbol", symbol) or ""
    params = parse_params(param)
    account = check_target("--account", account)
    if account is not None and not persist:
        fail("--account names the ledger account of --persist")
    specs = [*(sweep or []), *(more_sweep or [])]
    if more_sweep and not sweep:
        fail(f"unexpected argument {more_sweep[0]!r} (sweep specs follow --sweep)")
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
    outputs = Outputs(json=json_out, trades=trades, plot=plot)
    with guard():
        runs = plan_runs(
            files=parse_data(data, symbol),
            kind=strategy,
            params=params,
            config=config,
            flags=flags,
        )
    if specs:
        if persist or len(runs) != 1:
            fail("--sweep runs one strategy on one file, in memory (no --persist)")
        _sweep(runs[0], specs, seed, rank_by=rank_by, jobs=jobs, json_out=json_out)
        return
    if not persist:
        reports = []
        for run in runs:
            with guard(), progress_bar(f"{run.label} {run.settings.symbol}") as tick:
                reports.append(_run(run, seed, tick))
        outputs.emit(reports)
        return

    from engine.backtest import default_account, ledger_hint, run_backtest_persisted
    from engine.observability import configure_logging

    # The execution path narrates each order at INFO; the report is what matters here, and
    # stdout must carry nothing else.
    configure_logging(json=False, level="WARNING")

    async def go() -> tuple[list[BacktestReport], list[str]]:
        reports, hints = [], []
        async with open_database(settings()) as db:
            for run in runs:
                name = account or default_account(run.label, seed)
                if len(runs) > 1:  # one fresh account per replay
                    name = f"{name}-{run.settings.symbol}-{run.label}"
                persisted = await run_backtest_persisted(
                    run.data,
                    run.kind,
                    dict(run.params),
                    seed,
                    engine=db.engine,
                    account=name,
                    settings=run.settings,
                )
                assert persisted.account is not None
                reports.append(persisted)
                hints.append(f'inspect it: {db.psql} -c "{ledger_hint(persisted.account)}"')
            if db.embedded:
                hints.append(
                    "(the embedded Postgres runs while a tradectl process uses it: query it "
                    "while `tradectl run` is up, or set DATABASE_URL)"
                )
        return reports, hints

    persisted, hints = run_async(go)
    outputs.emit(persisted)
    if not json_out:
        for hint in hints:
            typer.echo(hint)


def _run(run: Run, seed: int, tick: Callable[[int, int], None]) -> BacktestReport:
    from engine.backtest import run_backtest

    return run_backtest(
        run.data, run.kind, dict(run.params), seed, settings=run.settings, progress=tick
    )


@contextmanager
def progress_bar(label: str) -> Iterator[Callable[[int, int], None]]:
    """A rich progress bar on stderr while a long job runs (none when stderr is not a
    terminal: stdout stays the report, and logs stay clean)."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    console = Console(stderr=True)
    if not console.is_terminal:
        yield lambda done, total: None
        return
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task(label, total=None)

        def tick(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield tick


def _sweep(
    run: Run, specs: Sequence[str], seed: int, *, rank_by: str, jobs: int | None, json_out: bool
) -> None:
    import json

    from rich.console import Console
    from rich.table import Table

    from engine.backtest.sweep import parse_sweep, run_sweep

    with guard():
        grid = parse_sweep(specs)
        with progress_bar(f"sweep {run.label} {run.settings.symbol}") as tick:
            result = run_sweep(
                run.data,
                run.kind,
                run.params,
                grid,
                seed,
                settings=run.settings,
                rank_by=rank_by,
                jobs=jobs,
                progress=tick,
            )
    if json_out:
        rows = [
            {**dataclasses.asdict(r), "pnl": str(r.pnl), "rank": n}
            for n, r in enumerate(result.rows, 1)
        ]
        typer.echo(json.dumps({"rank_by": rank_by, "rows": rows, "skipped": result.skipped}))
        return

    def num(value: float | None, suffix: str = "") -> str:
        return "n/a" if value is None else f"{value:.2f}{suffix}"

    table = Table(title=f"{run.label} on {run.settings.symbol}: ranked by {rank_by}")
    names = list(grid)
    for column in ("#", *names, "return", "Sharpe", "Sortino", "max DD", "trades", "win", "PF"):
        table.add_column(column, justify="right")
    for n, r in enumerate(result.rows, 1):
        table.add_row(
            str(n),
            *(r.params[k] for k in names),
            num(r.return_pct, "%"),
            num(r.sharpe),
            num(r.sortino),
            num(r.max_drawdown_pct, "%"),
            str(r.trades),
            num(r.win_rate_pct, "%"),
            num(r.profit_factor),
        )
    Console(width=200).print(table)
    if result.skipped:
        typer.echo(f"skipped {result.skipped} point(s) the strategy refused, e.g.:")
        for sample in result.skipped_samples:
            typer.echo(f"  {sample}")


def parse_params(items: list[str] | None) -> dict[str, str]:
    params: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            fail(f"--param takes k=v, got {item!r}")
        params[key.strip()] = value.strip()
    return params


@dataclasses.dataclass(frozen=True, slots=True)
class Outputs:
    """Where reports go: text or JSON on stdout, and the optional trade and plot files."""

    json: bool = False
    trades: Path | None = None
    plot: Path | None = None

    def emit(self, reports: Sequence[BacktestReport]) -> None:
        import json

        from engine.backtest import render_report
        from engine.backtest.output import report_json, write_trades_csv
        from engine.backtest.plot import write_plot
        from engine.backtest.render import render_totals

        with guard():
            written = []
            if self.trades is not None:
                rows = write_trades_csv(reports, self.trades)
                written.append(f"trades: {rows} rows in {self.trades}")
            if self.plot is not None:
                write_plot(reports, self.plot)
                written.append(f"plot: {self.plot}")
        if self.json:
            docs = [report_json(r) for r in reports]
            typer.echo(json.dumps(docs[0] if len(docs) == 1 else {"runs": docs}))
            return
        # Plain output: rich would re-wrap long lines and colour the numbers.
        typer.echo("\n\n".join(render_report(r) for r in reports))
        if len(reports) > 1:
            typer.echo("\n" + render_totals(reports))
        for line in written:
            typer.echo(line)
