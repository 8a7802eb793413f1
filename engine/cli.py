"""``tradectl``: run the engine, migrate, and operate it (halt, pause, reconcile, inspect).

Every command reads the same settings as the engine (``DATABASE_URL``, ``TRADECTL_*``); without
``DATABASE_URL`` it attaches to the embedded Postgres in ``TRADECTL_DATA_DIR``, so the operations
commands work from a second terminal next to a running ``make run``.
"""

from __future__ import annotations

import asyncio
import getpass
import sys
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from engine.config import Settings, VenueKind, load_settings
from engine.database import Database, open_database
from engine.domain.types import AccountId, ControlKind, ControlScope, VenueName
from engine.exceptions import TradectlError
from engine.ledger.ledger import Ledger

app = typer.Typer(
    name="tradectl",
    help="An asyncio trading engine with a durable Postgres ledger.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
incidents_app = typer.Typer(help="List and resolve incidents.", invoke_without_command=True)
app.add_typer(incidents_app, name="incidents")

console = Console()
# soft_wrap: an error names a command to paste; it must not be broken across lines
err = Console(stderr=True, soft_wrap=True)
T = TypeVar("T")


def _settings() -> Settings:
    """The engine's settings, with the ledger account the demo exchange trades as (after a
    reset of the built-in simulator that is ``<TRADECTL_ACCOUNT>-N``: engine/demo.py)."""
    from engine.demo import ledger_account

    return ledger_account(load_settings())


def _run(coro_fn: Callable[[], Awaitable[T]]) -> T:
    """Run an async command; a TradectlError becomes a one-line message and exit code 2."""

    async def main() -> T:
        return await coro_fn()

    try:
        return asyncio.run(main())
    except TradectlError as exc:
        err.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(2) from None


def _ledger(db: Database, settings: Settings) -> Ledger:
    return Ledger(
        db.engine, account=AccountId(settings.account), venue=VenueName(settings.venue.value)
    )


# -- engine --------------------------------------------------------------------------------------


@app.command()
def run() -> None:
    """Run the engine (embedded Postgres + built-in simulator + example strategies by default)."""
    from engine.runtime import main as runtime_main

    # as configured: the run itself decides which ledger account the demo exchange trades as
    settings = load_settings()
    try:
        runtime_main(settings)
    except TradectlError as exc:
        err.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(2) from None


@app.command()
def migrate() -> None:
    """Upgrade the ledger schema to the newest migration (alembic upgrade head)."""
    settings = _settings()

    async def go() -> None:
        async with open_database(settings, migrate=True) as db:
            console.print(f"schema at head on {db.url.render_as_string(hide_password=True)}")

    _run(go)


AllAccountsOpt = Annotated[
    bool,
    typer.Option(
        "--all-accounts", help="Every account's, not only TRADECTL_ACCOUNT's (and the global)."
    ),
]


@app.command()
def status(all_accounts: AllAccountsOpt = False) -> None:
    """Orders by state, positions, active controls and open incidents of the engine's account
    (TRADECTL_ACCOUNT), from the ledger."""
    settings = _settings()

    async def go() -> None:
        from engine.status import all_accounts_status, ledger_status

        async with open_database(settings) as db:
            if all_accounts:
                console.print(await all_accounts_status(db.engine))
            else:
                console.print(await ledger_status(db.engine, settings.account))
            console.print(f"inspect with SQL: {db.psql}")

    _run(go)


@app.command()
def sql() -> None:
    """Print the psql command that opens the ledger."""
    settings = _settings()

    async def go() -> None:
        async with open_database(settings) as db:
            console.print(db.psql)

    _run(go)


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
) -> None:
    """Run the Binance-protocol exchange simulator on loopback until Ctrl-C.

    Prints one JSON line with its URLs once it listens.
    """
    import dataclasses

    from engine.demo import standalone_config
    from engine.venues.simulator import FaultPlan, SimulatorConfig, serve_forever

    try:
        sim_config = SimulatorConfig.load(config) if config else standalone_config(seed)
        sim_config = dataclasses.replace(sim_config, seed=seed)
        if faults is not None:
            sim_config = dataclasses.replace(sim_config, faults=FaultPlan.load(faults))
        serve_forever(sim_config, host="127.0.0.1", port=port, restore_from=restore)
    except TradectlError as exc:
        err.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(2) from None


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

    params: dict[str, str] = {}
    for item in param or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"--param takes k=v, got {item!r}")
        params[key.strip()] = value.strip()
    if account is not None and not persist:
        raise typer.BadParameter("--account names the ledger account of --persist")
    settings = BacktestSettings.for_symbol(Symbol(symbol))
    if not persist:
        try:
            report = run_backtest(data, strategy, params, seed, settings=settings)
        except TradectlError as exc:
            err.print(f"[bold red]error:[/] {exc}")
            raise typer.Exit(2) from None
        # Plain output: rich would re-wrap long lines and colour the numbers.
        typer.echo(render_report(report))
        return

    from engine.observability import configure_logging

    # The execution path narrates each order at INFO; the report is what matters here, and
    # stdout must carry nothing else.
    configure_logging(json=False, level="WARNING")

    async def go() -> tuple[str, str]:
        async with open_database(_settings()) as db:
            persisted = await run_backtest_persisted(
                data, strategy, params, seed, engine=db.engine, account=account, settings=settings
            )
            assert persisted.account is not None
            hint = f'inspect it: {db.psql} -c "{ledger_hint(persisted.account)}"'
            if db.embedded:
                hint += (
                    "\n(the embedded Postgres runs while a tradectl process uses it: query it "
                    "while `tradectl run` is up, or set DATABASE_URL)"
                )
            return render_report(persisted), hint

    text, hint = _run(go)
    typer.echo(text)
    typer.echo(hint)


