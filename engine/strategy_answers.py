"""What the strategy host makes of a strategy's answer: each intent's canonical decision key
(:func:`assign_keys`), an order's decision price (:func:`seen_price`), and what a staged strategy
is shown of its position and orders (:func:`full_size_view`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal

from engine.domain.intents import Buy, Cancel, DecisionKey, Hold, Intent, Sell
from engine.domain.market import Bar, Quote
from engine.domain.records import replacer
from engine.domain.stage import Staging
from engine.domain.types import Side, StrategyId, Symbol
from strategies.base import UNRECORDED, OpenOrder


def seen_price(
    symbol: Symbol, quotes: Mapping[Symbol, Quote], closed_bar: Bar | None
) -> Decimal | None:
    """The price the strategy saw for ``symbol``: the mid of its quote, else the close of the
    bar it decided on. Stored as the decision price, which execution quality measures from."""
    quote = quotes.get(symbol)
    if quote is not None:
        return quote.mid
    if closed_bar is not None and closed_bar.symbol == symbol:
        return closed_bar.close
    return None


def assign_keys(
    intents: Iterable[Intent],
    *,
    strategy_id: StrategyId,
    interval_key: str,
    symbols: Iterable[Symbol],
    version: str | None = None,
    config_hash: str | None = None,
    stamp_holds: bool = True,
) -> tuple[Intent, ...]:
    """Give each intent its canonical key: same window, same strategy, numbered per
    ``(symbol, side)`` in the order the strategy returned them. Raises ``ValueError`` on an
    intent that is not an intent or names a symbol the strategy does not trade.

    ``stamp_holds=False`` leaves holds without the version stamp (a sink that records none)."""
    if type(intents) is tuple and len(intents) == 1:
        # The usual decision, one intent already keyed by Snapshot.key/hold and nothing to
        # stamp: returned as it is, with the checks of the loop below.
        intent = intents[0]
        key = getattr(intent, "key", None)
        if (
            type(key) is DecisionKey
            and key.sequence == 0
            and key.strategy_id == strategy_id
            and key.symbol in symbols
        ):
            if not stamp_holds and type(intent) is Hold:
                # a hold nothing records: Snapshot.hold's unrecorded one passes as it is
                if key.interval_key == interval_key or key.interval_key is UNRECORDED:
                    return intents
            elif (
                key.interval_key == interval_key
                and intent.strategy_version == version
                and intent.config_hash == config_hash
            ):
                return intents
    allowed = frozenset(symbols)
    counters: dict[tuple[Symbol, Side | None], int] = {}
    out: list[Intent] = []
    for intent in intents:
        key = getattr(intent, "key", None)
        if not isinstance(key, DecisionKey):
            raise ValueError(f"decide returned {intent!r}, not an intent")
        if key.symbol not in allowed:
            raise ValueError(f"intent for {key.symbol!r}, which is not one of {sorted(allowed)}")
        slot = (key.symbol, key.side)
        sequence = counters.get(slot, 0)
        counters[slot] = sequence + 1
        if (
            key.sequence == sequence
            and key.strategy_id == strategy_id
            and key.interval_key == interval_key
        ):
            canonical = key  # the usual case (Snapshot.key): no new key on every decision
        else:
            canonical = DecisionKey(
                strategy_id=strategy_id,
                symbol=key.symbol,
                interval_key=interval_key,
                side=key.side,
                sequence=sequence,
            )
        if canonical is key and (
            (intent.strategy_version == version and intent.config_hash == config_hash)
            or (not stamp_holds and type(intent) is Hold)
        ):
            out.append(intent)
        else:
            # the canonical key has the strategy's own side (what the intent checks); versions
            # are not checked: nothing to check again
            copy = replacer(type(intent)) if type(intent) in _INTENTS else dataclasses.replace
            out.append(
                copy(intent, key=canonical, strategy_version=version, config_hash=config_hash)
            )
    return tuple(out)


def full_size_view(
    staging: Staging, inventory: Mapping[Symbol, Decimal], open_orders: Sequence[OpenOrder]
) -> tuple[dict[Symbol, Decimal], list[OpenOrder]]:
    """What a staged strategy sees of its position and orders: the real ones at full size."""
    return (
        {s: staging.to_strategy(q) for s, q in inventory.items()},
        [
            dataclasses.replace(
                o,
                quantity=staging.to_strategy(o.quantity),
                filled_quantity=staging.to_strategy(o.filled_quantity),
            )
            for o in open_orders
        ],
    )


_INTENTS = frozenset({Buy, Sell, Cancel, Hold})
