"""The chaos invariants, checked from the simulator's ground truth and the ledger's SQL.

:func:`check` is pure (a :class:`World` in, a list of violations out), so it is unit-tested on
hand-built worlds; :func:`observe` builds the world from a running simulator and a database.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import asyncpg
from sqlalchemy.engine import URL

from engine.domain.types import OrderState, VenueOrderStatus
from engine.ledger.db import asyncpg_connect_kwargs
from engine.venues.simulator import SimulatorState

ZERO = Decimal(0)
UNRESOLVED = frozenset({OrderState.PENDING_SUBMIT, OrderState.UNKNOWN, OrderState.PENDING_CANCEL})
VENUE_OPEN = frozenset({VenueOrderStatus.NEW, VenueOrderStatus.PARTIALLY_FILLED})


@dataclass(frozen=True, slots=True, kw_only=True)
class VenueOrder:
    #: the venue's id (Binance: a number, Kalshi: a UUID)
    order_id: int | str
    client_order_id: str
    symbol: str
    status: VenueOrderStatus
    executed_qty: Decimal


@dataclass(frozen=True, slots=True, kw_only=True)
class Trade:
    """One fill, as the venue made it or as the ledger recorded it."""

    symbol: str
    trade_id: str
    side: str
    qty: Decimal
    price: Decimal
    fee: Decimal
    client_order_id: str | None
    venue_order_id: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class LedgerOrder:
    client_order_id: str
    symbol: str
    state: OrderState
    venue_order_id: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Incident:
    """An incident the ledger still has open at the end of the seed."""

    id: int
    kind: str
    message: str
    details: Mapping[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class Settlement:
    """A market's settlement, as the venue made it (``count``: the YES contracts it settled)
    or as the ledger recorded it (``count`` None: the ledger derives it from the fills)."""

    symbol: str
    result: str
    payout: Decimal
    count: Decimal | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class World:
    prefix: str
    venue_orders: Sequence[VenueOrder]
    venue_trades: Sequence[Trade]
    #: base asset per symbol, and how much of it the venue account gained (free + locked)
    base_assets: Mapping[str, str]
    base_change: Mapping[str, Decimal]
    ledger_orders: Sequence[LedgerOrder]
    ledger_fills: Sequence[Trade]
    #: ``positions`` view, summed over strategies, per symbol
    ledger_positions: Mapping[str, Decimal] = field(default_factory=dict)
    open_incidents: Sequence[Incident] = ()
    #: per asset, what moved the venue balance outside trading (deposits, withdrawals, manual
    #: trades); the chaos world injects none, so no balance drift is ever justified there
    external_changes: Mapping[str, Decimal] = field(default_factory=dict)
    #: a venue whose markets settle (Kalshi): its settlements and the ledger's, what the account
    #: held of each market before tradectl traded, and how its cash moved (free + locked)
    settles: bool = False
    venue_settlements: Sequence[Settlement] = ()
    ledger_settlements: Sequence[Settlement] = ()
    initial_holdings: Mapping[str, Decimal] = field(default_factory=dict)
    quote_asset: str = ""
    quote_change: Decimal = ZERO


def check(world: World) -> list[str]:
    """Every invariant, each violation one line naming the order or trade."""
    return [
        *_one_venue_order_per_id(world),
        *_fills_match(world),
        *_positions_match(world),
        *_states_agree(world),
        *_incidents_justified(world),
        *_settlements_match(world),
        *_cash_matches(world),
    ]


def converged(world: World) -> list[str]:
    """What must hold before the final engine is stopped: the states agree (nothing
    non-terminal the venue has closed, nothing unresolved), no fill is missing and every
    settlement is recorded."""
    return [*_states_agree(world), *_fills_match(world), *_settlements_match(world)]


def _net_fills(world: World) -> dict[str, Decimal]:
    net: dict[str, Decimal] = defaultdict(Decimal)
    for t in world.ledger_fills:
        net[t.symbol] += t.qty if t.side == "BUY" else -t.qty
    return net


def _settlements_match(world: World) -> list[str]:
    """One ledger settlement per venue settlement, same result and payout, and the position
    it settled (held before tradectl plus the ledger's fills) is what the venue settled."""
    if not world.settles:
        return []
    out: list[str] = []
    venue = {s.symbol: s for s in world.venue_settlements}
    ledger = {s.symbol: s for s in world.ledger_settlements}
    net = _net_fills(world)
    for symbol in sorted(venue.keys() - ledger.keys()):
        out.append(f"settlement missing: the venue settled {symbol} ({venue[symbol].result})")
    for symbol in sorted(ledger.keys() - venue.keys()):
        out.append(f"phantom settlement: the ledger settled {symbol}, the venue did not")
    for symbol in sorted(venue.keys() & ledger.keys()):
        v, s = venue[symbol], ledger[symbol]
        if (v.result, v.payout) != (s.result, s.payout):
            out.append(
                f"settlement {symbol}: venue {v.result} pays {v.payout}, ledger {s.result} "
                f"pays {s.payout}"
            )
        held = world.initial_holdings.get(symbol, ZERO) + net.get(symbol, ZERO)
        if v.count is not None and held != v.count:
            out.append(
                f"settled position {symbol}: the ledger held {held}, the venue settled {v.count}"
            )
    return out


def _cash_matches(world: World) -> list[str]:
    """The venue's cash moved by exactly the ledger's fills (notional and fees) and the
    payouts of its settlements."""
    if not world.settles:
        return []
    net = _net_fills(world)
    expected = ZERO
    for t in world.ledger_fills:
        expected += t.qty * t.price if t.side == "SELL" else -t.qty * t.price
        expected -= t.fee
    for s in world.ledger_settlements:
        expected += (world.initial_holdings.get(s.symbol, ZERO) + net.get(s.symbol, ZERO)) * (
            s.payout
        )
    if expected != world.quote_change:
        return [
            f"balance {world.quote_asset}: the ledger's fills and settlements move it by "
            f"{expected}, the venue's moved by {world.quote_change}"
        ]
    return []


def _one_venue_order_per_id(world: World) -> list[str]:
    out: list[str] = []
    by_id: dict[str, list[int | str]] = defaultdict(list)
    for order in world.venue_orders:
        by_id[order.client_order_id].append(order.order_id)
    ledger = {o.client_order_id: o for o in world.ledger_orders}
    for coid, ids in sorted(by_id.items()):
        if not coid.startswith(world.prefix):
            continue
        if len(ids) > 1:
            out.append(f"duplicate: client order id {coid} has {len(ids)} venue orders {ids}")
        known = ledger.get(coid)
        if known is None:
            out.append(f"unknown: venue order {ids} ({coid}) is not in the ledger")
        elif known.venue_order_id is not None and known.venue_order_id not in map(str, ids):
            out.append(
                f"wrong attach: ledger has {coid} as venue order {known.venue_order_id}, "
                f"the venue has {ids}"
            )
    return out


def _fills_match(world: World) -> list[str]:
    out: list[str] = []
    venue = {(t.symbol, t.trade_id): t for t in world.venue_trades}
    ledger = {(t.symbol, t.trade_id): t for t in world.ledger_fills}
    for key in sorted(venue.keys() - ledger.keys()):
        t = venue[key]
        out.append(f"lost fill: trade {key} of {t.client_order_id} ({t.qty} @ {t.price})")
    for key in sorted(ledger.keys() - venue.keys()):
        out.append(f"phantom fill: ledger trade {key} the venue never made")
    for key in sorted(venue.keys() & ledger.keys()):
        v, f = venue[key], ledger[key]
        for name in ("side", "qty", "price", "fee"):
            if getattr(v, name) != getattr(f, name):
                out.append(
                    f"fill mismatch: trade {key} {name} venue {getattr(v, name)} "
                    f"ledger {getattr(f, name)}"
                )
        if f.client_order_id != v.client_order_id:
            out.append(
                f"fill not attached: trade {key} of {v.client_order_id} (venue order "
                f"{v.venue_order_id}) has client order id {f.client_order_id!r} in the ledger"
            )
    return out


def _positions_match(world: World) -> list[str]:
    out: list[str] = []
    venue_net: dict[str, Decimal] = defaultdict(Decimal)
    for t in world.venue_trades:
        venue_net[t.symbol] += t.qty if t.side == "BUY" else -t.qty
    ledger_net: dict[str, Decimal] = defaultdict(Decimal)
    for t in world.ledger_fills:
        ledger_net[t.symbol] += t.qty if t.side == "BUY" else -t.qty
    for symbol, base in sorted(world.base_assets.items()):
        fills = ledger_net.get(symbol, ZERO)
        view = world.ledger_positions.get(symbol, ZERO)
        venue = venue_net.get(symbol, ZERO)
        balance = world.base_change.get(base, ZERO)
        if not fills == view == venue == balance:
            out.append(
                f"position {symbol}: ledger fills {fills}, positions view {view}, venue trades "
                f"{venue}, venue {base} balance change {balance}"
            )
    return out


def _states_agree(world: World) -> list[str]:
    out: list[str] = []
    venue = {o.client_order_id: o for o in world.venue_orders}
    for order in world.ledger_orders:
        coid = order.client_order_id
        if order.state in UNRESOLVED:
            out.append(f"unresolved: {coid} is {order.state.value} in the ledger")
        v = venue.get(coid)
        if v is None:
            if order.state not in (OrderState.EXPIRED, OrderState.REJECTED):
                out.append(f"never placed: {coid} is {order.state.value}, the venue never had it")
            continue
        if v.status not in VENUE_OPEN and not order.state.is_terminal:
            out.append(f"stale: {coid} is {order.state.value}, the venue says {v.status.value}")
        elif v.status in VENUE_OPEN and order.state.is_terminal:
            out.append(f"closed early: {coid} is {order.state.value}, venue says {v.status.value}")
        elif (v.status is VenueOrderStatus.FILLED) != (order.state is OrderState.FILLED):
            out.append(f"state: {coid} is {order.state.value}, the venue says {v.status.value}")
    return out


def _incidents_justified(world: World) -> list[str]:
    """Every incident still open must be true of the venue's ground truth: an incident whose
    cause was only in flight (a fill not yet recorded) paused trading for nothing."""
    out: list[str] = []
    venue_by_id = {o.client_order_id: o for o in world.venue_orders}
    known = {o.client_order_id for o in world.ledger_orders}
    for incident in world.open_incidents:
        details = incident.details
        if incident.kind == "balance_drift":
            justified = bool(world.external_changes.get(str(details.get("asset")), ZERO))
        elif incident.kind == "unknown_venue_order":
            coid = str(details.get("client_order_id"))
            justified = coid in venue_by_id and coid not in known
        elif incident.kind == "fills_missing":
            coid = str(details.get("client_order_id"))
            venue_qty = sum((t.qty for t in world.venue_trades if t.client_order_id == coid), ZERO)
            ledger_qty = sum((t.qty for t in world.ledger_fills if t.client_order_id == coid), ZERO)
            justified = venue_qty > ledger_qty
        elif incident.kind == "external_trade":
            symbol = str(details.get("symbol"))
            justified = any(
                t.symbol == symbol and not (t.client_order_id or "").startswith(world.prefix)
                for t in world.venue_trades
            )
        else:
            justified = False  # strategy failures, auth and loss halts have no cause here
        if not justified:
            out.append(f"unjustified incident {incident.id} ({incident.kind}): {incident.message}")
    return out


# -- observation ---------------------------------------------------------------------------------


def venue_view(
    state: SimulatorState, initial: Mapping[str, Decimal]
) -> tuple[list[VenueOrder], list[Trade], dict[str, str], dict[str, Decimal]]:
    orders = [
        VenueOrder(
            order_id=o.order_id,
            client_order_id=o.client_order_id,
            symbol=o.symbol,
            status=VenueOrderStatus(o.status.value),
            executed_qty=o.executed_qty,
        )
        for o in state.orders()
    ]
    trades = [
        Trade(
            symbol=t.symbol,
            trade_id=str(t.trade_id),
            side=t.side.value,
            qty=t.qty,
            price=t.price,
            fee=t.commission,
            client_order_id=t.client_order_id,
            venue_order_id=str(t.order_id),
        )
        for t in state.trades()
    ]
    bases = {s.symbol: s.base_asset for s in state.config.symbols}
    change = {
        asset: free + locked - initial.get(asset, ZERO)
        for asset, (free, locked) in state.balances().items()
    }
    return orders, trades, bases, change


async def connect(url: URL) -> Any:
    kwargs: Any = asyncpg_connect_kwargs(url)
    return await asyncpg.connect(**kwargs)


async def ledger_settlements(url: URL, account: str) -> list[Settlement]:
    conn = await connect(url)
    try:
        rows = await conn.fetch(
            "SELECT symbol, result, payout FROM settlements WHERE account = $1", account
        )
    finally:
        await conn.close()
    return [Settlement(symbol=r["symbol"], result=r["result"], payout=r["payout"]) for r in rows]


async def ledger_view(
    url: URL, account: str
) -> tuple[list[LedgerOrder], list[Trade], dict[str, Decimal], list[Incident]]:
    conn = await connect(url)
    try:
        orders = await conn.fetch(
            "SELECT client_order_id, symbol, state, venue_order_id FROM orders WHERE account = $1",
            account,
        )
        fills = await conn.fetch(
            "SELECT symbol, trade_id, side, qty, price, fee, client_order_id, venue_order_id "
            "FROM fills WHERE account = $1",
            account,
        )
        positions = await conn.fetch(
            "SELECT symbol, sum(net_qty) AS net FROM positions WHERE account = $1 GROUP BY symbol",
            account,
        )
        incidents = await conn.fetch(
            "SELECT id, kind, message, details FROM incidents"
            " WHERE account = $1 AND resolved_at IS NULL ORDER BY id",
            account,
        )
    finally:
        await conn.close()
    return (
        [
            LedgerOrder(
                client_order_id=r["client_order_id"],
                symbol=r["symbol"],
                state=OrderState(r["state"]),
                venue_order_id=r["venue_order_id"],
            )
            for r in orders
        ],
        [
            Trade(
                symbol=r["symbol"],
                trade_id=r["trade_id"],
                side=r["side"],
                qty=r["qty"],
                price=r["price"],
                fee=r["fee"],
                client_order_id=r["client_order_id"],
                venue_order_id=r["venue_order_id"],
            )
            for r in fills
        ],
        {r["symbol"]: r["net"] for r in positions},
        [
            Incident(
                id=r["id"],
                kind=r["kind"],
                message=r["message"],
                details=json.loads(r["details"]),
            )
            for r in incidents
        ],
    )


async def lease_held(url: URL, account: str) -> bool:
    conn = await connect(url)
    try:
        held = await conn.fetchval(
            "SELECT count(*) FROM leases WHERE account = $1 AND expires_at > now()", account
        )
    finally:
        await conn.close()
    return bool(held)


async def observe(
    state: SimulatorState, initial: Mapping[str, Decimal], url: URL, *, account: str, prefix: str
) -> World:
    # ledger first: whatever it holds, the venue already held (the venue is the source)
    ledger_orders, ledger_fills, positions, incidents = await ledger_view(url, account)
    orders, trades, bases, change = venue_view(state, initial)
    return World(
        prefix=prefix,
        venue_orders=orders,
        venue_trades=trades,
        base_assets=bases,
        base_change=change,
        ledger_orders=ledger_orders,
        ledger_fills=ledger_fills,
        ledger_positions=positions,
        open_incidents=incidents,
    )
