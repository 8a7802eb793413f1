"""Offline tools: the exchange simulator and backtests."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from engine.cli._app import app, fail, guard, run_async, settings
from engine.cli.targets import check_target
from engine.database import open_database


@app.command()
def simulator(
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1 (0 picks a free one).")] = 0,
    seed: Annotated[int, typer.Option(help="Seed of the market and of the faults.")] = 0,
    faults: Annotated[
        Path | None, typer.Option(help="TOML/JSON fault plan (see tests/resources/simulator).")
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            help="Simulator config file: symbols, balances, keys [default: the symbols the "
            "example strategies trade, BTCUSDT and PRES-YES, with the built-in simulator's "
            "balances]."
        ),
    ] = None,
    restore: Annotated[Path | None, typer.Option(help="Start from a state snapshot.")] = None,
    protocol: Annotated[
        str, typer.Option(help="Exchange protocol: binance or kalshi (Trade API v2).")
    ] = "binance",
    read_lag: Annotated[
        float, typer.Option(help="kalshi: seconds orders and fills stay invisible to reads.")
    ] = 0.0,
) -> None:
    """Run an exchange simulator (Binance or Kalshi protocol) on loopback until Ctrl-C.

    Prints one JSON line with its URLs once it listens (kalshi: also the key id and the test
    private key generated at start, which clients sign with).
    """
    import dataclasses

    if not 0 <= port <= 65535:
        fail(f"--port {port} is not a port (0-65535; 0 picks a free one)")
    if protocol not in ("binance", "kalshi"):
        fail(f"--protocol {protocol!r}: expected binance or kalshi")
    if port:
        _check_port_free(port)
    if protocol == "kalshi":
        if config is not None or restore is not None:
            fail("--config and --restore are for the binance simulator, not --protocol kalshi")
        _kalshi_simulator(port=port, seed=seed, faults=faults, read_lag=read_lag)
        return

    from engine.demo import standalone_config
    from engine.venues.simulator import FaultPlan, SimulatorConfig, serve_forever

    with guard():
        sim_config = SimulatorConfig.load(config) if config else standalone_config(seed)
        sim_config = dataclasses.replace(sim_config, seed=seed)
        if faults is not None:
            sim_config = dataclasses.replace(sim_config, faults=FaultPlan.load(faults))
        serve_forever(sim_config, host="127.0.0.1", port=port, restore_from=restore)


def _kalshi_simulator(*, port: int, seed: int, faults: Path | None, read_lag: float) -> None:
    from engine.venues.kalshi_simulator import KalshiSimConfig, serve_forever
    from engine.venues.simulator import FaultPlan

    with guard():
        plan = FaultPlan.load(faults) if faults is not None else FaultPlan()
        config = KalshiSimConfig(seed=seed, faults=plan, read_lag_s=read_lag)
        serve_forever(config, host="127.0.0.1", port=port)


def _check_port_free(port: int) -> None:
    """uvicorn reports a port it cannot bind by logging and exiting (SystemExit(3)) from inside
    the simulator's task, which ends in a traceback: try the bind here first."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # as uvicorn binds: a port in TIME_WAIT is free for it
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as exc:
            fail(f"--port {port}: cannot listen on 127.0.0.1:{port}: {exc.strerror}")


@app.command()
def backtest(
    data: Annotated[Path, typer.Option(help="OHLCV CSV: Date,Open,High,Low,Close,Volume.")],
    strategy: Annotated[str, typer.Option(help="Strategy kind, e.g. sma_cross.")],
    param: Annotated[list[str] | None, typer.Option("--param", help="k=v, repeatable.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of latency, slippage and partial fills.")] = 0,
    symbol: Annotated[str, typer.Option(help="Symbol the data is for.")] = "BTCUSDT",
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
    """Replay history through a strategy on the paper venue and print a report."""
    from engine.backtest import (
        BacktestSettings,
        ledger_hint,
        render_report,
        run_backtest,
        run_backtest_persisted,
    )
    from engine.domain.types import Symbol

    # an empty symbol got as far as a strategy's decision key and failed there, mid-replay
    symbol = check_target("--symbol", symbol) or ""
    params: dict[str, str] = {}
    for item in param or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            fail(f"--param takes k=v, got {item!r}")
        params[key.strip()] = value.strip()
    account = check_target("--account", account)
    if account is not None and not persist:
        fail("--account names the ledger account of --persist")
    bt_settings = BacktestSettings.for_symbol(Symbol(symbol))
    if not persist:
        with guard():
            report = run_backtest(data, strategy, params, seed, settings=bt_settings)
        # Plain output: rich would re-wrap long lines and colour the numbers.
        typer.echo(render_report(report))
        return

    from engine.observability import configure_logging

    # The execution path narrates each order at INFO; the report is what matters here, and
    # stdout must carry nothing else.
    configure_logging(json=False, level="WARNING")

    async def go() -> tuple[str, str]:
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
            return render_report(persisted), hint

    text, hint = run_async(go)
    typer.echo(text)
    typer.echo(hint)