# -- controls ------------------------------------------------------------------------------------

StrategyOpt = Annotated[str | None, typer.Option("--strategy", help="Only this strategy.")]
SymbolOpt = Annotated[str | None, typer.Option("--symbol", help="Only this symbol.")]
ReasonOpt = Annotated[str, typer.Option("--reason", help="Why: recorded with the control.")]
GlobalOpt = Annotated[
    bool, typer.Option("--global", help="Every account on this ledger, not only this one.")
]


def _scope(
    strategy: str | None, symbol: str | None, account: str, everywhere: bool = False
) -> tuple[ControlScope, str]:
    """Strategy and symbol controls act within the engine's account (TRADECTL_ACCOUNT): the
    same strategy id in another account is another account's strategy. Only ``--global``
    reaches every account."""
    if strategy and symbol:
        raise typer.BadParameter("give --strategy or --symbol, not both")
    if everywhere:
        if strategy or symbol:
            raise typer.BadParameter("--global covers everything: no --strategy or --symbol")
        return ControlScope.GLOBAL, "*"
    if strategy:
        return ControlScope.STRATEGY, strategy
    if symbol:
        return ControlScope.SYMBOL, symbol
    return ControlScope.ACCOUNT, account


def _where(scope: ControlScope, target: str, account: str) -> str:
    if scope is ControlScope.GLOBAL:
        return "every account (global)"
    if scope is ControlScope.ACCOUNT:
        return f"account {target!r}"
    return f"{scope.value} {target!r} in account {account!r}"


def _set(
    kind: ControlKind,
    strategy: str | None,
    symbol: str | None,
    reason: str,
    everywhere: bool = False,
) -> None:
    settings = _settings()
    scope, target = _scope(strategy, symbol, settings.account, everywhere)

    async def go() -> None:
        async with open_database(settings) as db:
            control = await _ledger(db, settings).controls.set(
                scope, target, kind, reason=reason, set_by=f"cli:{getpass.getuser()}"
            )
            where = _where(scope, target, settings.account)
            console.print(f"{kind.value} set on {where} (control {control.id}): {reason}")

    _run(go)


def _clear(
    kind: ControlKind, strategy: str | None, symbol: str | None, everywhere: bool = False
) -> None:
    settings = _settings()
    scope, target = _scope(strategy, symbol, settings.account, everywhere)

    async def go() -> None:
        async with open_database(settings) as db:
            cleared = await _ledger(db, settings).controls.clear(
                scope, target, kind, cleared_by=f"cli:{getpass.getuser()}"
            )
            where = _where(scope, target, settings.account)
            if cleared:
                console.print(f"{kind.value} cleared on {where}")
            else:
                console.print(f"no active {kind.value} on {where}")

    _run(go)


@app.command()
def halt(
    strategy: StrategyOpt = None,
    symbol: SymbolOpt = None,
    reason: ReasonOpt = "",
    everywhere: GlobalOpt = False,
) -> None:
    """Kill switch for the account (``--global``: every account): no new orders (cancels and
    reconciliation keep working)."""
    _set(ControlKind.HALT, strategy, symbol, reason or "halted from the CLI", everywhere)


@app.command()
def unhalt(
    strategy: StrategyOpt = None, symbol: SymbolOpt = None, everywhere: GlobalOpt = False
) -> None:
    """Lift a halt (``--global``: the global one)."""
    _clear(ControlKind.HALT, strategy, symbol, everywhere)


