"""Fills, and the machinery that derives an order's state from the sum of its fills (shared
with the one-statement venue report path in :mod:`engine.ledger.orders`)."""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import asyncpg
import structlog

from engine.domain.orders import target_state
from engine.domain.types import OrderState, Symbol, TradeId, VenueOrderStatus
from engine.ledger.fence import FENCE_CTES
from engine.ledger.part import LedgerPart
from engine.ledger.records import ExternalFills
from engine.ledger.statements import Statement, dumps_rows, require_finite, retry_transient
from engine.venues.base import FillReport

log = structlog.get_logger("tradectl.ledger")

#: later than any fill (venue timestamps are checked to lie before 2100)
_END_OF_TIME = datetime.max.replace(tzinfo=UTC)

SQL_LOCK_ORDERS = Statement(
    """
    SELECT client_order_id, state, requested_qty FROM orders
    WHERE client_order_id = ANY(CAST(:client_order_ids AS text[])) AND account = :account
    ORDER BY client_order_id
    FOR UPDATE
    """
)

# Insert fills (duplicates by the account's trade id are skipped: the same trade id in another
# account is another account's trade) and return, per locked order, the fill sum
# including the rows just inserted (this statement's snapshot cannot see its own inserts).
# Only in a statement with the lease fence (engine/ledger/fence.py): nothing when fenced out.
# The rows come as one JSON parameter (fill_params), as the reservation's do
# (engine/ledger/decisions.py says why): thirteen arrays cost every ACK their encoding.
INSERT_FILLS = """
    INSERT INTO fills (venue, symbol, trade_id, client_order_id, venue_order_id, account,
                       side, qty, price, fee, fee_asset, liquidity, venue_ts, received_at,
                       recorded_at)
    SELECT t.venue, t.symbol, t.trade_id, t.client_order_id, t.venue_order_id, :account,
           t.side, t.qty, t.price, t.fee, t.fee_asset, t.liquidity, t.venue_ts,
           t.received_at, :now
    FROM json_to_recordset(CAST(:fills AS json)) AS t(
        venue text, symbol text, trade_id text, client_order_id text, venue_order_id text,
        side text, qty numeric, price numeric, fee numeric, fee_asset text, liquidity text,
        venue_ts timestamptz, received_at timestamptz
    )
    WHERE (SELECT ok FROM fence)
    ON CONFLICT (account, venue, symbol, trade_id) DO NOTHING
"""


def target_lookup(targets: Targets) -> str:
    """The target-state lookup of the one-statement paths as SQL text: (from state, fill
    bucket) -> to state, computed in Python from the domain's transition rules (see _lookup).
    Written into the statement once, at import: sent as array parameters it cost every
    acknowledgement 81 values to encode and check. The values are the enums' own, never input."""
    rows = ", ".join(
        f"('{f}', {b}, '{t}')"
        for f, b, t in zip(targets["lk_from"], targets["lk_bucket"], targets["lk_to"], strict=True)
    )
    return f"(VALUES {rows}) AS lk(from_state, bucket, to_state)"


def bucket_sql(filled: str, requested: str) -> str:
    """SQL twin of :func:`_bucket`."""
    return f"(CASE WHEN {filled} >= {requested} THEN 2 WHEN {filled} > 0 THEN 1 ELSE 0 END)"


# The slow path's pieces (a stale one-statement result): fill sums read *after* the lock.
SQL_FILL_TOTALS = Statement(
    """
    SELECT l.client_order_id,
           COALESCE(
               (SELECT sum(x.qty) FROM fills x
                WHERE x.client_order_id = l.client_order_id AND x.account = :account),
               0
           )
    FROM unnest(CAST(:client_order_ids AS text[])) AS l(client_order_id)
    """
)

