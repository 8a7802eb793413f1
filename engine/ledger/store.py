"""The ledger: every durable write of the execution protocol (ARCHITECTURE.md, "The durable
execution protocol"), one short transaction per phase.

Concurrency model, in one place:

* **One writer per account**, enforced by the ``leases`` row and its ``epoch``. ``reserve`` fences
  on it (``UPDATE leases … WHERE holder AND epoch AND expires_at > now``) in its own transaction,
  so a process that lost the lease can never reserve another order. Taking over an expired lease
  increments the epoch; ``orders.lease_epoch`` records which epoch reserved each order.
* **Controls never race a reservation.** ``reserve`` holds a *shared* transaction-level advisory
  lock (:data:`CONTROLS_LOCK_KEY`) from its fence statement to its commit, and checks controls in
  a later statement (Postgres READ COMMITTED takes a new snapshot per statement). ``set_control``
  takes the same lock *exclusively* before inserting. So a control either commits before the
  reservation's check (which then sees it and blocks) or waits until the reservation has
  committed (and whoever set it then sees that order, e.g. to cancel it).
  Reservations of different accounts do not block each other; clearing a control only permits
  more, so it takes no lock.
* **Fill sums are never stale.** A write that derives a state from the fill sum locks the order
  row (``FOR UPDATE``) in the same statement, and every transaction that inserts fills of a
  known order also updates that order's row. When the locked row version is newer than the
  statement's snapshot (another writer committed fills while this one waited), the statement
  changes nothing but its own fills and the state is derived again in a new transaction that
  reads the sum after taking the lock. So two writers appending fills to the same order (the
  user stream and the reconciler) always see each other's fills.
* Every state change is ``UPDATE orders … WHERE state = ANY(allowed_from(to))`` plus an
  ``order_events`` row in the same statement; zero rows means a conflict to re-read, never an
  error to swallow (:class:`engine.exceptions.StateConflict`).
* Filled quantity and average price are always derived from ``fills``; no counter can drift.

Round trips, whatever the batch size (batches travel as arrays through ``unnest``): reserve is
BEGIN / fence / reserve / COMMIT; an ack, a venue report or a batch of fills is one statement
(lock, insert fills, derive the state, update, event) in its own implicit transaction; reads
are one statement. Statements are :class:`Statement` constants: written as SQLAlchemy ``text()``
with ``:name`` parameters, compiled once at import by the asyncpg dialect, and run on the pooled
connection's asyncpg driver, so a call costs little more than raw asyncpg (the engine, its pool
and URL handling stay SQLAlchemy's).

Timestamps written here come from the injected clock, so tests control time and all rows of one
process agree; the lease logic tolerates clock skew between processes because safety rests on the
epoch, not on the clock.
"""

from __future__ import annotations

