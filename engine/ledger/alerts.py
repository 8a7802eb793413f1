"""Alerts: the outbox the alert task delivers from (engine/alerting.py).

An alert is written in the transaction of the fact it reports where there is one: the incident
insert (:mod:`engine.ledger.incidents`), the halt control (:mod:`engine.ledger.controls`) and
the rejection (:mod:`engine.ledger.orders`) carry :data:`ALERT_CTE`-style inserts or call
:func:`insert_alert` on their own connection. Other alerts are their own insert (:meth:`add`).

Delivery is at least once: a row is claimed by pushing its ``next_attempt_at`` past the time a
send may take, so two processes (the engine and `tradectl alerts test`) never send it at the
same moment, and a process that dies mid-send leaves it to be claimed again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg

from engine.domain.alerts import INCIDENT_ID, AlertDraft, AlertLevel, summary_message
from engine.ledger.part import LedgerPart
from engine.ledger.statements import Statement, dumps, from_json, retry_transient

_COLUMNS = (
    "id, account, level, kind, scope, message, details, created_at, delivered_at, attempts, "
    "next_attempt_at, last_error, delivered_to, suppressed, summarized, suppressed_into, "
    "summary_of"
)

SQL_INSERT_ALERT = Statement(
    """
    INSERT INTO alerts (account, level, kind, scope, message, details, created_at,
                        next_attempt_at, summary_of)
    VALUES (:account, :level, :kind, :scope, :message, CAST(:details AS jsonb), :now, :now,
            CAST(:summary_of AS bigint))
    RETURNING id
    """
)


def alert_params(draft: AlertDraft | None, *, account: str) -> dict[str, Any]:
    """The ``:alert_*`` parameters of a statement that inserts an alert alongside its fact
    (all ``None`` when the fact raises none: the insert then selects no row)."""
    if draft is None:
        return {
            "alert_account": account,
            "alert_level": None,
            "alert_kind": None,
            "alert_scope": None,
            "alert_message": None,
            "alert_details": None,
            "alert_placeholder": INCIDENT_ID,
        }
    return {
        "alert_account": account,
        "alert_level": draft.level.value,
        "alert_kind": draft.kind,
        "alert_scope": draft.scope,
        "alert_message": draft.message,
        "alert_details": dumps(draft.details),
        "alert_placeholder": INCIDENT_ID,
    }


def alert_cte(source: str, *, incident_id: str | None = None) -> str:
    """A data-modifying CTE body inserting the ``:alert_*`` alert once per row of ``source``
    (the CTE of the fact: only a fact that was newly written raises its alert). With
    ``incident_id`` (an expression over ``source``), the message's placeholder becomes the
    incident's id and the details carry it."""
    message = "CAST(:alert_message AS text)"
    details = "CAST(:alert_details AS jsonb)"
    if incident_id is not None:
        message = (
            f"replace({message}, CAST(:alert_placeholder AS text), CAST({incident_id} AS text))"
        )
        details = f"{details} || jsonb_build_object('incident_id', {incident_id})"
    return f"""
        INSERT INTO alerts (account, level, kind, scope, message, details, created_at,
                            next_attempt_at)
        SELECT CAST(:alert_account AS text), CAST(:alert_level AS text), CAST(:alert_kind AS text),
               CAST(:alert_scope AS text), {message}, {details}, :now, :now
        FROM {source} WHERE CAST(:alert_level AS text) IS NOT NULL
        RETURNING id"""