# Several orders' fill-driven moves in one statement. The rows are locked by this transaction,
# so ``state = from_state`` holds; from → to was validated against the transition table.
SQL_FILL_TRANSITIONS = Statement(
    """
    WITH t AS (
        SELECT * FROM unnest(
            CAST(:client_order_id AS text[]), CAST(:from_state AS text[]),
            CAST(:to_state AS text[])
        ) AS t(client_order_id, from_state, to_state)
    ),
    upd AS (
        UPDATE orders o SET state = t.to_state, updated_at = :now
        FROM t
        WHERE o.client_order_id = t.client_order_id AND o.account = :account
          AND o.state = t.from_state
        RETURNING o.client_order_id, t.from_state, t.to_state
    )
    INSERT INTO order_events (account, client_order_id, from_state, to_state, cause, recorded_at)
    SELECT :account, client_order_id, from_state, to_state, :cause, :now FROM upd
    """
)

# Per symbol with fills, the newest fill older than :before (NULL when every fill is newer): where
# ``trades_since`` resumes (before = the end of time), or where a re-fetch of a recent window
# starts, which finds a fill the stream delivered late, behind newer ones. The account's symbols
# come from a skip scan of the (account, symbol, venue_ts) index, then the newest fill of each:
# the cost grows with the number of symbols, not of fills.
SQL_TRADES_BEFORE = Statement(
    """
    WITH RECURSIVE symbols AS (
        (SELECT symbol FROM fills WHERE account = :account ORDER BY symbol LIMIT 1)
        UNION ALL
        SELECT (
            SELECT f.symbol FROM fills f
            WHERE f.account = :account AND f.symbol > s.symbol
            ORDER BY f.symbol LIMIT 1
        )
        FROM symbols s WHERE s.symbol IS NOT NULL
    )
    SELECT s.symbol, t.trade_id
    FROM symbols s
    LEFT JOIN LATERAL (
        SELECT f.trade_id FROM fills f
        WHERE f.account = :account AND f.symbol = s.symbol AND f.venue = :venue
          AND f.venue_ts < :before
        ORDER BY f.venue_ts DESC,
                 CASE WHEN f.trade_id ~ '^[0-9]{1,30}$' THEN CAST(f.trade_id AS numeric) END
                     DESC NULLS LAST,
                 f.id DESC
        LIMIT 1
    ) t ON true
    WHERE s.symbol IS NOT NULL
    """
)


# Fills of this account that none of its orders placed (a trade made by hand on the venue, or by
# another program on the same account), after a fill id: the reconciler reports them once.
SQL_EXTERNAL_FILLS = Statement(
    """
    SELECT f.symbol, count(*) AS trades, max(f.id) AS last_fill_id,
           sum(CASE WHEN f.side = 'BUY' THEN f.qty ELSE -f.qty END) AS net_qty,
           (array_agg(f.trade_id ORDER BY f.id))[1:20] AS trade_ids
    FROM fills f
    WHERE f.account = :account AND f.venue = :venue AND f.id > :after
      AND NOT EXISTS (
          SELECT 1 FROM orders o
          WHERE o.client_order_id = f.client_order_id AND o.account = f.account
      )
    GROUP BY f.symbol
    ORDER BY f.symbol
    """
)


def log_fill_recorded(
    account: str, fill: FillReport, *, decision_id: str | None, strategy: str | None
) -> None:
    """One line per fill this process inserted (a fill the ledger already held is not logged
    again): written here because only the insert knows whether the fill is new. The order's
    ids come from its row, so the line joins its decision's other lines whichever task wrote
    it (the user stream, an ACK, a lookup, a trade query)."""
    log.info(
        "fill.recorded",
        account=account,
        strategy=strategy,
        decision_id=decision_id,
        client_order_id=fill.client_order_id,
        trade_id=fill.trade_id,
        symbol=fill.symbol,
        side=fill.side.value,
        qty=fill.quantity,
        price=fill.price,
    )


def fill_params(fills: Sequence[FillReport]) -> dict[str, str]:
    """The ``:fills`` parameter of :data:`INSERT_FILLS`: one JSON array of rows."""
    return {"fills": dumps_rows([fill_row(f) for f in fills])}


