"""Operator requests: operations asked for by another process (the CLI) and run by the
engine that holds the account's lease."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import asyncpg

from engine.ledger.part import LedgerPart
from engine.ledger.records import OperatorRequest, OperatorRequestKind
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
                        "params": dumps(dict(params or {})),
                        "now": self._clock(),
                    },
                )
            ).one()
        return _operator_request(row)

    @retry_transient
    async def claim(self, holder: str) -> OperatorRequest | None:
        """The oldest pending request of this account, now marked as being handled by
        ``holder``; ``None`` when there is none."""
        async with self._connection() as db:
            row = (
                await SQL_CLAIM_OPERATION.run(db, {"account": self.account, "holder": holder})
            ).first()
        return None if row is None else _operator_request(row)

    @retry_transient
    async def complete(
        self, request_id: int, *, holder: str, result: Mapping[str, Any]
    ) -> OperatorRequest | None:
        async with self._connection() as db:
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