@app.command()
def pause(strategy: StrategyOpt = None, symbol: SymbolOpt = None, reason: ReasonOpt = "") -> None:
    """Pause new orders for a strategy, a symbol, or the whole account."""
    _set(ControlKind.PAUSE, strategy, symbol, reason or "paused from the CLI")


@app.command()
def resume(strategy: StrategyOpt = None, symbol: SymbolOpt = None) -> None:
    """Lift a pause."""
    _clear(ControlKind.PAUSE, strategy, symbol)


@app.command("reduce-only")
def reduce_only(
    strategy: StrategyOpt = None,
    symbol: SymbolOpt = None,
    reason: ReasonOpt = "",
    off: Annotated[bool, typer.Option("--off", help="Lift reduce-only instead.")] = False,
) -> None:
    """Only orders that shrink the position (without flipping it) are allowed."""
    if off:
        _clear(ControlKind.REDUCE_ONLY, strategy, symbol)
    else:
        _set(ControlKind.REDUCE_ONLY, strategy, symbol, reason or "reduce-only from the CLI")


@app.command()
def controls(all_accounts: AllAccountsOpt = False) -> None:
    """List the active controls covering the engine's account (its own and the global ones)."""
    settings = _settings()

    async def go() -> None:
        async with open_database(settings) as db:
            ledger = _ledger(db, settings)
            table = Table("id", "account", "scope", "target", "kind", "reason", "set_by", "set_at")
            for c in await ledger.controls.active(all_accounts=all_accounts):
                table.add_row(
                    str(c.id), c.account or "(all)", c.scope.value, c.target, c.kind.value,
                    c.reason, c.set_by, c.set_at.isoformat(timespec="seconds"),
                )  # fmt: skip
            console.print(table)

    _run(go)


# -- operations executed by the lease holder -------------------------------------------------------

WaitOpt = Annotated[
    float, typer.Option("--timeout", help="Seconds to wait for the running engine's answer.")
]


def _operate(kind_value: str, reason: str, params: dict[str, object], timeout: float) -> None:
    """Queue the request for the engine holding the account's lease and print its result; with
    no live engine, take the lease and run it here (one venue writer per account either way)."""

    from engine.domain.types import utc_now
    from engine.ledger.records import OperatorRequestKind

    settings = _settings()
    kind = OperatorRequestKind(kind_value)

    async def go() -> dict[str, object]:
        async with open_database(settings) as db:
            ledger = _ledger(db, settings)
            request = await ledger.operations.request(
                kind, requested_by=f"cli:{getpass.getuser()}", reason=reason, params=params
            )
            lease = await ledger.leases.info()
            if lease is not None and lease.expires_at > utc_now():
                console.print(
                    f"request {request.id} queued for the running engine ({lease.holder})"
                )
                deadline = asyncio.get_running_loop().time() + timeout
                while asyncio.get_running_loop().time() < deadline:
                    done = await ledger.operations.get(request.id)
                    if done is not None and done.handled_at is not None:
                        return done.result or {}
                    await asyncio.sleep(0.2)
                raise TradectlError(
                    f"request {request.id} was not handled within {timeout:g}s; it stays queued "
                    "and the engine runs it when it can (see table operator_requests)"
                )
            if settings.venue is not VenueKind.BINANCE:
                # The simulator and the paper venue live inside `tradectl run`: a fresh one
                # here would know none of the ledger's orders. The next engine start runs it.
                raise TradectlError(
                    f"no engine is running for account {settings.account!r}, and its venue "
                    f"({settings.venue.value}) lives inside `tradectl run`; request {request.id} "
                    "stays queued and the next `tradectl run` handles it after its own startup "
                    "reconciliation"
                )
            return await _operate_here(settings, db, ledger, request.id)

    result = _run(go)
    for key, value in result.items():
        console.print(f"{key}: {value}")
    if not result.get("ok", False):
        raise typer.Exit(1)


