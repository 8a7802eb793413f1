"""A compact status of one account (or of each account), read from the ledger."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from engine.domain import formatting as fmt
from engine.domain.risk import Check
from engine.domain.risk.utilisation import utilisation
from engine.domain.types import AccountId, Symbol, VenueName, utc_now
from engine.ledger.db import database_errors
from engine.ledger.loss_marks import LossMarksPart
from engine.ledger.pnl import PnlRow, balance_rows, pnl_rows
from engine.limits_book import LimitsBook
from engine.portfolio import Portfolio

_ORDERS_BY_STATE = text(
    "SELECT state, count(*) FROM orders WHERE account = :account GROUP BY state ORDER BY state"
)
_DECISIONS = text(
    "SELECT outcome, count(*) FROM decisions WHERE account = :account GROUP BY outcome"
)
_OPEN_INCIDENTS = text(
    "SELECT count(*) FROM incidents WHERE resolved_at IS NULL AND account = :account"
)
# What covers the account: its own controls and the global ones (they cover every account).
_CONTROLS = text(
    """SELECT scope, target, kind FROM controls
    WHERE active AND (account IS NULL OR account = :account) ORDER BY id"""
)
# Every account the ledger knows of, for `tradectl status --all-accounts`.
_ACCOUNTS = text(
    """SELECT account FROM leases UNION SELECT account FROM decisions
    UNION SELECT account FROM controls WHERE active AND account IS NOT NULL
    UNION SELECT account FROM incidents WHERE resolved_at IS NULL
    ORDER BY 1"""
)


async def all_accounts_status(engine: AsyncEngine) -> str:
    """One :func:`ledger_status` section per account the ledger knows of."""
    async with engine.connect() as conn:
        accounts = list((await conn.execute(_ACCOUNTS)).scalars())
    sections = [f"account {a}:\n{await ledger_status(engine, a)}" for a in accounts]
    return "\n".join(sections) or "no accounts"


async def ledger_status(engine: AsyncEngine, account: str, limits: LimitsBook | None = None) -> str:
    """The account's orders, decisions, P&L (the ``pnl`` view: the same figures in `tradectl
    status`, `tradectl pnl` and the engine's own status), exposure against each configured limit
    (with ``limits``), balances against what the ledger expects, controls and incidents."""
    states, decisions, incidents, controls = await _counts(engine, account)
    pnl = await pnl_rows(engine, account)
    balances = await balance_rows(engine, account)
    lines = [
        "orders: " + (", ".join(f"{s}={n}" for s, n in states) or "none"),
        "decisions: " + (", ".join(f"{o}={n}" for o, n in decisions) or "none"),
    ]
    lines.extend(pnl_line(row) for row in pnl)
    if limits is not None:
        lines.extend(await _exposure_lines(engine, account, limits, pnl))
    for b in balances:
        if b.total is None:
            continue
        expected = (
            f" | expected {fmt.plain(b.expected)} | difference {fmt.plain(b.difference)}"
            if b.expected is not None
            else ""
        )
        lines.append(f"balance {b.asset}: {fmt.plain(b.total)}{expected}")
    if controls:
        lines.append("controls: " + ", ".join(f"{k} {s}:{t}" for s, t, k in controls))
    lines.append(f"open incidents: {incidents}")
    return "\n".join(lines)


async def _counts(
    engine: AsyncEngine, account: str
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], int, list[tuple[Any, ...]]]:
    """Orders by state, decisions by outcome, open incidents, active controls."""
    params = {"account": account}
    with database_errors(engine.url):
        async with engine.connect() as conn:
            states = [tuple(r) for r in await conn.execute(_ORDERS_BY_STATE, params)]
            decisions = [tuple(r) for r in await conn.execute(_DECISIONS, params)]
            incidents = int((await conn.execute(_OPEN_INCIDENTS, params)).scalar_one())
            controls = [tuple(r) for r in await conn.execute(_CONTROLS, params)]
    return states, decisions, incidents, controls


async def status_fields(engine: AsyncEngine, account: str) -> dict[str, Any]:
    """What :func:`ledger_status` shows, as fields of a ``status`` log event (numbers as
    strings: a Decimal must not become a float on its way through JSON)."""
    states, decisions, incidents, controls = await _counts(engine, account)

    def text_of(value: Decimal | None) -> str | None:
        return None if value is None else fmt.plain(value)

    return {
        "account": account,
        "orders": {str(s): int(n) for s, n in states},
        "decisions": {str(o): int(n) for o, n in decisions},
        "positions": [
            {
                "strategy": r.strategy_id,
                "symbol": r.symbol,
                "position": fmt.plain(r.position),
                "avg_cost": text_of(r.avg_cost),
                "realized": fmt.plain(r.realized),
                "unrealized": text_of(r.unrealized),
                "total": text_of(r.total),
                "fees": fmt.plain(r.fees),
                "mark": text_of(r.mark),
                "quote_asset": r.quote_asset,
                "fills": r.fill_count,
            }
            for r in await pnl_rows(engine, account)
        ],
        "controls": [f"{k} {s}:{t}" for s, t, k in controls],
        "open_incidents": incidents,
    }


def pnl_line(row: PnlRow) -> str:
    """One position's P&L in one line, in its quote asset."""
    quote = f" {row.quote_asset}" if row.quote_asset else ""
    if row.settled_at is not None:
        held = f"settled at {fmt.plain(row.mark)}"
    else:
        avg = f" @ avg {fmt.money(row.avg_cost)}" if row.avg_cost is not None else ""
        held = f"{fmt.quantity(row.position, row.step_size)}{avg}"
    mark = f"{row.mark_source} {fmt.plain(row.mark)}" if row.mark is not None else "no mark"
    other = "".join(f", {fmt.plain(v)} {a}" for a, v in sorted(row.other_fees.items()))
    return (
        f"pnl {row.strategy_id} {row.symbol}: {held} | realized {fmt.money(row.realized)}"
        f" unrealized {fmt.money(row.unrealized)} total {fmt.money(row.total)}{quote}"
        f" | mark {mark} | fees {fmt.money(row.fees)}{other} | fills {row.fill_count}"
    )


async def _exposure_lines(
    engine: AsyncEngine, account: str, limits: LimitsBook, pnl: list[PnlRow]
) -> list[str]:
    portfolio = Portfolio(engine, account)
    await portfolio.refresh()
    exposures = portfolio.snapshot()
    marks = {Symbol(r.symbol): r.mark for r in pnl if r.mark is not None and r.settled_at is None}
    pnl_today = None
    if limits.any(lambda lim: lim.max_daily_loss is not None):
        now = utc_now()
        day_start = limits.account.trading_day.start(now)
        await portfolio.refresh_pnl(now, day_start=day_start)
        figures = portfolio.pnl(marks.get, now)
        # the engine's own day-start mark, as its daily loss check measures from it
        stored = await LossMarksPart(
            engine, account=AccountId(account), venue=VenueName(""), clock=utc_now
        ).read()
        start = (
            stored.day_start_pnl
            if stored is not None and stored.day_start == day_start
            else portfolio.day_start_pnl(marks.get)
        )
        pnl_today = None if figures is None or start is None else figures[1] - start
    used = utilisation(
        exposures,
        marks,
        limits.for_strategy,
        limits.account,
        pnl_today=pnl_today,
        cash=await _cash(engine, account, limits.account.equity_asset),
    )
    steps = {r.symbol: r.step_size for r in pnl}
    lines: list[str] = []
    for (strategy, symbol), exposure in sorted(exposures.items()):
        if not exposure.gross():
            continue
        parts = [
            f"{u.check.value} {fmt.percent(u.fraction)} of {fmt.plain(u.limit)}"
            for u in used
            if u.strategy_id == strategy and u.symbol == symbol
        ]
        step = steps.get(symbol)
        lines.append(
            f"exposure {strategy} {symbol}: position {fmt.quantity(exposure.position, step)}"
            f" open buy {fmt.quantity(exposure.open_buy_qty, step)}"
            f" open sell {fmt.quantity(exposure.open_sell_qty, step)}"
            + ("".join(f" | {p}" for p in parts) or " | no position limit configured")
        )
    for u in used:
        if u.symbol is None or u.strategy_id is None:
            # the account's own limits: per symbol, per category and over everything
            scope = u.symbol or (f"category {u.category}" if u.category else None)
            # a quantity or a percentage as it is; money to the cent
            plain = u.check in (Check.SYMBOL_QTY, Check.POSITION_EQUITY)
            lines.append(
                f"limit {u.strategy_id or 'account'}{f' {scope}' if scope else ''}: "
                f"{u.check.value} {fmt.percent(u.fraction)}"
                f" of {fmt.plain(u.limit)} ({(fmt.plain if plain else fmt.money)(u.used)})"
            )
    return lines


async def _cash(engine: AsyncEngine, account: str, asset: str | None) -> Decimal | None:
    """The account's recorded balance of its equity asset (the equity limit's cash)."""
    if asset is None:
        return None
    for row in await balance_rows(engine, account):
        if row.asset == asset and row.total is not None:
            return row.total
    return None
