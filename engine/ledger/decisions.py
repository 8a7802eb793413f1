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
from engine.ledger.statements import Statement, dumps, require_finite, retry_transient

_DECISION_ARRAYS = """
    unnest(
        CAST(:d_decision_id AS text[]), CAST(:d_strategy_id AS text[]),
        CAST(:d_account AS text[]), CAST(:d_symbol AS text[]), CAST(:d_intent AS text[]),
        CAST(:d_side AS text[]), CAST(:d_quantity AS numeric[]),
        CAST(:d_limit_price AS numeric[]), CAST(:d_reason AS text[]),
        CAST(:d_md_ts AS timestamptz[]), CAST(:d_decided_at AS timestamptz[]),
        CAST(:d_interval_key AS text[]), CAST(:d_sequence AS int[]),
        CAST(:d_verdicts AS text[]), CAST(:d_outcome AS text[]),
        CAST(:d_decision_price AS numeric[]), CAST(:d_strategy_version AS text[]),
        CAST(:d_config_hash AS text[]), CAST(:d_stage AS text[]),
        CAST(:d_capital_fraction AS numeric[])
    ) AS t(decision_id, strategy_id, account, symbol, intent, side, quantity, limit_price,
           reason, md_ts, decided_at, interval_key, sequence, verdicts, outcome, decision_price,
           strategy_version, config_hash, stage, capital_fraction)
"""

INSERT_DECISIONS = f"""
    INSERT INTO decisions (decision_id, strategy_id, account, symbol, intent, side, quantity,
                           limit_price, reason, md_ts, decided_at, interval_key, sequence,
                           verdicts, outcome, decision_price, strategy_version, config_hash,
                           stage, capital_fraction)
    SELECT t.decision_id, t.strategy_id, t.account, t.symbol, t.intent, t.side, t.quantity,
           t.limit_price, t.reason, t.md_ts, t.decided_at, t.interval_key, t.sequence,
           CAST(t.verdicts AS jsonb), t.outcome, t.decision_price, t.strategy_version,
           t.config_hash, t.stage, t.capital_fraction
    FROM {_DECISION_ARRAYS}
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


def decision_params(decisions: Sequence[DecisionRecord]) -> dict[str, list[Any]]:
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
        "d_verdicts": [dumps([v.as_json() for v in d.verdicts]) for d in decisions],
        "d_outcome": [d.outcome.value for d in decisions],
        "d_decision_price": [d.decision_price for d in decisions],
        "d_strategy_version": [d.strategy_version for d in decisions],
        "d_config_hash": [d.config_hash for d in decisions],
        "d_stage": [d.stage for d in decisions],
        "d_capital_fraction": [d.capital_fraction for d in decisions],
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