async def _operate_here(
    settings: Settings, db: Database, ledger: Ledger, request_id: int
) -> dict[str, object]:
    """No engine holds the lease: become the account's writer for this one operation."""
    from engine.controls import LeaseKeeper, OperatorDesk
    from engine.execution import Execution, ExecutionConfig
    from engine.marketdata.conflator import Conflator
    from engine.portfolio import Portfolio
    from engine.reconcile import Reconciler
    from engine.risk_gate import LimitsBook, RiskGate
    from engine.runtime import open_venue, symbols_of
    from engine.strategy_config import load_strategy_config

    strategies = load_strategy_config(settings.strategies_file)
    symbols = symbols_of(strategies)
    async with open_venue(settings, symbols, _utc_now) as session:
        ledger = Ledger(db.engine, account=ledger.account, venue=session.venue.name)
        lease = LeaseKeeper(ledger, ttl=settings.lease_ttl)
        try:
            async with asyncio.timeout(2 * settings.lease_ttl_s):
                await lease.acquire()
        except TimeoutError:
            raise TradectlError(
                "another engine holds the account's lease; it runs the queued request"
            ) from None
        try:
            portfolio = Portfolio(db.engine, settings.account)
            execution = Execution(
                ledger=ledger,
                venue=session.venue,
                gate=RiskGate(limits=LimitsBook.empty(), market=Conflator(), portfolio=portfolio),
                lease=lease,
                config=ExecutionConfig(
                    account=ledger.account,
                    order_id_prefix=settings.order_id_prefix,
                    consistency_window=settings.consistency_window,
                ),
            )
            execution.symbols.update(symbols)
            reconciler = Reconciler(
                ledger=ledger,
                execution=execution,
                prefix=settings.order_id_prefix,
                balance_tolerance=settings.balance_tolerance,
                settle_s=settings.balance_settle_s,
            )
            desk = OperatorDesk(
                ledger, holder=lease.holder, reconciler=reconciler, execution=execution
            )
            await desk.handle_pending()
        finally:
            await lease.release()
        done = await ledger.operations.get(request_id)
        return (done.result if done is not None else None) or {}


def _utc_now() -> datetime:
    from engine.domain.types import utc_now

    return utc_now()


@app.command()
def reconcile(
    reason: ReasonOpt = "",
    accept_balances: Annotated[
        bool,
        typer.Option(
            "--accept-balances",
            help="After checking: take the venue's balances as the truth where they drifted "
            "(resolves those drift incidents; pauses stay until `tradectl resume`).",
        ),
    ] = False,
    timeout: WaitOpt = 60.0,
) -> None:
    """Reconcile now: resolve orders, fetch missing fills, compare open orders and balances."""
    _operate(
        "reconcile",
        reason or "reconcile from the CLI",
        {"accept_balances": accept_balances},
        timeout,
    )


@app.command("cancel-all")
def cancel_all(
    strategy: StrategyOpt = None,
    symbol: SymbolOpt = None,
    reason: ReasonOpt = "",
    timeout: WaitOpt = 60.0,
) -> None:
    """Cancel every working order of the account (or of one strategy / symbol). Halts and
    pauses never block cancels."""
    params: dict[str, object] = {}
    if strategy:
        params["strategy"] = strategy
    if symbol:
        params["symbol"] = symbol
    _operate("cancel_all", reason or "cancel-all from the CLI", params, timeout)


# -- incidents -----------------------------------------------------------------------------------


@incidents_app.callback()
def incidents(
    ctx: typer.Context,
    all_: Annotated[bool, typer.Option("--all", help="Include resolved incidents.")] = False,
    all_accounts: AllAccountsOpt = False,
) -> None:
    """List the account's open incidents (``--all`` for resolved ones too, ``--all-accounts``
    for every account's)."""
    if ctx.invoked_subcommand is not None:
        return
    settings = _settings()

    async def go() -> None:
        async with open_database(settings) as db:
            table = Table(
                "id", "opened_at", "account", "severity", "kind", "scope", "message", "resolved_at"
            )
            ledger = _ledger(db, settings)
            for i in await ledger.incidents.read(open_only=not all_, all_accounts=all_accounts):
                table.add_row(
                    str(i.id), i.opened_at.isoformat(timespec="seconds"), i.account, i.severity,
                    i.kind, i.scope, i.message,
                    i.resolved_at.isoformat(timespec="seconds") if i.resolved_at else "",
                )  # fmt: skip
            console.print(table)

    _run(go)


@incidents_app.command("resolve")
def incidents_resolve(
    incident_id: Annotated[int, typer.Argument(help="The incident's id.")],
    note: Annotated[str, typer.Option("--note", help="What was checked and done.")],
) -> None:
    """Close an incident of the engine's account (TRADECTL_ACCOUNT) with a note."""
    settings = _settings()

    async def go() -> None:
        async with open_database(settings) as db:
            if await _ledger(db, settings).incidents.resolve(incident_id, note):
                console.print(f"incident {incident_id} resolved")
            else:
                err.print(f"incident {incident_id} is not open in account {settings.account!r}")
                raise typer.Exit(1)

    _run(go)


def main() -> None:
    try:
        app()
    except TradectlError as exc:  # settings errors raised before a command runs
        err.print(f"[bold red]error:[/] {exc}")
        sys.exit(2)
