"""The liquidity, concentration and portfolio checks, the loss marks and the rolling volume:
one pass / reject / resize case per check, each verdict keeping the inputs it used."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from types import MappingProxyType
from zoneinfo import ZoneInfo

import pytest

from engine.domain.market import Bar, Trade
from engine.domain.risk import AccountView, Check, Exposure, Limits, MarketView, evaluate
from engine.domain.risk.loss_marks import LossHaltResume, TradingDay, advance, lifts_at_boundary
from engine.domain.types import Side, Symbol, TradeId, VerdictResult
from engine.exceptions import ConfigError
from engine.marketdata.volume import VolumeTracker
from engine.strategy_config import parse_trading_config
from tests.unit.test_risk import BTC, ETH, NOW, only, order

D = Decimal
PASS, REJECT, RESIZE = VerdictResult.PASS, VerdictResult.REJECT, VerdictResult.RESIZE
SOL = Symbol("SOLUSDT")


def market(*, volume: str | None = None, bid_size: str = "5", ask_size: str = "2") -> MarketView:
    return MarketView(
        symbol=BTC,
        bid=D(99),
        ask=D(101),
        received_at=NOW,
        recent_volume=None if volume is None else D(volume),
        bid_size=D(bid_size),
        ask_size=D(ask_size),
    )


def check(limits: Limits, qty: str = "1", side: Side = Side.BUY, **account: object):
    return evaluate(
        order(side=side, qty=qty, limit="100"),
        market(volume="20"),
        AccountView(**account),  # type: ignore[arg-type]
        limits,
        NOW,
    )


# -- liquidity -------------------------------------------------------------------------------


def test_volume_fraction_records_the_volume_and_window_it_used() -> None:
    limits = Limits(max_volume_fraction=D("0.1"), volume_window=timedelta(minutes=5))
    verdict = only(check(limits, qty="1"), Check.VOLUME_FRACTION)
    assert (verdict.result, verdict.observed) == (PASS, "0.05")
    assert verdict.message == "volume 20 over 300s"
    assert only(check(limits, qty="3"), Check.VOLUME_FRACTION).result is REJECT


def test_depth_fraction_takes_the_side_the_order_trades_against_and_resizes() -> None:
    limits = Limits(max_depth_fraction=D("0.5"), resizable=frozenset({Check.DEPTH_FRACTION}))
    buy = only(check(limits, qty="2"), Check.DEPTH_FRACTION)  # ask size 2: at most 1
    assert (buy.result, buy.resized_qty) == (RESIZE, D(1))
    assert "ask size 2" in buy.message
    sell = only(check(limits, qty="2", side=Side.SELL), Check.DEPTH_FRACTION)  # bid size 5
    assert (sell.result, sell.observed, sell.message) == (PASS, "0.4", "bid size 5")


def test_depth_fraction_rejects_when_the_touch_size_is_unknown() -> None:
    view = MarketView(symbol=BTC, bid=D(99), ask=D(101), received_at=NOW)
    result = evaluate(order(qty="1"), view, AccountView(), Limits(max_depth_fraction=D(1)), NOW)
    assert only(result, Check.DEPTH_FRACTION).observed == "missing"


# -- account-wide per symbol, equity, categories ---------------------------------------------


def test_symbol_position_counts_every_strategy_of_the_account() -> None:
    limits = Limits(max_symbol_position=MappingProxyType({BTC: D(3)}))
    held = {BTC: Exposure(position=D(2))}
    assert only(check(limits, account_exposure=held), Check.SYMBOL_QTY).result is PASS
    rejected = only(check(limits, qty="2", account_exposure=held), Check.SYMBOL_QTY)
    assert (rejected.result, rejected.observed) == (REJECT, "4")
    # the strategy's own (empty) exposure does not matter: the account's does
    assert check(limits, qty="2", strategy_exposure={}, account_exposure={}).approved


def test_symbol_notional_values_the_order_at_its_price() -> None:
    limits = Limits(max_symbol_notional=MappingProxyType({BTC: D(250)}))
    verdict = only(
        check(limits, qty="2", account_exposure={BTC: Exposure(position=D(1))}),
        Check.SYMBOL_NOTIONAL,
    )
    assert (verdict.result, verdict.observed) == (REJECT, "300")


def test_position_equity_pct_measures_against_cash_plus_positions_at_marks() -> None:
    limits = Limits(max_position_equity_pct=D(10), equity_asset="USDT")
    # equity = 900 cash + 1 ETH at 100 = 1000; 10 % = 100 of BTC at 100: one unit
    account = {
        "cash": D(900),
        "account_exposure": {ETH: Exposure(position=D(1))},
        "marks": {ETH: D(100)},
    }
    ok = only(check(limits, qty="1", **account), Check.POSITION_EQUITY)
    assert (ok.result, ok.observed) == (PASS, "10")
    assert ok.message == "notional 100 of equity 1000"
    assert only(check(limits, qty="2", **account), Check.POSITION_EQUITY).result is REJECT
    missing = only(check(limits, qty="1"), Check.POSITION_EQUITY)
    assert (missing.result, missing.observed) == (REJECT, "missing")


def category_limits(**extra: object) -> Limits:
    return Limits(
        categories=MappingProxyType({BTC: "l1", ETH: "l1", SOL: "alt"}),
        **extra,  # type: ignore[arg-type]
    )


def test_category_gross_adds_the_other_symbols_of_the_category_only() -> None:
    limits = category_limits(max_category_gross=MappingProxyType({"l1": D(300)}))
    exposure = {ETH: Exposure(position=D(-2)), SOL: Exposure(position=D(50))}
    marks = {ETH: D(100), SOL: D(10)}
    # |-2| * 100 (ETH) + 1 * 100 (this order) = 300; SOL is another category
    ok = only(check(limits, account_exposure=exposure, marks=marks), Check.CATEGORY_GROSS)
    assert (ok.result, ok.observed, ok.message) == (PASS, "300", "category l1")
    too_much = only(
        check(limits, qty="2", account_exposure=exposure, marks=marks), Check.CATEGORY_GROSS
    )
    assert too_much.result is REJECT


def test_category_net_lets_an_offsetting_order_through() -> None:
    limits = category_limits(
        max_category_net=MappingProxyType({"l1": D(150)}),
        resizable=frozenset({Check.CATEGORY_NET}),
    )
    short_eth = {ETH: Exposure(position=D(-2))}
    marks = {ETH: D(100)}
    # net long: -200 + 3 * 100 = 100 <= 150
    ok = only(check(limits, qty="3", account_exposure=short_eth, marks=marks), Check.CATEGORY_NET)
    assert (ok.result, ok.observed) == (PASS, "100")
    long_eth = {ETH: Exposure(position=D(1))}
    cut = only(check(limits, qty="1", account_exposure=long_eth, marks=marks), Check.CATEGORY_NET)
    assert (cut.result, cut.resized_qty) == (RESIZE, D("0.5"))


def test_a_symbol_without_a_category_or_a_category_without_a_limit_is_not_checked() -> None:
    limits = category_limits(max_category_gross=MappingProxyType({"alt": D(1)}))
    assert all(v.check != Check.CATEGORY_GROSS.value for v in check(limits).verdicts)


# -- loss marks --------------------------------------------------------------------------------


def test_the_trading_day_starts_at_the_configured_boundary_in_its_zone() -> None:
    assert TradingDay().start(NOW) == datetime(2026, 1, 5, tzinfo=UTC)
    new_york = TradingDay(boundary=time(17), zone=ZoneInfo("America/New_York"))
    # 12:00 UTC is 07:00 in New York: the day began at 17:00 the day before (22:00 UTC)
    assert new_york.start(NOW) == datetime(2026, 1, 4, 22, tzinfo=UTC)


def test_today_counts_only_the_change_since_the_day_start_mark() -> None:
    day = TradingDay()
    # a carried position lost 500 yesterday; today it loses 30 more
    yesterday = advance(None, D(-500), NOW - timedelta(days=1), day)
    today = advance(yesterday, D(-510), NOW, day, unobserved_start=D(-510))
    assert today.pnl_today(D(-540)) == D(-30)
    assert today.peak_pnl == D(-500)
    assert today.drawdown(D(-540)) == D(40)


def test_a_day_begun_unobserved_still_counts_todays_realized_loss() -> None:
    day = TradingDay()
    yesterday = advance(None, D(0), NOW - timedelta(days=1), day)
    # realized before the boundary 0, open P&L now -20: today started at -20, now -120
    marks = advance(yesterday, D(-120), NOW, day, unobserved_start=D(-20))
    assert marks.pnl_today(D(-120)) == D(-100)


def test_a_new_high_moves_the_peak_and_nothing_else_returns_the_same_marks() -> None:
    day = TradingDay()
    marks = advance(None, D(10), NOW, day)
    assert advance(marks, D(5), NOW, day) is marks
    higher = advance(marks, D(25), NOW + timedelta(seconds=1), day)
    assert (higher.peak_pnl, higher.day_start_pnl) == (D(25), D(10))


def test_only_a_daily_loss_halt_of_an_ended_day_lifts_itself() -> None:
    day = TradingDay()
    old = NOW - timedelta(days=1)
    assert lifts_at_boundary(reason="daily_loss: x", set_by="risk", set_at=old, now=NOW, day=day)
    assert not lifts_at_boundary(
        reason="daily_loss: x", set_by="risk", set_at=NOW, now=NOW, day=day
    )
    assert not lifts_at_boundary(reason="drawdown: x", set_by="risk", set_at=old, now=NOW, day=day)
    assert not lifts_at_boundary(
        reason="daily_loss: x; drawdown: y", set_by="risk", set_at=old, now=NOW, day=day
    )
    assert not lifts_at_boundary(reason="daily_loss: x", set_by="ops", set_at=old, now=NOW, day=day)


# -- rolling volume ----------------------------------------------------------------------------


def trade(qty: str, at: datetime, symbol: Symbol = BTC) -> Trade:
    return Trade(
        symbol=symbol, trade_id=TradeId("1"), price=D(100), quantity=D(qty), aggressor=None,
        venue_ts=at, received_at=at,
    )  # fmt: skip


def bar(volume: str, at: datetime, interval: str = "1m") -> Bar:
    return Bar(
        symbol=BTC, interval=interval, open_time=at - timedelta(minutes=1), close_time=at,
        open=D(1), high=D(1), low=D(1), close=D(1), volume=D(volume), closed=True, received_at=at,
    )  # fmt: skip


def test_rolling_volume_sums_the_window_and_forgets_older_trades() -> None:
    volumes = VolumeTracker(retain=timedelta(minutes=10))
    assert volumes.volume(BTC, timedelta(minutes=1), NOW) is None
    volumes.on_trade(trade("1", NOW - timedelta(minutes=5)))
    volumes.on_trade(trade("2", NOW - timedelta(seconds=30)))
    volumes.on_trade(trade("3", NOW - timedelta(seconds=30)))
    assert volumes.volume(BTC, timedelta(minutes=1), NOW) == D(5)
    assert volumes.volume(BTC, timedelta(minutes=10), NOW) == D(6)
    volumes.on_trade(trade("1", NOW + timedelta(minutes=20)))
    assert volumes.volume(BTC, timedelta(hours=1), NOW + timedelta(minutes=20)) == D(1)


def test_bars_count_until_trades_arrive_and_only_one_interval_counts() -> None:
    volumes = VolumeTracker()
    volumes.on_bar(bar("0", NOW))  # a bar built from quotes: says nothing
    assert volumes.volume(BTC, timedelta(hours=1), NOW) is None
    volumes.on_bar(bar("7", NOW))
    volumes.on_bar(bar("30", NOW, interval="5m"))
    assert volumes.volume(BTC, timedelta(hours=1), NOW) == D(7)
    volumes.on_trade(trade("1", NOW))
    volumes.on_bar(bar("7", NOW + timedelta(minutes=1)))
    assert volumes.volume(BTC, timedelta(hours=1), NOW + timedelta(minutes=1)) == D(1)


# -- the TOML ----------------------------------------------------------------------------------


def config(account_limits: dict[str, object], **top: object) -> Limits:
    raw = {
        "strategy": [
            {
                "id": "fv",
                "kind": "fair_value",
                "symbols": ["PRES-YES"],
                "params": {"fair": "0.55", "edge": "0.02", "qty": "10", "max_inventory": "100"},
                "categories": {"PRES-YES": "elections"},
            }
        ],
        "account": {"limits": account_limits},
        **top,
    }
    return parse_trading_config(raw, source=Path("t.toml")).account_limits


def test_the_toml_sets_the_day_boundary_zone_and_resume_policy() -> None:
    limits = config(
        {
            "day_boundary": "17:00:00",
            "day_timezone": "America/New_York",
            "daily_loss_resume": "next_day",
        }
    )
    assert limits.trading_day.start(NOW) == datetime(2026, 1, 4, 22, tzinfo=UTC)
    assert limits.daily_loss_resume is LossHaltResume.NEXT_DAY
    assert config({}).trading_day == TradingDay()


def test_categories_merge_from_instruments_and_strategies_and_may_not_disagree() -> None:
    limits = config(
        {"max_category_gross": {"elections": "100"}},
        instruments={"categories": {"BTCUSDT": "l1"}},
    )
    assert dict(limits.categories) == {"PRES-YES": "elections", "BTCUSDT": "l1"}
    with pytest.raises(
        ConfigError, match="'PRES-YES' is in category 'elections' here and 'other' elsewhere"
    ):
        config({}, instruments={"categories": {"PRES-YES": "other"}})


def test_a_limit_on_an_unknown_category_or_equity_without_its_asset_is_refused() -> None:
    with pytest.raises(ConfigError, match="no symbol is in category 'l2'"):
        config({"max_category_net": {"l2": "10"}})
    with pytest.raises(ConfigError, match="equity_asset"):
        config({"max_position_equity_pct": "10"})
    with pytest.raises(ConfigError, match="unknown time zone"):
        config({"day_timezone": "Mars/Olympus"})
