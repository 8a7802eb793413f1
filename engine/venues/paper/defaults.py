"""A ready paper venue: rules, random walks and balances for the symbols it knows by default."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal

from engine.domain.types import Asset, Symbol, utc_now
from engine.marketdata.random_walk import WalkParams
from engine.venues.base import InstrumentRules
from engine.venues.metrics import VenueMetrics
from engine.venues.paper.venue import PaperVenue

BTCUSDT = Symbol("BTCUSDT")
PRES_YES = Symbol("PRES-YES")

#: Sensible rules for the symbols :func:`default_paper_venue` knows.
DEFAULT_RULES: Mapping[Symbol, InstrumentRules] = {
    BTCUSDT: InstrumentRules(
        symbol=BTCUSDT,
        base_asset=Asset("BTC"),
        quote_asset=Asset("USDT"),
        tick_size=Decimal("0.01"),
        step_size=Decimal("0.00001"),
        min_qty=Decimal("0.00001"),
        max_qty=Decimal("9000"),
        min_notional=Decimal("5"),
    ),
    # A binary prediction-market contract: priced in (0, 1) dollars, traded in whole contracts.
    PRES_YES: InstrumentRules(
        symbol=PRES_YES,
        base_asset=Asset("PRES-YES"),
        quote_asset=Asset("USD"),
        tick_size=Decimal("0.01"),
        step_size=Decimal("1"),
        min_qty=Decimal("1"),
        max_qty=Decimal("100000"),
        min_price=Decimal("0.01"),
        max_price=Decimal("0.99"),
    ),
}

DEFAULT_WALKS: Mapping[Symbol, WalkParams] = {
    BTCUSDT: WalkParams(start=Decimal("30000.00"), tick=Decimal("0.01"), size=Decimal("0.5")),
    PRES_YES: WalkParams(
        start=Decimal("0.50"),
        tick=Decimal("0.01"),
        step_bps=Decimal(200),
        size=Decimal(500),
        floor=Decimal(0),
        cap=Decimal(1),
    ),
}

DEFAULT_BALANCES: Mapping[Asset, Decimal] = {
    Asset("USDT"): Decimal(100_000),
    Asset("BTC"): Decimal(1),
    Asset("USD"): Decimal(10_000),
    Asset("PRES-YES"): Decimal(0),
}


def default_paper_venue(
    symbols: Sequence[Symbol] = (BTCUSDT, PRES_YES),
    *,
    seed: int = 0,
    clock: Callable[[], datetime] = utc_now,
    balances: Mapping[Asset, Decimal] | None = None,
    maker_fee: Decimal = Decimal("0.001"),
    taker_fee: Decimal = Decimal("0.001"),
    metrics: VenueMetrics | None = None,
) -> PaperVenue:
    """A funded paper venue with :data:`DEFAULT_RULES` and a seeded random walk per symbol.

    No quote exists until the first :meth:`PaperVenue.step` (or :meth:`PaperVenue.set_quote`).
    """
    unknown = [s for s in symbols if s not in DEFAULT_RULES]
    if unknown:
        raise ValueError(
            f"no default rules for {unknown}; known: {sorted(DEFAULT_RULES)}. "
            "Construct PaperVenue(rules=...) directly for other symbols."
        )
    rules = {s: DEFAULT_RULES[s] for s in symbols}
    assets = {a for r in rules.values() for a in (r.base_asset, r.quote_asset)}
    venue = PaperVenue(
        rules=rules,
        balances=dict(balances)
        if balances is not None
        else {a: v for a, v in DEFAULT_BALANCES.items() if a in assets},
        seed=seed,
        clock=clock,
        maker_fee=maker_fee,
        taker_fee=taker_fee,
        fees_in_quote=[s for s in symbols if s == PRES_YES],
        metrics=metrics,
    )
    for s in symbols:
        venue.attach_random_walk(s, DEFAULT_WALKS[s])
    return venue
