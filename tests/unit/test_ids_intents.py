"""Deterministic client order ids and intent validation."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.domain.ids import client_order_id, decision_id, is_ours, validate_prefix
from engine.domain.intents import Buy, Cancel, DecisionKey, Hold, Sell, intent_kind
from engine.domain.types import ClientOrderId, Side, StrategyId, Symbol

NOW = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
ID_SHAPE = re.compile(r"^[A-Za-z0-9_-]{1,36}$")


def key(side: Side | None = Side.BUY, **overrides: object) -> DecisionKey:
    fields: dict[str, object] = {
        "strategy_id": StrategyId("momo"),
        "symbol": Symbol("BTCUSDT"),
        "interval_key": "2026-01-05T12:00",
        "side": side,
        "sequence": 0,
    }
    fields.update(overrides)
    return DecisionKey(**fields)  # type: ignore[arg-type]


keys = st.builds(
    DecisionKey,
    strategy_id=st.text(min_size=1, max_size=30).map(StrategyId),
    symbol=st.text(min_size=1, max_size=20).map(Symbol),
    interval_key=st.text(min_size=1, max_size=40),
    side=st.sampled_from([Side.BUY, Side.SELL, None]),
    sequence=st.integers(0, 10**6),
)
prefixes = st.from_regex(r"[A-Za-z0-9]{1,12}", fullmatch=True)


# --- client order ids ----------------------------------------------------------------------------


def test_the_same_decision_gets_the_same_id_after_a_restart() -> None:
    # a fresh key object with equal fields, as a restarted strategy would build it
    assert client_order_id("tc", key()) == client_order_id("tc", key())
    assert decision_id(key()) == decision_id(key())


def test_a_pinned_id_never_changes_across_releases() -> None:
    # changing canonical() or the hash would re-key every stored decision
    assert client_order_id("tc", key()) == "tc-ee2b4edf9e4f7c6458300b64fad518c7"


@given(prefix=prefixes, k=keys)
def test_ids_are_at_most_36_chars_of_the_allowed_alphabet_and_start_with_the_prefix(
    prefix: str, k: DecisionKey
) -> None:
    coid = client_order_id(prefix, k)
    assert ID_SHAPE.match(coid)
    assert coid.startswith(f"{prefix}-")
    assert is_ours(prefix, coid)


@given(a=keys, b=keys)
def test_different_keys_get_different_ids(a: DecisionKey, b: DecisionKey) -> None:
    if a.canonical() != b.canonical():
        assert client_order_id("tc", a) != client_order_id("tc", b)
        assert decision_id(a) != decision_id(b)


@pytest.mark.parametrize(
    "change",
    [
        {"strategy_id": StrategyId("other")},
        {"symbol": Symbol("ETHUSDT")},
        {"interval_key": "2026-01-05T12:01"},
        {"side": Side.SELL},
        {"sequence": 1},
    ],
)
def test_every_key_field_changes_the_id(change: dict[str, object]) -> None:
    assert client_order_id("tc", key(**change)) != client_order_id("tc", key())


def test_the_decision_id_differs_from_the_order_id_hash() -> None:
    assert decision_id(key()) not in client_order_id("tc", key())


def test_ids_from_other_prefixes_are_not_ours() -> None:
    coid = client_order_id("tc", key())
    assert not is_ours("tcx", coid)
    assert not is_ours("t", coid)
    assert not is_ours("tc", ClientOrderId("web_123"))


@pytest.mark.parametrize("prefix", ["", "a-b", "has space", "x" * 13, "ünï"])
def test_bad_prefixes_are_refused(prefix: str) -> None:
    with pytest.raises(ValueError, match="prefix"):
        validate_prefix(prefix)
    with pytest.raises(ValueError, match="prefix"):
        client_order_id(prefix, key())


def test_a_twelve_character_prefix_still_fits() -> None:
    coid = client_order_id("A" * 12, key())
    assert len(coid) <= 36
    assert coid.startswith("A" * 12 + "-")


# --- decision keys -------------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["strategy_id", "symbol", "interval_key"])
def test_decision_keys_need_non_empty_fields(field: str) -> None:
    with pytest.raises(ValueError, match="non-empty"):
        key(**{field: ""})


def test_decision_keys_refuse_negative_sequences() -> None:
    with pytest.raises(ValueError, match="sequence"):
        key(sequence=-1)


def test_the_quick_key_constructor_builds_the_same_key_and_refuses_the_same() -> None:
    quick = DecisionKey.of(StrategyId("s"), Symbol("BTCUSDT"), "w", Side.BUY, 2)
    assert quick == DecisionKey(
        strategy_id=StrategyId("s"),
        symbol=Symbol("BTCUSDT"),
        interval_key="w",
        side=Side.BUY,
        sequence=2,
    )
    with pytest.raises(ValueError, match="non-empty"):
        DecisionKey.of(StrategyId("s"), Symbol(""), "w", None, 0)
    with pytest.raises(ValueError, match="sequence"):
        DecisionKey.of(StrategyId("s"), Symbol("BTCUSDT"), "w", None, -1)


def test_the_quick_hold_constructor_builds_the_same_hold_and_refuses_the_same() -> None:
    k = key(side=None)
    at = datetime(2026, 1, 1, tzinfo=UTC)
    assert Hold.of(k, "flat", at) == Hold(key=k, reason="flat", md_ts=at)
    other_zone = datetime(2026, 1, 1, tzinfo=timezone(timedelta(hours=2)))
    assert Hold.of(k, "flat", other_zone) == Hold(key=k, reason="flat", md_ts=other_zone)
    with pytest.raises(ValueError, match="reason"):
        Hold.of(k, "", at)
    with pytest.raises(ValueError, match="md_ts"):
        Hold.of(k, "flat", datetime(2026, 1, 1))  # naive on purpose


# --- intents -------------------------------------------------------------------------------------


def buy(**overrides: object) -> Buy:
    fields: dict[str, object] = {
        "key": key(Side.BUY),
        "reason": "breakout",
        "md_ts": NOW,
        "quantity": Decimal("0.5"),
    }
    fields.update(overrides)
    return Buy(**fields)  # type: ignore[arg-type]


def test_a_valid_buy() -> None:
    intent = buy(limit_price=Decimal(100))
    assert intent.side is Side.BUY
    assert intent.strategy_id == "momo"
    assert intent.symbol == "BTCUSDT"
    assert intent.order_type == "LIMIT"
    assert buy().order_type == "MARKET"
    assert intent_kind(intent) == "buy"


def test_intents_refuse_naive_market_data_timestamps() -> None:
    with pytest.raises(ValueError, match="md_ts"):
        buy(md_ts=datetime(2026, 1, 5, 12, 0))


def test_intents_accept_aware_non_utc_timestamps() -> None:
    buy(md_ts=NOW.astimezone(timezone(timedelta(hours=2))))


@pytest.mark.parametrize("qty", [Decimal(0), Decimal(-1), Decimal("NaN"), Decimal("Infinity")])
def test_intents_refuse_non_positive_or_non_finite_quantities(qty: Decimal) -> None:
    with pytest.raises(ValueError, match="quantity"):
        buy(quantity=qty)


def test_intents_refuse_float_quantities() -> None:
    with pytest.raises(ValueError, match="quantity"):
        buy(quantity=0.5)


@pytest.mark.parametrize("price", [Decimal(0), Decimal(-5), Decimal("NaN")])
def test_intents_refuse_bad_limit_prices(price: Decimal) -> None:
    with pytest.raises(ValueError, match="limit_price"):
        buy(limit_price=price)


def test_a_buy_with_a_sell_key_is_refused() -> None:
    with pytest.raises(ValueError, match="does not match"):
        buy(key=key(Side.SELL))


def test_a_sell_with_a_sideless_key_is_refused() -> None:
    with pytest.raises(ValueError, match="does not match"):
        Sell(key=key(None), reason="r", md_ts=NOW, quantity=Decimal(1))


def test_intents_need_a_reason() -> None:
    with pytest.raises(ValueError, match="reason"):
        buy(reason="")


def test_hold_and_cancel_are_recorded_with_their_kind() -> None:
    hold = Hold(key=key(None), reason="spread too wide", md_ts=NOW)
    cancel = Cancel(key=key(None), reason="stale", md_ts=NOW, client_order_id=ClientOrderId("tc-1"))
    assert (intent_kind(hold), intent_kind(cancel)) == ("hold", "cancel")
