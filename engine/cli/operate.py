"""Controls (halt, pause, reduce-only) and the operations the lease holder executes (reconcile,
cancel-all)."""

from __future__ import annotations

import asyncio
import math
from datetime import datetime
from typing import Annotated

import typer

from engine.cli._app import (
    ByOpt,
    ForceOpt,
    GlobalOpt,
    ReasonOpt,
    StrategyOpt,
    SymbolOpt,
    app,
    console,
    fail,
    ledger_for,
    run_async,
    settings,
)
from engine.cli.targets import check_known, check_operator, check_target
from engine.config import Settings, VenueKind
from engine.database import Database, open_database
from engine.domain.types import ControlKind, ControlScope
from engine.exceptions import TradectlError
from engine.ledger.ledger import Ledger
from engine.ledger.records import Operator


def _scope(
    config: Settings,
    strategy: str | None,
    symbol: str | None,
    *,
    force: bool,
    everywhere: bool = False,
) -> tuple[ControlScope, str]:
    """Strategy and symbol controls act within the engine's account (TRADECTL_ACCOUNT): the
    same strategy id in another account is another account's strategy. Only ``--global``
    reaches every account."""
    # Checked before the scope is chosen: a blank --strategy must never fall through to the
    # account scope (``unhalt --strategy ''`` would lift the account halt).
    strategy = check_target("--strategy", strategy)
    symbol = check_target("--symbol", symbol)
    if strategy is not None and symbol is not None:
        fail("give --strategy or --symbol, not both")
    if everywhere:
        if strategy is not None or symbol is not None:
            fail("--global covers everything: no --strategy or --symbol")
        return ControlScope.GLOBAL, "*"
    if strategy is not None:
        scope, target = ControlScope.STRATEGY, strategy
    elif symbol is not None:
        scope, target = ControlScope.SYMBOL, symbol
    else:
        return ControlScope.ACCOUNT, config.account
    check_known(config, scope, target, force=force)
    return scope, target


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
    operator: Operator,
    *,
    force: bool,
    everywhere: bool = False,
) -> None:
    config = settings()
    scope, target = _scope(config, strategy, symbol, force=force, everywhere=everywhere)

    async def go() -> None:
        async with open_database(config) as db:
            control = await ledger_for(db, config).controls.set(
                scope,
                target,
                kind,
                reason=operator.reason,
                set_by=f"cli:{operator.actor}",
                operator=operator,
            )
            where = _where(scope, target, config.account)
            console.print(f"{kind.value} set on {where} (control {control.id}): {control.reason}")

    run_async(go)


def _clear(
    kind: ControlKind,
    strategy: str | None,
    symbol: str | None,
    operator: Operator,
    *,
    force: bool,
    everywhere: bool = False,
) -> None:
    config = settings()
    scope, target = _scope(config, strategy, symbol, force=force, everywhere=everywhere)

    async def go() -> None:
        async with open_database(config) as db:
            cleared = await ledger_for(db, config).controls.clear(
                scope, target, kind, cleared_by=f"cli:{operator.actor}", operator=operator
            )
            where = _where(scope, target, config.account)
            if cleared:
                console.print(f"{kind.value} cleared on {where}")
            else:
                console.print(f"no active {kind.value} on {where}")

    run_async(go)


@app.command()
def halt(
    strategy: StrategyOpt = None,
    symbol: SymbolOpt = None,
    reason: ReasonOpt = None,
    by: ByOpt = None,
    everywhere: GlobalOpt = False,
    force: ForceOpt = False,
) -> None:
    """Kill switch for the account (``--global``: every account): no new orders (cancels and
    reconciliation keep working)."""
    operator = check_operator(reason, by)
    _set(ControlKind.HALT, strategy, symbol, operator, force=force, everywhere=everywhere)


@app.command()
def unhalt(
    strategy: StrategyOpt = None,
    symbol: SymbolOpt = None,
    reason: ReasonOpt = None,
    by: ByOpt = None,
    everywhere: GlobalOpt = False,
    force: ForceOpt = False,
) -> None:
    """Lift a halt (``--global``: the global one)."""
    operator = check_operator(reason, by)
    _clear(ControlKind.HALT, strategy, symbol, operator, force=force, everywhere=everywhere)


