"""One account's status as data: what ``tradectl run`` and ``tradectl status --watch`` show.

:func:`gather_status` reads the ledger once and returns a :class:`StatusSnapshot`; renderers
(engine.status_view: the rich live view, plain text) only format it, so a log event can carry
the same snapshot. The engine adds what only it knows: the latest mid per symbol (marks, for P&L)
and how old each symbol's quote is. Without them (a second process) the P&L is the cash flow and
the market-data age is that of the data each strategy last decided on.

P&L comes from one function, :func:`strategy_pnl`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from engine.domain.types import TERMINAL_STATES, utc_now
from engine.ledger.db import database_errors

#: how many open orders, incidents and alerts the view lists (the counts are complete)
LIST_LIMIT = 8


@dataclass(frozen=True, slots=True)
class PositionLine:
    symbol: str
    net_qty: Decimal
    #: cash flow of the fills, net of quote-asset fees
    cash_flow: Decimal
    fills: int
    mark: Decimal | None = None
    #: cash flow + net_qty × mark; ``None`` without a mark
    pnl: Decimal | None = None


@dataclass(frozen=True, slots=True)
class DecisionLine:
    decided_at: datetime
    intent: str
    outcome: str
    reason: str
    #: identical holds after this one (engine.domain.holds)
    repeats: int = 0
    last_repeat_at: datetime | None = None
    md_ts: datetime | None = None

    @property
    def last_at(self) -> datetime:
        return max(self.decided_at, self.last_repeat_at or self.decided_at)


@dataclass(frozen=True, slots=True)
class StrategyLine:
    strategy_id: str
    #: trading, warming up, paused, halted or starting (no decision yet); "(reduce-only)" added
    state: str
    positions: tuple[PositionLine, ...]
    last_decision: DecisionLine | None


@dataclass(frozen=True, slots=True)
class ControlLine:
    scope: str
    target: str
    kind: str
    reason: str


@dataclass(frozen=True, slots=True)
class OpenOrderLine:
    client_order_id: str
    strategy_id: str
    symbol: str
    side: str
    state: str
    requested_qty: Decimal
    filled_qty: Decimal
    limit_price: Decimal | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class IncidentLine:
    id: int
    opened_at: datetime
    severity: str
    kind: str
    message: str


@dataclass(frozen=True, slots=True)
class AlertLine:
    created_at: datetime
    level: str
    kind: str
    message: str
    delivered: bool


@dataclass(frozen=True, slots=True)
class MarketDataLine:
    symbol: str
    #: seconds; ``None``: no data yet
    age_s: float | None
    #: "quote" (the engine's latest) or "decision" (the data a strategy last decided on)
    source: str


@dataclass(frozen=True, slots=True)
class StatusSnapshot:
    account: str
    taken_at: datetime
    orders_by_state: Mapping[str, int]
    strategies: tuple[StrategyLine, ...]
    open_orders: tuple[OpenOrderLine, ...]
    open_order_count: int
    controls: tuple[ControlLine, ...]
    incidents: tuple[IncidentLine, ...]
    open_incident_count: int
    #: ``None`` when the ledger has no alerts outbox
    alerts: tuple[AlertLine, ...] | None
    market_data: tuple[MarketDataLine, ...]


_ORDERS_BY_STATE = text(
    "SELECT state, count(*) FROM orders WHERE account = :account GROUP BY state ORDER BY state"
)
_TERMINAL = ", ".join(f"'{s.value}'" for s in sorted(TERMINAL_STATES))
_OPEN_ORDERS = text(
    f"""
    SELECT o.client_order_id, o.strategy_id, o.symbol, o.side, o.state, o.requested_qty,
           s.filled_qty, o.limit_price, o.created_at, count(*) OVER () AS total
    FROM orders o
    JOIN order_status s ON s.account = o.account AND s.client_order_id = o.client_order_id
    WHERE o.account = :account AND o.state NOT IN ({_TERMINAL})
    ORDER BY o.created_at DESC LIMIT {LIST_LIMIT}
    """
)
# What covers the account: its own controls and the global ones (they cover every account).
_CONTROLS = text(
    """SELECT scope, target, kind, reason FROM controls
    WHERE active AND (account IS NULL OR account = :account) ORDER BY id"""
)
_INCIDENTS = text(
    f"""SELECT id, opened_at, severity, kind, message, count(*) OVER () AS total
    FROM incidents WHERE resolved_at IS NULL AND account = :account
    ORDER BY opened_at DESC LIMIT {LIST_LIMIT}"""
)
# Each strategy's latest decisions by the (strategy_id, decided_at) index; a hold row's run may
# have gone on after a newer decision, so the latest activity is picked among a few.
_LAST_DECISIONS = text(
    """
    SELECT s.id, d.decided_at, d.intent, d.outcome, d.reason, d.repeats, d.last_repeat_at, d.md_ts
    FROM unnest(CAST(:ids AS text[])) AS s(id)
    CROSS JOIN LATERAL (
        SELECT * FROM decisions
        WHERE strategy_id = s.id AND account = :account
        ORDER BY decided_at DESC LIMIT 5
    ) d
    """
)
_STRATEGIES_DECIDED = text("SELECT DISTINCT strategy_id FROM decisions WHERE account = :account")
# The alerts outbox (ARCHITECTURE.md: level, kind, account, message, created_at, delivered_at),
# when the ledger has one.
_ALERTS = text(
    f"""SELECT created_at, level, kind, message, delivered_at IS NOT NULL
    FROM alerts WHERE account = :account ORDER BY created_at DESC LIMIT {LIST_LIMIT}"""
)
# Cash flow of the fills net of quote-asset fees; the holding is already net of base-asset fees
# (the positions view's rule).
_POSITIONS = text(
    """
    SELECT o.strategy_id, f.symbol,
           sum(CASE WHEN f.side = 'BUY' THEN f.qty ELSE -f.qty END)
             - COALESCE(sum(f.fee) FILTER (WHERE f.fee_asset = i.base_asset), 0) AS net_qty,
           sum(CASE WHEN f.side = 'BUY' THEN -f.qty * f.price ELSE f.qty * f.price END)
             - COALESCE(sum(f.fee) FILTER (WHERE f.fee_asset = i.quote_asset), 0) AS cash,
           count(*) AS fills
    FROM fills f
    JOIN orders o ON o.client_order_id = f.client_order_id AND o.account = f.account
    LEFT JOIN instruments i ON i.venue = f.venue AND i.symbol = f.symbol
    WHERE o.account = :account
    GROUP BY o.strategy_id, f.symbol
    ORDER BY o.strategy_id, f.symbol
    """
)


async def strategy_pnl(
    conn: AsyncConnection, account: str, marks: Mapping[str, Decimal]
) -> dict[str, tuple[PositionLine, ...]]:
    """Position and P&L per strategy and symbol: the one place the snapshot's P&L comes from."""
    out: dict[str, list[PositionLine]] = {}
    for strategy, symbol, net, cash, fills in await conn.execute(_POSITIONS, {"account": account}):
        mark = marks.get(symbol)
        pnl = None if mark is None else cash + net * mark
        out.setdefault(strategy, []).append(PositionLine(symbol, net, cash, fills, mark, pnl))
    return {strategy: tuple(lines) for strategy, lines in out.items()}


