"""Offline tools: the exchange simulator (backtests are :mod:`engine.cli.backtest`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from engine.cli._app import app, fail, guard


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