@app.command()
def pause(
    strategy: StrategyOpt = None,
    symbol: SymbolOpt = None,
    reason: ReasonOpt = None,
    by: ByOpt = None,
    force: ForceOpt = False,
) -> None:
    """Pause new orders for a strategy, a symbol, or the whole account."""
    _set(ControlKind.PAUSE, strategy, symbol, check_operator(reason, by), force=force)


@app.command()
def resume(
    strategy: StrategyOpt = None,
    symbol: SymbolOpt = None,
    reason: ReasonOpt = None,
    by: ByOpt = None,
    force: ForceOpt = False,
) -> None:
    """Lift a pause."""
    _clear(ControlKind.PAUSE, strategy, symbol, check_operator(reason, by), force=force)


@app.command("reduce-only")
def reduce_only(
    strategy: StrategyOpt = None,
    symbol: SymbolOpt = None,
    reason: ReasonOpt = None,
    by: ByOpt = None,
    off: Annotated[bool, typer.Option("--off", help="Lift reduce-only instead.")] = False,
    force: ForceOpt = False,
) -> None:
    """Only orders that shrink the position (without flipping it) are allowed."""
    operator = check_operator(reason, by)
    if off:
        _clear(ControlKind.REDUCE_ONLY, strategy, symbol, operator, force=force)
    else:
        _set(ControlKind.REDUCE_ONLY, strategy, symbol, operator, force=force)


# -- operations executed by the lease holder -------------------------------------------------------

WaitOpt = Annotated[
    float,
    typer.Option("--timeout", help="Seconds to wait for the running engine's answer."),
]


def _operate(
    kind_value: str, operator: Operator, params: dict[str, object], timeout: float
) -> None:
    """Queue the request for the engine holding the account's lease and print its result; with
    no live engine, take the lease and run it here (one venue writer per account either way)."""

    from engine.domain.types import utc_now
    from engine.ledger.records import OperatorRequestKind

    if not (math.isfinite(timeout) and 0 <= timeout <= 86400):
        fail(f"--timeout {timeout:g}: expected 0-86400 seconds")
    config = settings()
    kind = OperatorRequestKind(kind_value)

    async def go() -> dict[str, object]:
        async with open_database(config) as db:
            ledger = ledger_for(db, config)
            request = await ledger.operations.request(
                kind,
                requested_by=f"cli:{operator.actor}",
                reason=operator.reason,
                params=params,
                operator=operator,
            )
            lease = await ledger.leases.info()
            if lease is not None and lease.expires_at > utc_now():
                console.print(
                    f"request {request.id} queued for the running engine ({lease.holder})"
                )
                return await _answer(ledger, request.id, timeout)
            if config.venue not in (VenueKind.BINANCE, VenueKind.KALSHI):
                # The simulator and the paper venue live inside `tradectl run`: a fresh one
                # here would know none of the ledger's orders. The next engine start runs it.
                raise TradectlError(
                    f"no engine is running for account {config.account!r}, and its venue "
                    f"({config.venue.value}) lives inside `tradectl run`; request {request.id} "
                    "stays queued and the next `tradectl run` handles it after its own startup "
                    "reconciliation"
                )
            return await _operate_here(config, db, ledger, request.id)

    result = run_async(go)
    from engine.cli.summaries import render_result

    # plain text: rich would read "[...]" in a venue's message as markup
    typer.echo(render_result(kind_value, result))
    if not result.get("ok", False):
        raise typer.Exit(1)


async def _answer(ledger: Ledger, request_id: int, wait_s: float) -> dict[str, object]:
    """Wait for the running engine's result of a queued request."""
    deadline = asyncio.get_running_loop().time() + wait_s
    while asyncio.get_running_loop().time() < deadline:
        done = await ledger.operations.get(request_id)
        if done is not None and done.handled_at is not None:
            return done.result or {}
        await asyncio.sleep(0.2)
    raise TradectlError(
        f"request {request_id} was not handled within {wait_s:g}s; it stays queued "
        "and the engine runs it when it can (see table operator_requests)"
    )


