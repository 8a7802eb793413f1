"""Pre-trade risk checks: one pass / reject / resize / not-configured case per check."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal, localcontext
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.domain.intents import Buy, DecisionKey, Sell
from engine.domain.risk import (
    CHECK_ORDER,
    FINAL_GATE_CHECKS,
    SIZE_CHECKS,
    AccountView,
    Check,
    Exposure,
    Limits,
    MarketView,
    RiskAssessment,
    Verdict,
    applicable_checks,
    evaluate,
)
from engine.domain.types import Side, StrategyId, Symbol, VerdictResult

D = Decimal
NOW = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
BTC, ETH = Symbol("BTCUSDT"), Symbol("ETHUSDT")
PASS, REJECT, RESIZE = VerdictResult.PASS, VerdictResult.REJECT, VerdictResult.RESIZE


def order(
    side: Side = Side.BUY,
    qty: str | Decimal = "1",
    limit: str | None = None,
    md_ts: datetime = NOW,
    symbol: Symbol = BTC,
) -> Buy | Sell:
    key = DecisionKey(strategy_id=StrategyId("s1"), symbol=symbol, interval_key="k", side=side)
    cls = Buy if side is Side.BUY else Sell
    return cls(
        key=key,
        reason="test",
        md_ts=md_ts,
        quantity=D(qty),
        limit_price=None if limit is None else D(limit),
    )


def quote(
    bid: str | None = "99",
    ask: str | None = "101",
    received_at: datetime | None = NOW,
    volume: str | None = None,
) -> MarketView:
    return MarketView(
        symbol=BTC,
        bid=None if bid is None else D(bid),
        ask=None if ask is None else D(ask),
        received_at=received_at,
        recent_volume=None if volume is None else D(volume),
    )


def run(
    limits: Limits,
    intent: Buy | Sell | None = None,
    market: MarketView | None = None,
    **account: Any,
) -> RiskAssessment:
    return evaluate(intent or order(), market or quote(), AccountView(**account), limits, NOW)


def only(assessment: RiskAssessment, check: Check) -> Verdict:
    found = [v for v in assessment.verdicts if v.check == check.value]
    assert len(found) == 1, assessment.verdicts
    return found[0]


# --- the whole evaluation ----------------------------------------------------------------------


def test_no_configured_limit_yields_no_verdict_and_approves_the_full_quantity() -> None:
    assessment = run(Limits(), order(qty="3"))
    assert assessment.verdicts == ()
    assert assessment.approved
    assert assessment.quantity == 3
    assert assessment.halt_reason is None


def test_a_rejected_intent_is_approved_for_nothing_but_every_check_still_runs() -> None:
    limits = Limits(max_order_qty=D(1), max_order_notional=D(1000), max_orders_per_minute=10)
    assessment = run(limits, order(qty="2"))
    assert not assessment.approved
    assert assessment.quantity == 0
    assert [v.check for v in assessment.verdicts] == [
        "orders_per_minute",
        "max_order_qty",
        "max_order_notional",
    ]
    assert [v.check for v in assessment.rejections] == ["max_order_qty"]


def test_checks_run_in_the_documented_order() -> None:
    assert CHECK_ORDER[0] is Check.INPUT_AGE
    assert CHECK_ORDER[-1] is Check.ACCOUNT_EXPOSURE
    assert CHECK_ORDER.index(Check.ORDER_QTY) < CHECK_ORDER.index(Check.ORDER_NOTIONAL)


def test_later_checks_see_the_resized_quantity() -> None:
    limits = Limits(
        max_order_qty=D(2),
        max_order_notional=D(150),
        resizable=frozenset({Check.ORDER_QTY, Check.ORDER_NOTIONAL}),
    )
    assessment = run(limits, order(qty="5", limit="100"))
    assert only(assessment, Check.ORDER_QTY).resized_qty == 2
    notional = only(assessment, Check.ORDER_NOTIONAL)
    assert notional.observed == "200"
    assert notional.resized_qty == D("1.5")
    assert assessment.approved
    assert assessment.quantity == D("1.5")


@pytest.mark.parametrize(
    ("intent", "market"),
    [
        (order(qty="5", limit="100"), quote()),  # resized twice, approved
        (order(qty="1", limit="100"), quote()),  # every check passes
        (order(qty="1", limit="130"), quote()),  # outside the price band
        (order(qty="1"), quote(received_at=NOW - timedelta(seconds=9))),  # a stale quote
        (order(qty="1"), quote(bid="101", ask="99")),  # a crossed book
    ],
)
def test_an_unexplained_assessment_decides_the_same_and_keeps_only_what_did_not_pass(
    intent: Buy | Sell, market: MarketView
) -> None:
    limits = Limits(
        max_order_qty=D(2),
        max_order_notional=D(150),
        resizable=frozenset({Check.ORDER_QTY, Check.ORDER_NOTIONAL}),
        max_price_age=timedelta(seconds=5),
        min_spread_bps=D(0),
        max_spread_bps=D(1000),
        price_band_bps=D(500),
    )
    full = evaluate(intent, market, AccountView(), limits, NOW)
    quiet = evaluate(intent, market, AccountView(), limits, NOW, explain=False)
    assert (quiet.approved, quiet.quantity, quiet.halt_reason) == (
        full.approved,
        full.quantity,
        full.halt_reason,
    )
    assert quiet.verdicts == tuple(v for v in full.verdicts if v.result is not PASS)


def test_only_size_checks_may_resize() -> None:
    with pytest.raises(ValueError, match="only size checks can resize"):
        Limits(resizable=frozenset({Check.PRICE_AGE}))


def test_limits_refuse_negative_values() -> None:
    with pytest.raises(ValueError, match="max_order_qty"):
        Limits(max_order_qty=D(-1))


def test_views_refuse_naive_timestamps() -> None:
    with pytest.raises(ValueError, match="received_at"):
        quote(received_at=datetime(2026, 1, 5, 12, 0))
    with pytest.raises(ValueError, match="recent_order_times"):
        AccountView(recent_order_times=[datetime(2026, 1, 5, 12, 0)])


def test_the_market_view_must_be_for_the_intents_symbol() -> None:
    with pytest.raises(ValueError, match="market view"):
        run(Limits(), order(symbol=ETH))


def test_verdicts_serialize_for_the_ledger() -> None:
    verdict = only(run(Limits(max_order_qty=D(1)), order(qty="2")), Check.ORDER_QTY)
    assert verdict.as_json() == {
        "check": "max_order_qty",
        "result": "reject",
        "limit": "1",
        "observed": "2",
        "message": "quantity 2 exceeds 1 allowed by max_order_qty",
        "resized_qty": None,
    }


# --- freshness ---------------------------------------------------------------------------------


def test_price_age_passes_a_fresh_quote() -> None:
    v = only(
        run(
            Limits(max_price_age=timedelta(seconds=2)),
            market=quote(received_at=NOW - timedelta(seconds=1)),
        ),
        Check.PRICE_AGE,
    )
    assert (v.result, v.limit, v.observed) == (PASS, "2s", "1s")


def test_price_age_rejects_a_stale_quote() -> None:
    v = only(
        run(
            Limits(max_price_age=timedelta(seconds=2)),
            market=quote(received_at=NOW - timedelta(seconds=3, milliseconds=250)),
        ),
        Check.PRICE_AGE,
    )
    assert (v.result, v.observed) == (REJECT, "3.25s")


def test_price_age_rejects_when_no_quote_was_received() -> None:
    v = only(
        run(Limits(max_price_age=timedelta(seconds=2)), market=quote(received_at=None)),
        Check.PRICE_AGE,
    )
    assert v.result is REJECT
    assert "no quote received" in v.message


def test_input_age_measures_the_decisions_market_data() -> None:
    limits = Limits(max_input_age=timedelta(seconds=5))
    assert (
        only(run(limits, order(md_ts=NOW - timedelta(seconds=4))), Check.INPUT_AGE).result is PASS
    )
    assert (
        only(run(limits, order(md_ts=NOW - timedelta(seconds=6))), Check.INPUT_AGE).result is REJECT
    )


def test_balance_age() -> None:
    limits = Limits(max_balance_age=timedelta(minutes=1))
    fresh = run(limits, balances_received_at=NOW - timedelta(seconds=30))
    stale = run(limits, balances_received_at=NOW - timedelta(minutes=2))
    missing = run(limits)
    assert only(fresh, Check.BALANCE_AGE).result is PASS
    assert only(stale, Check.BALANCE_AGE).result is REJECT
    assert "no balance snapshot" in only(missing, Check.BALANCE_AGE).message


# --- loss halts ------------------------------------------------------------------------------


def test_daily_loss_within_the_limit_passes() -> None:
    assessment = run(Limits(max_daily_loss=D(100)), pnl_today=D(-99))
    assert only(assessment, Check.DAILY_LOSS).result is PASS
    assert assessment.halt_reason is None


def test_daily_loss_beyond_the_limit_rejects_and_halts() -> None:
    assessment = run(Limits(max_daily_loss=D(100)), pnl_today=D(-100.5))
    v = only(assessment, Check.DAILY_LOSS)
    assert (v.result, v.observed) == (REJECT, "100.5")
    assert assessment.halt_reason is not None
    assert "daily_loss" in assessment.halt_reason


def test_unknown_daily_pnl_rejects_without_halting() -> None:
    assessment = run(Limits(max_daily_loss=D(100)))
    assert only(assessment, Check.DAILY_LOSS).result is REJECT
    assert assessment.halt_reason is None


def test_drawdown_from_peak_equity() -> None:
    limits = Limits(max_drawdown=D(50))
    ok = run(limits, equity=D(1000), peak_equity=D(1040))
    crossed = run(limits, equity=D(1000), peak_equity=D(1051))
    assert only(ok, Check.DRAWDOWN).result is PASS
    assert only(crossed, Check.DRAWDOWN).result is REJECT
    assert crossed.halt_reason is not None
    assert "drawdown" in crossed.halt_reason


# --- order rate, spread, price band ----------------------------------------------------------


def test_order_rate_counts_only_the_last_minute() -> None:
    times = [NOW - timedelta(seconds=10), NOW - timedelta(seconds=50), NOW - timedelta(seconds=61)]
    assert (
        only(
            run(Limits(max_orders_per_minute=3), recent_order_times=times), Check.ORDER_RATE
        ).result
        is PASS
    )
    v = only(run(Limits(max_orders_per_minute=2), recent_order_times=times), Check.ORDER_RATE)
    assert (v.result, v.observed) == (REJECT, "2")


def test_min_spread_rejects_a_crossed_book() -> None:
    limits = Limits(min_spread_bps=D(0))
    assert only(run(limits), Check.MIN_SPREAD).result is PASS
    assert only(run(limits, market=quote(bid="101", ask="100")), Check.MIN_SPREAD).result is REJECT


def test_max_spread_rejects_a_wide_book() -> None:
    limits = Limits(max_spread_bps=D(100))
    assert only(run(limits, market=quote(bid="99.5", ask="100.5")), Check.MAX_SPREAD).result is PASS
    v = only(run(limits, market=quote(bid="99", ask="101")), Check.MAX_SPREAD)
    assert (v.result, v.observed) == (REJECT, "200")


def test_spread_checks_reject_a_one_sided_book() -> None:
    v = only(run(Limits(max_spread_bps=D(100)), market=quote(bid=None)), Check.MAX_SPREAD)
    assert v.result is REJECT
    assert "no two-sided quote" in v.message


def test_price_band_compares_the_limit_price_with_mid() -> None:
    limits = Limits(price_band_bps=D(100))
    assert only(run(limits, order(limit="100.5")), Check.PRICE_BAND).result is PASS
    v = only(run(limits, order(limit="102")), Check.PRICE_BAND)
    assert (v.result, v.observed) == (REJECT, "200")


def test_price_band_has_nothing_to_compare_for_a_market_order() -> None:
    v = only(run(Limits(price_band_bps=D(100)), order(limit=None)), Check.PRICE_BAND)
    assert v.result is PASS
    assert v.observed == "market order"


def test_price_band_rejects_a_limit_order_without_a_quote() -> None:
    v = only(
        run(Limits(price_band_bps=D(100)), order(limit="100"), quote(bid=None, ask=None)),
        Check.PRICE_BAND,
    )
    assert v.result is REJECT


# --- size checks ------------------------------------------------------------------------------


def test_fat_finger_against_the_typical_order_size() -> None:
    limits = Limits(fat_finger_multiple=D(5))
    assert (
        only(run(limits, order(qty="5"), typical_order_qty=D(1)), Check.FAT_FINGER).result is PASS
    )
    v = only(run(limits, order(qty="6"), typical_order_qty=D(1)), Check.FAT_FINGER)
    assert (v.result, v.observed) == (REJECT, "6")


def test_fat_finger_may_resize() -> None:
    limits = Limits(fat_finger_multiple=D(5), resizable=frozenset({Check.FAT_FINGER}))
    assessment = run(limits, order(qty="6"), typical_order_qty=D(1))
    assert only(assessment, Check.FAT_FINGER).resized_qty == 5
    assert assessment.quantity == 5


def test_fat_finger_rejects_without_a_typical_size() -> None:
    assert only(run(Limits(fat_finger_multiple=D(5))), Check.FAT_FINGER).result is REJECT


def test_max_order_qty_pass_reject_resize() -> None:
    assert only(run(Limits(max_order_qty=D(1))), Check.ORDER_QTY).result is PASS
    assert only(run(Limits(max_order_qty=D(1)), order(qty="1.5")), Check.ORDER_QTY).result is REJECT
    limits = Limits(max_order_qty=D(1), resizable=frozenset({Check.ORDER_QTY}))
    v = only(run(limits, order(qty="1.5")), Check.ORDER_QTY)
    assert v.result is RESIZE
    assert v.resized_qty == 1
    assert "from 1.5 to 1 (-0.5)" in v.message


def test_a_limit_of_zero_rejects_even_when_resizable() -> None:
    limits = Limits(max_order_qty=D(0), resizable=frozenset({Check.ORDER_QTY}))
    assert only(run(limits), Check.ORDER_QTY).result is REJECT


def test_a_market_buy_is_valued_at_the_ask_and_a_market_sell_at_the_bid() -> None:
    limits = Limits(max_order_notional=D(100))
    buy = only(run(limits, order(Side.BUY)), Check.ORDER_NOTIONAL)
    sell = only(run(limits, order(Side.SELL)), Check.ORDER_NOTIONAL)
    assert (buy.result, buy.observed) == (REJECT, "101")
    assert (sell.result, sell.observed) == (PASS, "99")


def test_a_market_buy_without_an_ask_cannot_be_valued() -> None:
    v = only(run(Limits(max_order_notional=D(100)), market=quote(ask=None)), Check.ORDER_NOTIONAL)
    assert v.result is REJECT
    assert "no ask" in v.message


def test_order_notional_resizes_at_the_limit_price() -> None:
    limits = Limits(max_order_notional=D(100), resizable=frozenset({Check.ORDER_NOTIONAL}))
    quantity = run(limits, order(qty="4", limit="30")).quantity
    assert quantity < D(100) / D(30) + D("1e-20")
    assert quantity * 30 <= 100
    assert quantity > D("3.3333")


def test_volume_fraction() -> None:
    limits = Limits(max_volume_fraction=D("0.1"))
    assert only(run(limits, market=quote(volume="10")), Check.VOLUME_FRACTION).result is PASS
    assert (
        only(run(limits, order(qty="2"), quote(volume="10")), Check.VOLUME_FRACTION).result
        is REJECT
    )
    assert "recent volume" in only(run(limits), Check.VOLUME_FRACTION).message
    resizing = Limits(max_volume_fraction=D("0.1"), resizable=frozenset({Check.VOLUME_FRACTION}))
    assert run(resizing, order(qty="2"), quote(volume="10")).quantity == 1


def test_position_qty_counts_the_position_and_resting_orders_on_the_same_side() -> None:
    limits = Limits(max_position_qty=D(5))
    exposure = {BTC: Exposure(position=D(3), open_buy_qty=D(1), open_sell_qty=D(10))}
    assert (
        only(run(limits, order(qty="1"), strategy_exposure=exposure), Check.POSITION_QTY).result
        is PASS
    )
    v = only(run(limits, order(qty="2"), strategy_exposure=exposure), Check.POSITION_QTY)
    assert (v.result, v.observed) == (REJECT, "6")


def test_position_qty_resizes_to_the_room_left() -> None:
    limits = Limits(max_position_qty=D(5), resizable=frozenset({Check.POSITION_QTY}))
    exposure = {BTC: Exposure(position=D(4))}
    assert run(limits, order(qty="3"), strategy_exposure=exposure).quantity == 1


def test_an_order_that_reduces_a_position_beyond_the_limit_passes() -> None:
    limits = Limits(max_position_qty=D(5))
    exposure = {BTC: Exposure(position=D(10))}
    assert (
        only(
            run(limits, order(Side.SELL, "2"), strategy_exposure=exposure), Check.POSITION_QTY
        ).result
        is PASS
    )
    # …but not one that flips it beyond the limit on the other side
    assert (
        only(
            run(limits, order(Side.SELL, "16"), strategy_exposure=exposure), Check.POSITION_QTY
        ).result
        is REJECT
    )


def test_position_limits_per_symbol_override_the_default() -> None:
    limits = Limits(max_position_qty=D(100), max_position_qty_by_symbol={BTC: D(1)})
    assert only(run(limits, order(qty="2")), Check.POSITION_QTY).result is REJECT


def test_position_notional() -> None:
    limits = Limits(max_position_notional=D(500), resizable=frozenset({Check.POSITION_NOTIONAL}))
    exposure = {BTC: Exposure(position=D(4))}
    assessment = run(limits, order(qty="3", limit="100"), strategy_exposure=exposure)
    assert only(assessment, Check.POSITION_NOTIONAL).observed == "700"
    assert assessment.quantity == 1


def test_account_exposure_adds_every_symbol_of_every_strategy() -> None:
    limits = Limits(max_account_exposure=D(400))
    account = {
        "account_exposure": {BTC: Exposure(position=D(1)), ETH: Exposure(position=D(-10))},
        "marks": {ETH: D(20)},
    }
    ok = only(run(limits, order(qty="1", limit="100"), **account), Check.ACCOUNT_EXPOSURE)
    assert (ok.result, ok.observed) == (PASS, "400")
    too_much = only(run(limits, order(qty="2", limit="100"), **account), Check.ACCOUNT_EXPOSURE)
    assert (too_much.result, too_much.observed) == (REJECT, "500")
    resizing = Limits(max_account_exposure=D(400), resizable=frozenset({Check.ACCOUNT_EXPOSURE}))
    assert run(resizing, order(qty="2", limit="100"), **account).quantity == 1


def test_account_exposure_lets_an_over_limit_account_reduce() -> None:
    limits = Limits(max_account_exposure=D(100))
    account = {"account_exposure": {BTC: Exposure(position=D(5))}, "marks": {}}
    assert (
        only(run(limits, order(Side.SELL, "2", "100"), **account), Check.ACCOUNT_EXPOSURE).result
        is PASS
    )
    assert (
        only(run(limits, order(Side.BUY, "1", "100"), **account), Check.ACCOUNT_EXPOSURE).result
        is REJECT
    )


def test_account_exposure_rejects_without_a_mark_for_another_position() -> None:
    limits = Limits(max_account_exposure=D(1000))
    v = only(run(limits, account_exposure={ETH: Exposure(position=D(1))}), Check.ACCOUNT_EXPOSURE)
    assert v.result is REJECT
    assert "no mark for ETHUSDT" in v.message


# --- property --------------------------------------------------------------------------------

amounts = st.integers(0, 10**6).map(lambda n: D(n).scaleb(-3))
positive = st.integers(1, 10**6).map(lambda n: D(n).scaleb(-3))
maybe = st.none() | amounts


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[Buy | Sell, MarketView, AccountView, Limits]:
    side = draw(st.sampled_from(list(Side)))
    limit_price = draw(st.none() | positive)
    intent = order(side, draw(positive), None if limit_price is None else str(limit_price))
    bid = draw(positive)
    market = MarketView(
        symbol=BTC,
        bid=bid,
        ask=bid + draw(amounts),
        received_at=NOW,
        recent_volume=draw(st.none() | amounts),
    )
    exposure = st.builds(
        Exposure,
        position=amounts.map(lambda a: a - 500),
        open_buy_qty=amounts,
        open_sell_qty=amounts,
    )
    account = AccountView(
        strategy_exposure={BTC: draw(exposure)},
        account_exposure={BTC: draw(exposure), ETH: draw(exposure)},
        marks={ETH: draw(positive)},
        typical_order_qty=draw(st.none() | positive),
    )
    limits = Limits(
        max_order_qty=draw(maybe),
        max_order_notional=draw(maybe),
        max_position_qty=draw(maybe),
        max_position_notional=draw(maybe),
        max_account_exposure=draw(maybe),
        max_volume_fraction=draw(st.none() | st.integers(0, 100).map(lambda n: D(n).scaleb(-2))),
        fat_finger_multiple=draw(maybe),
        resizable=frozenset(draw(st.sets(st.sampled_from(sorted(SIZE_CHECKS))))),
    )
    return intent, market, account, limits


@settings(max_examples=300)
@given(scenarios())
def test_the_approved_quantity_never_exceeds_the_intent_nor_any_configured_limit(
    scenario: tuple[Buy | Sell, MarketView, AccountView, Limits],
) -> None:
    intent, market, account, limits = scenario
    assessment = evaluate(intent, market, account, limits, NOW)
    qty = assessment.quantity
    assert 0 <= qty <= intent.quantity
    resized = [v.resized_qty for v in assessment.verdicts if v.resized_qty is not None]
    assert resized == sorted(resized, reverse=True)
    if not assessment.approved:
        assert qty == 0
        return
    price = intent.limit_price or (market.ask if intent.side is Side.BUY else market.bid)
    assert price is not None
    with localcontext() as exact:
        exact.prec = 100
        if limits.max_order_qty is not None:
            assert qty <= limits.max_order_qty
        if limits.max_order_notional is not None:
            assert qty * price <= limits.max_order_notional
        if limits.fat_finger_multiple is not None:
            assert account.typical_order_qty is not None
            assert qty <= limits.fat_finger_multiple * account.typical_order_qty
        if limits.max_volume_fraction is not None:
            assert market.recent_volume is not None
            assert qty <= limits.max_volume_fraction * market.recent_volume
        along = account.strategy_exposure[BTC].worst_case(intent.side) + qty
        if limits.max_position_qty is not None:
            assert along <= limits.max_position_qty
        if limits.max_position_notional is not None:
            assert along * price <= limits.max_position_notional
        if limits.max_account_exposure is not None:
            after = account.account_exposure[BTC].worst_case(intent.side) + qty
            others = account.account_exposure[ETH].gross() * account.marks[ETH]
            assert after <= 0 or others + after * price <= limits.max_account_exposure


# --- the checks a caller may skip --------------------------------------------------------------

ONE_LIMIT: dict[Check, dict[str, Any]] = {
    Check.INPUT_AGE: {"max_input_age": timedelta(seconds=5)},
    Check.PRICE_AGE: {"max_price_age": timedelta(seconds=5)},
    Check.BALANCE_AGE: {"max_balance_age": timedelta(seconds=5)},
    Check.DAILY_LOSS: {"max_daily_loss": D(100)},
    Check.DRAWDOWN: {"max_drawdown": D(100)},
    Check.ORDER_RATE: {"max_orders_per_minute": 10},
    Check.MIN_SPREAD: {"min_spread_bps": D(1)},
    Check.MAX_SPREAD: {"max_spread_bps": D(100)},
    Check.PRICE_BAND: {"price_band_bps": D(100)},
    Check.FAT_FINGER: {"fat_finger_multiple": D(5)},
    Check.ORDER_QTY: {"max_order_qty": D(1)},
    Check.ORDER_NOTIONAL: {"max_order_notional": D(100)},
    Check.VOLUME_FRACTION: {"max_volume_fraction": D("0.1")},
    Check.DEPTH_FRACTION: {"max_depth_fraction": D("0.1")},
    Check.POSITION_QTY: {"max_position_qty_by_symbol": {BTC: D(1)}},
    Check.POSITION_NOTIONAL: {"max_position_notional_by_symbol": {BTC: D(100)}},
    Check.SYMBOL_QTY: {"max_symbol_position": {BTC: D(1)}},
    Check.SYMBOL_NOTIONAL: {"max_symbol_notional": {BTC: D(100)}},
    Check.POSITION_EQUITY: {"max_position_equity_pct": D(10)},
    Check.CATEGORY_GROSS: {"categories": {BTC: "l1"}, "max_category_gross": {"l1": D(100)}},
    Check.CATEGORY_NET: {"categories": {BTC: "l1"}, "max_category_net": {"l1": D(100)}},
    Check.ACCOUNT_EXPOSURE: {"max_account_exposure": D(100)},
}


def test_every_check_has_a_one_limit_example() -> None:
    assert set(ONE_LIMIT) == set(CHECK_ORDER)


@pytest.mark.parametrize("check", CHECK_ORDER, ids=lambda c: c.value)
def test_a_check_is_applicable_exactly_where_it_has_something_to_say(check: Check) -> None:
    limits = Limits(**ONE_LIMIT[check])
    # what evaluating every check says: one verdict, from this check, for BTC; none for ETH
    # when the limit is per symbol (or per category, which ETH is not in)
    for symbol in (BTC, ETH):
        intent = order(symbol=symbol)
        market = MarketView(symbol=symbol, bid=D(99), ask=D(101), received_at=NOW)
        said = tuple(
            Check(v.check) for v in evaluate(intent, market, AccountView(), limits, NOW).verdicts
        )
        assert applicable_checks(limits, symbol) == said
    assert applicable_checks(limits, BTC) == (check,)
    assert applicable_checks(limits, BTC, FINAL_GATE_CHECKS) == (
        (check,) if check in FINAL_GATE_CHECKS else ()
    )
