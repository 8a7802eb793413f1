"""The venue's own filters (step, tick, minimum notional) as a risk verdict, before the wire."""

from __future__ import annotations

from decimal import Decimal

from engine.domain.intents import OrderIntent
from engine.domain.risk import Verdict
from engine.domain.types import VerdictResult
from engine.venues.base import InstrumentRules


def venue_filters(rules: InstrumentRules | None, intent: OrderIntent, qty: Decimal) -> Verdict:
    """The venue's own filters (step, tick, minimum notional) as a verdict, after rounding."""
    if rules is None:
        return Verdict(
            check="venue_filters",
            result=VerdictResult.REJECT,
            limit="instrument rules known",
            observed="unavailable",
            message="the venue's trading rules could not be fetched; not trading blind",
        )
    rounded = rules.round_quantity(qty)
    price = (
        None if intent.limit_price is None else rules.round_price(intent.limit_price, intent.side)
    )
    problems = rules.violations(rounded, price)
    limit = (
        f"step {rules.step_size}, tick {rules.tick_size}, min qty {rules.min_qty}, "
        f"min notional {rules.min_notional}"
    )
    observed = f"qty {rounded}" + (f" @ {price}" if price is not None else "")
    if problems:
        return Verdict(
            check="venue_filters",
            result=VerdictResult.REJECT,
            limit=limit,
            observed=observed,
            message="; ".join(problems),
        )
    return Verdict(check="venue_filters", result=VerdictResult.PASS, limit=limit, observed=observed)