# Claim due alerts: pushing next_attempt_at past the claim's lifetime is the lock.
SQL_CLAIM = Statement(
    f"""
    UPDATE alerts a SET next_attempt_at = :until
    WHERE a.id IN (
        SELECT id FROM alerts
        WHERE account = :account AND delivered_at IS NULL AND suppressed_into IS NULL
          AND next_attempt_at <= :now
        ORDER BY id LIMIT :limit
        FOR UPDATE SKIP LOCKED
    )
    RETURNING {", ".join("a." + c.strip() for c in _COLUMNS.split(","))}
    """
)
SQL_CLAIM_ONE = Statement(
    f"""
    UPDATE alerts SET next_attempt_at = :until
    WHERE id = :id AND account = :account AND delivered_at IS NULL AND suppressed_into IS NULL
      AND next_attempt_at <= :now
    RETURNING {_COLUMNS}
    """
)
# A first attempt that repeats an alert of the same level, kind and scope created within the
# cooldown is not sent: it points at that alert, which counts it.
SQL_FOLD_REPEAT = Statement(
    """
    WITH leader AS (
        SELECT l.id FROM alerts l, alerts r
        WHERE r.id = :id AND r.account = :account AND r.attempts = 0 AND r.summary_of IS NULL
          AND l.account = r.account AND l.kind = r.kind AND l.scope = r.scope
          AND l.level = r.level AND l.id < r.id
          AND l.summary_of IS NULL AND l.suppressed_into IS NULL
          AND l.created_at > r.created_at
                             - make_interval(secs => CAST(:cooldown_s AS double precision))
        ORDER BY l.id DESC LIMIT 1
        FOR UPDATE OF l
    ),
    folded AS (
        UPDATE alerts r SET suppressed_into = leader.id, next_attempt_at = :now
        FROM leader WHERE r.id = :id
        RETURNING r.suppressed_into
    )
    UPDATE alerts l SET suppressed = l.suppressed + 1
    FROM folded WHERE l.id = folded.suppressed_into
    RETURNING l.id
    """
)
SQL_RECORD_ATTEMPT = Statement(
    """
    UPDATE alerts SET
        attempts = attempts + 1,
        delivered_to = CAST(:delivered_to AS jsonb),
        delivered_at = CASE WHEN CAST(:done AS boolean) THEN CAST(:now AS timestamptz) END,
        last_error = CAST(:error AS text),
        next_attempt_at = :next_attempt_at
    WHERE id = :id AND account = :account AND delivered_at IS NULL
    """
)
SQL_DUE_SUMMARIES = Statement(
    """
    SELECT id, level, kind, scope, suppressed - summarized AS pending FROM alerts
    WHERE account = :account AND suppressed > summarized
      AND created_at <= CAST(:now AS timestamptz)
                         - make_interval(secs => CAST(:cooldown_s AS double precision))
    ORDER BY id
    FOR UPDATE SKIP LOCKED
    """
)
SQL_REPEATS = Statement(
    """
    SELECT min(created_at) AS first, max(created_at) AS last,
           (array_agg(message ORDER BY id DESC))[1] AS latest
    FROM (
        SELECT id, created_at, message FROM alerts
        WHERE suppressed_into = :id AND account = :account ORDER BY id DESC LIMIT :pending
    ) r
    """
)
SQL_MARK_SUMMARIZED = Statement(
    "UPDATE alerts SET summarized = summarized + :pending WHERE id = :id AND account = :account"
)
_WHICH = "(CAST(:all_accounts AS boolean) OR account = :account)"
SQL_RECENT = Statement(
    f"SELECT {_COLUMNS} FROM alerts WHERE {_WHICH} ORDER BY id DESC LIMIT :limit"
)
SQL_UNDELIVERED = Statement(
    """SELECT count(*) FROM alerts
    WHERE account = :account AND delivered_at IS NULL AND suppressed_into IS NULL"""
)
# What the fill-rate alert watches: per strategy, the orders of the window that are closed
# (rejections have their own alert) and what they asked for and got.
SQL_FILL_RATES = Statement(
    """
    SELECT o.strategy_id, count(*) AS orders, sum(o.requested_qty) AS requested,
           COALESCE(sum(f.filled), 0) AS filled
    FROM orders o
    LEFT JOIN LATERAL (
        SELECT sum(x.qty) AS filled FROM fills x
        WHERE x.client_order_id = o.client_order_id AND x.account = o.account
    ) f ON true
    WHERE o.account = :account AND o.created_at >= :since
      AND o.state IN ('FILLED', 'CANCELED', 'EXPIRED')
    GROUP BY o.strategy_id
    HAVING count(*) >= :min_orders
    ORDER BY o.strategy_id
    """
)
# Orders with fills that changed in the window, with the price each was expected to fill at:
# its limit price (the worst the strategy accepted), else the price its decision was made at.
SQL_FILLED_AGAINST_DECISION = Statement(
    """
    SELECT o.client_order_id, o.strategy_id, o.symbol, o.side, o.limit_price, d.decision_price,
           f.notional / f.qty AS avg_price
    FROM orders o
    JOIN decisions d ON d.decision_id = o.decision_id AND d.account = o.account
    JOIN LATERAL (
        SELECT sum(x.qty) AS qty, sum(x.qty * x.price) AS notional FROM fills x
        WHERE x.client_order_id = o.client_order_id AND x.account = o.account
    ) f ON f.qty > 0
    WHERE o.account = :account AND o.updated_at >= :since
      AND (o.limit_price > 0 OR d.decision_price > 0)
    ORDER BY o.updated_at, o.client_order_id
    """
)
SQL_GET = Statement(f"SELECT {_COLUMNS} FROM alerts WHERE id = :id AND account = :account")