def fill_row(f: FillReport) -> dict[str, Any]:
    """One fill as a row of ``:fills``. Numbers leave as Decimal's ``str`` and instants as ISO
    text with their offset, read back exactly as NUMERIC and TIMESTAMPTZ; converted here, not
    by the encoder's ``default`` hook, which cost a third more per value on this hot path."""
    return {
        "venue": f.venue,
        "symbol": f.symbol,
        "trade_id": f.trade_id,
        "client_order_id": f.client_order_id,
        "venue_order_id": f.venue_order_id,
        "side": f.side.value,
        "qty": str(f.quantity),
        "price": str(f.price),
        "fee": str(f.fee),
        "fee_asset": f.fee_asset,
        "liquidity": None if f.liquidity is None else f.liquidity.value,
        "venue_ts": f.venue_ts.isoformat(),
        "received_at": f.received_at.isoformat(),
    }


def check_fills(fills: Sequence[FillReport]) -> None:
    """Before any SQL: a batch with one non-finite number is refused whole."""
    for f in fills:
        require_finite(
            f"fill {f.trade_id} of {f.symbol} on {f.venue}",
            qty=f.quantity,
            price=f.price,
            fee=f.fee,
        )


def _bucket(filled: Decimal, requested: Decimal) -> int:
    """How much of the order is filled: 0 nothing, 1 partly, 2 completely.

    The domain's ``target_state`` depends on the filled quantity only through this bucket
    (tests pin that), which lets the one-statement paths look the target state up in SQL.
    """
    return 2 if filled >= requested else 1 if filled > 0 else 0


_BUCKET_EXAMPLES = ((0, Decimal(0)), (1, Decimal(1)), (2, Decimal(2)))
_EXAMPLE_REQUESTED = Decimal(2)

Targets = dict[str, list[Any]]


def _lookup(rule: Callable[[OrderState, Decimal, Decimal], OrderState]) -> Targets:
    rows = [
        (state.value, bucket, rule(state, filled, _EXAMPLE_REQUESTED).value)
        for state in OrderState
        for bucket, filled in _BUCKET_EXAMPLES
    ]
    return {
        "lk_from": [r[0] for r in rows],
        "lk_bucket": [r[1] for r in rows],
        "lk_to": [r[2] for r in rows],
    }


@functools.cache
def report_targets(status: VenueOrderStatus) -> Targets:
    return _lookup(lambda state, filled, req: target_state(state, status, filled, req))


@functools.cache
def _fill_targets() -> Targets:
    return _lookup(_fill_driven_state)


def _fill_driven_state(current: OrderState, filled: Decimal, requested: Decimal) -> OrderState:
    # A fill says "partially filled" unless it completes the order; an in-flight cancel stays
    # in flight (the cancel's own answer moves it on).
    status = (
        VenueOrderStatus.PENDING_CANCEL
        if current is OrderState.PENDING_CANCEL
        else VenueOrderStatus.PARTIALLY_FILLED
    )
    return target_state(current, status, filled, requested)