import asyncio
import functools
import json
import random
from collections.abc import (
    AsyncIterator,
    Callable,
    Coroutine,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from contextlib import asynccontextmanager, contextmanager
from dataclasses import replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, ParamSpec, TypeVar

import asyncpg
from sqlalchemy import text
from sqlalchemy.dialects.postgresql import asyncpg as postgresql_asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine

from engine.domain.orders import Order, allowed_from, target_state
from engine.domain.risk import Verdict
from engine.domain.types import (
    TERMINAL_STATES,
    AccountId,
    Asset,
    ClientOrderId,
    ControlKind,
    ControlScope,
    DecisionId,
    DecisionOutcome,
    OrderState,
    OrderType,
    Side,
    StrategyId,
    Symbol,
    TimeInForce,
    TradeId,
    VenueName,
    VenueOrderId,
    VenueOrderStatus,
    VerdictResult,
    utc_now,
)
from engine.exceptions import LeaseLost, LedgerError, StateConflict
from engine.ledger.db import is_connection_error, translate_error
from engine.ledger.records import (
    BalanceBaseline,
    Control,
    DecisionRecord,
    Incident,
    LeaseInfo,
    OperatorRequest,
    OperatorRequestKind,
    Reservation,
    ReserveResult,
    ReserveStatus,
)
from engine.venues.base import BalanceReport, FillReport, InstrumentRules, OrderReport

#: Advisory lock serializing ``set_control`` (exclusive) against ``reserve`` (shared).
#: The value is arbitrary but fixed: b"tradectl" as a signed 64-bit integer.
CONTROLS_LOCK_KEY = int.from_bytes(b"tradectl", "big", signed=True)

_NON_TERMINAL = [s.value for s in OrderState if s not in TERMINAL_STATES]
_BLOCKING_KINDS = (ControlKind.HALT, ControlKind.PAUSE)

# ---------------------------------------------------------------------------------------------
# SQL

_DIALECT = postgresql_asyncpg.dialect()  # type: ignore[no-untyped-call]


#: Postgres aborts one of two transactions that wait on each other (a fill path inserting a
#: trade while an ACK holds its order, say); the victim was rolled back whole, so it is retried.
_TRANSIENT = (asyncpg.DeadlockDetectedError, asyncpg.SerializationError)
_TRANSIENT_ATTEMPTS = 5

P = ParamSpec("P")
T = TypeVar("T")


def _retry_transient(
    fn: Callable[P, Coroutine[Any, Any, T]],
) -> Callable[P, Coroutine[Any, Any, T]]:
    @functools.wraps(fn)
    async def retrying(*args: P.args, **kwargs: P.kwargs) -> T:
        for attempt in range(1, _TRANSIENT_ATTEMPTS + 1):
            try:
                return await fn(*args, **kwargs)
            except _TRANSIENT as exc:
                if attempt == _TRANSIENT_ATTEMPTS:
                    raise LedgerError(
                        f"{fn.__name__} was aborted by the database {attempt} times "
                        f"({type(exc).__name__}); nothing of it was written"
                    ) from exc
                await asyncio.sleep(random.uniform(0, 0.01 * 2**attempt))
        raise AssertionError("unreachable")

    return retrying


class Rows(list[asyncpg.Record]):
    """A statement's result rows, with the few accessors the ledger needs."""

    def first(self) -> asyncpg.Record | None:
        return self[0] if self else None

    def one(self) -> asyncpg.Record:
        if len(self) != 1:
            raise LedgerError(f"expected exactly one row, got {len(self)}")
        return self[0]

    def scalar(self) -> Any:
        return self[0][0] if self else None


class Statement:
    """A statement compiled once: asyncpg's positional SQL and the order of its parameters.

    Written with ``:name`` parameters (SQLAlchemy ``text()``), compiled by SQLAlchemy's asyncpg
    dialect at import, and executed on the pooled connection's asyncpg driver: no per-call
    compilation, parameter or result processing, and asyncpg prepares it once per connection.
    Every value here is a plain asyncpg type (Decimal, datetime, str, bool, lists of them).
    A benchmark can run ``sql`` with ``args(params)`` on raw asyncpg to measure this layer.
    """

    __slots__ = ("names", "sql")

    def __init__(self, sql: str) -> None:
        compiled = text(sql).compile(dialect=_DIALECT)
        self.sql = str(compiled)
        self.names: tuple[str, ...] = tuple(compiled.positiontup or ())

    def args(self, params: Mapping[str, Any] | None = None) -> tuple[Any, ...]:
        if params is None:
            return ()
        return tuple(params[name] for name in self.names)

    async def run(self, db: asyncpg.Connection, params: Mapping[str, Any] | None = None) -> Rows:
        return Rows(await db.fetch(self.sql, *self.args(params)))


_ORDER_COLUMNS = """
    o.client_order_id, o.decision_id, o.strategy_id, o.account, o.venue, o.symbol, o.side,
    o.type, o.time_in_force, o.requested_qty, o.limit_price, o.state, o.venue_order_id,
    o.created_at, o.expires_at, o.submitted_at, o.acked_at, o.venue_ts, o.last_error,
    o.lease_epoch
"""

_FILL_TOTALS = """
    LEFT JOIN LATERAL (
        SELECT sum(x.qty) AS filled_qty, sum(x.qty * x.price) / NULLIF(sum(x.qty), 0) AS avg_price
        FROM fills x WHERE x.client_order_id = o.client_order_id
    ) f ON true
"""

_SELECT_ORDERS = f"SELECT {_ORDER_COLUMNS}, f.filled_qty, f.avg_price FROM orders o {_FILL_TOTALS}"

SQL_GET_ORDER = Statement(f"{_SELECT_ORDERS} WHERE o.client_order_id = :client_order_id")
SQL_GET_ORDERS = Statement(
    f"{_SELECT_ORDERS} WHERE o.client_order_id = ANY(CAST(:client_order_ids AS text[]))"
)
SQL_NON_TERMINAL_ORDERS = Statement(
    f"""{_SELECT_ORDERS}
    WHERE o.account = :account AND o.state IN ({", ".join(repr(s) for s in _NON_TERMINAL)})
    ORDER BY o.created_at, o.client_order_id"""
)
# Orders the venue said were filled further than the ledger has fills for: a fill that raced a
# cancel, whose trades could not be fetched before the order closed (or before a crash).
SQL_ORDERS_OWED_FILLS = Statement(
    f"""SELECT {_ORDER_COLUMNS}, f.filled_qty, f.avg_price, v.venue_filled
    FROM orders o {_FILL_TOTALS}
    JOIN LATERAL (
        SELECT max(CAST(e.detail->>'venue_filled_qty' AS numeric)) AS venue_filled
        FROM order_events e
        WHERE e.client_order_id = o.client_order_id AND e.detail ? 'venue_filled_qty'
    ) v ON true
    WHERE o.account = :account AND o.updated_at >= :since
      AND v.venue_filled > COALESCE(f.filled_qty, 0)
    ORDER BY o.created_at, o.client_order_id"""
)
SQL_OPEN_ORDERS_OF_STRATEGY = Statement(
    f"""{_SELECT_ORDERS}
    WHERE o.account = :account AND o.strategy_id = :strategy_id
      AND o.state IN ({", ".join(repr(s) for s in _NON_TERMINAL)})
    ORDER BY o.created_at, o.client_order_id"""
)

SQL_ACQUIRE_LEASE = Statement(
    """
    INSERT INTO leases AS l (account, holder, epoch, heartbeat_at, expires_at)
    VALUES (:account, :holder, 1, :now, :expires_at)
    ON CONFLICT (account) DO UPDATE
        SET holder = EXCLUDED.holder, epoch = l.epoch + 1,
            heartbeat_at = EXCLUDED.heartbeat_at, expires_at = EXCLUDED.expires_at
        WHERE l.expires_at <= EXCLUDED.heartbeat_at OR l.holder = EXCLUDED.holder
    RETURNING epoch
    """
)
SQL_RENEW_LEASE = Statement(
    """
    UPDATE leases SET heartbeat_at = :now, expires_at = :expires_at
    WHERE account = :account AND holder = :holder AND epoch = :epoch
    RETURNING epoch
    """
)
SQL_RELEASE_LEASE = Statement(
    """
    UPDATE leases SET expires_at = :now
    WHERE account = :account AND holder = :holder AND epoch = :epoch AND expires_at > :now
    """
)

# The fence. Joining the lock CTE forces the lock before the row is updated; the controls are
# read by a *later* statement, whose snapshot therefore includes any control committed before
# the lock was granted.
SQL_FENCE = Statement(
    """
    WITH lk AS (SELECT pg_advisory_xact_lock_shared(:lock_key))
    UPDATE leases SET heartbeat_at = :now FROM lk
    WHERE account = :account AND holder = :holder AND epoch = :epoch AND expires_at > :now
    RETURNING epoch
    """
)

_COVERING_CONTROLS = """
    SELECT c.id, c.scope, c.target, c.kind, c.active, c.reason, c.set_by, c.set_at
    FROM controls c
    WHERE c.active AND (
        c.scope = 'global'
        OR (c.scope = 'account' AND c.target = :account)
        OR (c.scope = 'strategy' AND c.target = ANY(CAST(:strategy_ids AS text[])))
        OR (c.scope = 'symbol' AND c.target = ANY(CAST(:symbols AS text[])))
    )
"""

SQL_COVERING_CONTROLS = Statement(f"{_COVERING_CONTROLS} ORDER BY c.id")

# Positions from fills and what the account's other in-flight orders may still add, for the
# reduce-only rule: an order may only shrink the position, counting what is already working.
SQL_REDUCE_ONLY_FACTS = Statement(
    f"""
    SELECT 'position' AS kind, x.symbol, NULL AS side,
           sum(CASE WHEN x.side = 'BUY' THEN x.qty ELSE -x.qty END)
               - COALESCE(sum(x.fee) FILTER (WHERE x.fee_asset = i.base_asset), 0) AS qty
    FROM fills x LEFT JOIN instruments i ON i.venue = x.venue AND i.symbol = x.symbol
    WHERE x.account = :account AND x.symbol = ANY(CAST(:symbols AS text[]))
    GROUP BY x.symbol
    UNION ALL
    SELECT 'working', o.symbol, o.side, sum(o.requested_qty - COALESCE(f.filled_qty, 0))
    FROM orders o {_FILL_TOTALS}
    WHERE o.account = :account AND o.symbol = ANY(CAST(:symbols AS text[]))
      AND o.state IN ({", ".join(repr(s) for s in _NON_TERMINAL)})
      AND o.client_order_id <> ALL(CAST(:client_order_ids AS text[]))
    GROUP BY o.symbol, o.side
    """
)

_DECISION_ARRAYS = """
    unnest(
        CAST(:d_decision_id AS text[]), CAST(:d_strategy_id AS text[]),
        CAST(:d_account AS text[]), CAST(:d_symbol AS text[]), CAST(:d_intent AS text[]),
        CAST(:d_side AS text[]), CAST(:d_quantity AS numeric[]),
        CAST(:d_limit_price AS numeric[]), CAST(:d_reason AS text[]),
        CAST(:d_md_ts AS timestamptz[]), CAST(:d_decided_at AS timestamptz[]),
        CAST(:d_interval_key AS text[]), CAST(:d_sequence AS int[]),
        CAST(:d_verdicts AS text[]), CAST(:d_outcome AS text[])
    ) AS t(decision_id, strategy_id, account, symbol, intent, side, quantity, limit_price,
           reason, md_ts, decided_at, interval_key, sequence, verdicts, outcome)
"""

_INSERT_DECISIONS = f"""
    INSERT INTO decisions (decision_id, strategy_id, account, symbol, intent, side, quantity,
                           limit_price, reason, md_ts, decided_at, interval_key, sequence,
                           verdicts, outcome)
    SELECT t.decision_id, t.strategy_id, t.account, t.symbol, t.intent, t.side, t.quantity,
           t.limit_price, t.reason, t.md_ts, t.decided_at, t.interval_key, t.sequence,
           CAST(t.verdicts AS jsonb), t.outcome
    FROM {_DECISION_ARRAYS}
"""

SQL_RECORD_DECISIONS = Statement(f"{_INSERT_DECISIONS} ON CONFLICT (decision_id) DO NOTHING")

# The reservation itself. With :guard set it writes nothing when any control covers the batch
# (the common, uncontrolled case then costs one statement); the caller then reads the controls,
# decides per reservation, and runs it again with :guard off and only the allowed orders.
SQL_RESERVE = Statement(
    f"""
    WITH ctl AS ({_COVERING_CONTROLS} LIMIT 1),
    go AS (SELECT NOT (CAST(:guard AS boolean) AND EXISTS (SELECT 1 FROM ctl)) AS ok),
    d AS (
        {_INSERT_DECISIONS}, go WHERE go.ok
        ON CONFLICT (decision_id) DO NOTHING
    ),
    o AS (
        INSERT INTO orders (client_order_id, decision_id, strategy_id, account, venue, symbol,
                            side, type, time_in_force, requested_qty, limit_price, state,
                            created_at, expires_at, lease_epoch, updated_at)
        SELECT r.client_order_id, r.decision_id, r.strategy_id, :account, r.venue, r.symbol,
               r.side, r.type, r.time_in_force, r.requested_qty, r.limit_price,
               'PENDING_SUBMIT', :now, r.expires_at, :epoch, :now
        FROM unnest(
            CAST(:o_client_order_id AS text[]), CAST(:o_decision_id AS text[]),
            CAST(:o_strategy_id AS text[]), CAST(:o_venue AS text[]), CAST(:o_symbol AS text[]),
            CAST(:o_side AS text[]), CAST(:o_type AS text[]),
            CAST(:o_time_in_force AS text[]), CAST(:o_requested_qty AS numeric[]),
            CAST(:o_limit_price AS numeric[]), CAST(:o_expires_at AS timestamptz[])
        ) AS r(client_order_id, decision_id, strategy_id, venue, symbol, side, type,
               time_in_force, requested_qty, limit_price, expires_at), go
        WHERE go.ok
        ON CONFLICT (client_order_id) DO NOTHING
        RETURNING client_order_id
    ),
    e AS (
        INSERT INTO order_events (client_order_id, from_state, to_state, cause, recorded_at)
        SELECT client_order_id, NULL, 'PENDING_SUBMIT', 'reserved', :now FROM o
    )
    SELECT (SELECT ok FROM go) AS ok, ARRAY(SELECT client_order_id FROM o) AS inserted
    """
)

# One order's state change (and field updates), its event, and the resulting order: one
# statement. ``cur`` locks the row and reads its newest state; the update applies only from an
# allowed state (or the same state, to update fields without an event).
SQL_UPDATE_ORDER = Statement(
    f"""
    WITH cur AS (
        SELECT client_order_id, state FROM orders
        WHERE client_order_id = :client_order_id FOR UPDATE
    ),
    upd AS (
        UPDATE orders o SET
            state = :to_state,
            updated_at = :now,
            venue_order_id = COALESCE(o.venue_order_id, CAST(:venue_order_id AS text)),
            submitted_at = COALESCE(CAST(:submitted_at AS timestamptz), o.submitted_at),
            acked_at = COALESCE(o.acked_at, CAST(:acked_at AS timestamptz)),
            venue_ts = GREATEST(o.venue_ts, CAST(:venue_ts AS timestamptz)),
            last_error = COALESCE(CAST(:error AS text), o.last_error)
        FROM cur
        WHERE o.client_order_id = cur.client_order_id
          AND (cur.state = ANY(CAST(:allowed AS text[])) OR cur.state = :to_state)
        RETURNING {_ORDER_COLUMNS}, cur.state AS from_state
    ),
    ev AS (
        INSERT INTO order_events (client_order_id, from_state, to_state, cause, detail,
                                  venue_ts, recorded_at)
        SELECT u.client_order_id, u.from_state, u.state, :cause, CAST(:detail AS jsonb),
               CAST(:venue_ts AS timestamptz), :now
        FROM upd u WHERE u.from_state <> u.state
    )
    SELECT cur.state AS current_state, u.*, f.filled_qty, f.avg_price
    FROM cur
    LEFT JOIN upd u ON true
    LEFT JOIN LATERAL (
        SELECT sum(x.qty) AS filled_qty, sum(x.qty * x.price) / NULLIF(sum(x.qty), 0) AS avg_price
        FROM fills x WHERE x.client_order_id = :client_order_id
    ) f ON true
    """
)

SQL_LOCK_ORDERS = Statement(
    """
    SELECT client_order_id, state, requested_qty FROM orders
    WHERE client_order_id = ANY(CAST(:client_order_ids AS text[]))
    ORDER BY client_order_id
    FOR UPDATE
    """
)

# Insert fills (duplicates by trade id are skipped) and return, per locked order, the fill sum
# including the rows just inserted (this statement's snapshot cannot see its own inserts).
_INSERT_FILLS = """
    INSERT INTO fills (venue, symbol, trade_id, client_order_id, venue_order_id, account,
                       side, qty, price, fee, fee_asset, liquidity, venue_ts, received_at,
                       recorded_at)
    SELECT t.venue, t.symbol, t.trade_id, t.client_order_id, t.venue_order_id, :account,
           t.side, t.qty, t.price, t.fee, t.fee_asset, t.liquidity, t.venue_ts,
           t.received_at, :now
    FROM unnest(
        CAST(:f_venue AS text[]), CAST(:f_symbol AS text[]), CAST(:f_trade_id AS text[]),
        CAST(:f_client_order_id AS text[]), CAST(:f_venue_order_id AS text[]),
        CAST(:f_side AS text[]), CAST(:f_qty AS numeric[]), CAST(:f_price AS numeric[]),
        CAST(:f_fee AS numeric[]), CAST(:f_fee_asset AS text[]), CAST(:f_liquidity AS text[]),
        CAST(:f_venue_ts AS timestamptz[]), CAST(:f_received_at AS timestamptz[])
    ) AS t(venue, symbol, trade_id, client_order_id, venue_order_id, side, qty, price, fee,
           fee_asset, liquidity, venue_ts, received_at)
    ON CONFLICT (venue, symbol, trade_id) DO NOTHING
"""

# The target-state lookup passed to the one-statement paths: (from state, fill bucket) -> to
# state, computed in Python from the domain's transition rules (see _targets).
_TARGET_LOOKUP = """
    unnest(
        CAST(:lk_from AS text[]), CAST(:lk_bucket AS int[]), CAST(:lk_to AS text[])
    ) AS lk(from_state, bucket, to_state)
"""


def _bucket_sql(filled: str, requested: str) -> str:
    """SQL twin of :func:`_bucket`."""
    return f"(CASE WHEN {filled} >= {requested} THEN 2 WHEN {filled} > 0 THEN 1 ELSE 0 END)"


# The venue's cumulative filled quantity is a fact even before its fills reach us.
_REPORT_BUCKET = _bucket_sql("GREATEST(tot.filled_qty, :venue_filled)", "tot.requested_qty")

# One round trip for a venue report (ack, lookup, stream, cancel answer): lock the order, insert
# the report's fills, derive the state from the fill sum, update the order, append the event.
#
# The fill sum comes from this statement's snapshot, which may predate a concurrent writer that
# held the row lock (and inserted fills) while this statement waited for it. Every transaction
# that inserts fills of a known order also *updates* that order's row, so such a writer shows as
# a difference between the locked row version's xmin and the snapshot's: ``stale``. A stale
# result changes nothing but the fills, and the caller redoes the state in a new transaction.
SQL_APPLY_REPORT = Statement(
    f"""
    WITH cur AS (
        SELECT o.client_order_id, o.state, o.requested_qty, o.xmin AS locked_xmin
        FROM orders o WHERE o.client_order_id = :client_order_id
        FOR UPDATE
    ),
    snap AS (SELECT o.xmin AS snap_xmin FROM orders o WHERE o.client_order_id = :client_order_id),
    ins AS ({_INSERT_FILLS} RETURNING client_order_id, qty, price),
    tot AS (
        SELECT cur.client_order_id, cur.state, cur.requested_qty,
               cur.locked_xmin IS DISTINCT FROM (SELECT snap_xmin FROM snap) AS stale,
               s.qty + COALESCE(n.qty, 0) AS filled_qty,
               s.notional + COALESCE(n.notional, 0) AS notional
        FROM cur
        CROSS JOIN (
            SELECT COALESCE(sum(x.qty), 0) AS qty, COALESCE(sum(x.qty * x.price), 0) AS notional
            FROM fills x WHERE x.client_order_id = :client_order_id
        ) s
        CROSS JOIN (SELECT sum(i.qty) AS qty, sum(i.qty * i.price) AS notional FROM ins i) n
    ),
    tgt AS (
        SELECT tot.*, lk.to_state
        FROM tot JOIN {_TARGET_LOOKUP}
          ON lk.from_state = tot.state
         AND lk.bucket = {_REPORT_BUCKET}
    ),
    upd AS (
        UPDATE orders o SET
            state = tgt.to_state,
            updated_at = :now,
            venue_order_id = COALESCE(o.venue_order_id, CAST(:venue_order_id AS text)),
            submitted_at = COALESCE(CAST(:submitted_at AS timestamptz), o.submitted_at),
            acked_at = COALESCE(o.acked_at, CAST(:acked_at AS timestamptz)),
            venue_ts = GREATEST(o.venue_ts, CAST(:venue_ts AS timestamptz)),
            last_error = CASE WHEN tgt.to_state IN ('REJECTED', 'EXPIRED')
                              THEN COALESCE(CAST(:reason AS text), o.last_error)
                              ELSE o.last_error END
        FROM tgt
        WHERE o.client_order_id = tgt.client_order_id AND o.state = tgt.state AND NOT tgt.stale
        RETURNING {_ORDER_COLUMNS}, tgt.state AS from_state, tgt.filled_qty, tgt.notional
    ),
    ev AS (
        INSERT INTO order_events (client_order_id, from_state, to_state, cause, detail,
                                  venue_ts, recorded_at)
        SELECT u.client_order_id, u.from_state, u.state, :cause, CAST(:detail AS jsonb),
               CAST(:venue_ts AS timestamptz), :now
        FROM upd u WHERE u.from_state <> u.state
    )
    SELECT tgt.stale, u.*, u.notional / NULLIF(u.filled_qty, 0) AS avg_price
    FROM tgt LEFT JOIN upd u ON true
    """
)

# One round trip for a batch of fills: lock the affected orders (in a fixed order: no
# deadlocks), insert the fills, move each order with new fills by its fill sum, append events.
# ``stale`` as in SQL_APPLY_REPORT; every order with new fills is updated (at least its
# updated_at), which is what makes staleness detectable by the next writer.
SQL_APPEND_FILLS = Statement(
    f"""
    WITH cur AS (
        SELECT o.client_order_id, o.state, o.requested_qty, o.xmin AS locked_xmin
        FROM orders o WHERE o.client_order_id = ANY(CAST(:client_order_ids AS text[]))
        ORDER BY o.client_order_id
        FOR UPDATE
    ),
    snap AS (
        SELECT o.client_order_id, o.xmin AS snap_xmin
        FROM orders o WHERE o.client_order_id = ANY(CAST(:client_order_ids AS text[]))
    ),
    ins AS ({_INSERT_FILLS} RETURNING venue, symbol, trade_id, client_order_id, qty),
    tot AS (
        SELECT cur.client_order_id, cur.state, cur.requested_qty,
               cur.locked_xmin IS DISTINCT FROM s.snap_xmin AS stale,
               COALESCE(
                   (SELECT sum(x.qty) FROM fills x WHERE x.client_order_id = cur.client_order_id),
                   0
               ) + n.qty AS filled_qty
        FROM cur
        JOIN (SELECT client_order_id, sum(qty) AS qty FROM ins GROUP BY client_order_id) n
          ON n.client_order_id = cur.client_order_id
        LEFT JOIN snap s ON s.client_order_id = cur.client_order_id
    ),
    tgt AS (
        SELECT tot.*, lk.to_state
        FROM tot JOIN {_TARGET_LOOKUP}
          ON lk.from_state = tot.state
         AND lk.bucket = {_bucket_sql("tot.filled_qty", "tot.requested_qty")}
    ),
    upd AS (
        UPDATE orders o SET state = tgt.to_state, updated_at = :now
        FROM tgt
        WHERE o.client_order_id = tgt.client_order_id AND o.state = tgt.state AND NOT tgt.stale
        RETURNING o.client_order_id, tgt.state AS from_state, tgt.to_state
    ),
    ev AS (
        INSERT INTO order_events (client_order_id, from_state, to_state, cause, recorded_at)
        SELECT client_order_id, from_state, to_state, 'fill', :now
        FROM upd WHERE from_state <> to_state
    )
    SELECT 'inserted' AS kind, i.venue, i.symbol, i.trade_id, NULL AS client_order_id FROM ins i
    UNION ALL
    SELECT 'stale', NULL, NULL, NULL, t.client_order_id FROM tgt t WHERE t.stale
    """
)

# The slow path's pieces (a stale one-statement result): fill sums read *after* the lock.
SQL_FILL_TOTALS = Statement(
    """
    SELECT l.client_order_id,
           COALESCE((SELECT sum(x.qty) FROM fills x WHERE x.client_order_id = l.client_order_id), 0)
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
        FROM t WHERE o.client_order_id = t.client_order_id AND o.state = t.from_state
        RETURNING o.client_order_id, t.from_state, t.to_state
    )
    INSERT INTO order_events (client_order_id, from_state, to_state, cause, recorded_at)
    SELECT client_order_id, from_state, to_state, :cause, :now FROM upd
    """
)

# The account's symbols by a skip scan of the (account, symbol, venue_ts) index, then the newest
# fill of each: startup cost grows with the number of symbols, not of fills.
SQL_LAST_TRADE_IDS = Statement(
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
    CROSS JOIN LATERAL (
        SELECT f.trade_id FROM fills f
        WHERE f.account = :account AND f.symbol = s.symbol AND f.venue = :venue
        ORDER BY f.venue_ts DESC,
                 CASE WHEN f.trade_id ~ '^[0-9]{1,30}$' THEN CAST(f.trade_id AS numeric) END
                     DESC NULLS LAST,
                 f.id DESC
        LIMIT 1
    ) t
    WHERE s.symbol IS NOT NULL
    """
)
SQL_NET_POSITIONS = Statement(
    """
    SELECT strategy_id, symbol, net_qty FROM positions WHERE account = :account
    """
)
SQL_ACCOUNT_POSITION = Statement(
    """
    SELECT COALESCE(sum(CASE WHEN x.side = 'BUY' THEN x.qty ELSE -x.qty END), 0)
           - COALESCE(sum(x.fee) FILTER (WHERE x.fee_asset = i.base_asset), 0)
    FROM fills x LEFT JOIN instruments i ON i.venue = x.venue AND i.symbol = x.symbol
    WHERE x.account = :account AND x.symbol = :symbol
    """
)

_CONTROL_COLUMNS = "id, scope, target, kind, active, reason, set_by, set_at"
SQL_SET_CONTROL = Statement(
    f"""
    WITH lk AS (SELECT pg_advisory_xact_lock(:lock_key)),
    ins AS (
        INSERT INTO controls (scope, target, kind, active, reason, set_by, set_at)
        SELECT :scope, :target, :kind, true, :reason, :set_by, :now FROM lk
        ON CONFLICT (scope, target, kind) WHERE active DO NOTHING
        RETURNING {_CONTROL_COLUMNS}
    )
    SELECT {_CONTROL_COLUMNS} FROM ins
    """
)
SQL_ACTIVE_CONTROL = Statement(
    f"""SELECT {_CONTROL_COLUMNS} FROM controls
    WHERE scope = :scope AND target = :target AND kind = :kind AND active"""
)
SQL_CLEAR_CONTROL = Statement(
    """
    UPDATE controls SET active = false, cleared_at = :now, cleared_by = :cleared_by
    WHERE scope = :scope AND target = :target AND kind = :kind AND active
    RETURNING id
    """
)
SQL_ACTIVE_CONTROLS = Statement(f"SELECT {_CONTROL_COLUMNS} FROM controls WHERE active ORDER BY id")

_INCIDENT_COLUMNS = (
    "id, opened_at, kind, scope, severity, message, details, resolved_at, resolution_note"
)
SQL_OPEN_INCIDENT = Statement(
    f"""
    INSERT INTO incidents (opened_at, kind, scope, severity, message, details, dedupe_key)
    VALUES (:now, :kind, :scope, :severity, :message, CAST(:details AS jsonb), :dedupe_key)
    ON CONFLICT (dedupe_key) WHERE resolved_at IS NULL DO NOTHING
    RETURNING {_INCIDENT_COLUMNS}
    """
)
SQL_OPEN_INCIDENT_BY_KEY = Statement(
    f"""SELECT {_INCIDENT_COLUMNS} FROM incidents
    WHERE dedupe_key = :dedupe_key AND resolved_at IS NULL"""
)
SQL_OPEN_INCIDENTS = Statement(
    f"SELECT {_INCIDENT_COLUMNS} FROM incidents WHERE resolved_at IS NULL ORDER BY opened_at, id"
)
SQL_ALL_INCIDENTS = Statement(f"SELECT {_INCIDENT_COLUMNS} FROM incidents ORDER BY opened_at, id")
SQL_RESOLVE_INCIDENT = Statement(
    """
    UPDATE incidents SET resolved_at = :now, resolution_note = :note
    WHERE id = :id AND resolved_at IS NULL
    RETURNING id
    """
)

SQL_RECORD_BALANCES = Statement(
    """
    INSERT INTO balances (account, venue, asset, free, locked, venue_ts, received_at)
    SELECT :account, t.venue, t.asset, t.free, t.locked, t.venue_ts, t.received_at
    FROM unnest(
        CAST(:venue AS text[]), CAST(:asset AS text[]), CAST(:free AS numeric[]),
        CAST(:locked AS numeric[]), CAST(:venue_ts AS timestamptz[]),
        CAST(:received_at AS timestamptz[])
    ) AS t(venue, asset, free, locked, venue_ts, received_at)
    """
)
# Per asset, the newest report: stream updates carry only the assets that changed.
SQL_LATEST_BALANCES = Statement(
    """
    SELECT DISTINCT ON (asset) venue, asset, free, locked, venue_ts, received_at
    FROM balances WHERE account = :account AND venue = :venue
    ORDER BY asset, received_at DESC, id DESC
    """
)

SQL_UPSERT_INSTRUMENT = Statement(
    """
    INSERT INTO instruments AS i
        (venue, symbol, base_asset, quote_asset, tick_size, step_size, min_notional, updated_at)
    VALUES (:venue, :symbol, :base_asset, :quote_asset, :tick_size, :step_size, :min_notional,
            :now)
    ON CONFLICT (venue, symbol) DO UPDATE
        SET base_asset = EXCLUDED.base_asset, quote_asset = EXCLUDED.quote_asset,
            tick_size = EXCLUDED.tick_size, step_size = EXCLUDED.step_size,
            min_notional = EXCLUDED.min_notional, updated_at = EXCLUDED.updated_at
    """
)
SQL_INSTRUMENTS = Statement(
    "SELECT symbol, base_asset, quote_asset FROM instruments WHERE venue = :venue ORDER BY symbol"
)

# -- balance reconciliation ------------------------------------------------------------------

SQL_FILL_WATERMARK = Statement(
    "SELECT COALESCE(max(id), 0) FROM fills WHERE account = :account AND venue = :venue"
)
SQL_FILL_SYMBOLS = Statement(
    "SELECT DISTINCT symbol FROM fills WHERE account = :account AND venue = :venue"
)
SQL_BALANCE_BASELINES = Statement(
    """SELECT asset, total, fill_id, taken_at FROM balance_baselines
    WHERE account = :account AND venue = :venue ORDER BY asset"""
)
SQL_SAVE_BASELINES = Statement(
    """
    INSERT INTO balance_baselines AS b (account, venue, asset, total, fill_id, taken_at)
    SELECT :account, :venue, t.asset, t.total, :fill_id, :now
    FROM unnest(CAST(:asset AS text[]), CAST(:total AS numeric[])) AS t(asset, total)
    ON CONFLICT (account, venue, asset) DO UPDATE
        SET total = EXCLUDED.total, fill_id = EXCLUDED.fill_id, taken_at = EXCLUDED.taken_at
    """
)
# What the fills after each asset's baseline did to that asset, up to :upto: the base asset
# moves by the signed quantity, the quote asset by the signed notional the other way, the fee's
# asset (base on Binance-style buys, quote, or a third asset such as BNB) by minus the fee.
SQL_BALANCE_EFFECTS = Statement(
    """
    WITH fx AS (
        SELECT f.id, f.side, f.qty, f.price, f.fee, f.fee_asset, i.base_asset, i.quote_asset
        FROM fills f JOIN instruments i ON i.venue = f.venue AND i.symbol = f.symbol
        WHERE f.account = :account AND f.venue = :venue AND f.id <= :upto
    ),
    effects AS (
        SELECT base_asset AS asset, id, CASE WHEN side = 'BUY' THEN qty ELSE -qty END AS delta
        FROM fx
        UNION ALL
        SELECT quote_asset, id, CASE WHEN side = 'BUY' THEN -qty * price ELSE qty * price END
        FROM fx
        UNION ALL
        SELECT fee_asset, id, -fee FROM fx WHERE fee_asset IS NOT NULL AND fee <> 0
    )
    SELECT b.asset, COALESCE(sum(e.delta), 0) AS delta
    FROM balance_baselines b
    LEFT JOIN effects e ON e.asset = b.asset AND e.id > b.fill_id
    WHERE b.account = :account AND b.venue = :venue
    GROUP BY b.asset
    """
)
SQL_FILL_SYMBOLS_WITHOUT_INSTRUMENT = Statement(
    """
    SELECT DISTINCT f.symbol FROM fills f
    LEFT JOIN instruments i ON i.venue = f.venue AND i.symbol = f.symbol
    WHERE f.account = :account AND f.venue = :venue AND i.symbol IS NULL
    """
)
# Which strategies trade the symbols an asset belongs to: the scope a drift in it pauses.
SQL_STRATEGIES_OF_ASSET = Statement(
    """
    SELECT DISTINCT o.strategy_id FROM orders o
    JOIN instruments i ON i.venue = o.venue AND i.symbol = o.symbol
    WHERE o.account = :account AND o.venue = :venue
      AND (i.base_asset = :asset OR i.quote_asset = :asset)
    ORDER BY o.strategy_id
    """
)

# -- risk inputs -------------------------------------------------------------------------------

SQL_RECENT_SUBMISSIONS = Statement(
    """SELECT strategy_id, submitted_at FROM orders
    WHERE account = :account AND submitted_at > :since ORDER BY submitted_at"""
)
# percentile_disc keeps the NUMERIC type (percentile_cont would answer in float)
SQL_TYPICAL_ORDER_QTY = Statement(
    """
    SELECT strategy_id, symbol, percentile_disc(0.5) WITHIN GROUP (ORDER BY requested_qty),
           count(*)
    FROM (
        SELECT strategy_id, symbol, requested_qty,
               row_number() OVER (PARTITION BY strategy_id, symbol ORDER BY created_at DESC) AS rn
        FROM orders WHERE account = :account
    ) recent
    WHERE rn <= :depth
    GROUP BY strategy_id, symbol
    """
)
# -- operator requests -------------------------------------------------------------------------

_REQUEST_COLUMNS = (
    "id, account, kind, requested_by, reason, params, requested_at, handled_at, handled_by, result"
)
SQL_REQUEST_OPERATION = Statement(
    f"""
    INSERT INTO operator_requests (account, kind, requested_by, reason, params, requested_at)
    VALUES (:account, :kind, :requested_by, :reason, CAST(:params AS jsonb), :now)
    RETURNING {_REQUEST_COLUMNS}
    """
)
# A request claimed by an earlier holder that never completed it (it crashed or lost the lease)
# is claimed again: both operations are idempotent, so running one twice is safe.
SQL_CLAIM_OPERATION = Statement(
    f"""
    UPDATE operator_requests SET handled_by = :holder
    WHERE id = (
        SELECT id FROM operator_requests
        WHERE account = :account AND handled_at IS NULL
          AND (handled_by IS NULL OR handled_by <> :holder)
        ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED
    )
    RETURNING {_REQUEST_COLUMNS}
    """
)
SQL_COMPLETE_OPERATION = Statement(
    f"""
    UPDATE operator_requests
    SET handled_at = :now, handled_by = :holder, result = CAST(:result AS jsonb)
    WHERE id = :id AND handled_at IS NULL
    RETURNING {_REQUEST_COLUMNS}
    """
)
SQL_GET_OPERATION = Statement(f"SELECT {_REQUEST_COLUMNS} FROM operator_requests WHERE id = :id")
SQL_LEASE = Statement(
    "SELECT holder, epoch, heartbeat_at, expires_at FROM leases WHERE account = :account"
)


# ---------------------------------------------------------------------------------------------
# Row mapping


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def _dumps(value: Any) -> str:
    return json.dumps(value, default=str, separators=(",", ":"))


def _order(m: asyncpg.Record) -> Order:
    return Order(
        client_order_id=ClientOrderId(m["client_order_id"]),
        decision_id=DecisionId(m["decision_id"]),
        strategy_id=StrategyId(m["strategy_id"]),
        account=AccountId(m["account"]),
        venue=VenueName(m["venue"]),
        symbol=Symbol(m["symbol"]),
        side=Side(m["side"]),
        type=OrderType(m["type"]),
        time_in_force=TimeInForce(m["time_in_force"]),
        requested_qty=m["requested_qty"],
        limit_price=m["limit_price"],
        state=OrderState(m["state"]),
        venue_order_id=None if m["venue_order_id"] is None else VenueOrderId(m["venue_order_id"]),
        created_at=m["created_at"],
        expires_at=m["expires_at"],
        submitted_at=m["submitted_at"],
        acked_at=m["acked_at"],
        venue_ts=m["venue_ts"],
        last_error=m["last_error"],
        lease_epoch=m["lease_epoch"],
        filled_qty=m["filled_qty"] if m["filled_qty"] is not None else Decimal(0),
        avg_price=m["avg_price"],
    )


def _operator_request(m: asyncpg.Record) -> OperatorRequest:
    return OperatorRequest(
        id=m["id"],
        account=m["account"],
        kind=OperatorRequestKind(m["kind"]),
        requested_by=m["requested_by"],
        reason=m["reason"],
        params=_json(m["params"]) or {},
        requested_at=m["requested_at"],
        handled_at=m["handled_at"],
        handled_by=m["handled_by"],
        result=None if m["result"] is None else _json(m["result"]),
    )


def _control(m: asyncpg.Record) -> Control:
    return Control(
        id=m["id"],
        scope=ControlScope(m["scope"]),
        target=m["target"],
        kind=ControlKind(m["kind"]),
        active=m["active"],
        reason=m["reason"],
        set_by=m["set_by"],
        set_at=m["set_at"],
    )


def _incident(m: asyncpg.Record) -> Incident:
    return Incident(
        id=m["id"],
        opened_at=m["opened_at"],
        kind=m["kind"],
        scope=m["scope"],
        severity=m["severity"],
        message=m["message"],
        details=_json(m["details"]),
        resolved_at=m["resolved_at"],
        resolution_note=m["resolution_note"],
    )


def _describe(control: Control) -> str:
    target = "everything" if control.scope is ControlScope.GLOBAL else control.target
    return (
        f"{control.kind.value} on {control.scope.value} {target} "
        f"(set by {control.set_by} at {control.set_at.isoformat()}: {control.reason})"
    )


def _covers(control: Control, account: str, decision: DecisionRecord) -> bool:
    match control.scope:
        case ControlScope.GLOBAL:
            return True
        case ControlScope.ACCOUNT:
            return control.target == account
        case ControlScope.STRATEGY:
            return control.target == decision.strategy_id
        case ControlScope.SYMBOL:
            return control.target == decision.symbol
    return False  # pragma: no cover


def _decision_params(decisions: Sequence[DecisionRecord]) -> dict[str, list[Any]]:
    return {
        "d_decision_id": [d.decision_id for d in decisions],
        "d_strategy_id": [d.strategy_id for d in decisions],
        "d_account": [d.account for d in decisions],
        "d_symbol": [d.symbol for d in decisions],
        "d_intent": [d.intent for d in decisions],
        "d_side": [None if d.side is None else d.side.value for d in decisions],
        "d_quantity": [d.quantity for d in decisions],
        "d_limit_price": [d.limit_price for d in decisions],
        "d_reason": [d.reason for d in decisions],
        "d_md_ts": [d.md_ts for d in decisions],
        "d_decided_at": [d.decided_at for d in decisions],
        "d_interval_key": [d.interval_key for d in decisions],
        "d_sequence": [d.sequence for d in decisions],
        "d_verdicts": [_dumps([v.as_json() for v in d.verdicts]) for d in decisions],
        "d_outcome": [d.outcome.value for d in decisions],
    }


def _order_params(reservations: Sequence[Reservation]) -> dict[str, list[Any]]:
    return {
        "o_client_order_id": [r.client_order_id for r in reservations],
        "o_decision_id": [r.decision.decision_id for r in reservations],
        "o_strategy_id": [r.decision.strategy_id for r in reservations],
        "o_venue": [r.venue for r in reservations],
        "o_symbol": [r.decision.symbol for r in reservations],
        "o_side": [r.decision.side.value if r.decision.side else None for r in reservations],
        "o_type": [r.type.value for r in reservations],
        "o_time_in_force": [r.time_in_force.value for r in reservations],
        "o_requested_qty": [r.quantity for r in reservations],
        "o_limit_price": [r.limit_price for r in reservations],
        "o_expires_at": [r.expires_at for r in reservations],
    }


def _fill_params(fills: Sequence[FillReport]) -> dict[str, list[Any]]:
    return {
        "f_venue": [f.venue for f in fills],
        "f_symbol": [f.symbol for f in fills],
        "f_trade_id": [f.trade_id for f in fills],
        "f_client_order_id": [f.client_order_id for f in fills],
        "f_venue_order_id": [f.venue_order_id for f in fills],
        "f_side": [f.side.value for f in fills],
        "f_qty": [f.quantity for f in fills],
        "f_price": [f.price for f in fills],
        "f_fee": [f.fee for f in fills],
        "f_fee_asset": [f.fee_asset for f in fills],
        "f_liquidity": [None if f.liquidity is None else f.liquidity.value for f in fills],
        "f_venue_ts": [f.venue_ts for f in fills],
        "f_received_at": [f.received_at for f in fills],
    }


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
def _report_targets(status: VenueOrderStatus) -> Targets:
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


# ---------------------------------------------------------------------------------------------


class Ledger:
    """The durable ledger of one account on one venue. Safe to share between coroutines."""

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        account: AccountId,
        venue: VenueName,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._engine = engine
        self.account = account
        self.venue = venue
        self._clock = clock

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[asyncpg.Connection]:
        """A pooled connection's asyncpg driver, outside any transaction (each statement is
        then its own transaction: the right thing for reads and one-statement writes)."""
        with self._translated():
            async with self._engine.connect() as conn:
                # Checked out and connected by connect(): reading it needs no I/O (and no
                # greenlet hop, which get_raw_connection() would cost on every call).
                db = conn.sync_connection.connection.driver_connection  # type: ignore[union-attr]
                assert isinstance(db, asyncpg.Connection)
                try:
                    yield db
                except BaseException as exc:
                    if is_connection_error(exc):
                        await conn.invalidate()
                    raise
                finally:
                    # A transaction left open (cancelled mid-commit, say) must not reach the
                    # next user of this pooled connection: drop the connection instead.
                    if not db.is_closed() and db.is_in_transaction():
                        await conn.invalidate()

    @asynccontextmanager
    async def _tx(self) -> AsyncIterator[asyncpg.Connection]:
        """One transaction; connection-level failures leave as DatabaseUnavailable."""
        async with self._connection() as db, db.transaction():
            yield db

    @contextmanager
    def _translated(self) -> Iterator[None]:
        try:
            yield
        except LedgerError:
            raise
        except Exception as exc:
            mapped = translate_error(exc, self._engine.url)
            if mapped is exc:
                raise
            raise mapped from exc

    # -- lease ------------------------------------------------------------------------------

    async def acquire_lease(self, holder: str, ttl: timedelta) -> int | None:
        """Take the account's lease: the new epoch, or ``None`` while another holder's lease is
        unexpired. Taking over (an expired lease, or one's own again) increments the epoch."""
        now = self._clock()
        async with self._connection() as db:
            epoch = (
                await SQL_ACQUIRE_LEASE.run(
                    db,
                    {
                        "account": self.account,
                        "holder": holder,
                        "now": now,
                        "expires_at": now + ttl,
                    },
                )
            ).scalar()
        return None if epoch is None else int(epoch)

    async def renew_lease(self, holder: str, epoch: int, ttl: timedelta) -> None:
        """Extend the lease; :class:`LeaseLost` when another process has taken it over."""
        now = self._clock()
        async with self._connection() as db:
            renewed = (
                await SQL_RENEW_LEASE.run(
                    db,
                    {
                        "account": self.account,
                        "holder": holder,
                        "epoch": epoch,
                        "now": now,
                        "expires_at": now + ttl,
                    },
                )
            ).first()
        if renewed is None:
            raise self._lease_lost(holder, epoch)

    async def release_lease(self, holder: str, epoch: int) -> None:
        """Let another process take over at once (the next epoch is still incremented)."""
        now = self._clock()
        async with self._connection() as db:
            await SQL_RELEASE_LEASE.run(
                db,
                {"account": self.account, "holder": holder, "epoch": epoch, "now": now},
            )

    def _lease_lost(self, holder: str, epoch: int) -> LeaseLost:
        return LeaseLost(
            f"account {self.account}: {holder} no longer holds lease epoch {epoch} (it expired "
            "or another process took it over); stop trading this account and restart to "
            "re-acquire the lease"
        )

    # -- decisions and reservation ----------------------------------------------------------

    @_retry_transient
    async def record_decision(self, decision: DecisionRecord) -> None:
        """Record a decision that reserves no order (a hold, a risk denial). Idempotent."""
        async with self._connection() as db:
            await SQL_RECORD_DECISIONS.run(db, _decision_params([decision]))

    @_retry_transient
    async def reserve(
        self, reservations: Sequence[Reservation], *, holder: str, epoch: int
    ) -> list[ReserveResult]:
        """Reserve client order ids, one transaction for the whole batch (protocol step 3).

        Per reservation: RESERVED (new ``PENDING_SUBMIT`` order), EXISTING (already reserved:
        continue from the stored order, never insert twice) or BLOCKED (a control covers it; the
        decision is stored as denied with a ``control`` verdict naming it). Raises
        :class:`LeaseLost`, writing nothing, when this process no longer holds ``epoch``.
        """
        if not reservations:
            return []
        for r in reservations:
            self._check_reservation(r)
        now = self._clock()
        strategy_ids = sorted({r.decision.strategy_id for r in reservations})
        symbols = sorted({r.decision.symbol for r in reservations})
        scope = {"account": self.account, "strategy_ids": strategy_ids, "symbols": symbols}
        reserved_decisions = [
            _with_outcome(r.decision, DecisionOutcome.RESERVED) for r in reservations
        ]
        async with self._tx() as db:
            fenced = (
                await SQL_FENCE.run(
                    db,
                    {
                        "lock_key": CONTROLS_LOCK_KEY,
                        "account": self.account,
                        "holder": holder,
                        "epoch": epoch,
                        "now": now,
                    },
                )
            ).first()
            if fenced is None:
                raise self._lease_lost(holder, epoch)
            row = (
                await SQL_RESERVE.run(
                    db,
                    {
                        **scope,
                        "guard": True,
                        "now": now,
                        "epoch": epoch,
                        **_decision_params(reserved_decisions),
                        **_order_params(reservations),
                    },
                )
            ).one()
            blocked: dict[ClientOrderId, list[str]] = {}
            if row["ok"]:
                inserted = set(row["inserted"])
            else:
                allowed, blocked, decisions = await self._apply_controls(db, reservations, scope)
                row = (
                    await SQL_RESERVE.run(
                        db,
                        {
                            **scope,
                            "guard": False,
                            "now": now,
                            "epoch": epoch,
                            **_decision_params(decisions),
                            **_order_params(allowed),
                        },
                    )
                ).one()
                inserted = set(row["inserted"])
            # Anything not inserted now was reserved before: report the stored order. A blocked
            # reservation that was reserved before is EXISTING too: it may be on the venue.
            missing = [r.client_order_id for r in reservations if r.client_order_id not in inserted]
            stored: dict[str, Order] = {}
            if missing:
                result = await SQL_GET_ORDERS.run(db, {"client_order_ids": missing})
                stored = {o.client_order_id: o for o in map(_order, result)}

        results: list[ReserveResult] = []
        seen: set[str] = set()
        for r in reservations:
            coid = r.client_order_id
            if coid in inserted and coid not in seen:
                order = self._new_order(r, now, epoch)
                results.append(
                    ReserveResult(client_order_id=coid, status=ReserveStatus.RESERVED, order=order)
                )
            elif coid in stored or coid in seen:
                existing = stored.get(coid) or self._new_order(r, now, epoch)
                results.append(
                    ReserveResult(
                        client_order_id=coid, status=ReserveStatus.EXISTING, order=existing
                    )
                )
            else:
                results.append(
                    ReserveResult(
                        client_order_id=coid,
                        status=ReserveStatus.BLOCKED,
                        order=None,
                        blocked_by=tuple(blocked.get(coid, ())),
                    )
                )
            seen.add(coid)
        return results

    def _check_reservation(self, r: Reservation) -> None:
        if r.decision.account != self.account:
            raise ValueError(
                f"reservation {r.client_order_id} is for account {r.decision.account}, "
                f"this ledger writes account {self.account}"
            )
        if r.decision.side is None:
            raise ValueError(f"reservation {r.client_order_id} has a decision without a side")
        if r.quantity <= 0:
            raise ValueError(f"reservation {r.client_order_id} has quantity {r.quantity}")

    def _new_order(self, r: Reservation, now: datetime, epoch: int) -> Order:
        assert r.decision.side is not None
        return Order(
            client_order_id=r.client_order_id,
            decision_id=r.decision.decision_id,
            strategy_id=r.decision.strategy_id,
            account=self.account,
            venue=r.venue,
            symbol=r.decision.symbol,
            side=r.decision.side,
            type=r.type,
            time_in_force=r.time_in_force,
            requested_qty=r.quantity,
            limit_price=r.limit_price,
            state=OrderState.PENDING_SUBMIT,
            venue_order_id=None,
            created_at=now,
            expires_at=r.expires_at,
            lease_epoch=epoch,
        )

    async def _apply_controls(
        self,
        db: asyncpg.Connection,
        reservations: Sequence[Reservation],
        scope: Mapping[str, Any],
    ) -> tuple[list[Reservation], dict[ClientOrderId, list[str]], list[DecisionRecord]]:
        """Decide, per reservation, under the controls that cover the batch (read in this
        transaction, after the advisory lock): the allowed reservations, the refusals by client
        order id, and the decisions to store (refused ones as denied with a control verdict)."""
        controls = [_control(row) for row in await SQL_COVERING_CONTROLS.run(db, scope)]
        positions: dict[str, Decimal] = {}
        working: dict[tuple[str, str], Decimal] = {}
        if any(c.kind is ControlKind.REDUCE_ONLY for c in controls):
            facts = await SQL_REDUCE_ONLY_FACTS.run(
                db,
                {
                    **scope,
                    "client_order_ids": [r.client_order_id for r in reservations],
                },
            )
            for kind, symbol, side, qty in map(tuple, facts):
                if kind == "position":
                    positions[symbol] = qty
                else:
                    working[(symbol, side)] = qty

        allowed: list[Reservation] = []
        blocked: dict[ClientOrderId, list[str]] = {}
        decisions: list[DecisionRecord] = []
        for r in reservations:
            d = r.decision
            covering = [c for c in controls if _covers(c, self.account, d)]
            reasons: list[str] = []
            verdicts: list[Verdict] = []
            for c in covering:
                if c.kind in _BLOCKING_KINDS:
                    reasons.append(_describe(c))
                    verdicts.append(
                        Verdict(
                            check="control",
                            result=VerdictResult.REJECT,
                            limit=f"no {c.kind.value} covering the order",
                            observed=f"{c.kind.value} {c.scope.value}:{c.target} #{c.id}",
                            message=f"blocked by {_describe(c)}",
                        )
                    )
            reduce_only = [c for c in covering if c.kind is ControlKind.REDUCE_ONLY]
            if reduce_only and not reasons:
                assert d.side is not None
                position = positions.get(d.symbol, Decimal(0))
                pending = working.get((d.symbol, d.side.value), Decimal(0))
                shrinks = position * d.side.sign < 0 and r.quantity + pending <= abs(position)
                if shrinks:
                    # later reservations in the batch see this one as working
                    working[(d.symbol, d.side.value)] = pending + r.quantity
                else:
                    for c in reduce_only:
                        reasons.append(_describe(c))
                        verdicts.append(
                            Verdict(
                                check="control",
                                result=VerdictResult.REJECT,
                                limit="reduce only: shrink the position without flipping it",
                                observed=(
                                    f"position {position}, order {d.side.value} {r.quantity}, "
                                    f"already working {pending}"
                                ),
                                message=f"blocked by {_describe(c)}",
                            )
                        )
            if reasons:
                blocked[r.client_order_id] = reasons
                decisions.append(_with_outcome(d, DecisionOutcome.DENIED, extra_verdicts=verdicts))
            else:
                allowed.append(r)
                decisions.append(_with_outcome(d, DecisionOutcome.RESERVED))
        return allowed, blocked, decisions

    # -- order state ------------------------------------------------------------------------

    @_retry_transient
    async def record_ack(
        self, client_order_id: ClientOrderId, report: OrderReport, *, submitted_at: datetime
    ) -> Order:
        """The venue accepted the order: attach its id and times, record any fills it carried,
        and move to the state the report implies."""
        order = await self._apply(
            client_order_id,
            report,
            cause="ack",
            submitted_at=submitted_at,
            acked_at=self._clock(),
        )
        if order is None:
            raise self._unknown(client_order_id)
        return order

    @_retry_transient
    async def apply_report(self, report: OrderReport, *, cause: str) -> Order | None:
        """Apply a lookup / stream / cancel answer: append its fills, attach the venue order id
        if missing, move to the state it implies (never backwards). ``None`` when the ledger
        does not know the client order id."""
        return await self._apply(report.client_order_id, report, cause=cause)

    async def _apply(
        self,
        client_order_id: ClientOrderId,
        report: OrderReport,
        *,
        cause: str,
        submitted_at: datetime | None = None,
        acked_at: datetime | None = None,
    ) -> Order | None:
        now = self._clock()
        fills = [
            f if f.client_order_id is not None else _with_coid(f, client_order_id)
            for f in report.fills
        ]
        detail = {
            "venue_status": report.status.value,
            "venue_filled_qty": str(report.filled_quantity),
            # kept even when the order already has one: a different id means a duplicate
            "venue_order_id": report.venue_order_id,
        }
        if report.reason:
            detail["reason"] = report.reason
        fields: dict[str, Any] = {
            "client_order_id": client_order_id,
            "now": now,
            "cause": cause,
            "detail": _dumps(detail),
            "venue_order_id": report.venue_order_id,
            "submitted_at": submitted_at,
            "acked_at": acked_at,
            "venue_ts": report.venue_ts,
        }
        async with self._connection() as db:
            row = (
                await SQL_APPLY_REPORT.run(
                    db,
                    {
                        **fields,
                        **_fill_params(fills),
                        **_report_targets(report.status),
                        "account": self.account,
                        "venue_filled": report.filled_quantity,
                        "reason": report.reason,
                    },
                )
            ).first()
        if row is None:
            return None  # not ours; its fills are recorded all the same
        if not row["stale"]:
            return _order(row)
        # Another writer committed fills of this order while we waited for its lock: decide
        # the state again from sums read after taking the lock (the fills are already in).
        async with self._tx() as db:
            locked = (await SQL_LOCK_ORDERS.run(db, {"client_order_ids": [client_order_id]})).one()
            totals = await self._fill_totals(db, [client_order_id])
            filled = max(totals[client_order_id], report.filled_quantity)
            current = OrderState(locked["state"])
            to = target_state(current, report.status, filled, locked["requested_qty"])
            error = report.reason if to in (OrderState.REJECTED, OrderState.EXPIRED) else None
            return await self._update(db, to=to, error=error, **fields)

    @_retry_transient
    async def mark_unknown(
        self, client_order_id: ClientOrderId, error: str, *, submitted_at: datetime | None
    ) -> Order:
        """The submit's outcome is ambiguous: ``UNKNOWN`` until the venue is asked.

        Only a pending submit becomes ``UNKNOWN``: an order that already moved on (a stream
        report can beat the timed-out REST answer) keeps its better-known state and only
        records the error.
        """
        try:
            return await self.transition(
                client_order_id,
                OrderState.UNKNOWN,
                cause="submit_ambiguous",
                error=error,
                submitted_at=submitted_at,
            )
        except StateConflict:
            pass
        # The order moved on while the answer was lost; the stream (or a lookup) may move it
        # again between the re-read and the write, so re-read until the note lands.
        for _ in range(5):
            current = await self.get_order(client_order_id)
            if current is None:  # pragma: no cover - orders are never deleted
                raise self._unknown(client_order_id)
            try:
                return await self.transition(
                    client_order_id,
                    current.state,
                    cause="submit_ambiguous",
                    error=error,
                    submitted_at=submitted_at,
                )
            except StateConflict:
                continue
        raise StateConflict(f"order {client_order_id} kept changing while recording: {error}")

    @_retry_transient
    async def mark_rejected(
        self, client_order_id: ClientOrderId, reason: str, *, submitted_at: datetime | None
    ) -> Order:
        """The venue refused definitively: nothing was placed."""
        return await self.transition(
            client_order_id,
            OrderState.REJECTED,
            cause="submit_rejected",
            error=reason,
            submitted_at=submitted_at,
        )

    @_retry_transient
    async def expire(self, client_order_id: ClientOrderId, reason: str) -> Order:
        """The intent is no longer valid and the order is known not to be on the venue."""
        return await self.transition(
            client_order_id, OrderState.EXPIRED, cause="expired", error=reason
        )

    @_retry_transient
    async def request_cancel(self, client_order_id: ClientOrderId, cause: str) -> Order:
        return await self.transition(client_order_id, OrderState.PENDING_CANCEL, cause=cause)

    @_retry_transient
    async def transition(
        self,
        client_order_id: ClientOrderId,
        to: OrderState,
        *,
        cause: str,
        venue_ts: datetime | None = None,
        error: str | None = None,
        detail: dict[str, Any] | None = None,
        submitted_at: datetime | None = None,
    ) -> Order:
        """Move an order to ``to`` if the transition table allows it from its current state.

        Already in ``to``: a no-op. Otherwise a state the table does not allow raises
        :class:`StateConflict` naming both states.
        """
        async with self._connection() as db:
            return await self._update(
                db,
                client_order_id=client_order_id,
                to=to,
                now=self._clock(),
                cause=cause,
                detail=None if detail is None else _dumps(detail),
                venue_ts=venue_ts,
                error=error,
                submitted_at=submitted_at,
            )

    async def _update(
        self,
        db: asyncpg.Connection,
        *,
        client_order_id: ClientOrderId,
        to: OrderState,
        now: datetime,
        cause: str,
        detail: str | None = None,
        venue_order_id: str | None = None,
        submitted_at: datetime | None = None,
        acked_at: datetime | None = None,
        venue_ts: datetime | None = None,
        error: str | None = None,
    ) -> Order:
        row = (
            await SQL_UPDATE_ORDER.run(
                db,
                {
                    "client_order_id": client_order_id,
                    "to_state": to.value,
                    "allowed": [s.value for s in allowed_from(to)],
                    "now": now,
                    "cause": cause,
                    "detail": detail,
                    "venue_order_id": venue_order_id,
                    "submitted_at": submitted_at,
                    "acked_at": acked_at,
                    "venue_ts": venue_ts,
                    "error": error,
                },
            )
        ).first()
        if row is None:
            raise self._unknown(client_order_id)
        if row["client_order_id"] is None:
            raise StateConflict(
                f"order {client_order_id} is {row['current_state']}, which cannot move to "
                f"{to.value} ({cause}); re-read it and act on its current state"
            )
        return _order(row)

    def _unknown(self, client_order_id: str) -> LedgerError:
        return LedgerError(
            f"order {client_order_id} is not in the ledger of account {self.account}; only "
            "reserved client order ids can change state"
        )

    # -- fills ------------------------------------------------------------------------------

    @_retry_transient
    async def append_fills(self, fills: Sequence[FillReport]) -> list[FillReport]:
        """Record fills (idempotent by ``(venue, symbol, trade_id)``); return the new ones.

        In the same transaction, each affected non-terminal order moves to ``PARTIALLY_FILLED``
        or ``FILLED`` from the sum of its fills. A fill on a terminal order (a late fill after a
        cancel) is recorded and the order keeps its state.
        """
        if not fills:
            return []
        now = self._clock()
        coids = sorted({f.client_order_id for f in fills if f.client_order_id is not None})
        inserted: set[tuple[str, str, str]] = set()
        stale: list[str] = []
        async with self._connection() as db:
            result = await SQL_APPEND_FILLS.run(
                db,
                {
                    **_fill_params(fills),
                    **_fill_targets(),
                    "client_order_ids": coids,
                    "account": self.account,
                    "now": now,
                },
            )
            for kind, venue, symbol, trade_id, coid in map(tuple, result):
                if kind == "inserted":
                    inserted.add((venue, symbol, trade_id))
                else:
                    stale.append(coid)
        if stale:
            await self._refresh_fill_states(sorted(stale), now)
        return [f for f in fills if (f.venue, f.symbol, f.trade_id) in inserted]

    async def _refresh_fill_states(self, client_order_ids: Sequence[str], now: datetime) -> None:
        """The slow path of append_fills: lock, then read the sums, then move."""
        async with self._tx() as db:
            locked = list(
                await SQL_LOCK_ORDERS.run(db, {"client_order_ids": list(client_order_ids)})
            )
            totals = await self._fill_totals(db, client_order_ids)
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
                    },
                )

    async def _fill_totals(
        self, db: asyncpg.Connection, client_order_ids: Sequence[str]
    ) -> dict[str, Decimal]:
        result = await SQL_FILL_TOTALS.run(db, {"client_order_ids": list(client_order_ids)})
        return {coid: total for coid, total in map(tuple, result)}

    # -- reads ------------------------------------------------------------------------------

    async def get_order(self, client_order_id: ClientOrderId) -> Order | None:
        async with self._connection() as db:
            row = (await SQL_GET_ORDER.run(db, {"client_order_id": client_order_id})).first()
        return None if row is None else _order(row)

    async def non_terminal_orders(self) -> list[Order]:
        """Every order of the account that is, or may be, on the venue (oldest first)."""
        async with self._connection() as db:
            result = await SQL_NON_TERMINAL_ORDERS.run(db, {"account": self.account})
            return [_order(row) for row in result]

    async def orders_owed_fills(self, since: datetime) -> list[tuple[Order, Decimal]]:
        """Orders changed since ``since`` whose venue-reported filled quantity (kept in their
        events) exceeds the fills the ledger holds, with that quantity: their trades must be
        fetched by order."""
        async with self._connection() as db:
            result = await SQL_ORDERS_OWED_FILLS.run(db, {"account": self.account, "since": since})
            return [(_order(row), row["venue_filled"]) for row in result]

    async def open_orders(self, strategy_id: StrategyId | None = None) -> list[Order]:
        """Non-terminal orders, optionally of one strategy: what may still trade."""
        if strategy_id is None:
            return await self.non_terminal_orders()
        async with self._connection() as db:
            result = await SQL_OPEN_ORDERS_OF_STRATEGY.run(
                db,
                {"account": self.account, "strategy_id": strategy_id},
            )
            return [_order(row) for row in result]

    async def last_trade_ids(self) -> dict[Symbol, TradeId]:
        """Per symbol, the newest recorded fill's trade id: where to resume ``trades_since``."""
        async with self._connection() as db:
            result = await SQL_LAST_TRADE_IDS.run(
                db, {"account": self.account, "venue": self.venue}
            )
            return {Symbol(symbol): TradeId(trade_id) for symbol, trade_id in map(tuple, result)}

    async def net_positions(self) -> dict[tuple[StrategyId, Symbol], Decimal]:
        """Net quantity per (strategy, symbol) from the fills of the account's orders."""
        async with self._connection() as db:
            result = await SQL_NET_POSITIONS.run(db, {"account": self.account})
            return {(StrategyId(s), Symbol(sym)): qty for s, sym, qty in map(tuple, result)}

    async def account_position(self, symbol: Symbol) -> Decimal:
        """The account's net quantity in ``symbol`` from every fill, ours or not."""
        async with self._connection() as db:
            value = (
                await SQL_ACCOUNT_POSITION.run(db, {"account": self.account, "symbol": symbol})
            ).scalar()
        return Decimal(value)

    # -- controls ---------------------------------------------------------------------------

    @_retry_transient
    async def set_control(
        self,
        scope: ControlScope,
        target: str,
        kind: ControlKind,
        *,
        reason: str,
        set_by: str,
    ) -> Control:
        """Activate a control (survives restarts). Idempotent: while one of the same scope,
        target and kind is active, that one is returned unchanged."""
        target = _control_target(scope, target)
        params = {"scope": scope.value, "target": target, "kind": kind.value}
        async with self._connection() as db:
            row = (
                await SQL_SET_CONTROL.run(
                    db,
                    {
                        **params,
                        "lock_key": CONTROLS_LOCK_KEY,
                        "reason": reason,
                        "set_by": set_by,
                        "now": self._clock(),
                    },
                )
            ).first()
            if row is None:
                # Already active. A fresh statement sees it even if it committed while this
                # transaction waited for the lock.
                row = (await SQL_ACTIVE_CONTROL.run(db, params)).one()
        return _control(row)

    @_retry_transient
    async def clear_control(
        self, scope: ControlScope, target: str, kind: ControlKind, *, cleared_by: str
    ) -> bool:
        """Deactivate a control; ``False`` when none was active."""
        target = _control_target(scope, target)
        async with self._connection() as db:
            row = (
                await SQL_CLEAR_CONTROL.run(
                    db,
                    {
                        "scope": scope.value,
                        "target": target,
                        "kind": kind.value,
                        "cleared_by": cleared_by,
                        "now": self._clock(),
                    },
                )
            ).first()
        return row is not None

    async def active_controls(self) -> list[Control]:
        async with self._connection() as db:
            return [_control(row) for row in await SQL_ACTIVE_CONTROLS.run(db)]

    # -- incidents --------------------------------------------------------------------------

    @_retry_transient
    async def open_incident(
        self,
        *,
        kind: str,
        scope: str,
        severity: str,
        message: str,
        details: dict[str, Any],
        dedupe_key: str,
    ) -> Incident:
        """Open an incident, or return the open one with the same ``dedupe_key``: one open
        incident per mismatch, not one per reconcile cycle."""
        async with self._connection() as db:
            row = (
                await SQL_OPEN_INCIDENT.run(
                    db,
                    {
                        "now": self._clock(),
                        "kind": kind,
                        "scope": scope,
                        "severity": severity,
                        "message": message,
                        "details": _dumps(details),
                        "dedupe_key": dedupe_key,
                    },
                )
            ).first()
            if row is None:
                row = (await SQL_OPEN_INCIDENT_BY_KEY.run(db, {"dedupe_key": dedupe_key})).one()
        return _incident(row)

    async def incidents(self, *, open_only: bool = True) -> list[Incident]:
        async with self._connection() as db:
            result = await (SQL_OPEN_INCIDENTS if open_only else SQL_ALL_INCIDENTS).run(db)
            return [_incident(row) for row in result]

    @_retry_transient
    async def resolve_incident(self, incident_id: int, note: str) -> bool:
        """Close an open incident; ``False`` when it was not open."""
        async with self._connection() as db:
            row = (
                await SQL_RESOLVE_INCIDENT.run(
                    db,
                    {"id": incident_id, "note": note, "now": self._clock()},
                )
            ).first()
        return row is not None

    @_retry_transient
    async def resolve_incident_by_key(self, dedupe_key: str, note: str) -> int | None:
        """Close the open incident with ``dedupe_key``; its id, or ``None`` when none was open."""
        async with self._connection() as db:
            row = (await SQL_OPEN_INCIDENT_BY_KEY.run(db, {"dedupe_key": dedupe_key})).first()
            if row is None:
                return None
            done = (
                await SQL_RESOLVE_INCIDENT.run(
                    db, {"id": row["id"], "note": note, "now": self._clock()}
                )
            ).first()
        return None if done is None else int(row["id"])

    # -- balances ---------------------------------------------------------------------------

    @_retry_transient
    async def record_balances(self, reports: Sequence[BalanceReport]) -> None:
        if not reports:
            return
        async with self._connection() as db:
            await SQL_RECORD_BALANCES.run(
                db,
                {
                    "account": self.account,
                    "venue": [r.venue for r in reports],
                    "asset": [r.asset for r in reports],
                    "free": [r.free for r in reports],
                    "locked": [r.locked for r in reports],
                    "venue_ts": [r.venue_ts for r in reports],
                    "received_at": [r.received_at for r in reports],
                },
            )

    async def latest_balances(self) -> dict[Asset, BalanceReport]:
        """Per asset, the newest balance report recorded for this account and venue."""
        async with self._connection() as db:
            result = await SQL_LATEST_BALANCES.run(
                db, {"account": self.account, "venue": self.venue}
            )
            return {
                Asset(row["asset"]): BalanceReport(
                    venue=VenueName(row["venue"]),
                    asset=Asset(row["asset"]),
                    free=row["free"],
                    locked=row["locked"],
                    venue_ts=row["venue_ts"],
                    received_at=row["received_at"],
                )
                for row in result
            }

    # -- instruments ------------------------------------------------------------------------

    @_retry_transient
    async def upsert_instrument(self, rules: InstrumentRules) -> None:
        """Remember a symbol's assets and grid (the engine calls this whenever it fetches the
        venue's rules), so fills can be turned into balance changes and base-asset fees."""
        async with self._connection() as db:
            await SQL_UPSERT_INSTRUMENT.run(
                db,
                {
                    "venue": self.venue,
                    "symbol": rules.symbol,
                    "base_asset": rules.base_asset,
                    "quote_asset": rules.quote_asset,
                    "tick_size": rules.tick_size,
                    "step_size": rules.step_size,
                    "min_notional": rules.min_notional,
                    "now": self._clock(),
                },
            )

    async def instruments(self) -> dict[Symbol, tuple[Asset, Asset]]:
        """``symbol -> (base asset, quote asset)`` for this venue."""
        async with self._connection() as db:
            result = await SQL_INSTRUMENTS.run(db, {"venue": self.venue})
            return {Symbol(s): (Asset(b), Asset(q)) for s, b, q in map(tuple, result)}

    # -- balance reconciliation -------------------------------------------------------------

    def _account_venue(self) -> dict[str, Any]:
        return {"account": self.account, "venue": self.venue}

    async def fill_watermark(self) -> int:
        """The newest ``fills.id`` of this account on this venue (0 without fills)."""
        async with self._connection() as db:
            return int((await SQL_FILL_WATERMARK.run(db, self._account_venue())).scalar())

    async def fill_symbols(self) -> set[Symbol]:
        async with self._connection() as db:
            rows = await SQL_FILL_SYMBOLS.run(db, self._account_venue())
            return {Symbol(r[0]) for r in rows}

    async def symbols_without_instrument(self) -> set[Symbol]:
        async with self._connection() as db:
            rows = await SQL_FILL_SYMBOLS_WITHOUT_INSTRUMENT.run(db, self._account_venue())
            return {Symbol(r[0]) for r in rows}

    async def balance_baselines(self) -> dict[Asset, BalanceBaseline]:
        async with self._connection() as db:
            rows = await SQL_BALANCE_BASELINES.run(db, self._account_venue())
            return {
                Asset(r["asset"]): BalanceBaseline(
                    asset=Asset(r["asset"]),
                    total=r["total"],
                    fill_id=r["fill_id"],
                    taken_at=r["taken_at"],
                )
                for r in rows
            }

    @_retry_transient
    async def save_balance_baselines(
        self, totals: Mapping[Asset, Decimal], *, fill_id: int
    ) -> None:
        """Record the venue's totals as the baseline, containing every fill up to ``fill_id``."""
        if not totals:
            return
        assets = sorted(totals)
        async with self._connection() as db:
            await SQL_SAVE_BASELINES.run(
                db,
                {
                    **self._account_venue(),
                    "asset": assets,
                    "total": [totals[a] for a in assets],
                    "fill_id": fill_id,
                    "now": self._clock(),
                },
            )

    async def expected_balances(self, *, upto_fill_id: int) -> dict[Asset, Decimal]:
        """Per asset with a baseline: the baseline plus what fills after it (up to
        ``upto_fill_id``) did to the asset. Fills of symbols missing from ``instruments`` are
        not counted: check :meth:`symbols_without_instrument` first."""
        baselines = await self.balance_baselines()
        async with self._connection() as db:
            rows = await SQL_BALANCE_EFFECTS.run(
                db, {**self._account_venue(), "upto": upto_fill_id}
            )
            deltas = {Asset(r["asset"]): r["delta"] for r in rows}
        return {a: b.total + deltas.get(a, Decimal(0)) for a, b in baselines.items()}

    async def strategies_trading(self, asset: Asset) -> list[StrategyId]:
        """Strategies that have ordered a symbol whose base or quote asset is ``asset``."""
        async with self._connection() as db:
            rows = await SQL_STRATEGIES_OF_ASSET.run(db, {**self._account_venue(), "asset": asset})
            return [StrategyId(r[0]) for r in rows]

    # -- risk inputs ------------------------------------------------------------------------

    async def recent_submissions(self, since: datetime) -> dict[StrategyId, list[datetime]]:
        """When each strategy's orders were submitted after ``since`` (the order rate limit
        survives a restart)."""
        out: dict[StrategyId, list[datetime]] = {}
        async with self._connection() as db:
            for sid, at in map(tuple, await SQL_RECENT_SUBMISSIONS.run(
                db, {"account": self.account, "since": since}
            )):  # fmt: skip
                out.setdefault(StrategyId(sid), []).append(at)
        return out

    async def typical_order_qty(
        self, *, depth: int = 50
    ) -> dict[tuple[StrategyId, Symbol], tuple[Decimal, int]]:
        """Per (strategy, symbol): the median quantity of its last ``depth`` orders and how
        many orders that median is taken over."""
        async with self._connection() as db:
            rows = await SQL_TYPICAL_ORDER_QTY.run(db, {"account": self.account, "depth": depth})
            return {
                (StrategyId(s), Symbol(sym)): (Decimal(q), int(n))
                for s, sym, q, n in map(tuple, rows)
            }

    # -- operator requests ------------------------------------------------------------------

    async def request_operation(
        self,
        kind: OperatorRequestKind,
        *,
        requested_by: str,
        reason: str,
        params: Mapping[str, Any] | None = None,
    ) -> OperatorRequest:
        """Queue an operation for the engine that holds this account's lease."""
        async with self._connection() as db:
            row = (
                await SQL_REQUEST_OPERATION.run(
                    db,
                    {
                        "account": self.account,
                        "kind": kind.value,
                        "requested_by": requested_by,
                        "reason": reason,
                        "params": _dumps(dict(params or {})),
                        "now": self._clock(),
                    },
                )
            ).one()
        return _operator_request(row)

    @_retry_transient
    async def claim_operation(self, holder: str) -> OperatorRequest | None:
        """The oldest pending request of this account, now marked as being handled by
        ``holder``; ``None`` when there is none."""
        async with self._connection() as db:
            row = (
                await SQL_CLAIM_OPERATION.run(db, {"account": self.account, "holder": holder})
            ).first()
        return None if row is None else _operator_request(row)

    @_retry_transient
    async def complete_operation(
        self, request_id: int, *, holder: str, result: Mapping[str, Any]
    ) -> OperatorRequest | None:
        async with self._connection() as db:
            row = (
                await SQL_COMPLETE_OPERATION.run(
                    db,
                    {
                        "id": request_id,
                        "holder": holder,
                        "result": _dumps(dict(result)),
                        "now": self._clock(),
                    },
                )
            ).first()
        return None if row is None else _operator_request(row)

    async def get_operation(self, request_id: int) -> OperatorRequest | None:
        async with self._connection() as db:
            row = (await SQL_GET_OPERATION.run(db, {"id": request_id})).first()
        return None if row is None else _operator_request(row)

    async def lease_info(self) -> LeaseInfo | None:
        async with self._connection() as db:
            row = (await SQL_LEASE.run(db, {"account": self.account})).first()
        if row is None:
            return None
        return LeaseInfo(
            holder=row["holder"],
            epoch=row["epoch"],
            heartbeat_at=row["heartbeat_at"],
            expires_at=row["expires_at"],
        )


def _control_target(scope: ControlScope, target: str) -> str:
    if scope is ControlScope.GLOBAL:
        if target not in ("", "*"):
            raise ValueError(f"a global control has no target (use '*'), got {target!r}")
        return "*"
    if not target or target == "*":
        raise ValueError(f"a {scope.value} control needs the {scope.value} it covers")
    return target


def _with_outcome(
    decision: DecisionRecord,
    outcome: DecisionOutcome,
    *,
    extra_verdicts: Iterable[Verdict] = (),
) -> DecisionRecord:
    extra = tuple(extra_verdicts)
    if decision.outcome is outcome and not extra:
        return decision
    return replace(decision, outcome=outcome, verdicts=(*decision.verdicts, *extra))


def _with_coid(fill: FillReport, client_order_id: ClientOrderId) -> FillReport:
    return replace(fill, client_order_id=client_order_id)