@dataclass(frozen=True, slots=True, kw_only=True)
class AlertRecord:
    """A row of ``alerts``."""

    id: int
    account: str
    level: AlertLevel
    kind: str
    scope: str
    message: str
    details: dict[str, Any]
    created_at: datetime
    delivered_at: datetime | None
    attempts: int
    next_attempt_at: datetime
    last_error: str | None
    delivered_to: list[str]
    suppressed: int
    summarized: int
    suppressed_into: int | None
    summary_of: int | None

    @property
    def state(self) -> str:
        """What happened to it, for people: delivered / suppressed / retrying / pending."""
        if self.delivered_at is not None:
            return "delivered"
        if self.suppressed_into is not None:
            return f"suppressed (repeat of {self.suppressed_into})"
        return "retrying" if self.attempts else "pending"


def _record(m: asyncpg.Record) -> AlertRecord:
    return AlertRecord(
        id=m["id"],
        account=m["account"],
        level=AlertLevel(m["level"]),
        kind=m["kind"],
        scope=m["scope"],
        message=m["message"],
        details=from_json(m["details"]),
        created_at=m["created_at"],
        delivered_at=m["delivered_at"],
        attempts=m["attempts"],
        next_attempt_at=m["next_attempt_at"],
        last_error=m["last_error"],
        delivered_to=list(from_json(m["delivered_to"])),
        suppressed=m["suppressed"],
        summarized=m["summarized"],
        suppressed_into=m["suppressed_into"],
        summary_of=m["summary_of"],
    )


async def insert_alert(
    db: asyncpg.Connection,
    *,
    account: str,
    draft: AlertDraft,
    now: datetime,
    summary_of: int | None = None,
) -> int:
    """Write one alert on ``db``, inside whatever transaction the caller holds."""
    return int(
        (
            await SQL_INSERT_ALERT.run(
                db,
                {
                    "account": account,
                    "level": draft.level.value,
                    "kind": draft.kind,
                    "scope": draft.scope,
                    "message": draft.message,
                    "details": dumps(draft.details),
                    "now": now,
                    "summary_of": summary_of,
                },
            )
        ).scalar()
    )