# One round trip for a batch of fills: lock the affected orders (in a fixed order: no
# deadlocks), insert the fills, move each order with new fills by its fill sum, append events.
# ``stale`` as in orders.SQL_APPLY_REPORT; every order with new fills is updated (at least its
# updated_at), which is what makes staleness detectable by the next writer.
SQL_APPEND_FILLS = Statement(
    f"""
    WITH {FENCE_CTES},
    cur AS (
        SELECT o.client_order_id, o.state, o.requested_qty, o.xmin AS locked_xmin,
               o.decision_id, o.strategy_id
        FROM orders o
        WHERE o.client_order_id = ANY(CAST(:client_order_ids AS text[])) AND o.account = :account
          AND (SELECT ok FROM fence)
        ORDER BY o.client_order_id
        FOR UPDATE
    ),
    snap AS (
        SELECT o.client_order_id, o.xmin AS snap_xmin
        FROM orders o
        WHERE o.client_order_id = ANY(CAST(:client_order_ids AS text[])) AND o.account = :account
    ),
    ins AS ({INSERT_FILLS} RETURNING venue, symbol, trade_id, client_order_id, qty),
    tot AS (
        SELECT cur.client_order_id, cur.state, cur.requested_qty,
               cur.locked_xmin IS DISTINCT FROM s.snap_xmin AS stale,
               COALESCE(
                   (SELECT sum(x.qty) FROM fills x
                    WHERE x.client_order_id = cur.client_order_id AND x.account = :account),
                   0
               ) + n.qty AS filled_qty
        FROM cur
        JOIN (SELECT client_order_id, sum(qty) AS qty FROM ins GROUP BY client_order_id) n
          ON n.client_order_id = cur.client_order_id
        LEFT JOIN snap s ON s.client_order_id = cur.client_order_id
    ),
    tgt AS (
        SELECT tot.*, lk.to_state
        FROM tot JOIN {target_lookup(_fill_targets())}
          ON lk.from_state = tot.state
         AND lk.bucket = {bucket_sql("tot.filled_qty", "tot.requested_qty")}
    ),
    upd AS (
        UPDATE orders o SET state = tgt.to_state, updated_at = :now
        FROM tgt
        WHERE o.client_order_id = tgt.client_order_id AND o.account = :account
          AND o.state = tgt.state AND NOT tgt.stale
        RETURNING o.client_order_id, tgt.state AS from_state, tgt.to_state
    ),
    ev AS (
        INSERT INTO order_events (account, client_order_id, from_state, to_state, cause,
                                  recorded_at)
        SELECT :account, client_order_id, from_state, to_state, 'fill', :now
        FROM upd WHERE from_state <> to_state
    )
    SELECT 'inserted' AS kind, i.venue, i.symbol, i.trade_id, NULL AS client_order_id,
           c.decision_id, c.strategy_id
    FROM ins i LEFT JOIN cur c ON c.client_order_id = i.client_order_id
    UNION ALL
    SELECT 'stale', NULL, NULL, NULL, t.client_order_id, NULL, NULL FROM tgt t WHERE t.stale
    UNION ALL
    SELECT 'fenced', NULL, NULL, NULL, NULL, NULL, NULL FROM fence WHERE NOT fence.ok
    """
)


async def fill_totals(
    db: asyncpg.Connection, account: str, client_order_ids: Sequence[str]
) -> dict[str, Decimal]:
    result = await SQL_FILL_TOTALS.run(
        db, {"account": account, "client_order_ids": list(client_order_ids)}
    )
    return {coid: total for coid, total in map(tuple, result)}


#: trade ids a ``Fills`` remembers as committed: a few hours of a busy account's fills
RECORDED_KEPT = 50_000