def strategy_state(
    strategy_id: str,
    symbols: Sequence[str],
    controls: Sequence[ControlLine],
    last: DecisionLine | None,
) -> str:
    """halted > paused > warming up / starting > trading; "(reduce-only)" when one applies."""

    def covers(c: ControlLine) -> bool:
        return (
            c.scope in ("global", "account")
            or (c.scope == "strategy" and c.target == strategy_id)
            or (c.scope == "symbol" and bool(symbols) and c.target in symbols)
        )

    kinds = {c.kind for c in controls if covers(c)}
    # a symbol pause stops the strategy only when it covers every symbol it trades
    symbol_paused = bool(symbols) and all(
        any(c.scope == "symbol" and c.target == s and c.kind == "pause" for c in controls)
        for s in symbols
    )
    whole = {
        c.kind
        for c in controls
        if c.scope in ("global", "account") or (c.scope == "strategy" and c.target == strategy_id)
    }
    if "halt" in whole:
        state = "halted"
    elif "pause" in whole or symbol_paused:
        state = "paused"
    elif last is None:
        state = "starting"
    elif last.intent == "hold" and last.reason.startswith("warming up"):
        state = "warming up"
    else:
        state = "trading"
    if "reduce_only" in kinds and state in ("trading", "warming up"):
        state += " (reduce-only)"
    return state