class Alerts(LedgerPart):
    """``ledger.alerts``: add alerts, claim and record their delivery, list them."""

    @retry_transient
    async def add(self, draft: AlertDraft) -> int:
        """An alert with no fact of its own in the ledger (a lost connection, a lost lease)."""
        async with self._connection() as db:
            return await insert_alert(db, account=self.account, draft=draft, now=self._clock())

    async def claim(self, *, limit: int, claim_s: float) -> list[AlertRecord]:
        """Due alerts of this account, oldest first, each held for ``claim_s`` (longer than a
        send can take); a claim that is never recorded expires and the alert is sent again."""
        now = self._clock()
        async with self._connection() as db:
            rows = await SQL_CLAIM.run(
                db,
                {
                    "account": self.account,
                    "now": now,
                    "until": now + timedelta(seconds=claim_s),
                    "limit": limit,
                },
            )
        return sorted((_record(r) for r in rows), key=lambda a: a.id)

    async def claim_one(self, alert_id: int, *, claim_s: float) -> AlertRecord | None:
        now = self._clock()
        async with self._connection() as db:
            row = (
                await SQL_CLAIM_ONE.run(
                    db,
                    {
                        "id": alert_id,
                        "account": self.account,
                        "now": now,
                        "until": now + timedelta(seconds=claim_s),
                    },
                )
            ).first()
        return None if row is None else _record(row)

    @retry_transient
    async def fold_repeat(self, alert: AlertRecord, *, cooldown_s: float) -> int | None:
        """Fold a first attempt into the alert it repeats within the cooldown (its id), or
        ``None``: it is to be sent."""
        if alert.attempts or alert.summary_of is not None or cooldown_s <= 0:
            return None
        async with self._tx() as db:
            row = (
                await SQL_FOLD_REPEAT.run(
                    db,
                    {
                        "id": alert.id,
                        "account": self.account,
                        "cooldown_s": cooldown_s,
                        "now": self._clock(),
                    },
                )
            ).first()
        return None if row is None else int(row["id"])

    @retry_transient
    async def record_attempt(
        self,
        alert_id: int,
        *,
        delivered_to: list[str],
        done: bool,
        error: str | None,
        retry_at: datetime,
    ) -> None:
        async with self._connection() as db:
            await SQL_RECORD_ATTEMPT.run(
                db,
                {
                    "id": alert_id,
                    "account": self.account,
                    "delivered_to": dumps(sorted(delivered_to)),
                    "done": done,
                    "error": error,
                    "next_attempt_at": retry_at,
                    "now": self._clock(),
                },
            )

    @retry_transient
    async def summarize_due(self, *, cooldown_s: float) -> list[int]:
        """For every alert whose cooldown is over with repeats not yet reported, add a summary
        alert (delivered like any other, never folded); their ids."""
        now = self._clock()
        added: list[int] = []
        async with self._tx() as db:
            due = await SQL_DUE_SUMMARIES.run(
                db, {"account": self.account, "now": now, "cooldown_s": cooldown_s}
            )
            for leader in due:
                key = {"id": leader["id"], "account": self.account}
                repeats = (await SQL_REPEATS.run(db, {**key, "pending": leader["pending"]})).one()
                draft = AlertDraft(
                    level=AlertLevel(leader["level"]),
                    kind=leader["kind"],
                    scope=leader["scope"],
                    message=summary_message(
                        count=leader["pending"],
                        kind=leader["kind"],
                        scope=leader["scope"],
                        first=repeats["first"],
                        last=repeats["last"],
                        cooldown_s=cooldown_s,
                        latest=repeats["latest"],
                    ),
                    details={"repeats": leader["pending"], "summary_of": leader["id"]},
                )
                added.append(
                    await insert_alert(
                        db, account=self.account, draft=draft, now=now, summary_of=leader["id"]
                    )
                )
                await SQL_MARK_SUMMARIZED.run(db, {**key, "pending": leader["pending"]})
        return added

    async def get(self, alert_id: int) -> AlertRecord | None:
        async with self._connection() as db:
            row = (await SQL_GET.run(db, {"id": alert_id, "account": self.account})).first()
        return None if row is None else _record(row)

    async def recent(self, *, limit: int = 50, all_accounts: bool = False) -> list[AlertRecord]:
        """The newest alerts of this account (``all_accounts``: of every account), newest
        first."""
        async with self._connection() as db:
            rows = await SQL_RECENT.run(
                db, {"account": self.account, "all_accounts": all_accounts, "limit": limit}
            )
        return [_record(r) for r in rows]

    async def fill_rates(
        self, *, since: datetime, min_orders: int
    ) -> list[tuple[str, int, Decimal, Decimal]]:
        """Per strategy with at least ``min_orders`` closed orders created since ``since``:
        ``(strategy, orders, requested, filled)``."""
        async with self._connection() as db:
            rows = await SQL_FILL_RATES.run(
                db, {"account": self.account, "since": since, "min_orders": min_orders}
            )
        return [(r["strategy_id"], r["orders"], r["requested"], r["filled"]) for r in rows]

    async def filled_against_decision(
        self, *, since: datetime
    ) -> list[tuple[str, str, str, bool, Decimal, str, Decimal]]:
        """(client order id, strategy, symbol, is a buy, reference price, what the reference is,
        average fill price) of the orders with fills that changed since ``since``: the reference
        is the order's limit price, else its decision price (a market order)."""
        async with self._connection() as db:
            rows = await SQL_FILLED_AGAINST_DECISION.run(
                db, {"account": self.account, "since": since}
            )
        return [
            (
                r["client_order_id"],
                r["strategy_id"],
                r["symbol"],
                r["side"] == "BUY",
                r["limit_price"] if r["limit_price"] is not None else r["decision_price"],
                "limit price" if r["limit_price"] is not None else "decision price",
                r["avg_price"],
            )
            for r in rows
        ]

    async def undelivered(self) -> int:
        """Alerts of this account still to be sent (suppressed repeats are not)."""
        async with self._connection() as db:
            return int((await SQL_UNDELIVERED.run(db, {"account": self.account})).scalar())
