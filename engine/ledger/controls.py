"""Controls (halt, pause, reduce-only) and how they decide a reservation batch."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

import asyncpg

from engine.domain.alerts import AlertDraft
from engine.domain.risk import Verdict
from engine.domain.types import (
    AccountId,
    ClientOrderId,
    ControlKind,
    ControlScope,
    DecisionOutcome,
    VerdictResult,
)
from engine.ledger.alerts import alert_cte, alert_params
from engine.ledger.control_gate import covers
from engine.ledger.decisions import with_outcome
from engine.ledger.journal import record_action
from engine.ledger.operator_channel import notify_operator
from engine.ledger.part import LedgerPart
from engine.ledger.records import Control, DecisionRecord, Operator, Reservation
from engine.ledger.rows import FILL_TOTALS, NON_TERMINAL
from engine.ledger.statements import Statement, retry_transient

#: Advisory lock serializing ``Controls.set`` (exclusive) against ``Orders.reserve`` (shared).
#: The value is arbitrary but fixed: b"tradectl" as a signed 64-bit integer.
CONTROLS_LOCK_KEY = int.from_bytes(b"tradectl", "big", signed=True)

_BLOCKING_KINDS = (ControlKind.HALT, ControlKind.PAUSE)

#: the journal's name for setting and for clearing each kind of control
SET_ACTIONS = {
    ControlKind.HALT: "halt",
    ControlKind.PAUSE: "pause",
    ControlKind.REDUCE_ONLY: "reduce_only",
}
CLEAR_ACTIONS = {
    ControlKind.HALT: "unhalt",
    ControlKind.PAUSE: "resume",
    ControlKind.REDUCE_ONLY: "reduce_only_off",
}

# Which controls cover a batch: engine/ledger/control_gate.py (one rule for these statements and
# the reservation gate).
COVERING_CONTROLS = f"""
    SELECT c.id, c.scope, c.account, c.target, c.kind, c.active, c.reason, c.set_by, c.set_at
    FROM controls c
    WHERE {covers(":account", "CAST(:strategy_ids AS text[])", "CAST(:symbols AS text[])")}
"""

SQL_COVERING_CONTROLS = Statement(f"{COVERING_CONTROLS} ORDER BY c.id")

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
    FROM orders o {FILL_TOTALS}
    WHERE o.account = :account AND o.symbol = ANY(CAST(:symbols AS text[]))
      AND o.state IN ({", ".join(repr(s) for s in NON_TERMINAL)})
      AND o.client_order_id <> ALL(CAST(:client_order_ids AS text[]))
    GROUP BY o.symbol, o.side
    """
)

_CONTROL_COLUMNS = "id, scope, account, target, kind, active, reason, set_by, set_at"
# The alert (if any) is written only with a new control, in the account of the ledger that set
# it. :account is NULL for a global control; the unique index treats NULLs as equal, so the
# conflict target holds for global controls too.
SQL_SET_CONTROL = Statement(
    f"""
    WITH lk AS (SELECT pg_advisory_xact_lock(:lock_key)),
    ins AS (
        INSERT INTO controls (scope, account, target, kind, active, reason, set_by, set_at)
        SELECT :scope, CAST(:account AS text), :target, :kind, true, :reason, :set_by, :now
        FROM lk
        ON CONFLICT (account, scope, target, kind) WHERE active DO NOTHING
        RETURNING {_CONTROL_COLUMNS}
    ),
    alert AS ({alert_cte("ins")})
    SELECT {_CONTROL_COLUMNS} FROM ins
    """
)
SQL_ACTIVE_CONTROL = Statement(
    f"""SELECT {_CONTROL_COLUMNS} FROM controls
    WHERE account IS NOT DISTINCT FROM CAST(:account AS text) AND scope = :scope
      AND target = :target AND kind = :kind AND active"""
)
SQL_CLEAR_CONTROL = Statement(
    """
    UPDATE controls SET active = false, cleared_at = :now, cleared_by = :cleared_by
    WHERE account IS NOT DISTINCT FROM CAST(:account AS text) AND scope = :scope
      AND target = :target AND kind = :kind AND active
    RETURNING id
    """
)
# What covers this account: its own controls and the global ones.
SQL_ACTIVE_CONTROLS = Statement(
    f"""SELECT {_CONTROL_COLUMNS} FROM controls
    WHERE active AND (account IS NULL OR account = :account) ORDER BY id"""
)
SQL_ACTIVE_CONTROLS_ALL_ACCOUNTS = Statement(
    f"SELECT {_CONTROL_COLUMNS} FROM controls WHERE active ORDER BY id"
)


def _control(m: asyncpg.Record) -> Control:
    return Control(
        id=m["id"],
        scope=ControlScope(m["scope"]),
        account=m["account"],
        target=m["target"],
        kind=ControlKind(m["kind"]),
        active=m["active"],
        reason=m["reason"],
        set_by=m["set_by"],
        set_at=m["set_at"],
    )


def _describe(control: Control) -> str:
    if control.scope is ControlScope.GLOBAL:
        target = "everything (all accounts)"
    elif control.scope is ControlScope.ACCOUNT:
        target = control.target
    else:
        target = f"{control.target} in account {control.account}"
    return (
        f"{control.kind.value} on {control.scope.value} {target} "
        f"(set by {control.set_by} at {control.set_at.isoformat()}: {control.reason})"
    )


