"""A compact status of one account (or of each account), read from the ledger."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from engine.domain.types import Symbol
from engine.ledger.db import database_errors

_ORDERS_BY_STATE = text(
    "SELECT state, count(*) FROM orders WHERE account = :account GROUP BY state ORDER BY state"
)
# Cash flow of the fills net of quote-asset fees; the holding is already net of base-asset fees
# (the positions view's rule). Fees in a third asset (BNB) are not netted: shown apart.
_POSITIONS = text(
    """
    SELECT o.strategy_id, f.symbol,
           sum(CASE WHEN f.side = 'BUY' THEN f.qty ELSE -f.qty END)
             - COALESCE(sum(f.fee) FILTER (WHERE f.fee_asset = i.base_asset), 0) AS net_qty,
           sum(CASE WHEN f.side = 'BUY' THEN -f.qty * f.price ELSE f.qty * f.price END)
             - COALESCE(sum(f.fee) FILTER (WHERE f.fee_asset = i.quote_asset), 0) AS cash,
           COALESCE(sum(f.fee) FILTER (WHERE f.fee_asset IS DISTINCT FROM i.base_asset
                                        AND f.fee_asset IS DISTINCT FROM i.quote_asset), 0)
             AS other_fees,
           count(*) AS fills
    FROM fills f
    JOIN orders o ON o.client_order_id = f.client_order_id AND o.account = f.account
    LEFT JOIN instruments i ON i.venue = f.venue AND i.symbol = f.symbol
    WHERE o.account = :account
    GROUP BY o.strategy_id, f.symbol
    ORDER BY o.strategy_id, f.symbol
    """
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


def _fmt(value: Decimal) -> str:
    return f"{value.normalize():f}"


async def all_accounts_status(engine: AsyncEngine) -> str:
    """One :func:`ledger_status` section per account the ledger knows of."""
    async with engine.connect() as conn:
        accounts = list((await conn.execute(_ACCOUNTS)).scalars())
    sections = [f"account {a}:\n{await ledger_status(engine, a)}" for a in accounts]
    return "\n".join(sections) or "no accounts"


@dataclass(frozen=True, slots=True)
class Position:
    strategy: str
    symbol: Symbol
    net_qty: Decimal
    #: cash flow of the fills net of quote-asset fees
    cash: Decimal
    other_fees: Decimal
    fills: int

    def pnl(self, mark: Decimal) -> Decimal:
        return self.cash + self.net_qty * mark


@dataclass(frozen=True, slots=True)
class AccountStatus:
    """One account's status as read from the ledger, for a person (:meth:`text`) or a log
    event (:meth:`fields`)."""

    account: str
    orders: dict[str, int]
    decisions: dict[str, int]
    positions: tuple[Position, ...]
    #: (scope, target, kind) of each active control covering the account
    controls: tuple[tuple[str, str, str], ...]
    open_incidents: int

    def text(self, marks: Mapping[Symbol, Decimal] | None = None) -> str:
        """``marks`` (latest mid per symbol) turn positions into P&L; without them (the CLI,
        which has no market data) the cash flow is shown."""
        lines = [
            "orders: " + (", ".join(f"{s}={n}" for s, n in self.orders.items()) or "none"),
            "decisions: " + (", ".join(f"{o}={n}" for o, n in self.decisions.items()) or "none"),
        ]
        for p in self.positions:
            mark = (marks or {}).get(p.symbol)
            value = (
                f"P&L {_fmt(p.pnl(mark))} at mark {_fmt(mark)}"
                if mark is not None
                else f"cash flow {_fmt(p.cash)}"
            )
            extra = f", other fees {_fmt(p.other_fees)}" if p.other_fees else ""
            lines.append(
                f"position {p.strategy} {p.symbol}: {_fmt(p.net_qty)} | {value} | "
                f"fills {p.fills}{extra}"
            )
        if self.controls:
            lines.append("controls: " + ", ".join(f"{k} {s}:{t}" for s, t, k in self.controls))
        lines.append(f"open incidents: {self.open_incidents}")
        return "\n".join(lines)

    def fields(self, marks: Mapping[Symbol, Decimal] | None = None) -> dict[str, Any]:
        """The same as :meth:`text`, as fields of a ``status`` log event (numbers as strings:
        a Decimal must not become a float on its way through JSON)."""
        positions = []
        for p in self.positions:
            mark = (marks or {}).get(p.symbol)
            position = {
                "strategy": p.strategy,
                "symbol": p.symbol,
                "net_qty": _fmt(p.net_qty),
                "cash_flow": _fmt(p.cash),
                "fills": p.fills,
            }
            if mark is not None:
                position |= {"mark": _fmt(mark), "pnl": _fmt(p.pnl(mark))}
            if p.other_fees:
                position["other_fees"] = _fmt(p.other_fees)
            positions.append(position)
        return {
            "account": self.account,
            "orders": self.orders,
            "decisions": self.decisions,
            "positions": positions,
            "controls": [f"{k} {s}:{t}" for s, t, k in self.controls],
            "open_incidents": self.open_incidents,
        }


async def read_status(engine: AsyncEngine, account: str) -> AccountStatus:
    params = {"account": account}
    with database_errors(engine.url):
        async with engine.connect() as conn:
            states = (await conn.execute(_ORDERS_BY_STATE, params)).all()
            positions = (await conn.execute(_POSITIONS, params)).all()
            decisions = (await conn.execute(_DECISIONS, params)).all()
            incidents = (await conn.execute(_OPEN_INCIDENTS, params)).scalar_one()
            controls = (await conn.execute(_CONTROLS, params)).all()
    return AccountStatus(
        account=account,
        orders={state: count for state, count in states},
        decisions={outcome: count for outcome, count in decisions},
        positions=tuple(
            Position(strategy, Symbol(symbol), net, cash, other_fees, count)
            for strategy, symbol, net, cash, other_fees, count in positions
        ),
        controls=tuple((scope, target, kind) for scope, target, kind in controls),
        open_incidents=incidents,
    )


async def ledger_status(
    engine: AsyncEngine, account: str, marks: Mapping[Symbol, Decimal] | None = None
) -> str:
    """The status as text (see :meth:`AccountStatus.text`)."""
    return (await read_status(engine, account)).text(marks)
