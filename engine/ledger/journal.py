"""The operator journal (``operator_actions``): who did what, when, to which scope, why, and
with what outcome.

Each row is written by the ledger call that makes the change (``controls.set``,
``incidents.resolve``, ``operations.request`` ...), in the same transaction, through
:func:`record_action`; this module only adds the reading. The table is append-only.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import asyncpg

from engine.domain.types import ControlScope
from engine.ledger.part import LedgerPart
from engine.ledger.records import Operator, OperatorAction
from engine.ledger.statements import Statement, dumps, from_json

SQL_RECORD_ACTION = Statement(
    """
    INSERT INTO operator_actions (account, acted_at, actor, action, scope, strategy, symbol,
                                  reason, outcome, details, request_id)
    VALUES (:account, :now, :actor, :action, :scope, :strategy, :symbol, :reason, :outcome,
            CAST(:details AS jsonb), :request_id)
    """
)
# A queued operation's result lands in operator_requests later: shown next to the action.
SQL_READ_ACTIONS = Statement(
    """
    SELECT a.id, a.account, a.acted_at, a.actor, a.action, a.scope, a.strategy, a.symbol,
           a.reason, a.outcome, a.details, a.request_id,
           r.handled_at AS request_handled_at, r.result AS request_result
    FROM operator_actions a
    LEFT JOIN operator_requests r ON r.id = a.request_id AND r.account = a.account
    WHERE (CAST(:all_accounts AS boolean) OR a.account = :account)
      AND (CAST(:since AS timestamptz) IS NULL OR a.acted_at >= :since)
    ORDER BY a.acted_at, a.id
    """
)


async def record_action(
    db: asyncpg.Connection,
    *,
    account: str,
    now: datetime,
    operator: Operator,
    action: str,
    scope: ControlScope,
    target: str | None,
    outcome: str,
    details: Mapping[str, Any] | None = None,
    request_id: int | None = None,
) -> None:
    """Append one journal row on ``db`` (the caller's transaction: the row commits with the
    change it records, or not at all)."""
    await SQL_RECORD_ACTION.run(
        db,
        {
            "account": account,
            "now": now,
            "actor": operator.actor,
            "action": action,
            "scope": scope.value,
            "strategy": target if scope is ControlScope.STRATEGY else None,
            "symbol": target if scope is ControlScope.SYMBOL else None,
            "reason": operator.reason,
            "outcome": outcome,
            "details": dumps(dict(details or {})),
            "request_id": request_id,
        },
    )


def _action(m: asyncpg.Record) -> OperatorAction:
    result = m["request_result"]
    return OperatorAction(
        id=m["id"],
        account=m["account"],
        acted_at=m["acted_at"],
        actor=m["actor"],
        action=m["action"],
        scope=ControlScope(m["scope"]),
        strategy=m["strategy"],
        symbol=m["symbol"],
        reason=m["reason"],
        outcome=m["outcome"],
        details=from_json(m["details"]) or {},
        request_id=m["request_id"],
        request_handled_at=m["request_handled_at"],
        request_result=None if result is None else from_json(result),
    )


class Journal(LedgerPart):
    """``ledger.journal``: read the operator journal (and record what the engine does on its
    own account's behalf, such as a hand-off)."""

    async def record(
        self,
        operator: Operator,
        *,
        action: str,
        scope: ControlScope,
        target: str | None,
        outcome: str,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        async with self._fenced_tx(f"journaling {action}") as db:
            await record_action(
                db,
                account=self.account,
                now=self._clock(),
                operator=operator,
                action=action,
                scope=scope,
                target=target,
                outcome=outcome,
                details=details,
            )

    async def read(
        self, *, since: datetime | None = None, all_accounts: bool = False
    ) -> list[OperatorAction]:
        """This account's operator actions since ``since`` (all of them when ``None``), oldest
        first; ``all_accounts`` for every account's."""
        async with self._connection() as db:
            rows = await SQL_READ_ACTIONS.run(
                db,
                {
                    "account": self.account,
                    "all_accounts": all_accounts,
                    "since": since,
                },
            )
        return [_action(row) for row in rows]