def _covers(control: Control, account: str, decision: DecisionRecord) -> bool:
    if control.scope is ControlScope.GLOBAL:
        return True
    if control.account != account:
        return False
    match control.scope:
        case ControlScope.ACCOUNT:
            return control.target == account
        case ControlScope.STRATEGY:
            return control.target == decision.strategy_id
        case ControlScope.SYMBOL:
            return control.target == decision.symbol
    return False  # pragma: no cover


def _control_target(scope: ControlScope, target: str) -> str:
    if scope is ControlScope.GLOBAL:
        if target not in ("", "*"):
            raise ValueError(f"a global control has no target (use '*'), got {target!r}")
        return "*"
    if not target or target == "*":
        raise ValueError(f"a {scope.value} control needs the {scope.value} it covers")
    return target


async def apply_controls(
    db: asyncpg.Connection,
    account: AccountId,
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
        covering = [c for c in controls if _covers(c, account, d)]
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
            decisions.append(with_outcome(d, DecisionOutcome.DENIED, extra_verdicts=verdicts))
        else:
            allowed.append(r)
            decisions.append(with_outcome(d, DecisionOutcome.RESERVED))
    return allowed, blocked, decisions


class Controls(LedgerPart):
    """``ledger.controls``: set, clear and list the controls that survive restarts."""

    @retry_transient
    async def set(
        self,
        scope: ControlScope,
        target: str,
        kind: ControlKind,
        *,
        reason: str,
        set_by: str,
        operator: Operator | None = None,
        alert: AlertDraft | None = None,
    ) -> Control:
        """Activate a control (survives restarts). Idempotent: while one of the same scope,
        target and kind is active, that one is returned unchanged. With ``operator``, the
        operator journal records it in the same transaction; ``alert`` is written in the same
        statement, only when the control is new."""
        target = _control_target(scope, target)
        params = {
            "account": self._control_account(scope, target),
            "scope": scope.value,
            "target": target,
            "kind": kind.value,
        }
        now = self._clock()
        async with self._fenced_tx(f"setting {kind.value} on {scope.value} {target}") as db:
            row = (
                await SQL_SET_CONTROL.run(
                    db,
                    {
                        **params,
                        "lock_key": CONTROLS_LOCK_KEY,
                        "reason": reason,
                        "set_by": set_by,
                        "now": now,
                        **alert_params(alert, account=self.account),
                    },
                )
            ).first()
            inserted = row is not None
            if row is None:
                # Already active. A fresh statement sees it even if it committed while this
                # transaction waited for the lock (READ COMMITTED: a snapshot per statement).
                row = (await SQL_ACTIVE_CONTROL.run(db, params)).one()
            control = _control(row)
            # the owning engine(s) refresh their controls at once, not at their next poll
            await notify_operator(db, params["account"], f"control:{control.id}")
            if operator is not None:
                outcome = (
                    f"set (control {control.id})"
                    if inserted
                    else f"already active (control {control.id}, set by {control.set_by} "
                    f"at {control.set_at.isoformat(timespec='seconds')}: {control.reason})"
                )
                await record_action(
                    db,
                    account=self.account,
                    now=now,
                    operator=operator,
                    action=SET_ACTIONS[kind],
                    scope=scope,
                    target=target,
                    outcome=outcome,
                    details={"control_id": control.id, "kind": kind.value},
                )
        return control

    @retry_transient
    async def clear(
        self,
        scope: ControlScope,
        target: str,
        kind: ControlKind,
        *,
        cleared_by: str,
        operator: Operator | None = None,
    ) -> bool:
        """Deactivate a control; ``False`` when none was active. With ``operator``, the
        operator journal records it in the same transaction."""
        target = _control_target(scope, target)
        now = self._clock()
        async with self._fenced_tx(f"clearing {kind.value} on {scope.value} {target}") as db:
            row = (
                await SQL_CLEAR_CONTROL.run(
                    db,
                    {
                        "account": self._control_account(scope, target),
                        "scope": scope.value,
                        "target": target,
                        "kind": kind.value,
                        "cleared_by": cleared_by,
                        "now": now,
                    },
                )
            ).first()
            await notify_operator(db, self._control_account(scope, target), "control:cleared")
            if operator is not None:
                await record_action(
                    db,
                    account=self.account,
                    now=now,
                    operator=operator,
                    action=CLEAR_ACTIONS[kind],
                    scope=scope,
                    target=target,
                    outcome=f"cleared (control {row['id']})" if row else f"no active {kind.value}",
                    details={"control_id": row["id"] if row else None, "kind": kind.value},
                )
        return row is not None

    def _control_account(self, scope: ControlScope, target: str) -> str | None:
        """The account column of a control: none for the explicit global scope, the target for
        an account control, else (strategy, symbol) the account this ledger writes."""
        if scope is ControlScope.GLOBAL:
            return None
        if scope is ControlScope.ACCOUNT:
            return target
        return self.account

    async def active(self, *, all_accounts: bool = False) -> list[Control]:
        """The active controls covering this account (its own and the global ones); with
        ``all_accounts``, every account's."""
        async with self._connection() as db:
            if all_accounts:
                result = await SQL_ACTIVE_CONTROLS_ALL_ACCOUNTS.run(db)
            else:
                result = await SQL_ACTIVE_CONTROLS.run(db, {"account": self.account})
            return [_control(row) for row in result]
