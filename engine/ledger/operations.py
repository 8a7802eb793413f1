"""Operator requests: operations asked for by another process (the CLI) and run by the
engine that holds the account's lease."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import asyncpg

from engine.domain.types import ControlScope
from engine.ledger.journal import record_action
from engine.ledger.operator_channel import notify_operator
from engine.ledger.part import LedgerPart
from engine.ledger.records import Operator, OperatorRequest, OperatorRequestKind
from engine.ledger.statements import Statement, dumps, from_json, retry_transient

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
# Dropped = handled with a result that says so: the engine claims only unhandled requests, and
# completing one that was dropped while it ran changes nothing (``handled_at IS NULL``).
SQL_DROP_OPERATION = Statement(
    f"""
    UPDATE operator_requests
    SET handled_at = :now, handled_by = :by, result = CAST(:result AS jsonb)
    WHERE id = :id AND account = :account AND handled_at IS NULL
    RETURNING {_REQUEST_COLUMNS}
    """
)
SQL_ACCOUNT_OPERATION = Statement(
    f"SELECT {_REQUEST_COLUMNS} FROM operator_requests WHERE id = :id AND account = :account"
)
SQL_LIST_OPERATIONS = Statement(
    f"""SELECT {_REQUEST_COLUMNS} FROM operator_requests
    WHERE (CAST(:all_accounts AS boolean) OR account = :account)
      AND (handled_at IS NULL OR NOT CAST(:pending_only AS boolean))
    ORDER BY id"""
)


def journal_action(
    kind: OperatorRequestKind, params: Mapping[str, Any]
) -> tuple[str, ControlScope, str | None]:
    """The journal's action, scope and target of a queued operation."""
    if kind is OperatorRequestKind.RECONCILE:
        action = "accept_balances" if params.get("accept_balances") else "reconcile"
        return action, ControlScope.ACCOUNT, None
    if kind is OperatorRequestKind.RELEASE:
        return "release", ControlScope.ACCOUNT, None
    if params.get("strategy"):
        return "cancel_all", ControlScope.STRATEGY, str(params["strategy"])
    if params.get("symbol"):
        return "cancel_all", ControlScope.SYMBOL, str(params["symbol"])
    return "cancel_all", ControlScope.ACCOUNT, None


def _operator_request(m: asyncpg.Record) -> OperatorRequest:
    return OperatorRequest(
        id=m["id"],
        account=m["account"],
        kind=OperatorRequestKind(m["kind"]),
        requested_by=m["requested_by"],
        reason=m["reason"],
        params=from_json(m["params"]) or {},
        requested_at=m["requested_at"],
        handled_at=m["handled_at"],
        handled_by=m["handled_by"],
        result=None if m["result"] is None else from_json(m["result"]),
    )


class Operations(LedgerPart):
    """``ledger.operations``: queue, claim and complete operator requests."""

    async def request(
        self,
        kind: OperatorRequestKind,
        *,
        requested_by: str,
        reason: str,
        params: Mapping[str, Any] | None = None,
        operator: Operator | None = None,
    ) -> OperatorRequest:
        """Queue an operation for the engine that holds this account's lease. With
        ``operator``, the operator journal records it in the same transaction (its result
        arrives later, in the request's row)."""
        params = dict(params or {})
        now = self._clock()
        async with self._tx() as db:
            row = (
                await SQL_REQUEST_OPERATION.run(
                    db,
                    {
                        "account": self.account,
                        "kind": kind.value,
                        "requested_by": requested_by,
                        "reason": reason,
                        "params": dumps(params),
                        "now": now,
                    },
                )
            ).one()
            request = _operator_request(row)
            # the owning engine runs it at once instead of at its next poll
            await notify_operator(db, self.account, f"request:{request.id}")
            if operator is not None:
                action, scope, target = journal_action(kind, params)
                await record_action(
                    db,
                    account=self.account,
                    now=now,
                    operator=operator,
                    action=action,
                    scope=scope,
                    target=self.account if target is None else target,
                    outcome=f"queued as request {request.id}",
                    details={"kind": kind.value, "params": params},
                    request_id=request.id,
                )
        return request

    @retry_transient
    async def drop(
        self, request_id: int, *, operator: Operator, dropped_by: str
    ) -> tuple[bool, str]:
        """Drop a pending request of this account so no engine runs it: whether it was
        dropped, and what came of it in words, as the operator journal records it (in the
        same transaction)."""
        now = self._clock()
        result = {"ok": False, "dropped": True, "by": dropped_by, "reason": operator.reason}
        async with self._tx() as db:
            row = (
                await SQL_DROP_OPERATION.run(
                    db,
                    {
                        "id": request_id,
                        "account": self.account,
                        "now": now,
                        "by": dropped_by,
                        "result": dumps(result),
                    },
                )
            ).first()
            if row is not None:
                request: OperatorRequest | None = _operator_request(row)
                assert request is not None
                outcome = f"dropped request {request_id} ({request.kind.value})"
                if request.handled_by is not None:
                    outcome += f"; {request.handled_by} had claimed it and may be running it"
            else:
                existing = (
                    await SQL_ACCOUNT_OPERATION.run(db, {"id": request_id, "account": self.account})
                ).first()
                request = None if existing is None else _operator_request(existing)
                if request is None:
                    outcome = f"no request {request_id} in this account"
                else:
                    assert request.handled_at is not None
                    outcome = (
                        f"request {request_id} was no longer pending (handled at "
                        f"{request.handled_at.isoformat(timespec='seconds')} by "
                        f"{request.handled_by})"
                    )
            await record_action(
                db,
                account=self.account,
                now=now,
                operator=operator,
                action="request_drop",
                scope=ControlScope.ACCOUNT,
                target=self.account,
                outcome=outcome,
                details={"request_id": request_id},
                request_id=request_id if request is not None else None,
            )
        return row is not None, outcome

    async def read(
        self, *, pending_only: bool = True, all_accounts: bool = False
    ) -> list[OperatorRequest]:
        """This account's queued requests (``pending_only=False``: handled ones too), oldest
        first; ``all_accounts`` for every account's."""
        async with self._connection() as db:
            rows = await SQL_LIST_OPERATIONS.run(
                db,
                {
                    "account": self.account,
                    "all_accounts": all_accounts,
                    "pending_only": pending_only,
                },
            )
        return [_operator_request(row) for row in rows]

    @retry_transient
    async def claim(self, holder: str) -> OperatorRequest | None:
        """The oldest pending request of this account, now marked as being handled by
        ``holder``; ``None`` when there is none."""
        async with self._fenced_tx("claiming an operator request") as db:
            row = (
                await SQL_CLAIM_OPERATION.run(db, {"account": self.account, "holder": holder})
            ).first()
        return None if row is None else _operator_request(row)

    @retry_transient
    async def complete(
        self, request_id: int, *, holder: str, result: Mapping[str, Any]
    ) -> OperatorRequest | None:
        async with self._fenced_tx(f"completing operator request {request_id}") as db:
            row = (
                await SQL_COMPLETE_OPERATION.run(
                    db,
                    {
                        "id": request_id,
                        "holder": holder,
                        "result": dumps(dict(result)),
                        "now": self._clock(),
                    },
                )
            ).first()
        return None if row is None else _operator_request(row)

    async def get(self, request_id: int) -> OperatorRequest | None:
        async with self._connection() as db:
            row = (await SQL_GET_OPERATION.run(db, {"id": request_id})).first()
        return None if row is None else _operator_request(row)
