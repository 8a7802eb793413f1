"""The reservation transaction (protocol step 3): the part of
:class:`engine.ledger.orders.Orders` that fences on the lease and answers to the controls."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from engine.domain.orders import Order
from engine.domain.types import ClientOrderId, DecisionOutcome, OrderState
from engine.ledger.controls import CONTROLS_LOCK_KEY, apply_controls
from engine.ledger.decisions import INSERT_DECISIONS, decision_params, with_outcome
from engine.ledger.leases import lease_lost
from engine.ledger.part import LedgerPart
from engine.ledger.records import Reservation, ReserveResult, ReserveStatus
from engine.ledger.rows import SELECT_ORDERS, to_order
from engine.ledger.statements import (
    Statement,
    dumps_rows,
    json_instant,
    json_number,
    require_finite,
    retry_transient,
)

# The fence of the controlled path (a transaction of its own). Joining the lock CTE forces the
# lock before the row is locked; the controls are read by a *later* statement, whose snapshot
# therefore includes any control committed before the lock was granted.
#
# The lease row is locked, not updated: a takeover's FOR UPDATE waits for the lock all the same,
# and under READ COMMITTED a row changed while the lock was awaited is re-checked in its newest
# version (a raised epoch: no row). An update per reservation gave the row a new version each
# time, and with the fenced writes' locks every dead version carried a multixact: the chain the
# next fence walked through grew to ~70 versions between prunes, 1-2 ms of a busy reservation
# (measured). The lease keeper's renewals are the heartbeat.
#
# Here FOR NO KEY UPDATE, as the update locked it: two controlled reservations of one account
# (which read reduce-only facts) still run one after the other, not on the same position. The
# usual reservation (SQL_RESERVE_GATED) only needs the fence, FOR KEY SHARE as every fenced write.
SQL_FENCE = Statement(
    """
    WITH lk AS (SELECT pg_advisory_xact_lock_shared(:lock_key))
    SELECT epoch FROM leases, lk
    WHERE account = :account AND holder = :holder AND epoch = :epoch AND expires_at > :now
    FOR NO KEY UPDATE OF leases
    """
)

# Only this account's orders: another account may hold an order with the same client order id
# (ids derive from the decision key, not the account), and it is never ours to continue from.
SQL_GET_ORDERS = Statement(
    f"""{SELECT_ORDERS}
    WHERE o.client_order_id = ANY(CAST(:client_order_ids AS text[])) AND o.account = :account"""
)

# The reservation's rows, written only where ``go.ok``: the decisions, the PENDING_SUBMIT orders
# (not one that exists: it was reserved before) and their first events.
_RESERVE_ROWS = f"""
    d AS (
        {INSERT_DECISIONS}, go WHERE go.ok
        ON CONFLICT (account, decision_id) DO NOTHING
    ),
    o AS (
        INSERT INTO orders (client_order_id, decision_id, strategy_id, account, venue, symbol,
                            side, type, time_in_force, requested_qty, limit_price, state,
                            created_at, expires_at, lease_epoch, updated_at)
        SELECT r.client_order_id, r.decision_id, r.strategy_id, :account, r.venue, r.symbol,
               r.side, r.type, r.time_in_force, r.requested_qty, r.limit_price,
               'PENDING_SUBMIT', :now, r.expires_at, :epoch, :now
        FROM json_to_recordset(CAST(:orders AS json)) AS r(
            client_order_id text, decision_id text, strategy_id text, venue text, symbol text,
            side text, type text, time_in_force text, requested_qty numeric,
            limit_price numeric, expires_at timestamptz
        ), go
        WHERE go.ok
        ON CONFLICT (account, client_order_id) DO NOTHING
        RETURNING client_order_id
    ),
    e AS (
        INSERT INTO order_events (account, client_order_id, from_state, to_state, cause,
                                  recorded_at)
        SELECT :account, client_order_id, NULL, 'PENDING_SUBMIT', 'reserved', :now FROM o
    )"""

# The usual reservation, whole, in one statement committed on its own (one round trip): the
# gate takes the controls lock and reads the controls after it (engine/ledger/control_gate.py),
# joining it orders the lock before the lease row's fence lock (as SQL_FENCE does), and the
# rows are written only when the lease is ours and no control covers the batch. ``fenced``
# false: the lease is lost; ``ok`` false with ``fenced``: a control covers the batch, nothing
# was written, and the caller decides per reservation in a transaction (SQL_RESERVE).
SQL_RESERVE_GATED = Statement(
    f"""
    WITH gate AS (
        SELECT reservation_gate(:lock_key, :account, CAST(:strategy_ids AS text[]),
                                CAST(:symbols AS text[])) AS covered
    ),
    fence AS (
        SELECT gate.covered FROM leases, gate
        WHERE account = :account AND holder = :holder AND epoch = :epoch AND expires_at > :now
        FOR KEY SHARE OF leases
    ),
    go AS (SELECT EXISTS (SELECT 1 FROM fence WHERE NOT fence.covered) AS ok),
    {_RESERVE_ROWS}
    SELECT EXISTS (SELECT 1 FROM fence) AS fenced, (SELECT ok FROM go) AS ok,
           ARRAY(SELECT client_order_id FROM o) AS inserted
    """
)

# The controlled path's reservation, after SQL_FENCE and the per-reservation decision: the
# allowed orders and every decision (the refused ones stored as denied).
SQL_RESERVE = Statement(
    f"""
    WITH go AS (SELECT true AS ok),
    {_RESERVE_ROWS}
    SELECT ARRAY(SELECT client_order_id FROM o) AS inserted
    """
)


def _order_params(reservations: Sequence[Reservation]) -> dict[str, str]:
    # one JSON parameter, as the decisions' (engine/ledger/decisions.py says why)
    return {
        "orders": dumps_rows(
            [
                {
                    "client_order_id": r.client_order_id,
                    "decision_id": r.decision.decision_id,
                    "strategy_id": r.decision.strategy_id,
                    "venue": r.venue,
                    "symbol": r.decision.symbol,
                    "side": r.decision.side.value if r.decision.side else None,
                    "type": r.type.value,
                    "time_in_force": r.time_in_force.value,
                    "requested_qty": json_number(r.quantity),
                    "limit_price": json_number(r.limit_price),
                    "expires_at": json_instant(r.expires_at),
                }
                for r in reservations
            ]
        )
    }


class Reserving(LedgerPart):
    """Reserve client order ids, a batch per transaction."""

    @retry_transient
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
            with_outcome(r.decision, DecisionOutcome.RESERVED) for r in reservations
        ]
        fence = {"lock_key": CONTROLS_LOCK_KEY, "holder": holder, "epoch": epoch, "now": now}
        blocked: dict[ClientOrderId, list[str]] = {}
        async with self._connection() as db:
            row = (
                await SQL_RESERVE_GATED.run(
                    db,
                    {
                        **scope,
                        **fence,
                        **decision_params(reserved_decisions),
                        **_order_params(reservations),
                    },
                )
            ).one()
            if not row["fenced"]:
                raise lease_lost(self.account, holder, epoch)
            if row["ok"]:
                inserted = set(row["inserted"])
            else:
                async with db.transaction():
                    if (
                        await SQL_FENCE.run(db, {**fence, "account": self.account})
                    ).first() is None:
                        raise lease_lost(self.account, holder, epoch)
                    allowed, blocked, decisions = await apply_controls(
                        db, self.account, reservations, scope
                    )
                    row = (
                        await SQL_RESERVE.run(
                            db,
                            {
                                "account": self.account,
                                "now": now,
                                "epoch": epoch,
                                **decision_params(decisions),
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
                result = await SQL_GET_ORDERS.run(
                    db, {"client_order_ids": missing, "account": self.account}
                )
                stored = {o.client_order_id: o for o in map(to_order, result)}

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
                # Refused by a control. (Orders are keyed per account, so another account's
                # order with the same id never conflicts; the fallback text is for the
                # impossible case of a row neither inserted nor found: nothing is sent.)
                reasons = tuple(blocked.get(coid, ())) or (
                    f"client order id {coid} was neither reserved nor found in account "
                    f"{self.account}",
                )
                results.append(
                    ReserveResult(
                        client_order_id=coid,
                        status=ReserveStatus.BLOCKED,
                        order=None,
                        blocked_by=reasons,
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
        require_finite(
            f"reservation {r.client_order_id}",
            quantity=r.quantity,
            limit_price=r.limit_price,
            decision_quantity=r.decision.quantity,
            decision_limit_price=r.decision.limit_price,
            decision_price=r.decision.decision_price,
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