async def _operate_here(
    config: Settings, db: Database, ledger: Ledger, request_id: int
) -> dict[str, object]:
    """No engine holds the lease: become the account's writer for this one operation."""
    from engine.controls import LeaseKeeper, OperatorDesk
    from engine.execution import Execution, ExecutionConfig
    from engine.limits_book import LimitsBook
    from engine.marketdata.conflator import Conflator
    from engine.portfolio import Portfolio
    from engine.reconcile import Reconciler
    from engine.risk_gate import RiskGate
    from engine.runtime import symbols_of
    from engine.strategy_config import load_strategy_config
    from engine.venue_session import open_venue

    strategies = load_strategy_config(config.strategies_file)
    symbols = symbols_of(strategies)
    async with open_venue(config, symbols, _utc_now) as session:
        ledger = Ledger(db.engine, account=ledger.account, venue=session.venue.name)
        lease = LeaseKeeper(ledger, ttl=config.lease_ttl)
        try:
            async with asyncio.timeout(2 * config.lease_ttl_s):
                await lease.acquire()
        except TimeoutError:
            raise TradectlError(
                "another engine holds the account's lease; it runs the queued request"
            ) from None
        try:
            portfolio = Portfolio(db.engine, config.account)
            execution = Execution(
                ledger=ledger,
                venue=session.venue,
                gate=RiskGate(limits=LimitsBook.empty(), market=Conflator(), portfolio=portfolio),
                lease=lease,
                config=ExecutionConfig(
                    account=ledger.account,
                    order_id_prefix=config.order_id_prefix,
                    consistency_window=config.consistency_window,
                ),
            )
            execution.symbols.update(symbols)
            reconciler = Reconciler(
                ledger=ledger,
                execution=execution,
                prefix=config.order_id_prefix,
                balance_tolerance=config.balance_tolerance,
                settle_s=config.balance_settle_s,
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
    reason: ReasonOpt = None,
    by: ByOpt = None,
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
    operator = check_operator(reason, by)
    _operate("reconcile", operator, {"accept_balances": accept_balances}, timeout)


@app.command("cancel-all")
def cancel_all(
    strategy: StrategyOpt = None,
    symbol: SymbolOpt = None,
    reason: ReasonOpt = None,
    by: ByOpt = None,
    timeout: WaitOpt = 60.0,
    force: ForceOpt = False,
) -> None:
    """Cancel every working order of the account (or of one strategy / symbol). Halts and
    pauses never block cancels."""
    operator = check_operator(reason, by)
    # The same checks as a control's target: a blank --strategy must not widen the cancel to
    # the whole account, and a typo must not report "0 canceled" as if all were well.
    scope, target = _scope(settings(), strategy, symbol, force=force)
    params: dict[str, object] = {}
    if scope is ControlScope.STRATEGY:
        params["strategy"] = target
    elif scope is ControlScope.SYMBOL:
        params["symbol"] = target
    _operate("cancel_all", operator, params, timeout)


@app.command()
def release(reason: ReasonOpt = None, by: ByOpt = None, timeout: WaitOpt = 60.0) -> None:
    """Hand the account off: its engine stops deciding, lets in-flight orders reach a definite
    state, records the result and releases its lease, so another engine (a standby, or one of a
    pool) takes the account over at once instead of after the lease TTL, and reconciles first."""
    from engine.domain.types import utc_now
    from engine.ledger.records import OperatorRequestKind

    operator = check_operator(reason, by)
    if not (math.isfinite(timeout) and 0 <= timeout <= 86400):
        fail(f"--timeout {timeout:g}: expected 0-86400 seconds")
    config = settings()

    async def go() -> dict[str, object]:
        async with open_database(config) as db:
            ledger = ledger_for(db, config)
            lease = await ledger.leases.info()
            if lease is None or lease.expires_at <= utc_now():
                raise TradectlError(
                    f"no engine holds the lease of account {config.account!r}: there is "
                    "nothing to hand off (the next engine to start takes the account)"
                )
            request = await ledger.operations.request(
                OperatorRequestKind.RELEASE,
                requested_by=f"cli:{operator.actor}",
                reason=operator.reason,
                # only the owner asked: one that took over meanwhile keeps the account
                params={"holder": lease.holder},
                operator=operator,
            )
            console.print(f"request {request.id}: asking {lease.holder} to hand the account off")
            return await _answer(ledger, request.id, timeout)

    result = run_async(go)
    from engine.cli.summaries import render_result

    typer.echo(render_result("release", result))
    if not result.get("ok", False):
        raise typer.Exit(1)
