"""Stages: the capital fraction scales every order and the strategy's view of its own size; a
production venue needs the stage named and an explicit confirmation."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from engine.config import load_settings
from engine.domain.intents import Buy, DecisionKey, Hold
from engine.domain.market import Quote
from engine.domain.stage import Stage, Staging
from engine.domain.types import OrderState, Side, StrategyId, Symbol
from engine.exceptions import ConfigError
from engine.live_guard import confirm_live, environment, staging
from engine.marketdata.conflator import Conflator, Update
from engine.strategy_host import HostedStrategy, InMemoryPortfolio, StrategyHost
from strategies.base import DecisionMode, OpenOrder, Snapshot

T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
SYM = Symbol("BTCUSDT")
PROD = {"venue": "binance", "binance_rest_url": "https://api.binance.com"}


def _buy(qty: str) -> Buy:
    key = DecisionKey(strategy_id=StrategyId("s"), symbol=SYM, interval_key="k", side=Side.BUY)
    return Buy(key=key, reason="r", md_ts=T0, quantity=Decimal(qty), limit_price=Decimal(1))


def test_small_live_sends_a_tenth_of_each_order_and_stamps_the_stage() -> None:
    staged = Staging.of(Stage.SMALL_LIVE).apply(_buy("2.5"))
    assert isinstance(staged, Buy)
    assert staged.quantity == Decimal("0.25")
    assert (staged.stage, staged.capital_fraction) == ("small_live", Decimal("0.1"))


def test_a_hold_is_stamped_with_the_stage_too() -> None:
    key = DecisionKey(strategy_id=StrategyId("s"), symbol=SYM, interval_key="k", side=None)
    hold = Staging.of(Stage.LIVE, Decimal("0.5")).apply(Hold(key=key, reason="r", md_ts=T0))
    assert (hold.stage, hold.capital_fraction) == ("live", Decimal("0.5"))


def test_selling_the_scaled_position_back_sells_exactly_what_is_held() -> None:
    staging_ = Staging.of(Stage.SMALL_LIVE, Decimal("0.3"))
    held = Decimal("0.1")
    assert staging_.to_venue(staging_.to_strategy(held)) == held


@pytest.mark.parametrize("fraction", [Decimal(0), Decimal("1.5"), Decimal("NaN")])
def test_a_fraction_outside_zero_to_one_is_refused(fraction: Decimal) -> None:
    with pytest.raises(ValueError, match="capital fraction"):
        Staging(Stage.LIVE, fraction)


class _SellAll:
    """Sells whatever it holds, in one order: the strategy a double scaling would shrink."""

    strategy_id = StrategyId("seller")
    symbols = (SYM,)
    mode = DecisionMode.QUOTE
    bar_history = 0

    def __init__(self) -> None:
        self.seen: list[tuple[Decimal, Decimal]] = []

    def decide(self, snapshot: Snapshot) -> list[Buy | Hold]:
        held = snapshot.inventory.get(SYM, Decimal(0))
        self.seen.append((held, snapshot.open_orders[0].quantity))
        return [_buy("2")]


async def test_the_host_shows_a_staged_strategy_full_size_and_scales_its_orders() -> None:
    portfolio = InMemoryPortfolio()
    portfolio.set_position(StrategyId("seller"), SYM, Decimal("0.2"))
    portfolio.orders[StrategyId("seller")] = [
        OpenOrder(
            client_order_id="c",  # type: ignore[arg-type]
            symbol=SYM,
            side=Side.BUY,
            quantity=Decimal("0.05"),
            filled_quantity=Decimal(0),
            limit_price=Decimal(1),
            state=OrderState.OPEN,
        )
    ]
    sent: list[object] = []

    async def sink(intent: object) -> None:
        sent.append(intent)

    async def never(_: StrategyId) -> bool:
        return False

    async def fail(_: StrategyId, exc: BaseException) -> None:
        raise exc

    conflator = Conflator()
    host = StrategyHost(
        conflator=conflator,
        portfolio=portfolio,
        sink=sink,
        on_strategy_failure=fail,
        is_paused=never,
        clock=lambda: T0,
    )
    strategy = _SellAll()
    hosted = HostedStrategy(strategy=strategy, staging=Staging.of(Stage.SMALL_LIVE))  # type: ignore[arg-type]
    host.add(hosted)
    conflator.publish(
        Quote(
            symbol=SYM,
            bid=Decimal(1),
            bid_size=Decimal(1),
            ask=Decimal(2),
            ask_size=Decimal(1),
            venue_ts=T0,
            received_at=T0,
        )
    )
    await host.handle(hosted, Update(quotes=frozenset({SYM}), closed_bars=()))
    assert strategy.seen == [(Decimal(2), Decimal("0.5"))]
    assert [(i.quantity, i.capital_fraction) for i in sent] == [  # type: ignore[attr-defined]
        (Decimal("0.2"), Decimal("0.1"))
    ]


def test_run_is_paper_at_full_size_unless_told_otherwise() -> None:
    assert staging(load_settings(venue="paper")) == Staging(Stage.PAPER, Decimal(1))
    assert staging(load_settings(venue="binance")) == Staging(Stage.PAPER, Decimal(1))  # testnet


def test_the_fraction_setting_overrides_the_stage_default() -> None:
    settings = load_settings(venue="simulator", stage="small_live", capital_fraction="0.02")
    assert staging(settings) == Staging(Stage.SMALL_LIVE, Decimal("0.02"))


def test_a_production_venue_needs_the_stage_named() -> None:
    with pytest.raises(ConfigError, match=r"TRADECTL_STAGE: .* real money: set small_live or live"):
        staging(load_settings(**PROD))
    with pytest.raises(ConfigError, match="TRADECTL_STAGE=paper"):
        staging(load_settings(**PROD, stage="paper"))


def test_kalshi_production_is_production_and_its_demo_is_not() -> None:
    assert environment(load_settings(venue="kalshi")) == "demo"
    assert environment(load_settings(venue="kalshi", kalshi_environment="production")) == (
        "production"
    )


def test_binance_on_this_machine_is_the_simulator_and_any_other_host_is_production() -> None:
    def env(url: str) -> str:
        return environment(load_settings(venue="binance", binance_rest_url=url))

    assert env("http://127.0.0.1:8765") == "local"
    assert env("http://localhost:8765") == "local"
    assert env("https://testnet.binance.vision") == "testnet"
    assert env("https://api.binance.com") == "production"
    assert env("https://binance.example.net") == "production"


def test_backtest_is_not_a_stage_run_accepts() -> None:
    with pytest.raises(ConfigError, match="backtest is the stage of `tradectl backtest`"):
        staging(load_settings(venue="paper", stage="backtest"))


def test_live_on_production_prints_what_it_will_do_and_refuses_without_confirmation(
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = load_settings(**PROD, stage="small_live", account="main")
    with pytest.raises(ConfigError, match="TRADECTL_CONFIRM_LIVE=yes or `tradectl run --i-under"):
        confirm_live(settings, ["sma-btc"])
    printed = capsys.readouterr().out
    assert (
        "about to trade REAL MONEY: account main on Binance at https://api.binance.com" in printed
    )
    assert "(production), stage small_live, capital fraction 0.1 of every order" in printed
    assert "strategies sma-btc" in printed


def test_live_on_production_starts_once_confirmed(capsys: pytest.CaptureFixture[str]) -> None:
    settings = load_settings(**PROD, stage="live", confirm_live="yes")
    assert confirm_live(settings, ["a"]) == Staging(Stage.LIVE, Decimal(1))
    assert "about to trade REAL MONEY" in capsys.readouterr().out


def test_a_testnet_run_asks_for_no_confirmation(capsys: pytest.CaptureFixture[str]) -> None:
    confirm_live(load_settings(venue="binance"), ["a"])
    assert capsys.readouterr().out == ""
