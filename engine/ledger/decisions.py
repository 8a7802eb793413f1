"""Decisions: what each strategy decided, on which data, and every verdict."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any

from engine.domain.holds import RepeatCount
from engine.domain.risk import Verdict
from engine.domain.types import DecisionOutcome
from engine.ledger.part import LedgerPart
from engine.ledger.records import DecisionRecord
from engine.ledger.statements import (
    Statement,
    dumps_rows,
    json_instant,
    json_number,
    require_finite,
    retry_transient,
)

# The rows as one JSON parameter (decision_params), read back by json_to_recordset into typed
# columns: one parameter instead of twenty arrays, because asyncpg's encoding of an array
# (type checks on the array and on every element) made most of the reservation's client CPU.
# Numbers travel as JSON strings (Decimal's str) into NUMERIC and timestamps as ISO text with
# their offset into TIMESTAMPTZ: the same exact values the binary encoding carried.
_DECISION_ROWS = """
    json_to_recordset(CAST(:decisions AS json)) AS t(
        decision_id text, strategy_id text, account text, symbol text, intent text, side text,
        quantity numeric, limit_price numeric, reason text, md_ts timestamptz,
        decided_at timestamptz, interval_key text, sequence int, verdicts jsonb, outcome text,
        decision_price numeric, strategy_version text, config_hash text, stage text,
        capital_fraction numeric
    )
"""

INSERT_DECISIONS = f"""
    INSERT INTO decisions (decision_id, strategy_id, account, symbol, intent, side, quantity,
                           limit_price, reason, md_ts, decided_at, interval_key, sequence,
                           verdicts, outcome, decision_price, strategy_version, config_hash,
                           stage, capital_fraction)
    SELECT t.decision_id, t.strategy_id, t.account, t.symbol, t.intent, t.side, t.quantity,
           t.limit_price, t.reason, t.md_ts, t.decided_at, t.interval_key, t.sequence,
           t.verdicts, t.outcome, t.decision_price, t.strategy_version,
           t.config_hash, t.stage, t.capital_fraction
    FROM {_DECISION_ROWS}
"""

SQL_RECORD_DECISIONS = Statement(
    f"{INSERT_DECISIONS} ON CONFLICT (account, decision_id) DO NOTHING"
)

# Counts only ever grow: a late write of an older count must not lower a newer one.
SQL_COUNT_REPEATS = Statement(
    """
    UPDATE decisions d
    SET repeats = GREATEST(d.repeats, t.repeats),
        last_repeat_at = GREATEST(d.last_repeat_at, t.last_repeat_at)
    FROM unnest(CAST(:decision_id AS text[]), CAST(:repeats AS int[]),
                CAST(:last_repeat_at AS timestamptz[])) AS t(decision_id, repeats, last_repeat_at)
    WHERE d.account = :account AND d.decision_id = t.decision_id AND d.intent = 'hold'
    """
)


def decision_params(decisions: Sequence[DecisionRecord]) -> dict[str, str]:
    """The ``:decisions`` parameter of :data:`INSERT_DECISIONS`: one JSON array of rows."""
    return {"decisions": dumps_rows([decision_row(d) for d in decisions])}


def decision_row(d: DecisionRecord) -> dict[str, Any]:
    """One decision as a row of ``:decisions`` (values as engine/ledger/statements.py says)."""
    return {
        "decision_id": d.decision_id,
        "strategy_id": d.strategy_id,
        "account": d.account,
        "symbol": d.symbol,
        "intent": d.intent,
        "side": None if d.side is None else d.side.value,
        "quantity": json_number(d.quantity),
        "limit_price": json_number(d.limit_price),
        "reason": d.reason,
        "md_ts": json_instant(d.md_ts),
        "decided_at": json_instant(d.decided_at),
        "interval_key": d.interval_key,
        "sequence": d.sequence,
        "verdicts": [v.as_json() for v in d.verdicts],
        "outcome": d.outcome.value,
        "decision_price": json_number(d.decision_price),
        "strategy_version": d.strategy_version,
        "config_hash": d.config_hash,
        "stage": d.stage,
        "capital_fraction": json_number(d.capital_fraction),
    }


def with_outcome(
    decision: DecisionRecord,
    outcome: DecisionOutcome,
    *,
    extra_verdicts: Iterable[Verdict] = (),
) -> DecisionRecord:
    extra = tuple(extra_verdicts)
    if decision.outcome is outcome and not extra:
        return decision
    return replace(decision, outcome=outcome, verdicts=(*decision.verdicts, *extra))


class Decisions(LedgerPart):
    """``ledger.decisions``: decisions that reserve no order (reservations record their own)."""

    async def record(self, decision: DecisionRecord) -> None:
        """Record a decision that reserves no order (a hold, a risk denial). Idempotent."""
        await self.record_many([decision])

    @retry_transient
    async def record_many(self, decisions: Sequence[DecisionRecord]) -> None:
        """Record decisions that reserve no order, in one statement. Idempotent."""
        for decision in decisions:
            require_finite(
                f"decision {decision.decision_id}",
                quantity=decision.quantity,
                limit_price=decision.limit_price,
                decision_price=decision.decision_price,
                capital_fraction=decision.capital_fraction,
            )
        async with self._connection() as db:
            await SQL_RECORD_DECISIONS.run(db, decision_params(decisions))

    @retry_transient
    async def count_repeats(self, counts: Sequence[RepeatCount]) -> None:
        """Set how many identical holds followed each recorded hold (engine.domain.holds)."""
        async with self._connection() as db:
            await SQL_COUNT_REPEATS.run(
                db,
                {
                    "account": self.account,
                    "decision_id": [c.decision_id for c in counts],
                    "repeats": [c.repeats for c in counts],
                    "last_repeat_at": [c.last_repeat_at for c in counts],
                },
            )
