"""Incidents: what needs a human, one open incident per problem."""

from __future__ import annotations

from typing import Any

import asyncpg

from engine.domain.types import ControlScope
from engine.ledger.journal import record_action
from engine.ledger.part import LedgerPart
from engine.ledger.records import Incident, Operator
from engine.ledger.statements import Statement, dumps, from_json, retry_transient

_INCIDENT_COLUMNS = (
    "id, opened_at, account, kind, scope, severity, message, details, resolved_at, resolution_note"
)
# Incidents belong to the account whose engine opened them: the same mismatch (a dedupe key
# such as ``fills_missing:<client order id>``) in two accounts is two incidents.
SQL_OPEN_INCIDENT = Statement(
    f"""
    INSERT INTO incidents (opened_at, account, kind, scope, severity, message, details,
                           dedupe_key)
    VALUES (:now, :account, :kind, :scope, :severity, :message, CAST(:details AS jsonb),
            :dedupe_key)
    ON CONFLICT (account, dedupe_key) WHERE resolved_at IS NULL DO NOTHING
    RETURNING {_INCIDENT_COLUMNS}
    """
)
SQL_OPEN_INCIDENT_BY_KEY = Statement(
    f"""SELECT {_INCIDENT_COLUMNS} FROM incidents
    WHERE account = :account AND dedupe_key = :dedupe_key AND resolved_at IS NULL"""
)
# :all_accounts is the operator's explicit `--all-accounts`; otherwise one account's.
_WHICH = "(CAST(:all_accounts AS boolean) OR account = :account)"
SQL_OPEN_INCIDENTS = Statement(
    f"""SELECT {_INCIDENT_COLUMNS} FROM incidents
    WHERE resolved_at IS NULL AND {_WHICH} ORDER BY opened_at, id"""
)
SQL_ALL_INCIDENTS = Statement(
    f"SELECT {_INCIDENT_COLUMNS} FROM incidents WHERE {_WHICH} ORDER BY opened_at, id"
)
# Up to which fill trades made outside tradectl were already reported (resolved or not), so a
# restart does not report them again.
SQL_EXTERNAL_TRADES_REPORTED = Statement(
    """
    SELECT COALESCE(max(CAST(details->>'last_fill_id' AS bigint)), 0) FROM incidents
    WHERE account = :account AND kind = 'external_trade'
    """
)
SQL_RESOLVE_INCIDENT = Statement(
    """
    UPDATE incidents SET resolved_at = :now, resolution_note = :note
    WHERE id = :id AND account = :account AND resolved_at IS NULL
    RETURNING id
    """
)


def _incident(m: asyncpg.Record) -> Incident:
    return Incident(
        id=m["id"],
        opened_at=m["opened_at"],
        account=m["account"],
        kind=m["kind"],
        scope=m["scope"],
        severity=m["severity"],
        message=m["message"],
        details=from_json(m["details"]),
        resolved_at=m["resolved_at"],
        resolution_note=m["resolution_note"],
    )


class Incidents(LedgerPart):
    """``ledger.incidents``: open, list and resolve incidents."""

    @retry_transient
    async def open(
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
                        "account": self.account,
                        "kind": kind,
                        "scope": scope,
                        "severity": severity,
                        "message": message,
                        "details": dumps(details),
                        "dedupe_key": dedupe_key,
                    },
                )
            ).first()
            if row is None:
                row = (
                    await SQL_OPEN_INCIDENT_BY_KEY.run(
                        db, {"account": self.account, "dedupe_key": dedupe_key}
                    )
                ).one()
        return _incident(row)

    async def external_trades_reported(self) -> int:
        """The newest fill id an ``external_trade`` incident of this account covered (0: none)."""
        async with self._connection() as db:
            return int(
                (await SQL_EXTERNAL_TRADES_REPORTED.run(db, {"account": self.account})).scalar()
            )

    async def read(self, *, open_only: bool = True, all_accounts: bool = False) -> list[Incident]:
        """This account's incidents (open ones by default); ``all_accounts`` for every
        account's."""
        async with self._connection() as db:
            result = await (SQL_OPEN_INCIDENTS if open_only else SQL_ALL_INCIDENTS).run(
                db, {"account": self.account, "all_accounts": all_accounts}
            )
            return [_incident(row) for row in result]

    @retry_transient
    async def resolve(
        self, incident_id: int, note: str, *, operator: Operator | None = None
    ) -> bool:
        """Close an open incident of this account; ``False`` when it was not open (or is
        another account's). With ``operator``, the operator journal records it in the same
        transaction."""
        now = self._clock()
        async with self._tx() as db:
            row = (
                await SQL_RESOLVE_INCIDENT.run(
                    db,
                    {
                        "id": incident_id,
                        "account": self.account,
                        "note": note,
                        "now": now,
                    },
                )
            ).first()
            if operator is not None:
                await record_action(
                    db,
                    account=self.account,
                    now=now,
                    operator=operator,
                    action="incident_resolve",
                    scope=ControlScope.ACCOUNT,
                    target=self.account,
                    outcome=(
                        f"resolved incident {incident_id}"
                        if row
                        else f"incident {incident_id} was not open in this account"
                    ),
                    details={"incident_id": incident_id},
                )
        return row is not None

    @retry_transient
    async def resolve_by_key(self, dedupe_key: str, note: str) -> int | None:
        """Close the open incident with ``dedupe_key``; its id, or ``None`` when none was open."""
        async with self._connection() as db:
            key = {"account": self.account, "dedupe_key": dedupe_key}
            row = (await SQL_OPEN_INCIDENT_BY_KEY.run(db, key)).first()
            if row is None:
                return None
            done = (
                await SQL_RESOLVE_INCIDENT.run(
                    db,
                    {"id": row["id"], "account": self.account, "note": note, "now": self._clock()},
                )
            ).first()
        return None if done is None else int(row["id"])
