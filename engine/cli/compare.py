"""``tradectl compare --paper ACCOUNT --backtest``: paper trades against a backtest of the same
period, replayed from the recorded market data (engine/compare/)."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from engine.cli._app import app, console, fail, run_async, settings
from engine.compare.diff import Comparison, Row, Tolerance, Trade
from engine.database import open_database
from engine.domain import formatting as fmt


@app.command("compare")
def compare_cmd(
    paper: Annotated[
        str, typer.Option("--paper", help="The paper account whose trades to compare.")
    ],
    backtest: Annotated[
        bool,
        typer.Option(
            "--backtest",
            help="Compare with a backtest of the same period replayed from the recorded market "
            "data (the only comparison there is).",
        ),
    ] = False,
    data: Annotated[
        Path | None,
        typer.Option(
            "--data",
            help="The recording (a directory or .jsonl file); default TRADECTL_RECORD_MARKET_DATA.",
        ),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option("--config", help="The strategies TOML; default TRADECTL_STRATEGIES_FILE."),
    ] = None,
    price_bps: Annotated[
        Decimal, typer.Option("--price-bps", help="Price tolerance in bps of the paper price.")
    ] = Decimal(5),
    qty_pct: Annotated[
        Decimal, typer.Option("--qty-pct", help="Quantity tolerance in % of the paper quantity.")
    ] = Decimal(1),
    time_s: Annotated[
        Decimal, typer.Option("--time-s", help="Time tolerance in seconds (first fill).")
    ] = Decimal(2),
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")] = False,
) -> None:
    """Each paper trade (an order's fills: quantity, average price, first fill time) next to the
    same decision's trade in a replay of the recorded market data through the same strategies,
    fill model and seed, with the difference and whether it is within the tolerance. Exits 1
    when a trade differs beyond it or is on one side only."""
    if not backtest:
        fail("say what to compare with: --backtest")
    conf = settings()
    recording = data or conf.record_market_data
    if recording is None:
        fail("no recording: pass --data DIR (or set TRADECTL_RECORD_MARKET_DATA)")
    tolerance = Tolerance(price_bps=price_bps, qty_fraction=qty_pct / 100, time_s=time_s)

    async def go() -> Comparison:
        from engine.compare.run import compare_with_backtest

        async with open_database(conf) as db:
            return await compare_with_backtest(
                db.engine, conf, account=paper, data=recording,
                config=config or conf.strategies_file, tolerance=tolerance,
            )  # fmt: skip

    result = run_async(go)
    if as_json:
        print(json.dumps(_as_json(paper, result)))
    else:
        _render(paper, result)
    if not result.agree:
        raise typer.Exit(1)


def _side(t: Trade | None) -> str:
    if t is None:
        return "-"
    return f"{fmt.plain(t.quantity)} @ {fmt.plain(t.price)}"


def _render(account: str, result: Comparison) -> None:
    table = Table("time", "strategy", "side", "paper", "backtest", "Δ bps", "Δ qty", "Δ s", "")
    for r in result.rows:
        t = r.trade
        table.add_row(
            t.at.isoformat(timespec="milliseconds"), t.strategy_id, t.side.value,
            _side(r.paper), _side(r.backtest),
            _num(r.price_bps, 2), _num(r.qty, None), _num(r.time_s, 3),
            "ok" if r.within else ("only paper" if r.backtest is None else
                                   "only backtest" if r.paper is None else "DIFFERS"),
        )  # fmt: skip
    tol = result.tolerance
    console.print(f"paper account {account} against a backtest of the same period")
    console.print(table)
    console.print(
        f"{len(result.rows)} trades, {result.matched} in both, {result.outside} outside the "
        f"tolerance (price {fmt.plain(tol.price_bps)} bps, quantity "
        f"{fmt.plain(tol.qty_fraction * 100)} %, time {fmt.plain(tol.time_s)} s)"
    )


def _num(value: Decimal | None, places: int | None) -> str:
    if value is None:
        return "-"
    return fmt.plain(value, places=places) if places is not None else fmt.plain(value)


def _trade(t: Trade | None) -> dict[str, Any] | None:
    if t is None:
        return None
    return {
        "client_order_id": t.client_order_id,
        "strategy": t.strategy_id,
        "symbol": t.symbol,
        "side": t.side.value,
        "qty": str(t.quantity),
        "price": str(t.price),
        "time": t.at.isoformat(),
    }


def _row(r: Row) -> dict[str, Any]:
    return {
        "paper": _trade(r.paper),
        "backtest": _trade(r.backtest),
        "price_bps": None if r.price_bps is None else str(r.price_bps),
        "qty": None if r.qty is None else str(r.qty),
        "time_s": None if r.time_s is None else str(r.time_s),
        "within_tolerance": r.within,
    }


def _as_json(account: str, result: Comparison) -> dict[str, Any]:
    tol = result.tolerance
    return {
        "account": account,
        "tolerance": {
            "price_bps": str(tol.price_bps),
            "qty_fraction": str(tol.qty_fraction),
            "time_s": str(tol.time_s),
        },
        "trades": [_row(r) for r in result.rows],
        "matched": result.matched,
        "outside_tolerance": result.outside,
        "agree": result.agree,
    }