class Fills(LedgerPart):
    """``ledger.fills``: record fills and move their orders by the fill sums."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: fills this process saw committed (inserted, or already there), oldest first. The
        #: same trade comes back many times (the ACK, the user stream, a lookup, and every
        #: reconciliation's ten-minute look back, hundreds of trades for a busy account); an
        #: append of fills the ledger holds would lock their orders and take the fence for
        #: nothing. Fills are never updated or deleted, so a remembered one stays true.
        self._recorded: dict[tuple[str, str, str], None] = {}

    @retry_transient
    async def append(self, fills: Sequence[FillReport]) -> list[FillReport]:
        """Record fills (idempotent by ``(account, venue, symbol, trade_id)``); return the new
        ones.

        In the same transaction, each affected non-terminal order moves to ``PARTIALLY_FILLED``
        or ``FILLED`` from the sum of its fills. A fill on a terminal order (a late fill after a
        cancel) is recorded and the order keeps its state.
        """
        if not fills:
            return []
        check_fills(fills)
        fills = [f for f in fills if (f.venue, f.symbol, f.trade_id) not in self._recorded]
        if not fills:
            return []
        now = self._clock()
        coids = sorted({f.client_order_id for f in fills if f.client_order_id is not None})
        #: per new fill, its order's (decision id, strategy) when the fill names a known order
        inserted: dict[tuple[str, str, str], tuple[str | None, str | None]] = {}
        stale: list[str] = []
        async with self._connection() as db:
            result = await SQL_APPEND_FILLS.run(
                db,
                self._fenced(
                    {
                        **fill_params(fills),
                        "client_order_ids": coids,
                        "account": self.account,
                        "now": now,
                    }
                ),
            )
            for kind, venue, symbol, trade_id, coid, decision, strategy in map(tuple, result):
                if kind == "fenced":
                    raise self._fence.refused(f"recording {len(fills)} fill(s)")
                if kind == "inserted":
                    inserted[venue, symbol, trade_id] = (decision, strategy)
                else:
                    stale.append(coid)
        # committed (one statement, its own transaction): inserted now or held already
        self._remember(fills)
        if stale:
            await self._refresh_fill_states(sorted(stale), now)
        new = [f for f in fills if (f.venue, f.symbol, f.trade_id) in inserted]
        for fill in new:
            decision, strategy = inserted[fill.venue, fill.symbol, fill.trade_id]
            log_fill_recorded(self.account, fill, decision_id=decision, strategy=strategy)
        return new

    def _remember(self, fills: Sequence[FillReport]) -> None:
        for f in fills:
            self._recorded[f.venue, f.symbol, f.trade_id] = None
        excess = len(self._recorded) - RECORDED_KEPT
        if excess > 0:
            for key in list(itertools.islice(self._recorded, excess)):
                del self._recorded[key]

    async def _refresh_fill_states(self, client_order_ids: Sequence[str], now: datetime) -> None:
        """The slow path of append: lock, then read the sums, then move."""
        async with self._fenced_tx("moving orders by their fills") as db:
            locked = list(
                await SQL_LOCK_ORDERS.run(
                    db, {"account": self.account, "client_order_ids": list(client_order_ids)}
                )
            )
            totals = await fill_totals(db, self.account, client_order_ids)
            moves: list[tuple[str, OrderState, OrderState]] = []
            for row in locked:
                current = OrderState(row["state"])
                to = _fill_driven_state(
                    current, totals[row["client_order_id"]], row["requested_qty"]
                )
                if to is not current:
                    moves.append((row["client_order_id"], current, to))
            if moves:
                await SQL_FILL_TRANSITIONS.run(
                    db,
                    {
                        "client_order_id": [m[0] for m in moves],
                        "from_state": [m[1].value for m in moves],
                        "to_state": [m[2].value for m in moves],
                        "cause": "fill",
                        "now": now,
                        "account": self.account,
                    },
                )

    async def last_trade_ids(self) -> dict[Symbol, TradeId]:
        """Per symbol, the newest recorded fill's trade id: where to resume ``trades_since``."""
        newest = await self.trades_before(_END_OF_TIME)
        return {symbol: trade_id for symbol, trade_id in newest.items() if trade_id is not None}

    async def external(self, *, after: int) -> list[ExternalFills]:
        """Per symbol, the fills after fill id ``after`` that none of the account's orders
        placed."""
        async with self._connection() as db:
            rows = await SQL_EXTERNAL_FILLS.run(
                db, {"account": self.account, "venue": self.venue, "after": after}
            )
        return [
            ExternalFills(
                symbol=Symbol(r["symbol"]),
                trades=r["trades"],
                last_fill_id=r["last_fill_id"],
                net_qty=r["net_qty"],
                trade_ids=tuple(TradeId(t) for t in r["trade_ids"]),
            )
            for r in rows
        ]

    async def trades_before(self, before: datetime) -> dict[Symbol, TradeId | None]:
        """Per symbol with fills, the newest fill's trade id among those older than ``before``
        (``None`` when all are newer): where to re-fetch a recent window of trades from."""
        async with self._connection() as db:
            result = await SQL_TRADES_BEFORE.run(
                db, {"account": self.account, "venue": self.venue, "before": before}
            )
            return {
                Symbol(symbol): None if trade_id is None else TradeId(trade_id)
                for symbol, trade_id in map(tuple, result)
            }