async def _table_exists(conn: AsyncConnection, name: str) -> bool:
    found = await conn.execute(text("SELECT to_regclass(:name) IS NOT NULL"), {"name": name})
    return bool(found.scalar_one())


async def gather_status(
    engine: AsyncEngine,
    account: str,
    *,
    strategies: Mapping[str, Sequence[str]] | None = None,
    marks: Mapping[str, Decimal] | None = None,
    quote_ages: Mapping[str, float | None] | None = None,
    now: datetime | None = None,
) -> StatusSnapshot:
    """Read one account's status. ``strategies`` (id → symbols, from the strategies file) are
    listed even before they decide; strategies that decided in the account are added."""
    now = now or utc_now()
    params = {"account": account}
    with database_errors(engine.url):
        async with engine.connect() as conn:
            states = {s: n for s, n in await conn.execute(_ORDERS_BY_STATE, params)}
            orders = (await conn.execute(_OPEN_ORDERS, params)).all()
            controls = tuple(ControlLine(*row) for row in await conn.execute(_CONTROLS, params))
            incidents = (await conn.execute(_INCIDENTS, params)).all()
            known = dict(strategies or {})
            for (sid,) in await conn.execute(_STRATEGIES_DECIDED, params):
                known.setdefault(sid, ())
            last: dict[str, DecisionLine] = {}
            rows = await conn.execute(_LAST_DECISIONS, {**params, "ids": sorted(known)})
            for sid, *fields in rows:
                line = DecisionLine(*fields)
                if sid not in last or line.last_at > last[sid].last_at:
                    last[sid] = line
            positions = await strategy_pnl(conn, account, marks or {})
            alerts: tuple[AlertLine, ...] | None = None
            if await _table_exists(conn, "alerts"):
                alerts = tuple(AlertLine(*row) for row in await conn.execute(_ALERTS, params))
    for sid in positions:
        known.setdefault(sid, ())
    lines = tuple(
        StrategyLine(
            strategy_id=sid,
            state=strategy_state(sid, symbols, controls, last.get(sid)),
            positions=positions.get(sid, ()),
            last_decision=last.get(sid),
        )
        for sid, symbols in sorted(known.items())
    )
    return StatusSnapshot(
        account=account,
        taken_at=now,
        orders_by_state=states,
        strategies=lines,
        open_orders=tuple(OpenOrderLine(*row[:-1]) for row in orders),
        open_order_count=orders[0].total if orders else 0,
        controls=controls,
        incidents=tuple(IncidentLine(*row[:-1]) for row in incidents),
        open_incident_count=incidents[0].total if incidents else 0,
        alerts=alerts,
        market_data=_market_data(known, last, quote_ages, now),
    )


def _market_data(
    strategies: Mapping[str, Sequence[str]],
    last: Mapping[str, DecisionLine],
    quote_ages: Mapping[str, float | None] | None,
    now: datetime,
) -> tuple[MarketDataLine, ...]:
    if quote_ages is not None:
        return tuple(MarketDataLine(s, quote_ages[s], "quote") for s in sorted(quote_ages))
    # A second process has no market data: how old was the data each strategy last decided on
    ages: dict[str, float | None] = {}
    for sid, symbols in strategies.items():
        decision = last.get(sid)
        age = (
            None
            if decision is None or decision.md_ts is None
            else (now - decision.md_ts).total_seconds()
        )
        for symbol in symbols or ():
            previous = ages.get(symbol)
            ages[symbol] = (
                age if previous is None or (age is not None and age < previous) else previous
            )
    return tuple(MarketDataLine(s, ages[s], "decision") for s in sorted(ages))
